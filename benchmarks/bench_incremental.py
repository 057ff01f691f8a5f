"""Benchmark: one more day of logs on a store of N days: its import and the build that follows,
against a full build of every model (issue 15).

    .venv/bin/python benchmarks/bench_incremental.py [--days 90,365] [--events-per-day 10000]
                                                     [--learners 10000] [--courses 10] [--repeat 3]
                                                     [--dir /tmp/edx-bench-incr] [--threads 2]
                                                     [--store postgresql://user@host:port/db]
                                                     [--active-courses K]

For each size N, a store of N days is generated directly as Parquet (as bench_models.py does: the
tracking-log importer is measured by bench_events.py), but laid out as the importers lay it out:
one events file per day listed in ``_edx_event_parts``, package tables listed in
``_edx_snapshots``, the catalog's own views. It is built once. Then, ``--repeat`` times each, in a
fresh child process (so that its peak memory is its own):

- ``full``: ``build --full`` (every model, every date);
- ``day``: the import of day N+1 (its Parquet file written and committed to the catalog as the
  importer's commit does: bookkeeping rows, views refreshed) followed by ``build``.

Package tables are one snapshot per course, as the importer keeps them (``person_course`` is kept
by course and recomputes only the courses whose snapshots or ``learner_month`` rows changed).

``--active-courses K``: day N+1 holds events of K courses only (the others had no activity that day,
as on most days for most courses of a large organisation): ``person_course`` then recomputes K
courses (column ``courses``).

Printed: medians of time and peak RSS, and the ratio day / full. Then (DuckDB only, outside those
figures) the daily job's last step, the dashboard: ``full dash`` built into an empty folder after the
full build, ``day+1 dash`` over the previous day's site after the day (pages whose data did not
change are taken over). Both should stay flat from 90
to 365 days for ``day`` while ``full`` grows with the history.

``--store``: the builds go to that PostgreSQL database instead (``build --store``; its schemas
``edx_raw`` and ``edx_models`` are dropped before each size). Peak RSS is then this process' only:
the work happens in the PostgreSQL server.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from edx_engine.lake import Lake  # noqa: E402
from edx_engine.models import Params, build_duckdb, build_postgres  # noqa: E402
from edx_engine.models.build import _PeakRSS  # noqa: E402
from edx_engine.models.definitions import MODELS  # noqa: E402
from edx_engine.store import catalog, views  # noqa: E402

START = dt.date(2025, 1, 1)
TYPES = ("['play_video','pause_video','load_video','seek_video','complete_video','problem_check',"
         "'problem_check','seq_goto','seq_next','/courses/x/courseware','page_close',"
         "'edx.course.enrollment.activated','edx.video.played','edx.forum.thread.viewed']")


def _package(con: duckdb.DuckDBPyConnection, lake: Lake, learners: int, courses: int) -> None:
    """Package tables (one file each), listed in ``_edx_snapshots`` as one snapshot per table."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE enr AS
        SELECT row_number() OVER () - 1 AS eidx, 1000000 + l.i AS user_id,
               'course-v1:BENCH+C' || c.cidx || '+2025' AS course_id, c.cidx
        FROM range({learners}) l(i), range(1 + (hash(l.i) % 2)::INT) r(k),
             (SELECT i AS cidx FROM range({courses}) t(i)) c
        WHERE c.cidx = (hash(l.i * 31 + k) % {courses})""")
    tables = {
        "auth_user": "SELECT DISTINCT user_id AS id, 'u' || user_id AS username, "
                     "(user_id % 5000 = 0) AS is_staff, TIMESTAMP '2024-12-01' AS date_joined, course_id FROM enr",
        "auth_userprofile": "SELECT user_id, list_element(['m','f','o',''], 1 + (hash(user_id) % 4)::INT) AS gender, "
                            "1950 + (hash(user_id * 3) % 55)::BIGINT AS year_of_birth, 'b' AS level_of_education, "
                            "list_element(['CO','MX','PE',''], 1 + (hash(user_id * 7) % 4)::INT) AS country, "
                            "course_id FROM enr",
        "student_courseenrollment": "SELECT eidx AS id, user_id, course_id, TIMESTAMP '2024-12-01' + "
                                    "to_seconds((hash(eidx) % 2592000)::BIGINT) AS created, (eidx % 20 <> 0) "
                                    "AS is_active, 'audit' AS mode FROM enr",
        "certificates_generatedcertificate": "SELECT eidx AS id, user_id, course_id, "
                                             "(hash(eidx) % 100) / 100.0 AS grade, "
                                             "'downloadable' AS status, 'verified' AS mode, TIMESTAMP '2025-06-01' "
                                             "AS created_date, TIMESTAMP '2025-06-01' AS modified_date "
                                             "FROM enr WHERE eidx % 3 = 0",
        "course_structure": "SELECT DISTINCT course_id, 'block-' || cidx || '-' || b AS block_id, CASE WHEN b = 0 "
                            "THEN 'course' WHEN b % 10 = 0 THEN 'chapter' ELSE 'problem' END AS category, "
                            "'block-' || cidx || '-' || (b // 10 * 10) AS chapter_id, 'Course ' || cidx AS "
                            "display_name, NULL::TIMESTAMP AS start, '{}' AS metadata FROM enr, range(60) t(b)",
        "courseware_studentmodule": "SELECT user_id AS student_id, course_id, CASE WHEN b % 10 = 0 THEN 'chapter' "
                                    "ELSE 'problem' END AS module_type, 'block-' || cidx || '-' || b AS module_id, "
                                    "TIMESTAMP '2025-02-01' AS created, TIMESTAMP '2025-02-02' AS modified "
                                    "FROM enr, range(1, 1 + (hash(eidx) % 12)::INT) t(b)",
    }
    d = lake.lake_dir / "tables"
    d.mkdir(parents=True, exist_ok=True)
    ids = [r[0] for r in con.execute("SELECT DISTINCT course_id FROM enr ORDER BY 1").fetchall()]
    for name, sql in tables.items():  # one snapshot per course, holding that course's rows (as the importer)
        for cid in ids:
            path = d / f"{name}-{uuid.uuid4().hex[:8]}.parquet"
            con.execute(f"COPY (SELECT * FROM ({sql}) WHERE course_id = '{cid}') TO '{path}' (FORMAT parquet)")
            rows = con.execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchone()[0]
            con.execute("INSERT INTO _edx_snapshots VALUES (?, ?, 'BENCH', '2025-01-01', ?, ?, 0, ?, ?, '', "
                        "now()::TIMESTAMP)", [name, cid, lake.rel(path), rows, uuid.uuid4().hex, path.name])


def _day_sql(day: int, events: int, n_enr: int) -> str:
    """One day of events with the importer's columns (``views.EVENT_COLUMNS``)."""
    date = START + dt.timedelta(days=day)
    base = day * events
    return f"""
      WITH g AS (
        SELECT i, (hash(i) % {n_enr})::BIGINT AS eidx, list_element({TYPES}, 1 + (hash(i * 3) % 14)::INT) AS t,
               TIMESTAMP '{date}' + to_microseconds((hash(i * 5) % 86400000000)::BIGINT) AS time
        FROM range({base}, {base + events}) r(i))
      SELECT ('00000000-0000-0000-0000-' || printf('%012x', g.i))::UUID AS event_id, g.time,
             DATE '{date}' AS event_date, 'u' || e.user_id AS username,
             CASE WHEN g.i % 200 = 0 THEN NULL ELSE e.user_id END AS user_id, e.course_id, 'BENCH' AS org_id,
             g.t AS event_type, g.t AS name,
             CASE WHEN g.t LIKE '/%' OR g.t LIKE 'edx.course%' OR (g.t = 'problem_check' AND g.i % 2 = 0)
                  THEN 'server' ELSE 'browser' END AS event_source,
             'sess' || (g.i // 50) AS session, NULL::VARCHAR AS ip, NULL::VARCHAR AS agent, NULL::VARCHAR AS host,
             NULL::VARCHAR AS referer, NULL::VARCHAR AS accept_language, NULL::VARCHAR AS page,
             NULL::VARCHAR AS path, NULL::VARCHAR AS module_id,
             CAST(CASE WHEN g.t LIKE '%video%' THEN json_object('id', 'v' || (hash(g.i * 7) % 60))
                  WHEN g.t LIKE 'problem%' THEN json_object('problem_id', 'p' || (hash(g.i * 7) % 120),
                       'success', CASE WHEN hash(g.i * 13) % 2 = 0 THEN 'correct' ELSE 'incorrect' END,
                       'attempts', 1 + hash(g.i * 11) % 3)
                  WHEN g.t LIKE 'edx.course.enrollment%' THEN json_object('mode', 'audit', 'user_id', e.user_id,
                       'course_id', e.course_id)
                  ELSE json_object() END AS JSON) AS event,
             NULL::VARCHAR AS event_text, NULL::JSON AS context,
             'bench-{date}.log.gz' AS source_file, g.i - {base} + 1 AS line
      FROM g JOIN enr e ON e.eidx = g.eidx"""


