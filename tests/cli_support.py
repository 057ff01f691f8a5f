"""Run the CLI in this test process, with the environment, working directory and result of a subprocess.

A CLI subprocess costs 0.4-1 CPU-s before it does any work (the interpreter, typer, DuckDB, Arrow, boto3
and its S3 model); the suite ran about 200 of them. Where the process boundary is not what a test
checks (kill -9, two processes holding the lock or the catalog, the passphrase in other processes'
argv, a fresh interpreter's imports), the tests run the same commands here: the same entry point, the same
arguments and environment, stdout and stderr kept apart, an uncaught exception turned into the
traceback and exit code 1 that Python would print and return."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path

from typer.testing import CliRunner

from edx_engine.cli import main


def run_cli(args: list[str], env: dict[str, str] | None = None, cwd: str | Path | None = None,
            input: str | None = None) -> subprocess.CompletedProcess:
    """``edx-engine *args`` in process, like ``subprocess.run(["edx-engine", *args], env=env, cwd=cwd,
    capture_output=True, text=True)``: the console entry point (``main``: its one-line errors for a busy
    store and an interruption included); ``env`` is the whole environment (variables of this process it
    lacks are unset for the run), ``cwd`` the working directory."""
    args = [str(a) for a in args]
    overrides: dict[str, str | None] = {}
    if env is not None:
        overrides = {k: None for k in os.environ if k not in env}
        overrides.update({k: v for k, v in env.items() if os.environ.get(k) != v})
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    here, argv = os.getcwd(), sys.argv
    code, tb = 0, ""
    try:
        if cwd is not None:
            os.chdir(cwd)
        with CliRunner().isolation(input=input, env=overrides) as streams:
            sys.argv = ["edx-engine", *args]
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                if not isinstance(exc.code, (int, type(None))):
                    sys.stderr.write(f"{exc.code}\n")
            except BaseException as exc:  # what the interpreter would print, and its exit code
                tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
            out, err = streams[0].getvalue(), streams[1].getvalue()
    finally:
        sys.argv = argv
        os.chdir(here)
        for s, h in handlers.items():  # `main` and `sync` install signal handlers for their run
            signal.signal(s, h)
    return subprocess.CompletedProcess(["edx-engine", *args], code, out.decode(), err.decode() + tb)


def wait_group_gone(pgid: int, timeout: float = 30.0) -> None:
    """After a kill -9 of a process group: wait until none of its processes still runs (gpg and other
    children die a moment after the command), so that the next command does not meet them. Zombies
    do not count: they hold nothing."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = False
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
                alive = True
                break
        if not alive:
            return
        time.sleep(0.01)


def kill_group(proc: subprocess.Popen) -> None:
    """kill -9 a command started with ``start_new_session`` and everything it started (gpg, forked
    workers), wait until none of them runs, and close its pipes."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    wait_group_gone(proc.pid)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
