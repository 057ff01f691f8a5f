"""Fault injection (issue 11): `import` and `scrub` killed with SIGKILL at several points, then the
next command; the result is compared with a clean run, and the lake must hold exactly the files the
catalog references (Spark or pandas reading the Parquet files directly must count nothing twice).

Kill points are the deterministic pauses of ``edx_engine/_hooks.py`` (``package-commit``: every
snapshot written, none committed; ``import-packages``; ``events-commit``: a log's parts written,
none committed; ``events-file``; ``scrub-file:n``: n files rewritten; ``scrub-commit``;
``scrub-committed``: catalog switched, old files not yet deleted), plus one timed kill while the
first tracking log is being parsed. `sync` is killed at its own points in
tests/test_sync.py; one case here kills a sync with a package written but not committed, and
checks that a sync with nothing to import collects a killed scrub's leftovers.
The killed commands and the commands after them run as real subprocesses (kill -9 is the real thing);
the fixtures' commands run in this process (cli_support.run_cli). A small synthetic delivery."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from cli_support import kill_group, run_cli
from edx_engine.lake import Lake
from edx_engine.privacy.scrub import plan
from edx_engine.synthetic import SyntheticConfig, generate

try:  # the S3 server, the throwaway key and the deliveries of the sync tests
    import test_sync as ts
    from test_sync import deliveries, gpg_key, moto, s3  # noqa: F401 (fixtures)
except pytest.skip.Exception:  # no moto: the sync case is skipped
    ts = None

ENTRY = [sys.executable, "-c", "import sys; from edx_engine.cli import app; sys.exit(app())"]
OWNERS = {"tables": "_edx_snapshots", "quarantine": "_edx_quarantine_files", "events": "_edx_event_parts",
          "models": "_edx_models", "geo": "_edx_geo", "model_parts": "_edx_model_parts"}


def env(**extra) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith("EDX_ENGINE_") or k == "EDX_ENGINE_SQL_CACHE"}
    e.update(COLUMNS="200", **extra)
    return e


def cli(data: Path, *args: str, code: tuple = (0, 2)) -> subprocess.CompletedProcess:
    """A command run to its end, in this process (cli_support.run_cli)."""
    r = run_cli([*args, "--data-dir", str(data)], env=env())
    assert r.returncode in code, (args, r.returncode, r.stdout, r.stderr)
    return r


def start(data: Path, stage: str, flag: Path, *args: str) -> subprocess.Popen:
    e = env(EDX_ENGINE_TEST_PAUSE_AT=stage, EDX_ENGINE_TEST_PAUSE_FILE=str(flag))
    return subprocess.Popen([*ENTRY, *args, "--data-dir", str(data)], env=e, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill_at(proc: subprocess.Popen, flag: Path, timeout: float = 120) -> None:
    """Wait until the process pauses (it writes ``flag``), then SIGKILL it there."""
    deadline = time.monotonic() + timeout
    while not flag.exists():
        if proc.poll() is not None:
            raise AssertionError(f"ended before pausing ({proc.returncode}): {proc.stderr.read()}")
        assert time.monotonic() < deadline, "did not reach the pause point"
        time.sleep(0.01)
    kill(proc)
    flag.unlink()


kill = kill_group


# -- what the store holds, computed independently of the engine's collector ------------------------

def lake_files(data: Path) -> set[str]:
    return {p.relative_to(data).as_posix() for p in (data / "lake").rglob("*") if p.is_file()}


def referenced(data: Path) -> set[str]:
    out: set[str] = set()
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        for table in OWNERS.values():
            if table in tables:
                out |= {r[0] for r in con.execute(f"SELECT path FROM {table}").fetchall()}
    return out


def unreferenced(data: Path) -> set[str]:
    return lake_files(data) - referenced(data)


def direct_event_rows(data: Path) -> int:
    """Rows a reader of lake/events/**/*.parquet (Spark, pandas) would see."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f in (data / "lake" / "events").rglob("*.parquet"))


def state(data: Path) -> dict:
    """Row counts of every view (but locate-users' own), and the events and rejected lines
    themselves (what a clean run gives)."""
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        views = [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal "
                                          "AND schema_name = 'main' AND view_name NOT LIKE 'user_location%' "
                                          "ORDER BY 1").fetchall()]
        counts = {v: con.execute(f'SELECT count(*) FROM "{v}"').fetchone()[0] for v in views}
        events = con.execute("SELECT * EXCLUDE (source_file) FROM events_all ORDER BY ALL").fetchall()
        quarantine = con.execute("SELECT kind, line, reason, raw FROM quarantine ORDER BY ALL").fetchall()
    return {"counts": counts, "events": events, "quarantine": quarantine}


def assert_clean_lake(data: Path) -> None:
    assert unreferenced(data) == set()
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        assert direct_event_rows(data) == con.execute("SELECT count(*) FROM events_all").fetchone()[0]


# -- fixtures -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def delivery(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("delivery")
    generate(d, SyntheticConfig(seed=3, courses=1, learners=30, days=2))
    return d


@pytest.fixture(scope="module")
def imported(delivery, tmp_path_factory) -> tuple[Path, dict]:
    """A store made by one clean import (a template: each test works on a copy), and its state."""
    data = tmp_path_factory.mktemp("imported") / "store"
    cli(data, "import", str(delivery))
    assert_clean_lake(data)
    return data, state(data)


@pytest.fixture(scope="module")
def scrubbed(imported, tmp_path_factory) -> dict:
    """The state after a clean scrub of the imported store."""
    data = tmp_path_factory.mktemp("scrubbed") / "store"
    shutil.copytree(imported[0], data)
    cli(data, "scrub")
    assert_clean_lake(data)
    return state(data)


