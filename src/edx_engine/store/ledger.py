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
                           | skipped (set aside by an operator: ``edx-engine skip``; left alone by every
                           sync until the object changes in S3)
    rows, rejected         rows loaded / lines rejected by the import of this object
    error                  why it failed (or why the last attempt did not finish); never secrets
    local_path             the downloaded file while it is kept (relative to the data dir)
    first_seen, listed_at, downloaded_at, decrypted_at, imported_at, failed_at
                           (imported_at: the last import of any version, kept when the object changes)
    attempts               download/import attempts since the object (or its version) was first seen
    changes                how many times the object was replaced in S3 after it was first seen
    run_id                 the sync run that touched it last
    skipped_at, skipped_by, skip_reason, skipped_from
                           who set the object aside, when, why, and the state it had (``--undo``
                           restores it); meaningful only while the state is ``skipped``

``_edx_sync_runs`` one row per sync: run_id, pid, started_at, ended_at, status
(running | ok | partial | failed | interrupted), options, counters and the one-line summary.

Every update is one short statement in its own connection so that other readers
(``edx-engine status``) are not locked out for the length of a sync; DuckDB's file lock is
retried for a while when another process holds the catalog.
"""

from __future__ import annotations

import datetime as dt
import getpass
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
from .errors import DiskFull, LedgerBusy, is_disk_full  # noqa: F401 (LedgerBusy: its old home)

STATES = ("listed", "downloaded", "imported", "failed", "gone", "skipped")

SKIP_COLUMNS = ("skipped_at", "skipped_by", "skip_reason", "skipped_from")
LEDGER_COLUMNS = ("bucket", "key", "kind", "org", "object_date", "site", "size", "etag", "last_modified", "sha256",
                  "state", "rows", "rejected", "error", "local_path", "first_seen", "listed_at", "downloaded_at",
                  "decrypted_at", "imported_at", "failed_at", "attempts", "changes", "run_id", *SKIP_COLUMNS)


NO_LEDGER = "there is no sync ledger in {} (no sync has run there): nothing to skip"


class SkipError(ValueError):
    """``skip``/``unskip`` refused: no such object, already imported, not skipped (one line, nothing changed)."""


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
    skipped_at: dt.datetime | None = None
    skipped_by: str | None = None
    skip_reason: str | None = None
    skipped_from: str | None = None


def _url(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def current_user() -> str:
    """Who runs this command, for ``skipped_by``: the login name (``sudo``: "alice (as edx)")."""
    try:
        user = getpass.getuser()
    except Exception:  # no USER/LOGNAME and no passwd entry (a bare container)
        user = f"uid {os.getuid()}"
    real = os.environ.get("SUDO_USER")
    return f"{real} (as {user})" if real and real != user else user


def describe_skip(e: Entry) -> str:
    """"by alice on 2026-10-12 06:00 UTC: reason" for a skipped entry."""
    when = f" on {e.skipped_at:%Y-%m-%d %H:%M} UTC" if e.skipped_at else ""
    return f"by {e.skipped_by or 'unknown'}{when}: {e.skip_reason or 'no reason given'}"


def _select(con: duckdb.DuckDBPyConnection) -> str:
    """LEDGER_COLUMNS as a select list; a column the ledger lacks (made by an older version and opened
    read-only, so not upgraded) reads as NULL."""
    have = catalog._columns_of_table(con, "_edx_ledger")
    return ", ".join(c if c in have else f"NULL AS {c}" for c in LEDGER_COLUMNS)


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
        except Exception as exc:
            if is_disk_full(exc) and not isinstance(exc, DiskFull):  # was a TransactionException traceback
                raise DiskFull(f"could not write the sync ledger in {self.path}: no space left on device; what "
                               f"was imported stays imported and the next sync completes the rest; free some "
                               f"space and run again") from None
            raise
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
        rows = con.execute(f"SELECT {_select(con)} FROM _edx_ledger").fetchall()
        return {(r[0], r[1]): Entry(*r) for r in rows}

    # -- skipping (an operator's way out of an object that can never be imported) ----------
    def skip(self, bucket: str, key: str, reason: str | None = None, by: str | None = None) -> Entry:
        """Set an object aside: state ``skipped`` (the state it had kept in ``skipped_from``), so that no
        sync downloads, imports or reports it until it changes in S3. The entry as it was before; raises
        SkipError for an object the ledger does not know, one already imported, or one already skipped."""
        with self._existing() as con:
            self.init(con)  # a ledger made before the skip columns gains them
            e = self._entry(con, bucket, key)
            if e.state == "imported":
                raise SkipError(f"{_url(bucket, key)} is imported: there is nothing to skip (a skipped object is one "
                                "that cannot be imported)")
            if e.state == "skipped":
                raise SkipError(f"{_url(bucket, key)} is already skipped ({describe_skip(e)}); "
                                "`--undo` makes the next sync retry it")
            con.execute("UPDATE _edx_ledger SET state='skipped', skipped_at=?, skipped_by=?, skip_reason=?, "
                        "skipped_from=? WHERE bucket=? AND key=?",
                        [now(), by or current_user(), reason or None, e.state, bucket, key])
            return e

    def unskip(self, bucket: str, key: str) -> tuple[Entry, str]:
        """Undo ``skip``: the object gets back the state it had (so the next sync retries it) and loses
        its skip columns. The entry as it was (skipped) and its state now; raises SkipError if it is not
        skipped."""
        with self._existing() as con:
            self.init(con)
            e = self._entry(con, bucket, key)
            if e.state != "skipped":
                raise SkipError(f"{_url(bucket, key)} is not skipped (state {e.state}): there is nothing to undo")
            back = e.skipped_from if e.skipped_from in STATES and e.skipped_from not in ("skipped", "imported") \
                else "failed"
            con.execute("UPDATE _edx_ledger SET state=?, skipped_at=NULL, skipped_by=NULL, skip_reason=NULL, "
                        "skipped_from=NULL WHERE bucket=? AND key=?", [back, bucket, key])
            return e, back

    @contextmanager
    def _existing(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A writing connection to a ledger that exists (SkipError, and no store made, when there is none)."""
        missing = SkipError(NO_LEDGER.format(self.root))
        if not self.path.exists():
            raise missing
        with self.connect() as con:
            if not catalog.exists(con, "_edx_ledger"):
                raise missing
            yield con

    def _entry(self, con: duckdb.DuckDBPyConnection, bucket: str, key: str) -> Entry:
        r = con.execute(f"SELECT {_select(con)} FROM _edx_ledger WHERE bucket=? AND key=?", [bucket, key]).fetchone()
        if r is None:
            raise SkipError(f"{_url(bucket, key)} is not in the sync ledger (`edx-engine status` lists the objects "
                            "that failed; the address is s3://BUCKET/KEY as a sync prints it)")
        return Entry(*r)

    def skipped(self, con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
        """The skipped objects, oldest first: url, reason, who, when, the state they had and their last error."""
        if "skip_reason" not in catalog._columns_of_table(con, "_edx_ledger"):
            return []  # a ledger made before skipping existed (opened read-only, not upgraded)
        keys = ("url", "reason", "by", "at", "from", "error")
        return [dict(zip(keys, r)) for r in con.execute(
            "SELECT 's3://' || bucket || '/' || key, skip_reason, skipped_by, skipped_at, skipped_from, error "
            "FROM _edx_ledger WHERE state='skipped' ORDER BY skipped_at, key").fetchall()]

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
