"""Ctrl-C (SIGINT) during `edx-engine import` of a weekly package: nothing of the package is committed
(the store keeps its previous snapshots), the command ends with the one `interrupted` line and exit
130 (no traceback, no "Fatal Python error", no hang), and running it again imports the package.

The imports run as real subprocesses through the console entry point (`edx_engine.cli.main`, which
installs the SIGINT handler) and get a real SIGINT:
- ``duckdb``: the process sends itself SIGINT inside a member's checks and the hook reports it the
  way DuckDB does (the handler runs, DuckDB raises ``RuntimeError: Query interrupted`` instead of
  KeyboardInterrupt): a per-file ``except Exception`` took it for one unreadable file and the rest
  of the package was committed (found by an outside tester with a real Ctrl-C, 1 run in 14);
- ``paused``: SIGINT while the import stands at a hook (after n members, or with every snapshot
  written and none committed);
- ``timed``: SIGINT a few milliseconds after a member's reading starts (Arrow's read-ahead thread,
  DuckDB's checks): the import may also have ended first, then it must have imported everything.
The store is compared, table by table and row by row, with a store where the package was never
imported, and after the re-run with one where it was imported without interruption."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from cli_support import run_cli
from edx_engine.cli.common import INTERRUPTED
from edx_engine.synthetic import SyntheticConfig, generate

ENTRY = [sys.executable, "-c", "from edx_engine.cli import main; main()"]


def env(**extra) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith("EDX_ENGINE_") or k == "EDX_ENGINE_SQL_CACHE"}
    e.update(COLUMNS="200", **extra)
    return e


def cli(data: Path, *args: str) -> subprocess.CompletedProcess:
    r = run_cli([*args, "--data-dir", str(data)], env=env())
    assert r.returncode in (0, 2), (args, r.returncode, r.stdout, r.stderr)
    return r


def tables(data: Path) -> dict:
    """Every table view of the store, row by row (what an analyst reads), and the current snapshots."""
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        views = [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal AND "
                                          "schema_name = 'main' AND view_name NOT LIKE 'user_location%' "
                                          "ORDER BY 1").fetchall()]
        out = {}
        for v in views:  # without the times of import (a re-run's are later)
            cols = [f'"{name}"' for name, typ, *_ in con.execute(f'DESCRIBE SELECT * FROM "{v}"').fetchall()
                    if not typ.startswith("TIMESTAMP")]
            out[v] = con.execute(f'SELECT {", ".join(cols)} FROM "{v}" ORDER BY ALL').fetchall()
        out["_edx_snapshots"] = con.execute("SELECT table_name, course_id, package_date, fingerprint, rows "
                                            "FROM _edx_snapshots ORDER BY ALL").fetchall()
    return out


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> dict:
    """Two weekly packages of the same courses; a store holding the first (the one to interrupt
    the second's import in), and the state after a clean import of the second."""
    root = tmp_path_factory.mktemp("interrupt")
    zips = []
    for seed, day in ((3, "2026-10-05"), (4, "2026-10-12")):
        d = root / f"delivery{seed}"
        generate(d, SyntheticConfig(seed=seed, courses=2, learners=150, days=2, events=False,
                                    studentmodule_per_learner=200, package_date=dt.date.fromisoformat(day)))
        zips += sorted(d.rglob("*.zip"))
    assert len(zips) == 2
    before = root / "before"
    cli(before, "import", str(zips[0]))
    after = root / "after"
    shutil.copytree(before, after)
    cli(after, "tables")
    r = cli(after, "import", str(zips[1]))
    members = int(r.stdout.split("database files: ")[1].split()[0])
    assert members > 20
    state_before, state_after = tables(before), tables(after)
    assert state_before["_edx_snapshots"] != state_after["_edx_snapshots"]
    return {"zip": zips[1], "before": before, "state_before": state_before, "state_after": state_after,
            "members": members}


def start(data: Path, package: Path, **hooks: str) -> subprocess.Popen:
    return subprocess.Popen([*ENTRY, "import", str(package), "--data-dir", str(data)], env=env(**hooks),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"still running {timeout} s after SIGINT: {err[-2000:]}")
    return proc.returncode, out, err


def wait_paused(proc: subprocess.Popen, flag: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not flag.exists():
        if proc.poll() is not None:
            raise AssertionError(f"ended before pausing ({proc.returncode}): {proc.stderr.read()}")
        assert time.monotonic() < deadline, "did not reach the pause point"
        time.sleep(0.005)


def assert_interrupted(rc: int, out: str, err: str) -> None:
    assert rc == 130, (rc, out, err)
    assert err.strip().splitlines()[-1:] == [INTERRUPTED], err
    assert "Fatal Python error" not in err and "Traceback" not in err, err
    assert "failed" not in out + err and "database files" not in out, (out, err)  # no summary of a run that stopped


def store_copy(packages: dict, tmp_path: Path) -> Path:
    data = tmp_path / "store"
    shutil.copytree(packages["before"], data)
    cli(data, "tables")  # a copied store's views point to its own files
    return data


def rerun_imports_everything(packages: dict, data: Path) -> None:
    r = cli(data, "import", str(packages["zip"]))
    assert f"database files: {packages['members']} ({packages['members']} loaded" in r.stdout, r.stdout + r.stderr
    assert tables(data) == packages["state_after"]


@pytest.mark.parametrize("n", [1, 5, "last"])
def test_interrupt_reported_by_duckdb_as_an_error_commits_nothing(n, packages, tmp_path):
    """The tester's case: Ctrl-C inside a member's DuckDB checks, turned into ``RuntimeError: Query
    interrupted``. Before the fix: "failed ...: cannot read the file (RuntimeError: Query interrupted)",
    the other members committed, then the false `interrupted` line and exit 130."""
    data = store_copy(packages, tmp_path)
    at = packages["members"] - 8 if n == "last" else n  # a few members are not read (unchanged courses, markers)
    proc = start(data, packages["zip"], EDX_ENGINE_TEST_SIGINT_AT=f"package-file:{at}")
    assert_interrupted(*finish(proc))
    assert tables(data) == packages["state_before"]
    rerun_imports_everything(packages, data)


@pytest.mark.parametrize("stage", ["package-file:1", "package-file:12", "package-commit"])
def test_sigint_while_paused_commits_nothing(stage, packages, tmp_path):
    data = store_copy(packages, tmp_path)
    flag = tmp_path / "paused"
    proc = start(data, packages["zip"], EDX_ENGINE_TEST_PAUSE_AT=stage, EDX_ENGINE_TEST_PAUSE_FILE=str(flag))
    wait_paused(proc, flag)
    proc.send_signal(signal.SIGINT)
    assert_interrupted(*finish(proc))
    assert tables(data) == packages["state_before"]
    rerun_imports_everything(packages, data)


@pytest.mark.parametrize("member,delay", [(1, 0.0), (6, 0.01), (6, 0.03), (7, 0.0), (20, 0.02)])
def test_timed_sigint_commits_nothing_or_everything(member, delay, packages, tmp_path):
    """SIGINT a moment after the n-th member's snapshot is written: in Arrow's read-ahead of the next
    member (a studentmodule file is several blocks), in DuckDB's checks, or between members."""
    data = store_copy(packages, tmp_path)
    flag = tmp_path / "paused"
    proc = start(data, packages["zip"], EDX_ENGINE_TEST_PAUSE_AT=f"package-file:{member}",
                 EDX_ENGINE_TEST_PAUSE_FILE=str(flag))
    wait_paused(proc, flag)
    flag.unlink()
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    rc, out, err = finish(proc)
    if rc == 130:
        assert_interrupted(rc, out, err)
        assert tables(data) == packages["state_before"]
        rerun_imports_everything(packages, data)
    else:  # the import ended before the signal arrived
        assert rc in (0, 2) and "Fatal Python error" not in err, (rc, out, err)
        assert tables(data) == packages["state_after"]


FINALIZER = r'''
import os, signal, sys, time
import edx_engine.cli as cli

class Finalized:
    """Like ZipFile.__del__: Python code run by garbage collection, where Ctrl-C arrives."""
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:  # bytecode in the finalizer: the handler runs here
            pass
        sys.stdout.write("finalizer-ended\n")

def command():
    Finalized()  # collected at once
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the interrupt must reach the command, not die in __del__
        pass
    sys.stdout.write("command-ended\n")

cli.app = command
cli.main()
'''


def test_ctrl_c_inside_a_finalizer_ends_as_one_line_not_exception_ignored():
    """An interrupt that lands in a finalizer (ZipFile.__del__ at garbage collection, seen in CI 1 run
    in ~30 of the timed test) printed "Exception ignored in ... Traceback ... KeyboardInterrupt" and
    was dropped there; now it reaches the command, which ends with the one line and exit 130."""
    r = subprocess.run([sys.executable, "-c", FINALIZER], env=env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 130, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == "finalizer-ended\n", r.stdout  # the finalizer ran to its end, the command did not
    assert r.stderr.strip().splitlines() == [INTERRUPTED], r.stderr


def test_sigterm_to_the_group_stops_a_parallel_import_without_worker_tracebacks(tmp_path):
    """systemd's stop sends SIGTERM to every process of the group. The workers of `import --jobs` inherited
    the CLI's handler, which raises: a worker waiting for a file died with "Process ForkProcess-N:
    Traceback ... KeyboardInterrupt", and one such run hung (helper-71). Here the driver holds after its
    first log's commit, so the other workers are done or waiting when the signal arrives."""
    from test_events import ev, write_log

    logs = tmp_path / "logs"
    for day in range(10, 14):
        write_log(logs, [ev(session=f"{day}-{i}", time=f"2016-10-{day}T10:00:{i:02d}Z") for i in range(40)],
                  date=f"2016-10-{day}")
    flag = tmp_path / "paused"
    proc = subprocess.Popen([*ENTRY, "import", str(logs), "--jobs", "3", "--data-dir", str(tmp_path / "d")],
                            env=env(EDX_ENGINE_TEST_PAUSE_AT="events-file", EDX_ENGINE_TEST_PAUSE_FILE=str(flag)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_paused(proc, flag)
    time.sleep(0.5)  # the other workers finish their files and wait
    os.killpg(proc.pid, signal.SIGTERM)
    rc, out, err = finish(proc)
    assert rc == 130, (rc, out, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1:] == [INTERRUPTED], err