def _write_day(lake: Lake, day: int, events: int, mem: duckdb.DuckDBPyConnection) -> tuple:
    """Day ``day``'s events file (``mem`` holds the enrolments); its ``_edx_event_parts`` row."""
    date = START + dt.timedelta(days=day)
    d = lake.lake_dir / "events" / f"date={date}"  # the importer's layout: a date filter prunes by folder
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"bench-{uuid.uuid4().hex[:8]}.parquet"
    n_enr = mem.execute("SELECT count(*) FROM enr").fetchone()[0]
    mem.execute(f"COPY ({_day_sql(day, events, n_enr)}) TO '{path}' (FORMAT parquet, COMPRESSION zstd)")
    return (f"bench-{date}@0", date, lake.rel(path), events, dt.datetime.combine(date, dt.time()),
            dt.datetime.combine(date, dt.time(23, 59, 59)))


def _commit_days(lake: Lake, parts: list[tuple], every_view: bool = False) -> None:
    """One catalog transaction, as the importer's commit: bookkeeping rows, then the views it changes
    (``events``, ``events_all``: ``ingest/events._refresh_views``); ``every_view``: all of them (the
    generated store's first commit)."""
    with lake.transaction(f"{len(parts)} day(s)") as con:
        catalog.ensure(con, catalog.EVENTS)
        for key, date, path, rows, t0, t1 in parts:
            con.execute("DELETE FROM _edx_event_parts WHERE source_key = ?", [key])
            con.execute("INSERT INTO _edx_event_parts VALUES (?, ?, ?, ?, ?, ?)", [key, date, path, rows, t0, t1])
            con.execute("INSERT OR REPLACE INTO _edx_event_files (source_key, source_file, fingerprint, file_date, "
                        "rows, rejected, duplicates, imported_at) VALUES (?, ?, ?, ?, ?, 0, 0, now()::TIMESTAMP)",
                        [key, f"bench-{date}.log.gz", key, date, rows])
        if every_view:
            lake.refresh_views(con)
        else:
            views.event_views(con, str(lake.root.resolve()))


