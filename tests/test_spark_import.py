"""Parallel imports of tracking logs (issue 14 §2): ``import --jobs N`` (worker processes) and
``import --engine spark`` (one Spark task per file, one commit) leave the very store that the
sequential import leaves: ``events_all``, ``quarantine`` and the bookkeeping (``_edx_event_files``,
``_edx_event_parts``, ``_edx_event_dups``, ``_edx_quarantine_files``, ``_edx_import_log``), every
column compared, only import times and random part-file names left out.

The 10 log files: 8 synthetic days (malformed lines, events repeated into the next day), the last
one encrypted; an exact copy of one day from another folder (unchanged: the same bytes); a partial
re-delivery of another day from a third folder, uncompressed, with two bad lines of its own (a
new source whose events are all duplicates). The Spark tests share one local Spark session and are
skipped, with the reason, where pyspark or Java is missing."""

from __future__ import annotations

import datetime
import functools
import gzip
import operator
import re
import shutil
from pathlib import Path

import duckdb
import pytest

from edx_engine.config import resolve
from edx_engine.ingest.sources import discover
from edx_engine.pipeline.import_run import import_paths
from edx_engine.store.lake import Lake

from conftest import gpg_encrypt

DAYS = 8
START = datetime.date(2026, 9, 27)  # 4 days in September, 4 in October (the pruning test)
PARTIAL_REJECTS: list[int] = []  # the partial re-delivery's bad lines: the generator's in its half, and 2
# (table, ORDER BY / columns kept): every column but import times and random file names
IGNORED = {"imported_at", "logged_at", "path"}
TABLES = ["events_all", "quarantine", "_edx_event_files", "_edx_event_parts", "_edx_event_dups",
          "_edx_quarantine_files", "_edx_import_log"]


@pytest.fixture
def spark(spark_local):
    return spark_local  # the worker's shared session (conftest): skipped with the reason without Java


@pytest.fixture(scope="module")
def logs(tmp_path_factory, gpg_key):
    """The 10 log files under one folder; returns (folder, gnupghome, passphrase file)."""
    from edx_engine.synthetic import SyntheticConfig, generate

    root = tmp_path_factory.mktemp("backfill")
    m = generate(root / "gen", SyntheticConfig(courses=2, learners=30, days=DAYS, seed=3, start=START))
    days = sorted((root / "gen").rglob("*.log.gz"))
    assert len(days) == DAYS
    logs = root / "logs"
    (logs / "a").mkdir(parents=True)
    for f in days[:-1]:
        shutil.copy(f, logs / "a" / f.name)
    home, fpr, passphrase = gpg_key
    gpg_encrypt(home, fpr, days[-1], logs / "a" / (days[-1].name + ".gpg"))
    (logs / "b").mkdir()
    shutil.copy(days[2], logs / "b" / days[2].name)  # the same bytes from elsewhere: unchanged
    (logs / "c").mkdir()
    lines = gzip.decompress(days[4].read_bytes()).splitlines(keepends=True)
    half = len(lines) // 2
    bad = [b for e in m.events_files if e["file"].endswith(days[4].name) for b in e["malformed"] if b["line"] <= half]
    PARTIAL_REJECTS.append(len(bad) + 2)
    partial = lines[:half] + [b"this is no JSON\n", b'{"event_type": "x", "time": "yesterday"}\n']
    (logs / "c" / days[4].name.removesuffix(".gz")).write_bytes(b"".join(partial))  # a partial re-delivery
    pw = root / "passphrase"
    pw.write_text(passphrase + "\n")
    assert sum(1 for p in logs.rglob("*") if p.is_file()) == 10
    return logs, home, pw


def _import(logs, data: Path, **kw):
    folder, home, pw = logs
    settings = resolve(data_dir=str(data), gnupghome=str(home), passphrase_file=str(pw))
    return import_paths(settings, [folder], **kw)[1]


