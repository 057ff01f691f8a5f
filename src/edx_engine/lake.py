"""compatibility alias; import from edx_engine.store"""

from .store.lake import *  # noqa: F401,F403
from .store.lake import CATALOG, QUARANTINE_COLUMNS, CatalogBusy, Lake, Snapshot, QuarantineFile, StoreBusy, \
    StoreMoved, StoreWriteError, LAKE_FILE_OWNERS, _sql_list  # noqa: F401
