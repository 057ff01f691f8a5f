"""Benchmark: what the catalog's event views cost as days accumulate (issue 15 §3), with the views
listing every part by path ("before", the earlier ``views.event_views``, copied below) and with the
glob over the lake's date folders ("after", the current code).

    .venv/bin/python benchmarks/bench_views.py [--days 90,365] [--events-per-day 2000] [--repeat 3]
                                               [--dir /tmp/edx-bench-views]

For each size N a store of N days is written directly as Parquet in the importer's layout (two parts
a day, as a day's log that spills into the next date gives, with the importer's columns), listed in
``_edx_event_parts`` with a few duplicates in ``_edx_event_dups``. Measured in this process, medians
of ``--repeat`` (each catalog open is a new DuckDB instance):

- ``open``: ``Lake.connect(read_only=True)`` and close;
- ``refresh``: ``Lake.refresh_views`` in a transaction (what a moved store or ``init`` runs);
- ``tables``: ``edx-engine tables`` through its CLI function (in-process);
- ``commit``: one events commit of a new day (``ingest.events._commit``: the bookkeeping, the
  duplicates of its date, the views), its part already written;
- ``day query`` / ``all query``: ``count(*)`` of ``events`` on one date / over every date.

Both should stay flat from 90 to 365 days "after" (but ``all query``, which reads every part).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from edx_engine.lake import Lake  # noqa: E402
from edx_engine.store import catalog, views  # noqa: E402

START = dt.date(2024, 1, 1)


# -- "before": the views as the earlier code made them (store/views.py before the glob) ---------------
def old_event_views(con: duckdb.DuckDBPyConnection, base: str, families: bool = True) -> None:
    """The earlier ``views.event_views``: every part by path, read by name (union_by_name)."""
    catalog.ensure(con, catalog.EVENTS)
    paths = [f"{base}/{p}" for p in catalog.paths(con, "_edx_event_parts")]
    cols = ", ".join("CAST(e.event_id AS VARCHAR) AS event_id" if c == "event_id" else f"e.{c}"
                     for c in views.EVENT_COLUMNS)
    src = views._event_parts_sql(paths) if paths else ""
    on = "ON d.source_key = e.source_key AND d.line = e.line AND d.event_date = e.event_date"
    if not paths:
        empty = ", ".join(f"NULL::{t} AS {c}" for c, t in views.EVENT_COLUMNS.items())
        all_sql, ev_sql = f"SELECT {empty}, NULL::BOOLEAN AS duplicate WHERE false", f"SELECT {empty} WHERE false"
    elif con.execute("SELECT count(*) FROM _edx_event_dups").fetchone()[0] > 0:
        all_sql = f"SELECT {cols}, (d.line IS NOT NULL) AS duplicate FROM {src} e LEFT JOIN _edx_event_dups d {on}"
        ev_sql = f"SELECT {cols} FROM {src} e ANTI JOIN _edx_event_dups d {on}"
    else:
        all_sql, ev_sql = f"SELECT {cols}, false AS duplicate FROM {src} e", f"SELECT {cols} FROM {src} e"
    con.execute(f"CREATE OR REPLACE VIEW events_all AS {all_sql}")
    con.execute(f"CREATE OR REPLACE VIEW events AS {ev_sql}")
    have = set() if families else {r[0] for r in con.execute(
        "SELECT view_name FROM duckdb_views() WHERE schema_name = 'main' AND NOT internal").fetchall()}
    for view, (where, extra) in views.FAMILIES.items():
        if view not in have:
            ex = ", ".join(f"{expr} AS {name}" for name, expr in extra)
            con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT *, {ex} FROM events WHERE {where}")


NEW = (views.event_views, views.outdated)


def use(mode: str) -> None:
    """Switch the code between the earlier views and the current ones."""
    if mode == "before":
        views.event_views, views.outdated = old_event_views, (lambda con: False)
    else:
        views.event_views, views.outdated = NEW


# -- the store -----------------------------------------------------------------------------------------
def _part_sql(date: dt.date, key: str, first: int, n: int) -> str:
    """``n`` events of ``date`` with every column of the importer's parts (PART_SCHEMA)."""
    typed = {c: t for c, t in views.EVENT_VIEW_COLUMNS.items()}
    values = {
        "event_id": "uuid()::VARCHAR", "time": f"TIMESTAMP '{date}' + to_seconds(i % 86400)",
        "event_date": f"DATE '{date}'", "username": "'u' || (i % 500)", "user_id": "1000 + i % 500",
        "course_id": "'course-v1:BENCH+C' || (i % 4) || '+2024'", "org_id": "'BENCH'",
        "event_type": "list_element(['play_video','problem_check','seq_goto','page_close'], 1 + (i % 4)::INT)",
        "event_source": "'browser'", "event": "json_object('id', 'v' || (i % 60))",
        "source_file": f"'{key}.log.gz'", "source_key": f"'{key}'", "line": "i",
    }
    cols = ", ".join(f"CAST({values.get(c, 'NULL')} AS {t}) AS {c}" for c, t in typed.items())
    return f"SELECT {cols} FROM range({first}, {first + n}) r(i)"


