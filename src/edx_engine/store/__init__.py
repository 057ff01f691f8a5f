"""The store: the only code that knows the data directory (its files, its tables, its views).

It imports no stage (ingest, models, geo, privacy, fetch, reports, dashboard, cli): stages
compute and hand files to it; ``pipeline/`` chains the stages. See docs/architecture.md.

The names below are loaded on first use (PEP 562): ``from edx_engine.store import Lake`` loads
DuckDB, but importing ``edx_engine.store.errors`` (the CLI's exceptions) does not."""

from __future__ import annotations

from .errors import CatalogBusy, LedgerBusy, StoreBusy, StoreMoved, StoreWriteError

__all__ = ["Lake", "StoreBusy", "StoreMoved", "CatalogBusy", "StoreWriteError", "Snapshot", "QuarantineFile",
           "Ledger", "LedgerBusy"]

def __getattr__(name: str):
    if name in ("Lake", "Snapshot", "QuarantineFile"):
        from . import lake as module
    elif name == "Ledger":
        from . import ledger as module  # type: ignore[no-redef]
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value
