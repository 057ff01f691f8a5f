"""`edx-engine run`: the unattended daily job refreshes the indicators (issue 10 §2).

Real S3-protocol server on loopback (moto), real gpg; the first `run` is a real subprocess (the
unattended job), the commands after it run in this process (cli_support.run_cli). After each `run`
the models must be exactly what a forced full rebuild gives, and no model may be stale; a plain
`sync` leaves them stale and `report` says so in one line.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from cli_support import run_cli
from test_sync import (ENTRY, cli_args, deliveries, gpg_key, moto, q, s3, sync_env, upload,  # noqa: F401
                       write_config)

from edx_engine.lake import Lake
from edx_engine.models.build import stale_models

MODELS_COMPARED = ("general_report", "learner_day", "person_course", "enrolment_daily", "activity_daily")


def cli(data, conf, env, *args: str, process: bool = False) -> subprocess.CompletedProcess:
    if not process:
        return run_cli(cli_args(data, conf, *args)[len(ENTRY):], env=env)
    return subprocess.run(cli_args(data, conf, *args), env=env, capture_output=True, text=True, timeout=300)


def model_rows(data, name: str) -> list[tuple]:
    return sorted(q(data, f'SELECT * FROM models."{name}"'), key=repr)


def snapshot(data) -> dict[str, list[tuple]]:
    return {m: model_rows(data, m) for m in MODELS_COMPARED}


def test_run_syncs_builds_and_refreshes(s3, moto, deliveries, gpg_key, tmp_path):
    conf, env, data = write_config(tmp_path, moto.url), sync_env(gpg_key), tmp_path / "d"
    upload(s3, deliveries / "A")
    r = cli(data, conf, env, "run", "--no-dashboard", process=True)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "models:" in r.stdout
    assert stale_models(Lake(data)) == []
    first = snapshot(data)
    last_day = q(data, "SELECT max(CAST(time AS DATE)) FROM events")[0][0]
    assert q(data, "SELECT max(date) FROM models.learner_day")[0][0] == last_day

    # a week later: a newer package and three more days of logs arrive; a bare sync leaves the models behind
    upload(s3, deliveries / "B")
    r = cli(data, conf, env, "sync")
    assert r.returncode == 0, r.stderr + r.stdout
    assert stale_models(Lake(data)), "new data must make the models stale"
    rep = cli(data, conf, env, "report", "general", "-o", str(tmp_path / "g.csv"))
    assert rep.returncode == 0, rep.stderr
    warnings = [ln for ln in rep.stderr.splitlines() if "older than the data" in ln]
    assert len(warnings) == 1 and "edx-engine build" in warnings[0], rep.stderr

    # the daily job: nothing new to download, but it builds what the sync brought
    r = cli(data, conf, env, "run", "--no-dashboard")
    assert r.returncode == 0, r.stderr + r.stdout
    assert stale_models(Lake(data)) == []
    refreshed = snapshot(data)
    assert refreshed != first
    new_last = q(data, "SELECT max(CAST(time AS DATE)) FROM events")[0][0]
    assert new_last > last_day
    assert q(data, "SELECT max(date) FROM models.learner_day")[0][0] == new_last
    rep = cli(data, conf, env, "report", "general", "-o", str(tmp_path / "g.csv"))
    assert "older than the data" not in rep.stderr

    # exactly what a full rebuild gives
    r = cli(data, conf, env, "build", "--force")
    assert r.returncode == 0, r.stderr + r.stdout
    assert snapshot(data) == refreshed


def console_run(data, conf, env) -> subprocess.CompletedProcess:
    """`edx-engine run` through the console entry point (``main``: its signal handlers), in a process."""
    args = [sys.executable, "-c", "from edx_engine.cli import main; main()", "run", "--no-dashboard",
            "--data-dir", str(data), "--config", str(conf)]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("signal_name", ["TERM", "INT"])
def test_a_stop_during_the_import_ends_the_run_as_interrupted(signal_name, s3, moto, deliveries, gpg_key, tmp_path):
    """SIGTERM (systemd's or docker's stop) that DuckDB reports as "Query interrupted" inside a package
    member's import: the object was recorded as failed, the sync as partial, and `run` went on to build
    the models and the dashboard (helper-70). Now, as for Ctrl-C: exit 130, one line, the run recorded
    interrupted, no object failed, no build; the next run completes."""
    conf, env, data = write_config(tmp_path, moto.url), sync_env(gpg_key), tmp_path / "d"
    upload(s3, deliveries / "A")
    stopped = dict(env, EDX_ENGINE_TEST_SIGINT_AT="package-file:2", EDX_ENGINE_TEST_SIGNAL=signal_name)
    r = console_run(data, conf, stopped)
    assert r.returncode == 130, r.stderr + r.stdout
    assert "Traceback" not in r.stderr and "models:" not in r.stdout, r.stderr + r.stdout
    assert "interrupted" in r.stderr.strip().splitlines()[-1]
    assert not q(data, "SELECT key FROM _edx_ledger WHERE state = 'failed'")
    assert q(data, "SELECT status FROM _edx_sync_runs ORDER BY started_at DESC LIMIT 1") == [("interrupted",)]
    assert not (data / "lake" / "models").exists()
    r = cli(data, conf, env, "run", "--no-dashboard", process=True)
    assert r.returncode == 0, r.stderr + r.stdout
    assert stale_models(Lake(data)) == []


def test_a_stop_during_the_build_is_one_line_and_exit_130(s3, moto, deliveries, gpg_key, tmp_path):
    """SIGTERM while `run` builds the models gave a traceback and exit 1 (helper-70)."""
    conf, env, data = write_config(tmp_path, moto.url), sync_env(gpg_key), tmp_path / "d"
    upload(s3, deliveries / "A")
    stopped = dict(env, EDX_ENGINE_TEST_SIGINT_AT="build-model:3", EDX_ENGINE_TEST_SIGNAL="TERM")
    r = console_run(data, conf, stopped)
    assert r.returncode == 130, r.stderr + r.stdout
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("interrupted")
    r = cli(data, conf, env, "run", "--no-dashboard", process=True)
    assert r.returncode == 0, r.stderr + r.stdout
    assert stale_models(Lake(data)) == []


def _hold_store_lock(data, seconds: float) -> subprocess.Popen:
    """flock(1) on the store's write lock, as a backup script would hold it; returns once it is held."""
    from edx_engine.store.files import lock_holder

    holder = subprocess.Popen(["flock", str(data / ".lock"), "sleep", str(seconds)])
    deadline = time.monotonic() + 10
    while lock_holder(data / ".lock") is None:
        assert time.monotonic() < deadline, "flock did not take the lock"
        time.sleep(0.02)
    return holder


