"""The events lake's layout (issue 14 §3): parts partitioned by event date, timestamps as UTC
microseconds, and a query for one course and one month reads only that month's files on DuckDB
(counted by EXPLAIN ANALYZE's "Total Files Read"); the same on Spark is in test_spark_import.py
(it shares that module's Spark session)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from edx_engine.config import resolve
from edx_engine.store.views import anchor_path
from edx_engine.pipeline.import_run import import_paths

START = dt.date(2026, 9, 27)  # 6 days: 4 in September, 2 in October
OCTOBER = "event_date >= DATE '2026-10-01' AND event_date < DATE '2026-11-01'"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from edx_engine.synthetic import SyntheticConfig, generate

    root = tmp_path_factory.mktemp("layout")
    generate(root / "gen", SyntheticConfig(courses=3, learners=30, days=6, seed=5, start=START))
    logs = sorted((root / "gen").rglob("*.log.gz"))
    data = root / "data"
    import_paths(resolve(data_dir=str(data)), logs, jobs=1)
    return data, logs


def _con(data: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(data / "edx.duckdb"), read_only=True)


def _files_read(con, sql: str) -> int:
    plan = con.execute(f"EXPLAIN ANALYZE {sql}").fetchall()[0][1]
    counts = [int(n) for n in re.findall(r"Total Files Read: (\d+)", plan)]
    assert counts, plan
    return sum(counts)


def test_parts_are_date_partitioned_with_utc_microseconds(store):
    data, logs = store
    with _con(data) as con:
        parts = con.execute("SELECT path, event_date, min_time, max_time FROM _edx_event_parts").fetchall()
    assert parts
    for path, day, lo, hi in parts:
        assert re.fullmatch(rf"lake/events/date={day.isoformat()}/[^/]+\.parquet", path), path
        assert lo.date() == day == hi.date()  # a part holds one UTC day
        f = pq.ParquetFile(data / path)
        col = f.schema.column(f.schema_arrow.get_field_index("time"))
        assert col.physical_type == "INT64"  # not INT96
        assert "MICROS" in str(col.logical_type).upper() or "microseconds" in str(col.logical_type)
    # a time with an offset in the log is stored as its UTC wall time, to the microsecond
    first = json.loads(gzip.decompress(logs[0].read_bytes()).splitlines()[0])
    utc = dt.datetime.fromisoformat(first["time"]).astimezone(dt.timezone.utc).replace(tzinfo=None)
    with _con(data) as con:
        got = con.execute("SELECT time FROM events_all WHERE source_file = ? AND line = 1", [str(logs[0])]).fetchone()
    assert got == (utc,)


def test_one_course_one_month_reads_only_that_months_files_on_duckdb(store):
    data, _ = store
    with _con(data) as con:
        course = con.execute("SELECT min(course_id) FROM events_all WHERE course_id IS NOT NULL").fetchone()[0]
        total = con.execute("SELECT count(*) FROM _edx_event_parts").fetchone()[0]
        october = con.execute(f"SELECT count(*) FROM _edx_event_parts WHERE {OCTOBER}").fetchone()[0]
        assert 0 < october < total
        for view in ("events_all", "events", "events_navigation"):
            sql = f"SELECT count(*) FROM {view} WHERE course_id = '{course}' AND {OCTOBER}"
            assert _files_read(con, sql) == october, view
        # the answer is the one a reader of every file gets (a naive second implementation)
        paths = [str(data / p) for (p,) in con.execute("SELECT path FROM _edx_event_parts").fetchall()]
        naive = con.execute(f"SELECT count(*) FROM read_parquet(?, hive_partitioning=false) "
                            f"WHERE course_id = ? AND {OCTOBER}", [paths, course]).fetchone()[0]
        got = con.execute(f"SELECT count(*) FROM events_all WHERE course_id = ? AND {OCTOBER}", [course]).fetchone()[0]
        assert got == naive > 0
        # no filter: every part, and the views' empty schema file (store/views.py) when they read one
        schema_file = int(anchor_path(data.resolve()).exists())
        assert _files_read(con, "SELECT count(*) FROM events_all") == total + schema_file