def write_part(lake: Lake, con: duckdb.DuckDBPyConnection, date: dt.date, key: str, n: int) -> tuple:
    d = lake.lake_dir / "events" / f"date={date}"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{key}-{uuid.uuid4().hex[:12]}.parquet"
    con.execute(f"COPY ({_part_sql(date, key, 1, n)}) TO '{path}' (FORMAT parquet, COMPRESSION zstd)")
    t0 = int(dt.datetime.combine(date, dt.time()).replace(tzinfo=dt.timezone.utc).timestamp() * 1e6)
    return key, str(date), lake.rel(path), n, t0, t0 + 86_399_000_000


def generate(root: Path, days: int, per_day: int) -> Lake:
    lake = Lake(root)
    lake.init()
    mem = duckdb.connect()
    rows = []
    for day in range(days):
        date = START + dt.timedelta(days=day)
        key = f"bench-events-{date}"
        rows.append(write_part(lake, mem, date, key, per_day - per_day // 20))
        rows.append(write_part(lake, mem, date + dt.timedelta(days=1), key, per_day // 20))  # the spill
    with lake.transaction("bench store") as con:
        by_key: dict[str, list] = {}
        for key, *p in rows:
            by_key.setdefault(key, []).append(tuple(p))
        for key, parts in by_key.items():
            catalog.replace_event_parts(con, key, parts)
        con.execute("INSERT INTO _edx_event_dups SELECT event_date, source_key, 1, uuid() FROM _edx_event_parts "
                    "WHERE rows < 1000 AND event_date < DATE '2024-01-20'")  # a few duplicates
        lake.refresh_views(con)
    return lake


def commit_day(lake: Lake, day: int, per_day: int) -> None:
    """One events commit of a new day, by the importer's own commit (its part already written)."""
    from edx_engine.ingest import events as ev

    date = START + dt.timedelta(days=day)
    key = f"bench-events-{date}"
    with duckdb.connect() as mem:
        _, d, rel, n, t0, t1 = write_part(lake, mem, date, key, per_day)
    src = SimpleNamespace(label=f"{key}.log.gz", fingerprint=uuid.uuid4().hex, events=SimpleNamespace(date=str(date)))
    res = ev.EventsFileResult(src.label, "loaded", events=n, source_key=key)
    ev._commit(lake, src, key, "bench", [dict(date=d, path=str(lake.abs(rel)), rows=n, min_time=t0, max_time=t1)],
               None, 0, res)


# -- the measures --------------------------------------------------------------------------------------
def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Medians of (wall seconds, CPU seconds of this process's threads): CPU is the steadier
    figure on a shared machine (wall time counts the waits for a core)."""
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def measures(lake: Lake, days: int, per_day: int, repeat: int) -> dict[str, tuple[float, float]]:
    from typer.testing import CliRunner

    from edx_engine.cli import app

    runner = CliRunner()
    day = str(START + dt.timedelta(days=days // 2))

    def refresh() -> None:
        with lake.transaction("refresh views") as con:
            lake.refresh_views(con)

    def tables() -> None:
        r = runner.invoke(app, ["tables", "--data-dir", str(lake.root)])
        assert r.exit_code == 0, r.output

    def query(where: str) -> Callable[[], None]:
        def run() -> None:
            with lake.connect(read_only=True) as con:
                con.execute(f"SELECT count(*) FROM events {where}").fetchall()
        return run

    lake.connect(read_only=True).close()  # an upgrade on first open is not what is measured
    nxt = iter(range(days + 1, days + 1 + repeat))
    return {"open": timed(lambda: lake.connect(read_only=True).close(), repeat),
            "refresh": timed(refresh, repeat), "tables": timed(tables, repeat),
            "commit": timed(lambda: commit_day(lake, next(nxt), per_day), repeat),
            "day query": timed(query(f"WHERE event_date = DATE '{day}'"), repeat),
            "all query": timed(query(""), repeat)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", default="90,365", help="Store sizes in days, comma-separated.")
    ap.add_argument("--events-per-day", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default="/tmp/edx-bench-views")
    a = ap.parse_args()
    sizes = [int(x) for x in a.days.split(",")]
    print(f"DuckDB {duckdb.__version__}, {a.events_per_day:,} events a day in 2 parts, medians of {a.repeat}, seconds")
    names = ["open", "refresh", "tables", "commit", "day query", "all query"]
    print(f"{'days':>5} {'views':>7} {'':>4} " + " ".join(f"{n:>10}" for n in names))
    results: dict[tuple[int, str], dict[str, tuple[float, float]]] = {}
    for n in sizes:
        root = Path(a.dir) / f"d{n}"
        for mode in ("before", "after"):
            use(mode)
            if root.exists():
                shutil.rmtree(root)
            lake = generate(root, n, a.events_per_day)
            results[n, mode] = r = measures(lake, n, a.events_per_day, a.repeat)
            for i, what in enumerate(("wall", "cpu")):
                print(f"{n:>5} {mode:>7} {what:>4} " + " ".join(f"{r[k][i]:>10.4f}" for k in names), flush=True)
        shutil.rmtree(root)
        use("after")
        for i, what in enumerate(("wall", "cpu")):
            print(f"{n:>5} {'ratio':>7} {what:>4} " + " ".join(
                f"{results[n, 'after'][k][i] / results[n, 'before'][k][i]:>10.2f}" for k in names))
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        for mode in ("before", "after"):
            print(f"growth {lo} -> {hi} days, {mode}, CPU: " + ", ".join(
                f"{k} x{results[hi, mode][k][1] / results[lo, mode][k][1]:.2f}" for k in names))

if __name__ == "__main__":
    main()