def _state(data: Path) -> dict[str, list[tuple]]:
    """Every compared table's rows (sorted), without import times and random file names."""
    out = {}
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        for t in TABLES:
            cols = [r[0] for r in con.execute(f"DESCRIBE {t}").fetchall() if r[0] not in IGNORED]
            sel = ", ".join(f'"{c}"' for c in cols)
            out[t] = sorted(con.execute(f"SELECT {sel} FROM {t}").fetchall(), key=repr)
    return out


def _lake_files(data: Path) -> set[str]:
    return {str(p.relative_to(data)) for p in (data / "lake").rglob("*") if p.is_file()}


def _referenced(data: Path) -> set[str]:
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        return {r[0] for r in con.execute("SELECT path FROM _edx_event_parts UNION SELECT path FROM "
                                          "_edx_quarantine_files").fetchall()}


@pytest.fixture(scope="module")
def sequential(logs, tmp_path_factory):
    data = tmp_path_factory.mktemp("seq") / "data"
    ev = _import(logs, data, jobs=1)
    return data, ev


def test_sequential_store_is_what_the_files_say(sequential):
    """The reference store itself, checked by hand: 9 files loaded (8 days, the partial copy),
    1 unchanged, the partial copy's events all duplicates, its 2 bad lines quarantined."""
    data, ev = sequential
    by_status = {s: [f for f in ev.files if f.status == s] for s in ("loaded", "unchanged", "failed")}
    assert (len(by_status["loaded"]), len(by_status["unchanged"]), len(by_status["failed"])) == (9, 1, 0)
    assert "/b/" in by_status["unchanged"][0].label
    part = next(f for f in ev.files if "/c/" in f.label)
    # all its events were delivered before: it adds nothing to `events`, each one has a copy elsewhere
    assert part.events > 0 and part.added == 0 and part.duplicates >= part.events and part.rejected == PARTIAL_REJECTS[0] > 2
    st = _state(data)
    assert len(st["_edx_event_files"]) == 9
    assert any(r[1].endswith(".gpg") for r in st["_edx_event_files"])  # the encrypted day is in
    assert _lake_files(data) == _referenced(data)


def test_jobs_2_gives_the_sequential_store(logs, sequential, tmp_path):
    data = tmp_path / "data"
    ev = _import(logs, data, jobs=2)
    assert [(f.label, f.status, f.events, f.rejected, f.duplicates) for f in ev.files] == \
        [(f.label, f.status, f.events, f.rejected, f.duplicates) for f in sequential[1].files]
    assert _state(data) == _state(sequential[0])
    assert _lake_files(data) == _referenced(data)  # nothing left behind


def test_spark_gives_the_sequential_store_and_is_idempotent(logs, sequential, spark, tmp_path):
    data = tmp_path / "data"
    ev = _import(logs, data, spark=spark)
    assert [(f.label, f.status, f.events, f.rejected) for f in ev.files] == \
        [(f.label, f.status, f.events, f.rejected) for f in sequential[1].files]
    first = _state(data)
    assert first == _state(sequential[0])
    files = _lake_files(data)
    assert files == _referenced(data)
    again = _import(logs, data, spark=spark)  # re-running changes nothing
    assert {f.status for f in again.files} == {"unchanged"}
    assert _state(data)["_edx_event_files"] == first["_edx_event_files"]
    assert {k: v for k, v in _state(data).items() if k != "_edx_import_log"} == \
        {k: v for k, v in first.items() if k != "_edx_import_log"}
    assert _lake_files(data) == files


def test_a_failing_spark_task_leaves_the_store_as_it_was(logs, spark, tmp_path):
    """One task dies of an unexpected error: nothing is committed (not even the files whose
    tasks succeeded) and no written part stays behind."""
    from edx_engine.decrypt import gpg_session
    from edx_engine.pipeline.backfill import BackfillError, import_events_parallel

    folder, home, pw = logs
    data = tmp_path / "data"
    _import((folder / "b", home, pw), data, jobs=1)  # a store with one day in it
    before, files = _state(data), _lake_files(data)
    sources = [s for s in discover([folder / "a"]).sources if not s.encrypted][:3]
    sources[1].opener = functools.partial(operator.truediv, 1, 0)  # ZeroDivisionError in the task
    lake = Lake(data)
    with gpg_session(resolve(data_dir=str(data)).gpg()) as gpg, lake.writer():
        with pytest.raises(BackfillError, match="nothing was committed.*ZeroDivisionError"):
            import_events_parallel(lake, sources, gpg, spark=spark)
    assert _state(data) == before
    assert _lake_files(data) == files