def test_the_build_waits_for_another_writer(s3, moto, deliveries, gpg_key, tmp_path, monkeypatch):
    """Another process writing to the store (a manual import, a backup holding its lock) made the night's
    build fail at once; it now waits for it, as the sync waits before an import, then builds. A writer that
    outlasts the wait fails the build in one line."""
    import edx_engine.cli.run as run_module

    conf, env, data = write_config(tmp_path, moto.url), sync_env(gpg_key), tmp_path / "d"
    upload(s3, deliveries / "A")
    r = cli(data, conf, env, "sync")
    assert r.returncode == 0, r.stderr + r.stdout
    holder = _hold_store_lock(data, 3)
    try:
        t0 = time.monotonic()
        r = cli(data, conf, env, "run", "--no-dashboard")
        waited = time.monotonic() - t0
    finally:
        holder.kill()
        holder.wait()
    assert r.returncode == 0, r.stderr + r.stdout
    assert "the build waits for it" in r.stderr and "models:" in r.stdout, r.stderr + r.stdout
    assert waited > 1.5
    assert stale_models(Lake(data)) == []

    monkeypatch.setattr(run_module, "STORE_WAIT", 1.0)
    holder = _hold_store_lock(data, 60)
    try:
        r = cli(data, conf, env, "run", "--no-dashboard")
    finally:
        holder.kill()
        holder.wait()
    assert r.returncode == 1, r.stderr + r.stdout
    assert r.stderr.strip().splitlines()[-1].startswith("build failed: another edx-engine process is writing")
    assert "Traceback" not in r.stderr


def test_run_stops_when_sync_cannot_start(tmp_path, gpg_key):
    """No organisation configured: one error line, exit 1, and no build afterwards."""
    conf = tmp_path / "empty.toml"
    conf.write_text("")
    data = tmp_path / "d"
    r = run_cli(["run", "--data-dir", str(data), "--config", str(conf)], env=sync_env(gpg_key))
    assert r.returncode == 1
    assert "no organisation" in r.stderr
    assert "models:" not in r.stdout
    assert not (data / "lake" / "models").exists()


@pytest.mark.parametrize("path", ["deploy/edx-engine-sync.service", "deploy/cron.example", "Dockerfile"])
def test_deploy_files_run_the_whole_daily_job(path):
    """The unattended entry points call `run` (sync + build + dashboard), never a bare `sync`."""
    from pathlib import Path

    text = (Path(__file__).parent.parent / path).read_text()
    commands = [ln for ln in text.splitlines() if ln.startswith(("ExecStart=", "CMD")) or ln[:1].isdigit()]
    assert commands, f"{path} has no command line"
    for ln in commands:
        assert " run" in ln or '"run"' in ln, ln
