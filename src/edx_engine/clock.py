"""The one clock of the catalog: the current time in UTC, as a naive datetime.

DuckDB's ``TIMESTAMP`` columns of the bookkeeping tables hold UTC without a zone; every stage
that stamps a row (ledger, imports, event files, geo, scrub) takes the time from here, so the
stamps agree on the zone and can be compared across tables."""

from __future__ import annotations

import datetime as dt


def now(whole_seconds: bool = False) -> dt.datetime:
    """UTC now without tzinfo; ``whole_seconds`` drops the microseconds (rows stamped in one
    commit then share a stamp that reads well, e.g. the import log's ``logged_at``)."""
    t = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    return t.replace(microsecond=0) if whole_seconds else t