def test_a_failing_worker_keeps_the_files_committed_before_it(logs, tmp_path):
    """--jobs: files commit one by one in order, as without it; a worker's unexpected error stops
    the run there, the earlier files stay committed, nothing uncommitted stays on disk."""
    from edx_engine.decrypt import gpg_session
    from edx_engine.pipeline.backfill import import_events_parallel

    folder = logs[0] / "a"
    data = tmp_path / "data"
    sources = [s for s in discover([folder]).sources if not s.encrypted]
    sources[3].opener = functools.partial(operator.truediv, 1, 0)
    lake = Lake(data)
    lake.init()
    with gpg_session(resolve(data_dir=str(data)).gpg()) as gpg, lake.writer():
        with pytest.raises(ZeroDivisionError):
            import_events_parallel(lake, sources, gpg, jobs=2)
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        got = sorted(r[0] for r in con.execute("SELECT source_file FROM _edx_event_files").fetchall())
    assert got == sorted(s.label for s in sources[:3])
    assert _lake_files(data) == _referenced(data)


def _scan_files(spark, df) -> tuple[list, int]:
    """(the rows, the files the executed plan's Parquet scan read: its ``numFiles`` metric)."""
    rows = df.collect()
    plan = df._jdf.queryExecution().executedPlan()
    stack, found = [plan], []
    while stack:
        node = stack.pop()
        name = node.getClass().getName()
        if name.endswith("AdaptiveSparkPlanExec"):
            stack.append(node.executedPlan())
            continue
        if name.endswith("QueryStageExec"):  # a finished stage of the adaptive plan: its plan below
            stack.append(node.plan())
            continue
        metrics = node.metrics()
        if "FileSourceScan" in name and metrics.contains("numFiles"):
            found.append(int(metrics.apply("numFiles").value()))
        children = node.children()
        stack.extend(children.apply(i) for i in range(children.size()))
    assert len(found) == 1, found
    return rows, found[0]


def test_one_course_one_month_reads_only_that_months_files_on_spark(sequential, spark):
    """Spark reads the parts with their ``date=`` folders as the partition column: a query for one
    course and one month lists and reads only that month's files (issue 14 §3)."""
    from edx_engine.models.spark import _SPARK_TYPES
    from edx_engine.store.views import EVENT_COLUMNS

    data, _ = sequential
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        parts = [str(data / p) for (p,) in con.execute("SELECT path FROM _edx_event_parts").fetchall()]
        october = con.execute("SELECT count(*) FROM _edx_event_parts WHERE event_date >= DATE '2026-10-01'").fetchone()[0]
        course = con.execute("SELECT min(course_id) FROM events_all").fetchone()[0]
        want = con.execute("SELECT count(*) FROM events_all WHERE course_id = ? AND event_date >= DATE '2026-10-01' "
                           "AND event_date < DATE '2026-11-01'", [course]).fetchone()[0]
    assert 0 < october < len(parts) and want > 0
    schema = ", ".join(f"`{c}` {_SPARK_TYPES[t]}" for c, t in EVENT_COLUMNS.items())
    df = spark.read.schema(schema).option("basePath", str(data / "lake" / "events")).parquet(*parts)
    q = df.where(f"date >= '2026-10-01' AND date < '2026-11-01' AND course_id = '{course}'").groupBy().count()
    plan = q._jdf.queryExecution().executedPlan().toString()
    assert re.search(r"PartitionFilters: \[[^\]]*date", plan), plan
    assert _scan_files(spark, q) == ([(want,)], october)
    assert _scan_files(spark, df.groupBy().count())[1] == len(parts)  # no filter: every file


