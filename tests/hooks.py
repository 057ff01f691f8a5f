"""Deterministic pause points for crash tests, loaded by ``edx_engine/_hooks.py`` only when the
environment asks for them (the package ships no test code).

``EDX_ENGINE_TEST_PAUSE_AT="stage[:n][,stage[:n]...]"`` makes the process stop the n-th time
(default: the first) it reaches ``stage``; it writes ``"<pid> <stage>"`` to
``EDX_ENGINE_TEST_PAUSE_FILE`` and sleeps until that file is removed (or 120 s pass), so
a test can SIGKILL it exactly there, or change the world (stop the S3 server) and let it go on.

Stages: ``list`` (after listing), ``download`` (mid-download: after the first chunk of a
multipart download, or before a single-request download), ``downloaded`` (file complete,
ledger not yet updated), ``import`` (before the import), ``imported`` (import committed,
ledger not yet updated). Any writer: ``package-commit`` (a package's snapshots written, not yet
committed), ``import-packages`` (packages committed, logs not started), ``events-file`` (a log
committed), ``scrub-file`` (a file rewritten), ``scrub-commit`` (every file rewritten, not yet
committed), ``scrub-committed`` (committed, the old files not yet deleted); tests/test_faults.py.
``package-file`` (a package member's snapshot written, its DuckDB checks not yet run; once per
member that was read): tests/test_interrupt.py. ``dashboard-publish`` (a site rendered, not yet
put in place): tests/test_dashboard_reuse.py.

``EDX_ENGINE_TEST_SIGINT_AT="stage[:n]"`` makes the process send itself SIGINT the n-th time it
reaches ``stage`` and report it the way DuckDB reports a Ctrl-C that arrives during a query: the
Python handler runs (the CLI's raises KeyboardInterrupt), and DuckDB swallows that exception and
raises ``RuntimeError: Query interrupted`` instead. ``EDX_ENGINE_TEST_SIGNAL=TERM`` sends SIGTERM
instead (systemd's and docker's stop). ``build-model``: a model about to be built.
"""

from __future__ import annotations

import os
import time
from collections import Counter

_hits: Counter[str] = Counter()


def _wanted() -> dict[str, int]:
    spec = os.environ.get("EDX_ENGINE_TEST_PAUSE_AT", "")
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        stage, _, n = part.partition(":")
        out[stage] = int(n or 1)
    return out


def _wanted_sigint() -> tuple[str, int] | None:
    spec = os.environ.get("EDX_ENGINE_TEST_SIGINT_AT", "").strip()
    if not spec:
        return None
    stage, _, n = spec.partition(":")
    return stage, int(n or 1)


def _sigint_as_duckdb(stage: str) -> None:
    import signal

    sig = signal.SIGTERM if os.environ.get("EDX_ENGINE_TEST_SIGNAL") == "TERM" else signal.SIGINT
    try:
        signal.raise_signal(sig)  # the handler runs before raise_signal returns
        time.sleep(0.05)  # (a handler that only sets a flag lets the sleep end)
    except KeyboardInterrupt:
        raise RuntimeError("Query interrupted") from None  # what duckdb's Python client raises
    raise RuntimeError("Query interrupted")


def pause(stage: str) -> None:
    sigint = _wanted_sigint()
    wanted = _wanted()
    if stage not in wanted and (sigint is None or sigint[0] != stage):
        return
    _hits[stage] += 1
    if sigint is not None and sigint[0] == stage and _hits[stage] == sigint[1]:
        _sigint_as_duckdb(stage)
    if stage not in wanted or _hits[stage] != wanted[stage]:
        return
    flag = os.environ.get("EDX_ENGINE_TEST_PAUSE_FILE")
    if not flag:
        return
    with open(flag + ".tmp", "w") as f:
        f.write(f"{os.getpid()} {stage}\n")
    os.replace(flag + ".tmp", flag)
    deadline = time.monotonic() + 120
    while os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.02)
