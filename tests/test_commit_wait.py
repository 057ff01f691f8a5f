"""Commits that meet another program or a full disk (issue 11, items 4 and 6).

A read-only DuckDB session opened by another process blocks writers of the catalog. An import
that has started waits for it (``[store] commit_wait_seconds``), says so in one line, and ends
with the same store as a clean import; if the wait runs out it says that nothing was committed
and the parsed work was discarded. A disk that fills up during a commit is one line, exit 1,
and the store is as before. The other process is real (a Python process holding a DuckDB
connection); the full disk is a real tmpfs mounted for the test (root only).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

import cli_support
from edx_engine.config import Settings
from edx_engine.ingest.run import import_paths
from edx_engine.synthetic import SyntheticConfig, generate

from test_sync import counts

ENTRY = [sys.executable, "-c", "import sys; from edx_engine.cli import app; sys.exit(app())"]
HOLD = ("import duckdb, select, sys\n"
        "c = duckdb.connect(sys.argv[1], read_only=True)\n"
        "c.execute('SELECT count(*) FROM _edx_meta').fetchall()\n"
        "print('ready', flush=True)\n"
        "select.select([sys.stdin], [], [], float(sys.argv[2]))\n")  # until released (a line) or the time is up


def hold(catalog: Path, seconds: float) -> subprocess.Popen:
    """Another process holding a read-only connection on the catalog for ``seconds``, or until
    :func:`release` is called."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(catalog), str(seconds)], stdout=subprocess.PIPE,
                         stdin=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


def release(p: subprocess.Popen) -> int:
    """Let a holder go now; its exit status."""
    assert p.stdin is not None
    p.stdin.write("go\n")
    p.stdin.close()
    return p.wait(30)


@pytest.fixture(scope="module")
def delivery(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("wait-delivery")
    generate(base, SyntheticConfig(org="IDBx", seed=5, courses=1, learners=20, days=2, malformed=False))
    return base


def _env(env: dict | None) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith("EDX_ENGINE_") or k == "EDX_ENGINE_SQL_CACHE"}
    e.update(COLUMNS="400", **(env or {}))  # messages on one line
    return e


