"""The sync ledger: what was found in S3, downloaded, imported or failed, and every sync run.

Two bookkeeping tables live in the store's DuckDB catalog (``<data_dir>/edx.duckdb``):

``_edx_ledger``  one row per S3 object (bucket, key)::

    bucket, key            the object's identity
    kind                   packages | events
    org, object_date, site from the key's name (object_date is the package or log date)
    size, etag             as listed by S3; a change of either means the object changed
    last_modified          as listed by S3
    sha256                 checksum of the downloaded bytes (still encrypted)
    state                  listed | downloaded | imported | failed | gone (deleted from S3 before import)
    rows, rejected         rows loaded / lines rejected by the import of this object
    error                  why it failed (or why the last attempt did not finish); never secrets
    local_path             the downloaded file while it is kept (relative to the data dir)
    first_seen, listed_at, downloaded_at, decrypted_at, imported_at, failed_at
    attempts               download/import attempts since the object (or its version) was first seen
    changes                how many times the object was replaced in S3 after it was first seen
    run_id                 the sync run that touched it last

``_edx_sync_runs`` one row per sync: run_id, pid, started_at, ended_at, status
(running | ok | partial | failed | interrupted), options, counters and the one-line summary.

Every update is one short statement in its own connection so that other readers
(``edx-engine status``) are not locked out for the length of a sync; DuckDB's file lock is
retried for a while when another process holds the catalog.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import duckdb

from ..clock import now
from . import catalog
from .connection import open_database
from .lake import CATALOG
from .errors import LedgerBusy  # noqa: F401 (its old home)

STATES = ("listed", "downloaded", "imported", "failed", "gone")

LEDGER_COLUMNS = ("bucket", "key", "kind", "org", "object_date", "site", "size", "etag", "last_modified", "sha256",
                  "state", "rows", "rejected", "error", "local_path", "first_seen", "listed_at", "downloaded_at",
                  "decrypted_at", "imported_at", "failed_at", "attempts", "changes", "run_id")


@dataclass
class Entry:
    bucket: str
    key: str
    kind: str | None = None
    org: str | None = None
    object_date: str | None = None
    site: str | None = None
    size: int | None = None
    etag: str | None = None
    last_modified: dt.datetime | None = None
    sha256: str | None = None
    state: str = "listed"
    rows: int | None = None
    rejected: int | None = None
    error: str | None = None
    local_path: str | None = None
    first_seen: dt.datetime | None = None
    listed_at: dt.datetime | None = None
    downloaded_at: dt.datetime | None = None
    decrypted_at: dt.datetime | None = None
    imported_at: dt.datetime | None = None
    failed_at: dt.datetime | None = None
    attempts: int = 0
    changes: int = 0
    run_id: str | None = None


def _is_lock_error(exc: Exception) -> bool:
    msg = str(exc)
    return "lock" in msg.lower() and ("Could not set lock" in msg or "Conflicting lock" in msg)


class Ledger:
    def __init__(self, data_dir: str | Path, lock_timeout: float = 120.0):
        self.root = Path(data_dir)
        self.path = self.root / CATALOG
        self.lock_timeout = lock_timeout

    # -- connections ---------------------------------------------------------------------
    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.05
        while True:
            try:
                if not read_only:
                    self.root.mkdir(parents=True, exist_ok=True)
                con = open_database(self.path, read_only=read_only)
                break
            except (duckdb.IOException, duckdb.ConnectionException) as exc:
                if not _is_lock_error(exc) or time.monotonic() > deadline:
                    if _is_lock_error(exc):
                        raise LedgerBusy(f"the catalog {self.path} is locked by another process") from None
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        try:
            catalog.check_format(catalog.get_meta(con, catalog.FORMAT_META), self.path)
            yield con
        finally:
            con.close()

    def exists(self) -> bool:
        if not self.path.exists():
            return False
        with self.connect(read_only=True) as con:
            return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name='_edx_ledger'").fetchone()[0])

    def init(self, con: duckdb.DuckDBPyConnection | None = None) -> None:
        if con is None:
            with self.connect() as c:
                return self.init(c)
        catalog.ensure(con, catalog.LEDGER)

    # -- objects -----------------------------------------------------------------------
    def entries(self, con: duckdb.DuckDBPyConnection | None = None) -> dict[tuple[str, str], Entry]:
        if con is None:
            with self.connect() as c:
                return self.entries(c)
        rows = con.execute(f"SELECT {', '.join(LEDGER_COLUMNS)} FROM _edx_ledger").fetchall()
        return {(r[0], r[1]): Entry(*r) for r in rows}

    def upsert(self, *entries: Entry) -> None:
        """Write entries (replacing any of the same object), all in one transaction."""
        cols = ", ".join(LEDGER_COLUMNS)
        marks = ", ".join("?" for _ in LEDGER_COLUMNS)
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            for e in entries:
                con.execute("DELETE FROM _edx_ledger WHERE bucket=? AND key=?", [e.bucket, e.key])
                con.execute(f"INSERT INTO _edx_ledger ({cols}) VALUES ({marks})", [getattr(e, c) for c in LEDGER_COLUMNS])
            con.execute("COMMIT")

    def update(self, bucket: str, key: str, **fields: Any) -> None:
        for k in fields:
            if k not in LEDGER_COLUMNS:
                raise KeyError(k)
        sets = ", ".join(f"{k}=?" for k in fields)
        with self.connect() as con:
            con.execute(f"UPDATE _edx_ledger SET {sets} WHERE bucket=? AND key=?", [*fields.values(), bucket, key])

    # -- runs ----------------------------------------------------------------------------
    def begin(self, options: dict[str, Any]) -> tuple[str, dict[tuple[str, str], Entry]]:
        """``init``, ``start_run`` and ``entries`` through one connection (each connection is a new DuckDB
        instance and, once written, a checkpoint: ~40 ms): the new run's id and the ledger's entries."""
        with self.connect() as con:
            self.init(con)
            return self.start_run(options, con), self.entries(con)

    def start_run(self, options: dict[str, Any], con: duckdb.DuckDBPyConnection | None = None) -> str:
        if con is None:
            with self.connect() as c:
                return self.start_run(options, c)
        run_id = now().strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        # We hold the sync lock: a run still marked 'running' belongs to a process that died.
        con.execute("UPDATE _edx_sync_runs SET status='interrupted', "
                    "summary=coalesce(summary, 'the process ended without finishing (killed or crashed)') "
                    "WHERE status='running'")
        con.execute("INSERT INTO _edx_sync_runs (run_id, pid, host, started_at, status, options) "
                    "VALUES (?,?,?,?,?,?)",
                    [run_id, os.getpid(), os.uname().nodename, now(), "running", json.dumps(options)])
        return run_id

    def end_run(self, run_id: str, status: str, counts: dict[str, int], summary: str,
                con: duckdb.DuckDBPyConnection | None = None) -> None:
        if con is None:
            with self.connect() as c:
                return self.end_run(run_id, status, counts, summary, c)
        keys = ("listed", "new", "downloaded", "imported", "failed", "pending", "rows", "rejected", "bytes")
        con.execute("UPDATE _edx_sync_runs SET ended_at=?, status=?, summary=?, "
                    + ", ".join(f"{k}=?" for k in keys) + " WHERE run_id=?",
                    [now(), status, summary, *[int(counts.get(k, 0)) for k in keys], run_id])
