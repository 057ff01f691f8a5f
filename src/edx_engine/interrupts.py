"""Ctrl-C (SIGINT) seen by this process, whatever a library turned it into.

The CLI's SIGINT handler raises KeyboardInterrupt, but the exception does not always reach the
code that should stop: DuckDB runs the handler inside a query and raises ``RuntimeError: Query
interrupted`` instead, pyarrow may raise its own error, and a gpg child that got the same
SIGINT from the terminal makes the file's decryption fail. A per-file ``except Exception``
would then record one failed file and the run would go on to commit the rest of the package.
So the handler also sets a flag here (``note``); a per-file handler calls ``check`` before it
records a failure, and every catalog transaction calls it before COMMIT: once Ctrl-C was
seen, nothing more is committed and the run ends with KeyboardInterrupt (exit 130).
"""

from __future__ import annotations

_seen = False


def note() -> None:
    """Remember that an interrupt arrived (called by the signal handler)."""
    global _seen
    _seen = True


def seen() -> bool:
    return _seen


def reset() -> None:
    """Forget an earlier interrupt (a new command run in the same process)."""
    global _seen
    _seen = False


def check() -> None:
    """Raise KeyboardInterrupt if an interrupt arrived, even if it was reported as another error."""
    if _seen:
        raise KeyboardInterrupt
