"""Connections to a store's catalog file that do not each start a DuckDB instance.

``duckdb.connect(path)`` starts a new DuckDB instance whenever no connection to that file is open in
the process, and an instance costs ~15–20 ms of CPU to start (DuckDB builds its catalog of functions
and loads its built-in extensions every time). A store opens its catalog a few times for every file
it imports, every ledger update of a sync and every report: that was ~10 % of the test suite's time.

``open_database`` keeps one in-memory DuckDB instance per catalog file and process and ATTACHes the
file to it for as long as one of its connections is open (~3 ms). For other processes nothing
changes: the file lock is taken by the ATTACH and released by the DETACH that follows the last
``close()``, exactly as it was taken and released by the first and last ``duckdb.connect``; the
errors of a locked, missing or foreign file are DuckDB's same ``IOException``\\ s.

What differs from ``duckdb.connect``, and why it does not matter here:

- global settings (``SET threads``, ``memory_limit`` ...) set through one connection would stay for
  the next ones of the same file in this process. The model build, which sets them, and SQL a person
  typed (the sandbox locks the settings) ask for ``fresh=True``: an instance of their own, as before.
- the instance also holds an empty in-memory database ``memory``; every connection starts in the
  catalog (``USE``), so unqualified names are the catalog's.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any

import duckdb

from . import catalog
from .errors import is_disk_full

_LOCK = threading.RLock()
# keys: (process id, resolved path); a forked child makes its own
_SHARED: "OrderedDict[tuple[int, str], _Host]" = OrderedDict()  # in-memory instances kept, least recent first
KEPT = 4  # instances kept for files not open now (~3 MB each): a process that opens many stores stays small
_ACTIVE: dict[tuple[int, str], "_Host"] = {}  # the instance a file is open in now (while it has users)


class _Host:
    """A DuckDB instance a catalog file is open in, and how many connections use it."""

    def __init__(self, fresh_path: str | None = None, read_only: bool = False) -> None:
        self.fresh = fresh_path is not None  # an instance of the file's own (duckdb.connect), closed after use
        self.db = duckdb.connect(fresh_path or ":memory:", read_only=read_only)
        self.users = 0
        self.read_only = read_only
        self.tainted = False  # a fresh connection was given this shared instance: its settings may have changed


def _alias(path: str) -> str:
    # the name duckdb.connect gives the database (the file's stem), so that current_database() is unchanged
    stem = os.path.splitext(os.path.basename(path))[0] or "catalog"
    return stem if stem not in ("memory", "system", "temp") else f"{stem}_catalog"


_quote = catalog.sql_ident


def open_database(path: str | os.PathLike, read_only: bool = False, fresh: bool = False) -> "CatalogConnection":
    """A connection to the DuckDB file ``path``, like ``duckdb.connect(path, read_only=...)``.

    ``fresh``: an instance of its own (``duckdb.connect``), for a connection that changes global
    settings; if the file is already open in this process, that instance is shared instead, as
    ``duckdb.connect`` shares it (and a shared instance whose settings may have changed is not kept).
    A read-only request while the file is open for writing shares the writable attachment (a fresh one
    fails, since it may run SQL a person typed); a writable one while it is open read-only fails, both
    as ``duckdb.connect`` does (``ConnectionException``)."""
    full = os.path.abspath(os.fspath(path))
    key = (os.getpid(), full)
    alias = _alias(full)
    with _LOCK:
        host = _ACTIVE.get(key)
        if host is None:
            if fresh:
                host = _Host(full, read_only)
            else:
                host = _attach(key, full, alias, read_only)
            _ACTIVE[key] = host
        elif host.read_only != read_only and (fresh or host.read_only):
            # as duckdb.connect: a writer is refused while the file is open read-only, and so is a fresh
            # read-only connection (SQL a person typed) while it is open for writing: it could write
            raise duckdb.ConnectionException(
                f"Connection Error: Can't open a connection to same database file with a different configuration "
                f"than existing connections ({full} is open {'read-only' if host.read_only else 'for writing'} "
                f"in this process)")
        host.tainted = host.tainted or (fresh and not host.fresh)
        # counted at once: a dropped connection the garbage collector closes meanwhile (in this thread,
        # which holds the lock already) must not let the file go under this one
        host.users += 1
        cur = None
        try:
            cur = host.db.cursor()
            if not host.fresh:
                cur.execute(f"USE {_quote(alias)}")
            return CatalogConnection(cur, (key, host), alias)
        except BaseException:
            if cur is not None:
                cur.close()
            host.users -= 1
            if host.users == 0:
                _release(key, host, alias)
            raise


def _attach(key: tuple[int, str], full: str, alias: str, read_only: bool) -> _Host:
    """The process' in-memory instance with the file attached; or, when a DuckDB instance opened outside
    this module (``duckdb.connect`` in a notebook) holds the file, a connection to that one, which
    ``duckdb.connect`` shares as it always did (DuckDB refuses to ATTACH a file another instance has)."""
    host = _SHARED.get(key)
    if host is None:
        host = _SHARED[key] = _Host()
    try:
        host.db.execute(f"ATTACH {catalog.sql_str(full)} AS {_quote(alias)}{' (READ_ONLY)' if read_only else ''}")
    except duckdb.BinderException as exc:
        if "already attached" not in str(exc):
            raise
        return _Host(full, read_only)
    host.read_only = read_only
    return host


def _release(key: tuple[int, str], host: _Host, alias: str) -> None:
    """The file's last connection closed: close its own instance, or detach it from the shared one."""
    del _ACTIVE[key]
    if host.fresh:
        host.db.close()
        return
    try:
        host.db.execute(f"DETACH {_quote(alias)}")
    except BaseException as exc:
        host.tainted = True  # the instance goes instead (and the file with it); the next open starts anew
        if not _checkpoint_refused(exc):
            raise
    finally:
        if host.tainted:
            _SHARED.pop(key, None)
            host.db.close()
        elif key in _SHARED:
            _SHARED.move_to_end(key)
        idle = [k for k in _SHARED if k not in _ACTIVE]
        for k in idle[:max(0, len(idle) - KEPT)]:
            _SHARED.pop(k).db.close()