def cli(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    """A command as a real process, running while the test holds the catalog or fills the disk."""
    return subprocess.Popen([*ENTRY, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(env),
                            **kw)


def run_cli(*args: str, env: dict | None = None) -> tuple[int, str, str]:
    """A command run to its end with nothing held: in this process (cli_support.run_cli)."""
    r = cli_support.run_cli(list(args), env=_env(env))
    return r.returncode, r.stdout, r.stderr


@pytest.fixture(scope="module")
def clean(delivery, tmp_path_factory) -> dict[str, int]:
    """Row counts of every view after a clean import of the delivery (package and logs)."""
    data = tmp_path_factory.mktemp("clean") / "d"
    rc, out, err = run_cli("import", str(delivery / "course-data"), str(delivery / "edx-course-data"),
                           "--data-dir", str(data))
    assert rc == 0, out + err
    return counts(data)


def config(tmp: Path, seconds: float) -> Path:
    p = tmp / "edx-engine.toml"
    p.write_text(f"[store]\ncommit_wait_seconds = {seconds}\n")
    return p


def paused(stage: str, flag: Path) -> dict:
    return {"EDX_ENGINE_TEST_PAUSE_AT": stage, "EDX_ENGINE_TEST_PAUSE_FILE": str(flag)}


def wait_for(flag: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not flag.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "the import never reached its pause point"
        time.sleep(0.05)


def lake_files_unreferenced(data: Path) -> list[str]:
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        refs = {r[0] for r in con.execute("SELECT path FROM _edx_event_parts UNION ALL SELECT path FROM "
                                          "_edx_snapshots UNION ALL SELECT path FROM _edx_quarantine_files").fetchall()}
    return sorted(p.relative_to(data).as_posix() for p in (data / "lake").rglob("*")
                  if p.is_file() and p.relative_to(data).as_posix() not in refs)


# --- item 4: a reader's open connection -------------------------------------------------------------

def test_import_waits_for_readers_and_ends_like_a_clean_import(delivery, clean, tmp_path):
    """Readers open the catalog while the package is being imported and between two log files;
    every commit waits for them and the store ends as a clean import's."""
    data = tmp_path / "d"
    catalog = data / "edx.duckdb"
    settings = Settings(data_dir=data, file={"store": {"commit_wait_seconds": 60}})
    holders: list[subprocess.Popen] = []
    waits: list[str] = []

    def on_file(result) -> None:
        is_event = hasattr(result, "source_key")
        if not holders or (is_event and len(holders) == 1):  # first package member; first log file committed
            holders.append(hold(catalog, 2.5))

    exports, events = import_paths(settings, [delivery / "course-data", delivery / "edx-course-data"],
                                   on_file=on_file, on_wait=waits.append)
    assert [h.wait(30) for h in holders] == [0, 0]
    assert not exports.failed and not events.failed and len(events.files) == 2
    assert counts(data) == clean
    event_wait = [w for w in waits if "to commit" in w and "idbx-edx-events-" in w]
    assert len(event_wait) == 1, waits
    assert re.fullmatch(rf"waiting for {re.escape(str(catalog))} \(open in another program \(python[\w.]*, "
                        rf"PID {holders[1].pid}\)\) to commit .*idbx-edx-events-.*… \(up to 60 s\)", event_wait[0])
    assert any(f"PID {holders[0].pid}" in w for w in waits), waits  # the package's writes waited too


def test_cli_waits_then_gives_up_with_a_clear_line_and_the_rerun_matches(delivery, clean, tmp_path):
    logs = delivery / "edx-course-data"
    data, flag = tmp_path / "d", tmp_path / "pause"
    rc, out, err = run_cli("import", str(delivery / "course-data"), "--data-dir", str(data))
    assert rc == 0, out + err

    # 1. a reader opens the catalog when the first log file is about to commit, for 1.5 s: the import waits
    p = cli("import", str(logs), "--data-dir", str(data), "--config", str(config(tmp_path, 60)),
            env=paused("events-commit", flag))
    wait_for(flag, p)
    h = hold(data / "edx.duckdb", 1.5)
    flag.unlink()
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0 and h.wait(30) == 0, out + err
    waits = [ln for ln in err.splitlines() if ln.startswith("waiting for")]
    assert len(waits) == 1 and re.match(rf"waiting for \S+edx\.duckdb \(open in another program \(python[\w.]*, "
                                        rf"PID {h.pid}\)\) to commit \S+idbx-edx-events-", waits[0]), err
    assert counts(data) == clean

    # 2. the wait runs out (1 s; the reader stays until the import has ended): one line saying nothing was
    #    committed, exit 1
    data2 = tmp_path / "d2"
    assert run_cli("import", str(delivery / "course-data"), "--data-dir", str(data2))[0] == 0
    before = counts(data2)
    p = cli("import", str(logs), "--data-dir", str(data2), "--config", str(config(tmp_path, 1)),
            env=paused("events-commit", flag))
    wait_for(flag, p)
    h = hold(data2 / "edx.duckdb", 60)
    flag.unlink()
    out, err = p.communicate(timeout=120)
    assert p.returncode == 1 and "Traceback" not in err, out + err
    said = [ln for ln in err.splitlines() if ln.strip()]
    assert len(said) == 2 and said[0].startswith("waiting for") and said[1].startswith("error: could not commit"), err
    assert "parsed work was discarded" in said[1] and "close the other program and run again" in said[1] \
        and f"PID {h.pid}" in said[1], err
    assert release(h) == 0
    assert counts(data2) == before  # nothing of the logs committed
    assert lake_files_unreferenced(data2) == []  # its parsed parts deleted, not left in the lake
    rc, out, err = run_cli("import", str(logs), "--data-dir", str(data2))
    assert rc == 0, out + err
    assert counts(data2) == clean


def test_bad_commit_wait_setting_fails_before_any_work(delivery, tmp_path):
    conf = tmp_path / "bad.toml"
    conf.write_text('[store]\ncommit_wait_seconds = "soon"\n')
    rc, out, err = run_cli("import", str(delivery / "edx-course-data"), "--data-dir", str(tmp_path / "d"),
                           "--config", str(conf))
    assert rc == 1 and "commit_wait_seconds" in err and "Traceback" not in err, err
    assert not (tmp_path / "d" / "edx.duckdb").exists()


# --- item 6: the disk fills up during the commit ------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 48 MB tmpfs (a real file system that can fill up), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; a full disk cannot be made otherwise here")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path) -> Path:
    """Fill the file system to the last byte; returns the filler file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def test_full_disk_during_the_commit_is_one_line_and_the_store_is_intact(delivery, clean, small_disk):
    data, flag = small_disk / "d", small_disk.parent / "pause"
    rc, out, err = run_cli("import", str(delivery / "course-data"), "--data-dir", str(data))
    assert rc == 0, out + err
    before = counts(data)
    # --jobs 1: with worker processes, the second file's parse could still be writing parts when the disk
    # is filled; its failure then frees its partial parts, and the paused commit finds room after all.
    p = cli("import", str(delivery / "edx-course-data"), "--data-dir", str(data), "--jobs", "1",
            env=paused("events-commit", flag))
    wait_for(flag, p)
    filler = fill(small_disk)
    flag.unlink()
    out, err = p.communicate(timeout=120)
    assert p.returncode == 1, out + err
    assert "Traceback" not in err and "cannot rollback" not in err, err
    msg = " ".join(err.split())
    assert msg.startswith("error: could not commit") and "no space left on device" in msg \
        and "nothing was committed" in msg and msg.count("error:") == 1, err
    filler.unlink()
    assert counts(data) == before  # intact: the package as before, no event
    rc, out, err = run_cli("import", str(delivery / "edx-course-data"), "--data-dir", str(data))
    assert rc == 0, out + err
    assert counts(data) == clean
    assert lake_files_unreferenced(data) == []
