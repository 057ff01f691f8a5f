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


class LedgerBusy(Exception):
    """The catalog is locked by another process for longer than we were willing to wait."""
