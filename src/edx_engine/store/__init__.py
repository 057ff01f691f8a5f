"""The store: the only code that knows the data directory (its files, its tables, its views).

It imports no stage (ingest, models, geo, privacy, fetch, reports, dashboard, cli): stages
compute and hand files to it; ``pipeline/`` chains the stages. See docs/architecture.md."""

from .lake import CatalogBusy, Lake, QuarantineFile, Snapshot, StoreBusy, StoreMoved, StoreWriteError
from .ledger import Ledger, LedgerBusy

__all__ = ["Lake", "StoreBusy", "StoreMoved", "CatalogBusy", "StoreWriteError", "Snapshot", "QuarantineFile",
           "Ledger", "LedgerBusy"]