def copy_store(src: Path, tmp: Path) -> Path:
    data = tmp / "store"
    shutil.copytree(src, data)
    cli(data, "tables")  # a command re-points a copied store's views (README: stores can move)
    return data


# -- import ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stage,next_cmd", [
    ("package-commit", "import"),     # every snapshot written, none referenced: all of them are leftovers
    ("package-commit", "build"),      # ... collected by another writing command too
    ("import-packages", "import"),    # packages committed, no log started
    ("events-commit", "import"),      # the first log's parts written, none referenced
    ("events-file", "import"),        # the first log committed, the second not started
    ("events-part", "locate-users"),  # timed: killed while the first log's parts are being written
])
def test_import_killed_then_next_command_leaves_the_clean_state(stage, next_cmd, delivery, imported, tmp_path):
    data = tmp_path / "store"
    flag = tmp_path / "paused"
    if stage == "events-part":
        proc = start(data, "import-packages", flag, "import", str(delivery))
        kill_at_first_part(proc, flag, data)
    else:
        proc = start(data, stage, flag, "import", str(delivery))
        kill_at(proc, flag)
    if stage == "package-commit":
        assert len(unreferenced(data)) >= 10  # the killed import's snapshots: on disk, not in the catalog
    if stage == "events-commit":
        assert any(f.startswith("lake/events/") for f in unreferenced(data))  # the log's parts
    if next_cmd != "import":
        cli(data, next_cmd)
        assert_clean_lake(data)  # any writing command collects a killed writer's leftovers
    cli(data, "import", str(delivery))
    assert_clean_lake(data)
    assert state(data) == imported[1]


def kill_at_first_part(proc: subprocess.Popen, flag: Path, data: Path) -> None:
    """Let the import go on after its packages, and kill it as soon as an event part is on disk."""
    deadline = time.monotonic() + 120
    while not flag.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "did not reach the pause point"
        time.sleep(0.01)
    flag.unlink()
    events = data / "lake" / "events"
    while proc.poll() is None and not (events.exists() and any(p.is_file() for p in events.rglob("*"))):
        time.sleep(0.002)
    kill(proc)


# -- scrub -----------------------------------------------------------------------------------------------

def _scrub_files(data: Path) -> int:
    lake = Lake(data)
    with lake.connect(read_only=True) as con:
        return sum(p.needed for p in plan(lake, con))  # the files scrub rewrites


@pytest.mark.parametrize("point,next_cmd", [
    ("first", "scrub"),                  # one file rewritten
    ("late", "scrub"),                   # every file but the last rewritten (the case)
    ("late", "import"),                  # ... leftovers collected by an import with nothing new
    ("scrub-commit", "build"),           # every file rewritten, not committed
    ("scrub-committed", "locate-users"),  # committed, the old files not yet deleted
])
def test_scrub_killed_then_next_command_leaves_the_clean_state(point, next_cmd, delivery, imported, scrubbed,
                                                               tmp_path):
    data = copy_store(imported[0], tmp_path)
    n = _scrub_files(data)
    assert n > 5
    stage = {"first": "scrub-file:1", "late": f"scrub-file:{n - 1}"}.get(point, point)
    flag = tmp_path / "paused"
    proc = start(data, stage, flag, "scrub")
    kill_at(proc, flag)
    left = unreferenced(data)
    assert left, "the kill left nothing behind: the test does not test anything"
    if point == "late":
        assert direct_event_rows(data) > state(data)["counts"]["events_all"]  # days counted twice by a raw reader
    cli(data, next_cmd, *([str(delivery)] if next_cmd == "import" else []))
    assert_clean_lake(data)
    if next_cmd != "scrub":
        cli(data, "scrub")
        assert_clean_lake(data)
    assert state(data) == scrubbed
    r = cli(data, "scrub", "--check", code=(0,))
    assert r.returncode == 0


# -- sync -------------------------------------------------------------------------------------------------

def test_killed_sync_and_killed_scrub_leftovers_are_collected_by_the_next_sync(tmp_path, request):
    """A sync killed with every snapshot of a package written but none committed; the next sync
    completes it exactly. Then a scrub killed late, and a sync with nothing to import: it collects."""
    if ts is None:
        pytest.skip("moto is not installed")
    s3c, moto = request.getfixturevalue("s3"), request.getfixturevalue("moto")
    deliveries, gpg_key = request.getfixturevalue("deliveries"), request.getfixturevalue("gpg_key")
    conf, senv, data = ts.write_config(tmp_path, moto.url), ts.sync_env(gpg_key), tmp_path / "d"
    clean = ts.clean_counts("A", s3c, deliveries, conf, senv, tmp_path, "A")
    ts.upload(s3c, deliveries / "A")
    flag = tmp_path / "paused"
    proc = ts.start_paused(data, conf, senv, "package-commit", flag)
    ts.wait_for(flag, proc)
    ts.kill9(proc)
    flag.unlink()
    assert len(unreferenced(data)) >= 10
    r = ts.run_sync(data, conf, senv)
    assert r.returncode == 0, r.stderr + r.stdout
    assert ts.counts(data) == clean
    assert_clean_lake(data)

    proc = start(data, "scrub-file:3", flag, "scrub")
    kill_at(proc, flag)
    assert unreferenced(data)
    r = ts.run_sync(data, conf, senv)
    assert r.returncode == 0 and "0 imported" in r.stdout, r.stderr + r.stdout
    assert_clean_lake(data)
    assert {k: v for k, v in ts.counts(data).items() if not k.startswith("user_location")} == clean
