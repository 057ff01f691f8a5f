"""The catalog's batch writes (one statement for a whole package) leave the same rows as the one-row
writes applied in order: later snapshots of a (table, course) win, a real course id retires its
provisional slug, a quarantine key without rows loses its file."""

from __future__ import annotations

import datetime as dt

import duckdb

from edx_engine.store import catalog

AT = dt.datetime(2026, 10, 4, 12, 0, 0)


def _snap(table: str, course: str, path: str, supersedes: str | None = None, rows: int = 1) -> dict:
    return dict(table=table, course_id=course, org="IDBx", package_date="2026-10-04", path=path, rows=rows,
                rejected=0, fingerprint=f"fp-{path}", source_file=f"src-{path}", extra_columns=["x"] if rows else [],
                supersedes=supersedes)


def _store() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    catalog.ensure(con)
    # rows already there: one replaced, one retired by a real course id, one left alone
    catalog.replace_snapshot(con, **_snap("auth_user", "course-v1:IDBx+A+1", "old-a"), at=AT)
    catalog.replace_snapshot(con, **_snap("auth_user", "IDBx-B-1", "slug-b"), at=AT)
    catalog.replace_snapshot(con, **_snap("auth_user", "course-v1:IDBx+C+1", "old-c"), at=AT)
    catalog.replace_quarantine_file(con, "k1", "tsv", "q-old-1", 3, at=AT)
    catalog.replace_quarantine_file(con, "k2", "tsv", "q-old-2", 2, at=AT)
    return con


def _dump(con: duckdb.DuckDBPyConnection) -> tuple[list, list, list]:
    return (con.execute("SELECT * FROM _edx_snapshots ORDER BY ALL").fetchall(),
            con.execute("SELECT * FROM _edx_quarantine_files ORDER BY ALL").fetchall(),
            con.execute("SELECT * FROM _edx_import_log ORDER BY ALL").fetchall())


def test_batch_writes_equal_one_row_writes_in_order():
    snaps = [_snap("auth_user", "course-v1:IDBx+A+1", "new-a1"),
             _snap("auth_user", "course-v1:IDBx+B+1", "real-b", supersedes="IDBx-B-1"),
             _snap("auth_user", "course-v1:IDBx+A+1", "new-a2"),  # a later package of the same course wins
             _snap("student_courseenrollment", "course-v1:IDBx+A+1", "enr-a", rows=0)]
    quarantine = [("k1", "tsv", None, 0), ("k3", "tsv", "q-new-3", 4), ("k2", "tsv", "q-new-2", 1),
                  ("k3", "tsv", "q-newer-3", 5)]
    log = [(f"file-{i}", "auth_user", "course-v1:IDBx+A+1", "2026-10-04", "loaded", i, 0, None if i else "m")
           for i in range(3)]

    one = _store()
    for s in snaps:
        catalog.replace_snapshot(one, **s, at=AT)
    for q in quarantine:
        catalog.replace_quarantine_file(one, *q, at=AT)
    for e in log:
        catalog.log_import(one, *e, at=AT)

    batch = _store()
    catalog.replace_snapshots(batch, snaps, at=AT)
    catalog.replace_quarantine_files(batch, quarantine, at=AT)
    catalog.log_imports(batch, log, at=AT)

    assert _dump(batch) == _dump(one)
    snapshots = {(t, c): p for t, c, _, _, p, *_ in _dump(batch)[0]}
    assert snapshots == {("auth_user", "course-v1:IDBx+A+1"): "new-a2", ("auth_user", "course-v1:IDBx+B+1"): "real-b",
                         ("auth_user", "course-v1:IDBx+C+1"): "old-c",
                         ("student_courseenrollment", "course-v1:IDBx+A+1"): "enr-a"}
    assert [(k, p) for k, _, p, _, _ in _dump(batch)[1]] == [("k2", "q-new-2"), ("k3", "q-newer-3")]


def test_batch_writes_split_large_packages():
    con = duckdb.connect()
    catalog.ensure(con)
    n = catalog._BATCH * 2 + 7  # three statements each
    catalog.replace_snapshots(con, [_snap("auth_user", f"course-v1:IDBx+C{i}+1", f"p{i}") for i in range(n)], at=AT)
    catalog.replace_snapshots(con, [_snap("auth_user", f"course-v1:IDBx+C{i}+1", f"q{i}") for i in range(0, n, 2)],
                              at=AT)
    catalog.log_imports(con, [(f"f{i}", "t", None, None, "loaded", 1, 0, None) for i in range(n)], at=AT)
    paths = dict(con.execute("SELECT course_id, path FROM _edx_snapshots").fetchall())
    assert len(paths) == n
    assert all(paths[f"course-v1:IDBx+C{i}+1"] == (f"q{i}" if i % 2 == 0 else f"p{i}") for i in range(n))
    assert con.execute("SELECT count(*) FROM _edx_import_log").fetchone()[0] == n


def test_exists_finds_main_tables_only_and_keeps_a_transaction_usable():
    """``catalog.exists`` is a catalog lookup (not a scan of ``duckdb_tables()``): tables of the main
    schema only, not views or other schemas' tables; a miss inside a transaction does not abort it."""
    con = duckdb.connect()
    con.execute('CREATE TABLE t (a INT); CREATE VIEW v AS SELECT 1 AS a; CREATE SCHEMA models; '
                'CREATE TABLE models.m (a INT); CREATE TABLE "odd""name" (a INT)')
    assert catalog.exists(con, "t") and catalog.exists(con, 'odd"name')
    assert not catalog.exists(con, "v") and not catalog.exists(con, "m") and not catalog.exists(con, "nope")
    con.execute("BEGIN TRANSACTION")
    assert not catalog.exists(con, "nope")
    con.execute("INSERT INTO t VALUES (1)")
    con.execute("COMMIT")
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 1
    assert catalog.get_metas(con, "root") == {}
    catalog.ensure(con)
    catalog.set_meta(con, "root", "/x")
    assert catalog.get_metas(con, "root", "other") == {"root": "/x"}
