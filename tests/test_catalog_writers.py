"""store/catalog.py's typed writers: the bookkeeping rows they leave, checked against values
worked out by hand (small in-memory catalogs, a few Parquet parts)."""

from __future__ import annotations

import datetime as dt
import uuid

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edx_engine.store import catalog


@pytest.fixture()
def con():
    c = duckdb.connect()
    catalog.ensure(c, catalog.STORE + catalog.EVENTS + catalog.GEO + catalog.SCRUB)
    yield c
    c.close()


def rows(con, sql):
    return con.execute(sql).fetchall()


def test_snapshot_replaces_its_course_and_the_slug_it_supersedes(con):
    common = dict(org="X", package_date="2026-01-01", rows=3, rejected=1, fingerprint="f", source_file="s")
    catalog.replace_snapshot(con, table="auth_user", course_id="slug", path="a", **common)
    catalog.replace_snapshot(con, table="auth_user", course_id="other", path="b", **common)
    at = dt.datetime(2026, 2, 3, 4, 5, 6)
    catalog.replace_snapshot(con, table="auth_user", course_id="course-v1:X+Y+Z", path="c", supersedes="slug",
                             extra_columns=["p", "q"], at=at, **common)
    assert rows(con, "SELECT course_id, path, extra_columns FROM _edx_snapshots ORDER BY 1") == [
        ("course-v1:X+Y+Z", "c", "p,q"), ("other", "b", "")]
    assert rows(con, "SELECT imported_at FROM _edx_snapshots WHERE course_id LIKE 'course-v1%'") == [(at,)]
    stamp = rows(con, "SELECT imported_at FROM _edx_snapshots WHERE course_id='other'")[0][0]
    assert stamp.microsecond == 0 and abs(stamp - dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)) < \
        dt.timedelta(minutes=5)  # clock.now: UTC, whole seconds


def test_quarantine_row_only_while_lines_are_rejected(con):
    catalog.replace_quarantine_file(con, "k", "events", "q/1.parquet", 4)
    catalog.replace_quarantine_file(con, "j", "events", "q/2.parquet", 2)
    assert rows(con, "SELECT key, path, rows FROM _edx_quarantine_files ORDER BY 1") == [
        ("j", "q/2.parquet", 2), ("k", "q/1.parquet", 4)]
    catalog.replace_quarantine_file(con, "k", "events", "q/3.parquet", 0)  # re-imported clean
    catalog.replace_quarantine_file(con, "j", "events", None, 5)  # no file written
    assert rows(con, "SELECT count(*) FROM _edx_quarantine_files") == [(0,)]


def test_import_log_and_its_redaction(con):
    catalog.log_import(con, "f.sql", "auth_user", "c", "2026-01-01", "partial", 9, 1,
                       "line 2: 'bob@x.org' is not a valid integer")
    catalog.log_import(con, "g.sql", "auth_user", "c", "2026-01-01", "loaded", 9, 0, "kept 'as is'")
    catalog.redact_import_log(con, "'[^']*'", "'…'")
    assert rows(con, "SELECT source_file, message FROM _edx_import_log ORDER BY 1") == [
        ("f.sql", "line 2: '…' is not a valid integer"), ("g.sql", "kept 'as is'")]
    empty = duckdb.connect()
    catalog.redact_import_log(empty, "x", "y")  # a catalog without the table: nothing to do


def test_repoint_only_tables_that_list_lake_files(con):
    catalog.replace_geo(con, "user_location", "geo/a.parquet", 2, "db", "2026-01", dt.datetime(2026, 1, 1))
    catalog.repoint(con, "_edx_geo", "geo/a.parquet", "geo/b.parquet")
    assert rows(con, "SELECT name, path, rows FROM _edx_geo") == [("user_location", "geo/b.parquet", 2)]
    with pytest.raises(KeyError):
        catalog.repoint(con, "_edx_import_log", "a", "b")


def _part(root, key, day, lines):
    """A Parquet part of source ``key`` for ``day``; ``lines`` = [(line, event id)]."""
    rel = f"events/{key}-{day}.parquet"
    (root / "events").mkdir(exist_ok=True)
    pq.write_table(pa.table({"event_date": [dt.date.fromisoformat(day)] * len(lines), "source_key": [key] * len(lines),
                             "line": [n for n, _ in lines], "event_id": [e for _, e in lines]}), root / rel)
    return (day, rel, len(lines), None, None)


def test_event_bookkeeping_counts_duplicates_as_a_naive_count_does(con, tmp_path):
    """Two deliveries sharing events: the copy kept is the smallest (source key, line); the other
    copies are the duplicates, counted per source."""
    ids = [str(uuid.UUID(int=i)) for i in range(6)]
    a = [(1, ids[0]), (2, ids[1]), (3, ids[2]), (4, ids[2])]  # ids[2] twice in a itself
    b = [(1, ids[1]), (2, ids[2]), (3, ids[3])]
    day = "2026-03-01"
    for key, lines in (("a", a), ("b", b)):
        catalog.replace_event_parts(con, key, [_part(tmp_path, key, day, lines)])
        catalog.replace_event_dups(con, [day], str(tmp_path))
        catalog.replace_event_file(con, source_key=key, source_file=f"{key}.log", fingerprint="f", file_date=day,
                                   rows=len(lines), rejected=0, first_event_time=None, last_event_time=None,
                                   json_bytes=0, origin=None)
        catalog.recount_event_duplicates(con, [day])

    everything = sorted([("a", n, e) for n, e in a] + [("b", n, e) for n, e in b])
    kept: dict[str, tuple] = {}
    for k, n, e in everything:
        kept.setdefault(e, (k, n))
    naive = sorted((k, n) for k, n, e in everything if kept[e] != (k, n))
    assert sorted(rows(con, "SELECT source_key, line FROM _edx_event_dups")) == naive == [("a", 4), ("b", 1), ("b", 2)]
    assert rows(con, "SELECT source_key, duplicates FROM _edx_event_files ORDER BY 1") == [("a", 1), ("b", 2)]

    catalog.replace_event_parts(con, "b", [])  # b withdrawn: its parts go, a's copy of ids[2] stays a dup
    catalog.replace_event_dups(con, [day], str(tmp_path))
    catalog.recount_event_duplicates(con, [day])
    assert rows(con, "SELECT source_key, line FROM _edx_event_dups") == [("a", 4)]
    assert rows(con, "SELECT duplicates FROM _edx_event_files WHERE source_key = 'a'") == [(1,)]


def test_origin_is_set_once(con):
    catalog.replace_event_file(con, source_key="k", source_file="k.log", fingerprint="f", file_date=None, rows=1,
                               rejected=0, first_event_time=None, last_event_time=None, json_bytes=0, origin=None)
    catalog.set_event_origin(con, "k", "/first")
    catalog.set_event_origin(con, "k", "/second")
    assert rows(con, "SELECT origin FROM _edx_event_files") == [("/first",)]
