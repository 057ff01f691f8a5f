"""Benchmark: build every indicator model on a large store and print seconds and peak memory per model.

    .venv/bin/python benchmarks/bench_models.py [--learners 100000] [--courses 20] [--events 20000000]
                                                [--dir /tmp/edx-bench] [--threads 2] [--memory-limit 3GB]
                                                [--engine duckdb|spark] [--spark-master local[2]]

Generating 20 million events through the synthetic generator and the tracking-log importer would
take far longer than the build being measured, so the store is generated directly in DuckDB
with SQL: Parquet files with the importer's column layout, exposed as the catalog views the
models read (auth_user, auth_userprofile, student_courseenrollment,
certificates_generatedcertificate, courseware_studentmodule, course_structure, forum, events and
the family views events_video / events_problem / events_enrollment). Distributions are
simple (uniform/hashed), the sizes are the point.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from edx_engine.lake import Lake  # noqa: E402
from edx_engine.models import Params, build_duckdb  # noqa: E402


def generate(root: Path, learners: int, courses: int, events: int, threads: int) -> dict[str, int]:
    lake = Lake(root)
    lake.init()
    pq = root / "lake" / "bench"
    pq.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(lake.catalog_path))
    con.execute(f"SET threads={threads}")
    con.execute("SET preserve_insertion_order=false")
    S = f"""
    CREATE OR REPLACE TEMP TABLE c AS SELECT i AS cidx, 'course-v1:BENCH+C' || i || '+2026' AS course_id
      FROM range({courses}) t(i);
    -- every learner in 1..3 courses (about 2 on average)
    CREATE OR REPLACE TEMP TABLE enr AS
      SELECT row_number() OVER () - 1 AS eidx, u AS user_id, c.course_id, c.cidx, k
      FROM (SELECT 1000000 + i AS u, i FROM range({learners}) t(i)) l,
           range(1 + (hash(l.i) % 3)::INT) r(k), c
      WHERE c.cidx = (hash(l.i * 31 + k) % {courses});
    """
    con.execute(S)
    n_enr = con.execute("SELECT count(*) FROM enr").fetchone()[0]
    genders = "['m','f','o','','m','f']"
    loes = "['p','m','b','a','hs','jhs','el','none','other','']"
    countries = "['CO','MX','PE','AR','CL','US','ES','BR','EC','']"
    copies = {
        "auth_user": f"""SELECT DISTINCT ON (user_id) user_id AS id, 'u' || user_id AS username,
              (user_id % 5000 = 0) AS is_staff, TIMESTAMP '2025-01-01' AS date_joined, course_id,
              '2026-07-01' AS package_date FROM enr""",
        "auth_userprofile": f"""SELECT user_id, list_element({genders}, 1 + (hash(user_id) % 6)::INT) AS gender,
              CASE WHEN user_id % 7 = 0 THEN NULL ELSE 1950 + (hash(user_id * 3) % 55)::BIGINT END AS year_of_birth,
              list_element({loes}, 1 + (hash(user_id * 5) % 10)::INT) AS level_of_education,
              list_element({countries}, 1 + (hash(user_id * 7) % 10)::INT) AS country,
              course_id, '2026-07-01' AS package_date FROM enr""",
        "student_courseenrollment": f"""SELECT eidx AS id, user_id, course_id,
              TIMESTAMP '2026-01-01' + to_seconds((hash(eidx) % 15552000)::BIGINT) AS created,
              (eidx % 20 <> 0) AS is_active, list_element(['audit','honor','verified'], 1 + (eidx % 3)::INT) AS mode,
              '2026-07-01' AS package_date FROM enr""",
        "certificates_generatedcertificate": f"""SELECT eidx AS id, user_id, course_id,
              round((hash(eidx * 11) % 100) / 100.0, 2) AS grade,
              CASE WHEN hash(eidx * 11) % 100 >= 65 THEN 'downloadable' ELSE 'notpassing' END AS status,
              'verified' AS mode, TIMESTAMP '2026-06-30' AS created_date, TIMESTAMP '2026-06-30' AS modified_date
              FROM enr WHERE eidx % 3 = 0""",
        "course_structure": """SELECT c.course_id, 'block-v1:' || c.cidx || '+type@' || cat || '+block@' || b AS block_id,
              cat AS category, CASE WHEN cat = 'chapter' THEN 'block-v1:' || c.cidx || '+type@chapter+block@' || b
                   ELSE 'block-v1:' || c.cidx || '+type@chapter+block@' || (b // 20) END AS chapter_id,
              CASE WHEN cat = 'course' THEN 'Course ' || c.cidx END AS display_name, NULL::TIMESTAMP AS start,
              '{}' AS metadata
              FROM c, (SELECT b, CASE WHEN b = 0 THEN 'course' WHEN b % 20 = 0 THEN 'chapter' WHEN b % 3 = 0
                       THEN 'video' ELSE 'problem' END AS cat FROM range(200) t(b))""",
        "courseware_studentmodule": f"""SELECT e.user_id AS student_id, e.course_id,
              CASE WHEN b % 3 = 0 THEN 'video' ELSE 'problem' END AS module_type,
              'block-v1:' || e.cidx || '+type@' || CASE WHEN b % 3 = 0 THEN 'video' ELSE 'problem' END || '+block@'
                || b AS module_id,
              TIMESTAMP '2026-02-01' + to_seconds((hash(e.eidx * 13 + b) % 10000000)::BIGINT) AS created,
              TIMESTAMP '2026-02-01' + to_seconds((hash(e.eidx * 13 + b) % 10000000)::BIGINT + 60) AS modified
              FROM enr e, range(1, 1 + (hash(e.eidx * 17) % 30)::INT) r(b)
              WHERE b % 20 <> 0 AND e.eidx % 4 <> 0""",
        "forum": f"""SELECT e.course_id, 'f' || e.eidx || '-' || j AS id,
              CASE WHEN j = 0 THEN 'CommentThread' ELSE 'Comment' END AS type, e.user_id AS author_id,
              TIMESTAMP '2026-02-01' + to_seconds((hash(e.eidx * 19 + j) % 12000000)::BIGINT) AS created_at
              FROM enr e, range(1 + (e.eidx % 3)::INT) r(j) WHERE e.eidx % 4 = 1""",
    }
    counts = {}
    for name, sql in copies.items():
        path = pq / f"{name}.parquet"
        con.execute(f"COPY ({sql}) TO '{path}' (FORMAT parquet)")
        con.execute(f"DROP VIEW IF EXISTS {name}")
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}')")
        counts[name] = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
    types = ("['play_video','pause_video','load_video','seek_video','complete_video','problem_check',"
             "'problem_check','seq_goto','seq_next','/courses/x/courseware','page_close',"
             "'edx.course.enrollment.activated','edx.video.played','edx.forum.thread.viewed']")
    con.execute("CREATE OR REPLACE TEMP TABLE enr2 AS SELECT eidx, user_id, course_id FROM enr ORDER BY eidx")
    ev_path = pq / "events"
    if ev_path.exists():
        shutil.rmtree(ev_path)
    ev_path.mkdir()
    chunk = 5_000_000
    for part, start in enumerate(range(0, events, chunk)):
        n = min(chunk, events - start)
        con.execute(f"""COPY (
          WITH g AS (
            SELECT i, (hash(i) % {n_enr})::BIGINT AS eidx,
                   list_element({types}, 1 + (hash(i * 3) % 14)::INT) AS event_type,
                   TIMESTAMP '2026-03-01' + to_seconds((hash(i * 5) % 10368000)::BIGINT) AS time
            FROM range({start}, {start + n}) t(i))
          SELECT 'e' || g.i AS event_id, g.time, CAST(g.time AS DATE) AS event_date, 'u' || e.user_id AS username,
                 CASE WHEN g.i % 100 = 0 THEN NULL ELSE e.user_id END AS user_id, e.course_id, 'BENCH' AS org_id,
                 g.event_type, g.event_type AS name,
                 CASE WHEN g.event_type LIKE '/%' OR g.event_type LIKE 'edx.course%' OR
                           (g.event_type = 'problem_check' AND g.i % 2 = 0) THEN 'server' ELSE 'browser' END
                   AS event_source,
                 CASE WHEN g.event_type LIKE '%video%' THEN 'v' || (hash(g.i * 7) % 60) END AS video_id,
                 CASE WHEN g.event_type LIKE 'problem%' THEN 'p' || (hash(g.i * 7) % 120) END AS problem_id,
                 CASE WHEN g.event_type = 'problem_check' THEN 1 + (hash(g.i * 11) % 3)::BIGINT END AS attempts,
                 CASE WHEN g.event_type = 'problem_check' THEN
                   CASE WHEN hash(g.i * 13) % 2 = 0 THEN 'correct' ELSE 'incorrect' END END AS success,
                 CASE WHEN g.event_type LIKE 'edx.course.enrollment%' THEN 'audit' END AS mode
          FROM g JOIN enr2 e ON e.eidx = g.eidx
        ) TO '{ev_path}/part-{part}.parquet' (FORMAT parquet, COMPRESSION zstd)""")
    con.execute("DROP VIEW IF EXISTS events")
    con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{ev_path}/*.parquet')")
    fam = {"events_video": "event_type LIKE '%video%'", "events_problem": "event_type LIKE 'problem%'",
           "events_enrollment": "event_type LIKE 'edx.course.enrollment.%'"}
    for v, where in fam.items():
        con.execute(f"DROP VIEW IF EXISTS {v}")
        con.execute(f"CREATE VIEW {v} AS SELECT * FROM events WHERE {where}")
    counts["events"] = con.execute("SELECT count(*) FROM events").fetchone()[0]
    counts["learners"] = con.execute("SELECT count(DISTINCT user_id) FROM enr").fetchone()[0]
    counts["courses"] = courses
    con.close()
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--learners", type=int, default=100_000)
    ap.add_argument("--courses", type=int, default=20)
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--dir", default="/tmp/edx-bench")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory-limit", default="3GB")
    ap.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb")
    ap.add_argument("--spark-master", default=None, help="Spark master (default local[THREADS]).")
    ap.add_argument("--spark-remote", default=None, help="Spark Connect URL (sc://host:15002).")
    ap.add_argument("--reuse", action="store_true", help="Reuse a store generated by an earlier run.")
    a = ap.parse_args()
    root = Path(a.dir)
    if not a.reuse:
        if root.exists():
            shutil.rmtree(root)
        t0 = time.perf_counter()
        counts = generate(root, a.learners, a.courses, a.events, a.threads)
        print(f"generated in {time.perf_counter() - t0:.1f} s: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    if a.engine == "spark":
        print(f"cpus: {os.cpu_count()}, Spark: {a.spark_remote or a.spark_master or f'local[{a.threads}]'} "
              f"(peak RSS is the driver's Python process only; the JVM is not counted)")
    else:
        print(f"cpus: {os.cpu_count()}, DuckDB threads: {a.threads}, memory_limit: {a.memory_limit}")
    print(f"{'model':<18} {'rows':>12} {'seconds':>8} {'peak RSS MB':>12}")

    def show(m) -> None:
        print(f"{m.name:<18} {m.rows:>12,} {m.seconds:>8.2f} {m.peak_rss_mb:>12,.0f}", flush=True)

    if a.engine == "spark":
        from edx_engine.models.spark import build_spark

        # the bench catalog's views are hand-made (no _edx_snapshots / _edx_event_parts): staged inputs
        res = build_spark(Lake(root), [], Params(), force=True, on_model=show, staged=True,
                          master=a.spark_master or f"local[{a.threads}]", remote=a.spark_remote)
        print(f"inputs staged through DuckDB in {res.copy_seconds:.1f} s")
    else:
        res = build_duckdb(Lake(root), [], Params(), force=True, threads=a.threads, memory_limit=a.memory_limit,
                           on_model=show)
    peak = max(m.peak_rss_mb for m in res.models)
    print(f"{'all models':<18} {'':>12} {sum(m.seconds for m in res.models):>8.2f} {peak:>12,.0f}  "
          f"(build total incl. fingerprints {res.seconds:.1f} s)")


if __name__ == "__main__":
    main()
