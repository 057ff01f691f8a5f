"""The store works wherever it is: moved, copied, restored, opened from another directory.

Views hold absolute paths; ``_edx_meta`` records the root they were built for and every open
re-points them when the store is no longer there. A copy must never read the original's files:
the tests delete the original and compare every view's rows with the rows of the copy's own
Parquet files (summed from their footers, without the views).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from edx_engine.lake import Lake, StoreMoved
from store_support import edx, file_counts, small_store, view_counts, view_sql


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return small_store(tmp_path_factory.mktemp("store-moves"))


@pytest.fixture(scope="module")
def reference(store) -> dict[str, int]:
    """Rows of every view of the original store, where it was built."""
    counts = view_counts(store / "edx.duckdb")
    assert counts["main.events"] > 0 and counts["main.quarantine"] > 0 and counts["models.person_course"] > 0
    return counts


def cp_a(src: Path, dst: Path) -> Path:
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)
    return dst


def assert_own_files(store: Path, reference: dict[str, int], *gone: Path) -> None:
    """Every view shows the store's own files: same rows as the reference and as the files'
    footers, and no view names a path of another location."""
    counts = view_counts(store / "edx.duckdb")
    assert counts == reference
    expected = file_counts(store)
    assert {k: counts[k] for k in expected} == expected
    sql = view_sql(store / "edx.duckdb")
    assert str(store.resolve()) + "/lake/" in sql
    for other in gone:
        assert str(other.resolve()) + "/" not in sql


def csv_count(r: subprocess.CompletedProcess) -> int:
    assert r.returncode == 0, r.stderr
    return int(r.stdout.lstrip("\ufeff").splitlines()[1])


def test_moved_store_works_from_another_directory(store, reference, tmp_path):
    a = cp_a(store, tmp_path / "edx-data")
    assert edx("tables", "--data-dir", str(a)).returncode == 0  # now built for tmp/edx-data
    b = tmp_path / "edx-data2"
    a.rename(b)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rel = "../edx-data2"  # a relative --data-dir, from another working directory
    # read-only commands first: they re-point the moved store
    r = edx("sql", "SELECT count(*) FROM events", "--format", "csv", "--data-dir", rel, cwd=elsewhere)
    assert csv_count(r) == reference["main.events"]
    r = edx("tables", "--data-dir", rel, cwd=elsewhere)
    assert r.returncode == 0 and "auth_user" in r.stdout and "Traceback" not in r.stderr, r.stderr
    r = edx("report", "general", "--format", "csv", "-o", "-", "--data-dir", rel, cwd=elsewhere)
    assert r.returncode == 0 and "course-v1:" in r.stdout, r.stderr
    # a writing command: models are unchanged (nothing but the location changed)
    r = edx("build", "--data-dir", rel, cwd=elsewhere)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "(0 built," in r.stdout, r.stdout
    assert_own_files(b, reference, a, store)
    # any DuckDB client, from any directory, now reads the moved store
    with duckdb.connect(str(b / "edx.duckdb"), read_only=True) as con:
        assert con.execute("SELECT value FROM _edx_meta WHERE key = 'root'").fetchone()[0] == str(b.resolve())


def test_copy_reads_only_its_own_files(store, reference, tmp_path):
    a = cp_a(store, tmp_path / "a")
    assert edx("tables", "--data-dir", str(a)).returncode == 0
    c = cp_a(a, tmp_path / "c")
    shutil.rmtree(a / "lake")  # the original loses its files: a copy still reading them fails or differs
    r = edx("sql", "SELECT count(*) FROM models.person_course", "--format", "csv", "--data-dir", str(c))
    assert csv_count(r) == reference["models.person_course"]
    assert_own_files(c, reference, a, store)
    shutil.rmtree(a)
    r = edx("build", "--data-dir", str(c), "--force", "--model", "person_course")  # writes on the copy
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert_own_files(c, reference, a, store)
    assert edx("sql", "SELECT count(*) FROM quarantine", "--data-dir", str(c)).returncode == 0


def test_copy_without_first_use_of_the_original(store, reference, tmp_path):
    """cp -a of a store nobody opened at its new place: the very first open re-points it."""
    c = cp_a(store, tmp_path / "restored")
    with Lake(c).connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == reference["main.events"]
    assert_own_files(c, reference, store)


def test_status_of_a_copy_reads_its_own_events(store, tmp_path):
    """`status` of a copied store, first thing at its new place: its coverage per course comes from the copy's
    files (it read the events view through the ledger's connection, never re-pointed: the original's files,
    or, the original gone, no event day for any course and no word about it)."""
    from edx_engine.store.status import collect_status

    expected = collect_status(store)["events"]
    assert expected and all(e["first_day"] != "None" for e in expected)
    a = cp_a(store, tmp_path / "a")
    assert edx("tables", "--data-dir", str(a)).returncode == 0  # now built for a
    c = cp_a(a, tmp_path / "c")
    shutil.rmtree(a / "lake")  # the original loses its files: a copy still reading them finds no day
    assert collect_status(c)["events"] == expected
    r = edx("status", "--json", "--data-dir", str(c))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert json.loads(r.stdout)["events"] == expected


def test_read_only_open_when_the_catalog_cannot_be_written(store, reference, tmp_path):
    """Another program holds the moved catalog open read-only: it cannot be re-pointed in place,
    so `sql` reads a private re-pointed copy, never the old location's files."""
    a = cp_a(store, tmp_path / "a")
    assert edx("tables", "--data-dir", str(a)).returncode == 0
    b = tmp_path / "b"
    a.rename(b)
    c = cp_a(b, tmp_path / "c")
    a.mkdir()
    shutil.copytree(c / "lake", a / "lake")  # something at the old path again (e.g. another store)
    shutil.rmtree(a / "lake" / "tables" / "auth_user")  # ... that differs from b
    holder = subprocess.Popen([sys.executable, "-c", f"""
import duckdb, sys, time
con = duckdb.connect({str(b / 'edx.duckdb')!r}, read_only=True)
print('open', flush=True)
sys.stdin.read()
"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        before = (b / "edx.duckdb").read_bytes()
        names = ("main.auth_user", "main.events", "models.person_course", "main.quarantine")
        query = "SELECT " + ", ".join(f"(SELECT count(*) FROM {v})" for v in names)
        r = edx("sql", query, "--format", "csv", "--no-bom", "--data-dir", str(b))
        assert r.returncode == 0, r.stderr
        assert [int(x) for x in r.stdout.splitlines()[1].split(",")] == [reference[v] for v in names]
        assert (b / "edx.duckdb").read_bytes() == before  # the holder's catalog was not touched
        with pytest.raises(duckdb.Error):  # the store cannot be opened for writing meanwhile
            duckdb.connect(str(b / "edx.duckdb")).close()
    finally:
        holder.communicate("")
    # once free, the next open re-points it in place
    assert edx("tables", "--data-dir", str(b)).returncode == 0
    assert_own_files(b, reference, a, store)


def test_catalog_built_before_roots_were_recorded(store, reference, tmp_path):
    """A catalog from before _edx_meta existed is re-pointed like a moved one."""
    a = cp_a(store, tmp_path / "old")
    with duckdb.connect(str(a / "edx.duckdb")) as con:
        con.execute("DROP TABLE _edx_meta")
    r = edx("sql", "SELECT count(*) FROM events", "--format", "csv", "--data-dir", str(a))
    assert csv_count(r) == reference["main.events"]
    assert_own_files(a, reference, store)


def test_moved_catalog_without_its_files_is_a_one_line_error(store, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy2(store / "edx.duckdb", bare / "edx.duckdb")  # a restore that forgot lake/
    for args in (["sql", "SELECT count(*) FROM auth_user"], ["build"]):
        r = edx(*args, "--data-dir", str(bare))
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert "cannot be re-pointed" in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    with pytest.raises(StoreMoved):
        Lake(bare).connect(read_only=True)


def test_reopening_an_unmoved_store_rewrites_nothing(store, tmp_path):
    a = cp_a(store, tmp_path / "a")
    assert edx("tables", "--data-dir", str(a)).returncode == 0
    stamp = (a / "edx.duckdb").stat().st_mtime_ns
    time.sleep(0.01)
    for args in (["tables"], ["sql", "SELECT count(*) FROM events"]):
        assert edx(*args, "--data-dir", str(a)).returncode == 0
    assert (a / "edx.duckdb").stat().st_mtime_ns == stamp