def _enrolments(lake: Lake, active_courses: int | None = None) -> duckdb.DuckDBPyConnection:
    """The enrolments events are drawn from (``active_courses``: those of the first K courses only)."""
    mem = duckdb.connect()
    src = f"read_parquet('{lake.root}/lake/bench-enr.parquet')"
    if active_courses:
        mem.execute(f"CREATE TEMP TABLE enr AS SELECT * EXCLUDE (eidx), (row_number() OVER (ORDER BY eidx) - 1)::BIGINT "
                    f"AS eidx FROM {src} WHERE course_id IN (SELECT DISTINCT course_id FROM {src} ORDER BY 1 "
                    f"LIMIT {int(active_courses)})")
    else:
        mem.execute(f"CREATE TEMP TABLE enr AS SELECT * FROM {src}")
    return mem


def add_day(lake: Lake, day: int, events: int, active_courses: int | None = None) -> None:
    """Import day ``day`` as the importer does: its file, then one catalog transaction."""
    with _enrolments(lake, active_courses) as mem:
        part = _write_day(lake, day, events, mem)
    _commit_days(lake, [part])


def generate(root: Path, days: int, events: int, learners: int, courses: int) -> None:
    lake = Lake(root)
    lake.init()
    with lake.transaction("package") as con:
        catalog.ensure(con, catalog.STORE)
        _package(con, lake, learners, courses)
        con.execute(f"COPY enr TO '{root}/lake/bench-enr.parquet' (FORMAT parquet)")
        lake.refresh_views(con)
    with _enrolments(lake) as mem:
        parts = [_write_day(lake, day, events, mem) for day in range(days)]
    _commit_days(lake, parts, every_view=True)


def build(lake: Lake, store: str | None, threads: int, force: bool = False):
    """``build`` (``--full`` with ``force``) into the DuckDB lake, or into the PostgreSQL ``store``."""
    if store:
        return build_postgres(lake, store, [], Params(), force=force)
    return build_duckdb(lake, [], Params(), force=force, threads=threads)


def drop_pg_store(store: str) -> None:
    import psycopg

    with psycopg.connect(store, autocommit=True) as pg:
        pg.execute("DROP SCHEMA IF EXISTS edx_models CASCADE; DROP SCHEMA IF EXISTS edx_raw CASCADE")


