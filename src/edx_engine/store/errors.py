"""The store's exceptions, in a module that imports nothing heavy (no duckdb, no pyarrow).

The CLI catches them in every command; importing them from here keeps ``edx-engine --help`` and
the commands that never open a store from loading DuckDB and Arrow. ``store.lake`` and
``store.ledger`` re-export them (their old homes)."""

from __future__ import annotations


class StoreBusy(Exception):
    """Another process holds the store's write lock."""


class StoreMoved(StoreBusy):
    """A moved or copied store whose views cannot be re-pointed at its own files (files missing).

    A ``StoreBusy`` so that every command reports it as one line, like a busy store."""


class StoreTooNew(StoreBusy):
    """The store was written by a newer edx-engine, in a store format this version does not know
    (``catalog.STORE_FORMAT``): refused before anything is read or written. A ``StoreBusy`` so that
    every command reports it as one line."""


class CatalogBusy(StoreBusy):
    """The catalog stayed open in another program for the whole wait (``Lake.wait_seconds``):
    the write it waited for did not happen."""


class StoreWriteError(Exception):
    """The catalog could not be written (disk full, I/O error): nothing of that transaction was
    committed, the store is as before. The message is one line naming the cause."""


class DiskFull(StoreWriteError):
    """The disk holding the store (or an output) refused a write: no space left, or the quota is used
    up. Never the input's fault: no file is marked failed or quarantined for it. The message is one
    line naming what was being written and saying that nothing half-done was kept."""


_FULL_TEXTS = ("No space left on device", "Disk quota exceeded")


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the disk is full: ENOSPC or EDQUOT as an
    OSError, or in the text DuckDB and Arrow give it (``IOException: ... No space left on device``)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, DiskFull):
            return True
        if getattr(exc, "errno", None) in (28, 122):  # ENOSPC, EDQUOT
            return True
        if any(t in str(exc) for t in _FULL_TEXTS):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def full_path(exc: BaseException) -> str | None:
    """The file a disk-full error names, when it names one (an OSError's, else ``named_file``)."""
    name = getattr(exc, "filename", None)
    return str(name) if name else named_file(str(exc))


def disk_full_cause(exc: BaseException, doing: str = "") -> str:
    """``no space left on device``, then ``doing`` (" while importing X"), then the file being written when
    the error names one: the start of every stage's one line for a full disk."""
    where = full_path(exc)
    return f"no space left on device{doing}" + (f" (writing {where})" if where else "")


def named_file(text: str) -> str | None:
    """The file DuckDB's and Arrow's messages name (``Could not write file "X"``), if any."""
    import re

    m = re.search(r'(?:file|File) "([^"]+)"', text)
    return m.group(1) if m else None


class LedgerBusy(Exception):
    """The catalog is locked by another process for longer than we were willing to wait."""