def test_cli_import_jobs_and_engine_options(logs, tmp_path):
    from typer.testing import CliRunner

    from edx_engine.cli import app

    folder, home, pw = logs
    base = ["import", str(folder), "--data-dir", str(tmp_path / "data"), "--gnupghome", str(home),
            "--passphrase-file", str(pw)]
    r = CliRunner().invoke(app, base + ["--engine", "bogus"], env={"COLUMNS": "200"})
    assert r.exit_code == 1 and "unknown engine 'bogus' (use duckdb or spark)" in r.output
    r = CliRunner().invoke(app, base + ["--spark-remote", "sc://127.0.0.1:1"], env={"COLUMNS": "200"})
    assert r.exit_code == 1 and "--spark-remote needs --engine spark" in r.output
    assert not (tmp_path / "data").exists()  # refused before anything was touched
    base[1:2] = [str(folder / "b"), str(folder / "c")]
    r = CliRunner().invoke(app, base + ["--jobs", "2"], env={"COLUMNS": "200"})
    assert r.exit_code == 2, r.output  # partial: the bad lines
    assert "event files: 2 (2 loaded, 0 unchanged, 0 failed)" in r.output


def test_a_redelivered_file_replaces_its_rows_as_without_jobs(logs, tmp_path):
    """The same path delivered again with other content replaces that source's rows; --jobs 2 and
    the sequential import agree on the result (counts, duplicates, the log's replacement numbers)."""
    days = sorted((logs[0] / "a").glob("*.log.gz"))[:2]
    folder = tmp_path / "in"
    folder.mkdir()
    for f in days:
        shutil.copy(f, folder / f.name)
    seq, par = tmp_path / "seq", tmp_path / "par"
    for data, jobs in ((seq, 1), (par, 2)):
        _import((folder, *logs[1:]), data, jobs=jobs)
    lines = gzip.decompress(days[1].read_bytes()).splitlines(keepends=True)
    (folder / days[1].name).write_bytes(gzip.compress(b"".join(lines[: len(lines) // 3])))
    got = {}
    for data, jobs in ((seq, 1), (par, 2)):
        ev = _import((folder, *logs[1:]), data, jobs=jobs)
        got[jobs] = [(f.status, f.events, f.replaced, f.added, f.duplicates) for f in ev.files]
    assert got[1] == got[2]
    assert [s for s, *_ in got[2]] == ["unchanged", "loaded"]
    assert got[2][1][2] > got[2][1][1] > 0  # more rows replaced than delivered
    assert _state(seq) == _state(par)
    assert _lake_files(par) == _referenced(par)  # the replaced parts are gone


ZIP_PROBE = """
import importlib, sys, zipfile, zipimport
z = sys.argv[1]
with zipfile.ZipFile(z, "w") as f:
    f.writestr("zpkg/__init__.py", "")
    f.writestr("zpkg/a.py", "X = 1")
    f.writestr("zpkg/b.py", "Y = 2")
sys.path.insert(0, z)
import zpkg.a
from edx_engine.pipeline.backfill import static_zip_importers
def reread():
    before = dict(zipimport._zip_directory_cache)
    importlib.invalidate_caches()
    return sorted(k for k, v in zipimport._zip_directory_cache.items() if before.get(k) is not v)
print(len(reread()) > 0)
static_zip_importers()
print(reread())
import zpkg.b
print(zpkg.a.X + zpkg.b.Y)
"""


def test_a_spark_worker_does_not_reread_its_zip_archives_before_each_task(tmp_path):
    """PySpark's worker invalidates the import caches before every task; ``static_zip_importers`` (run
    by the import's Spark tasks) keeps zip importers from reading their archive's directory again then,
    and modules still import from the archive. In a child process: it changes the import system."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", ZIP_PROBE, str(tmp_path / "lib.zip")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["True", "[]", "3"]