def _child(kind: str, root: str, day: int, events: int, threads: int, q, store: str | None = None,
           active_courses: int | None = None) -> None:
    """One measured run. Peak memory is sampled from /proc (``_PeakRSS``): ``ru_maxrss`` would start
    from the parent's high-water mark, which a child inherits on Linux. pandas is hidden as the CLI
    hides it for every command (``edx_engine.pandas_guard``: DuckDB 1.5 would import it, about 0.3 s,
    at the first bound parameter), so the run costs what ``edx-engine import`` / ``build`` cost."""
    from edx_engine import pandas_guard

    pandas_guard.hide()
    lake = Lake(Path(root))
    days = courses = None
    t_import = 0.0
    cpu0 = time.process_time()
    with _PeakRSS() as mem:
        t0 = time.perf_counter()
        if kind == "day":
            add_day(lake, day, events, active_courses)
            t_import = time.perf_counter() - t0
            res = build(lake, store, threads)
            days = max((m.days or 0) for m in res.models if MODELS[m.name].grain != "course")
            courses = max((m.days or 0) for m in res.models if MODELS[m.name].grain == "course")
        else:
            build(lake, store, threads, force=True)
        seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    dash = None
    if store is None:  # then the daily job's last step: the dashboard (outside the figures above)
        from edx_engine.dashboard import build_site

        site = Path(root) / ("site" if kind == "day" else "site-full")
        if kind != "day":
            shutil.rmtree(site, ignore_errors=True)  # a full build's site: every page made
        t1 = time.perf_counter()
        build_site(lake, site)  # the day's: over the previous day's site (unchanged pages taken over)
        dash = time.perf_counter() - t1
    q.put((seconds, t_import, mem.peak / 2**20, days, cpu, courses, dash))


def measure(kind: str, root: Path, day: int, events: int, threads: int, store: str | None = None,
            active_courses: int | None = None) -> tuple[float, float, float, int | None, float, int | None,
                                                        float | None]:
    """(seconds, of which import, peak RSS MB, days recomputed, CPU seconds of all threads, courses of
    person_course recomputed, seconds of the dashboard built after it: None on PostgreSQL) of one run
    in a fresh process. CPU time is the steadier figure on a shared machine (wall time counts the waits)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(kind, str(root), day, events, threads, q, store, active_courses))
    p.start()
    out = q.get()
    p.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", default="90,365", help="Store sizes in days, comma-separated.")
    ap.add_argument("--events-per-day", type=int, default=10_000)
    ap.add_argument("--learners", type=int, default=10_000)
    ap.add_argument("--courses", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default="/tmp/edx-bench-incr")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--store", default=None, help="Build into this PostgreSQL database (postgresql://...).")
    ap.add_argument("--active-courses", type=int, default=None,
                    help="Day N+1 has events of this many courses only (default: every course).")
    a = ap.parse_args()
    print(f"cpus: {os.cpu_count()}, " + ("store: PostgreSQL, " if a.store else f"DuckDB threads: {a.threads}, ")
          + f"{a.events_per_day:,} events a day, "
          f"{a.learners:,} learners, {a.courses} courses"
          + (f" ({a.active_courses} active on day N+1)" if a.active_courses else "") + f", medians of {a.repeat}")
    print(f"{'days':>5} {'events':>12} {'full s':>8} {'full cpu':>9} {'full MB':>8} {'day+1 s':>8} {'(import)':>9} "
          f"{'day+1 cpu':>10} {'day+1 MB':>9} {'ratio':>6} {'cpu ratio':>9} {'courses':>7}"
          + ("" if a.store else f" {'full dash':>9} {'day+1 dash':>10}"))
    for n in [int(x) for x in a.days.split(",")]:
        root = Path(a.dir) / f"d{n}"
        if root.exists():
            shutil.rmtree(root)
        generate(root, n, a.events_per_day, a.learners, a.courses)
        if a.store:
            drop_pg_store(a.store)
        build(Lake(root), a.store, a.threads)
        if not a.store:
            from edx_engine.dashboard import build_site

            build_site(Lake(root), root / "site")  # the site the first day's dashboard replaces
        full = [measure("full", root, n, a.events_per_day, a.threads, a.store) for _ in range(a.repeat)]
        day = [measure("day", root, n + i, a.events_per_day, a.threads, a.store, a.active_courses)
               for i in range(a.repeat)]
        assert all(d[3] == 1 for d in day), day  # one partition recomputed per new day
        fs, fm, fc = (statistics.median(x[i] for x in full) for i in (0, 2, 4))
        ds, di, dm, dc = (statistics.median(x[i] for x in day) for i in (0, 1, 2, 4))
        dash = "" if a.store else (f" {statistics.median(x[6] for x in full):>9.2f} "
                                   f"{statistics.median(x[6] for x in day):>10.2f}")
        print(f"{n:>5} {n * a.events_per_day:>12,} {fs:>8.2f} {fc:>9.2f} {fm:>8.0f} {ds:>8.2f} {di:>9.2f} {dc:>10.2f} "
              f"{dm:>9.0f} {ds / fs:>6.1%} {dc / fc:>9.1%} {max(x[5] or 0 for x in day):>7}{dash}", flush=True)
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
