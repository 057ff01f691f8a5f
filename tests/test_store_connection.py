"""store/connection.py: catalog connections attached to one DuckDB instance per file and process behave
like ``duckdb.connect``'s, as another process sees them (the file lock) and as this one does (sharing,
modes, settings, errors)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from edx_engine.store.connection import open_database

# a second process tries to open the file the way a DuckDB client would
PROBE = """
import sys, duckdb
try:
    con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "ro")
    print("open", con.execute("SELECT count(*) FROM t").fetchone()[0])
except duckdb.IOException as exc:
    print("locked" if "lock" in str(exc).lower() else f"error {exc}")
"""


def _other_process(path: Path, mode: str = "rw") -> str:
    return subprocess.run([sys.executable, "-c", PROBE, str(path), mode], capture_output=True, text=True,
                          timeout=60).stdout.strip()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "edx.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t AS SELECT range AS a FROM range(3)")
    return path


def test_the_file_is_locked_while_open_and_free_after_the_last_close(db: Path):
    a = open_database(db)
    b = open_database(db, read_only=True)  # shares the writable attachment
    a.execute("INSERT INTO t VALUES (10)")
    assert _other_process(db, "ro") == "locked"
    a.close()
    assert b.execute("SELECT count(*) FROM t").fetchone()[0] == 4  # still open through b
    assert _other_process(db, "rw") == "locked"
    b.close()
    assert _other_process(db, "rw") == "open 4"  # written, and let go
    assert not Path(str(db) + ".wal").exists()  # checkpointed as a closed connection is


def test_read_only_attachments_let_other_readers_in_and_refuse_a_writer_here(db: Path):
    with open_database(db, read_only=True) as con:
        assert _other_process(db, "ro") == "open 3"
        with pytest.raises(duckdb.ConnectionException):
            open_database(db)
        with pytest.raises(duckdb.Error):
            con.execute("INSERT INTO t VALUES (1)")
    with open_database(db) as con:  # free again, now writable
        con.execute("INSERT INTO t VALUES (1)")


def test_names_resolve_in_the_catalog_as_with_duckdb_connect(db: Path):
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE SCHEMA models; CREATE VIEW models.m AS SELECT a * 2 AS b FROM t")
        expected = con.execute("SELECT current_database()").fetchone()
    with open_database(db, read_only=True) as con:
        assert con.execute("SELECT current_database()").fetchone() == expected
        assert con.execute("SELECT sum(b) FROM models.m").fetchone()[0] == 6
        cur = con.cursor()  # a second session starts in the catalog too
        assert cur.execute("SELECT count(*) FROM t").fetchone()[0] == 3
        cur.close()


def test_a_fresh_connection_keeps_its_settings_to_itself(db: Path):
    def threads(con) -> int:
        return int(con.execute("SELECT current_setting('threads')").fetchone()[0])

    with open_database(db) as con:
        default = threads(con)
    with open_database(db, fresh=True) as con:  # an instance of its own
        con.execute("SET threads = 1")
        with open_database(db, read_only=True) as inner:  # opened meanwhile: shares it, like duckdb.connect
            assert threads(inner) == 1 and inner.execute("SELECT count(*) FROM t").fetchone()[0] == 3
    with open_database(db) as con:
        assert threads(con) == default
        with open_database(db, fresh=True) as inner:  # the shared instance is lent, then not kept
            inner.execute("SET threads = 1")
    with open_database(db) as con:
        assert threads(con) == default
    assert _other_process(db) == "open 3"


def test_errors_are_duckdbs_own(tmp_path: Path, db: Path):
    with pytest.raises(duckdb.IOException, match="does not exist"):
        open_database(tmp_path / "missing.duckdb", read_only=True)
    (tmp_path / "junk.duckdb").write_bytes(b"not a database" * 300)
    with pytest.raises(duckdb.IOException, match="not a valid DuckDB database"):
        open_database(tmp_path / "junk.duckdb")
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
                               "print('held', flush=True); sys.stdin.read()", str(db)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(duckdb.IOException, match="lock"):
            open_database(db, read_only=True)
    finally:
        holder.communicate("", timeout=60)
    with open_database(db) as con:  # a failed open left nothing attached
        assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 3


def test_a_connection_dropped_without_close_lets_the_file_go(db: Path):
    con = open_database(db)
    con.execute("BEGIN TRANSACTION")
    con.execute("INSERT INTO t VALUES (7)")
    del con  # as a DuckDB connection does: the open transaction is rolled back
    assert _other_process(db) == "open 3"


def test_a_process_that_opens_many_stores_keeps_few_instances(tmp_path: Path):
    """An instance is kept for a file not open now (so that its next open is cheap), but only for the few
    files used last: a process opening hundreds of stores (a notebook, the test suite) stays small
    (each kept instance is ~3 MB)."""
    from edx_engine.store import connection

    def rss_mb() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20

    paths = [tmp_path / f"s{i}" / "edx.duckdb" for i in range(60)]
    before = rss_mb()
    for p in paths:
        p.parent.mkdir()
        with open_database(p) as con:
            con.execute("CREATE TABLE t AS SELECT 1 AS a")
    mine = [k for k in connection._SHARED if k[1].startswith(str(tmp_path))]
    assert 1 <= len(mine) <= connection.KEPT
    assert rss_mb() - before < 60  # ~165 MB if every instance were kept
    with open_database(paths[0], read_only=True) as con:  # its instance was let go: a new one opens it
        assert con.execute("SELECT a FROM t").fetchone() == (1,)


def test_a_fresh_read_only_connection_is_refused_while_the_file_is_open_for_writing(db: Path, tmp_path: Path):
    """As ``duckdb.connect`` refuses it: a fresh read-only connection (the SQL sandbox) given the writable
    attachment could write to the catalog, and its settings would lock the writer out of its files."""
    with open_database(db) as writer:
        with pytest.raises(duckdb.ConnectionException, match="different configuration"):
            open_database(db, read_only=True, fresh=True)
        writer.execute(f"COPY t TO '{tmp_path / 'out.parquet'}'")  # the writer's settings are untouched
        assert writer.execute("SELECT count(*) FROM t").fetchone()[0] == 3
    with open_database(db, read_only=True, fresh=True) as con:  # alone, it opens
        assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 3
        with pytest.raises(duckdb.Error):
            con.execute("INSERT INTO t VALUES (1)")
    assert _other_process(db) == "open 3"


def test_a_file_a_plain_duckdb_connection_holds_is_shared_as_before(db: Path):
    """A notebook that opened the catalog with ``duckdb.connect`` (as the README shows) and then calls the
    engine: DuckDB will not ATTACH a file another instance holds, so the engine's connection shares that
    instance, as ``duckdb.connect`` did, and leaves it open."""
    held = duckdb.connect(str(db), read_only=True)
    try:
        with open_database(db, read_only=True) as con:
            assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 3
        with pytest.raises(duckdb.ConnectionException):  # writable while held read-only, as duckdb.connect
            open_database(db)
        assert held.execute("SELECT sum(a) FROM t").fetchone()[0] == 3  # still open
        assert _other_process(db, "ro") == "open 3"
    finally:
        held.close()
    with open_database(db) as con:  # the process' own attachment again
        con.execute("INSERT INTO t VALUES (4)")
    assert _other_process(db) == "open 4"


def test_a_dropped_connection_collected_during_an_open_does_not_let_the_file_go(db: Path, monkeypatch):
    """The garbage collector may close a connection left in a reference cycle at any allocation, also
    while ``open_database`` (holding its re-entrant lock) hands out a new connection of the same file:
    that close must not detach the file under the new connection."""
    import gc

    from edx_engine.store import connection

    class Holder:
        pass

    h = Holder()
    h.me, h.con = h, open_database(db, read_only=True)  # never closed, only collectable
    del h
    quote = connection._quote

    def collecting(name: str) -> str:  # a collection inside the window, made certain
        gc.collect()
        return quote(name)

    monkeypatch.setattr(connection, "_quote", collecting)
    with open_database(db, read_only=True) as con:
        monkeypatch.setattr(connection, "_quote", quote)
        assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 3
        assert _other_process(db, "rw") == "locked"  # still attached
    assert _other_process(db) == "open 3"  # and let go after the last close