def _checkpoint_refused(exc: BaseException) -> bool:
    """A DETACH whose closing checkpoint the full disk refused: DuckDB has detached the file (its lock is
    released) and every committed transaction is in its write-ahead log (``<catalog>.wal``), which the
    next open applies. Nothing is lost, and the write that follows on the full disk (a commit, a Parquet
    file) reports it in one line; raising here made a traceback of a command whose work was committed
    (a build whose models were all recorded, a catalog initialised). Reproduced on a real full tmpfs."""
    return (isinstance(exc, duckdb.IOException) and "CHECKPOINT during DETACH failed" in str(exc)
            and is_disk_full(exc))


class CatalogConnection:
    """A DuckDB connection (every method is the cursor's) whose ``close`` also lets the file go when it
    is the last one open."""

    __slots__ = ("_con", "_host", "_alias", "__weakref__")

    def __init__(self, con: duckdb.DuckDBPyConnection, host: tuple[tuple[int, str], _Host], alias: str) -> None:
        self._con = con
        self._host: tuple[tuple[int, str], _Host] | None = host
        self._alias = alias

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new session in the catalog, valid while this connection is open."""
        cur = self._con.cursor()
        if self._host is not None and not self._host[1].fresh:
            cur.execute(f"USE {_quote(self._alias)}")
        return cur

    def close(self) -> None:
        held, self._host = self._host, None
        if held is None:
            return
        key, host = held
        with _LOCK:
            try:
                self._con.close()  # rolls back a transaction left open, as closing a connection does
            finally:
                host.users -= 1
                if host.users == 0:
                    _release(key, host, self._alias)

    def __enter__(self) -> "CatalogConnection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a connection dropped without close() lets the file go, as DuckDB's does
        try:
            self.close()
        except Exception:
            pass
