"""compatibility alias; import from edx_engine.store"""

from .store.ledger import *  # noqa: F401,F403
from .store.ledger import LEDGER_COLUMNS, STATES, Entry, Ledger, LedgerBusy, now  # noqa: F401
