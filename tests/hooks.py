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


def pause(stage: str) -> None:
    wanted = _wanted()
    if stage not in wanted:
        return
    _hits[stage] += 1
    if _hits[stage] != wanted[stage]:
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
