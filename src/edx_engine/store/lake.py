"""The store: a Parquet lake plus a DuckDB catalog that exposes it.

Layout under the data directory::

    edx.duckdb                                  catalog (views + bookkeeping tables)
    lake/tables/<table>/<course>/<file>.parquet one immutable file per snapshot
    lake/quarantine/<kind>/<file>.parquet       rejected lines (source file, line, reason, raw bytes)
    lake/events/...                             tracking logs (see ingest/events.py)

Parquet files are written under a temporary name and never modified afterwards. Which
file is *current* for a (table, course) lives in the catalog table ``_edx_snapshots``;
switching to new files and recreating the views happens in one DuckDB transaction, so
an interrupted import leaves the previous state intact. Files no longer referenced (replaced,
or left by a killed writer) are deleted at the end of every writing command, under the write
lock (``collect_garbage``): once a command has finished, the lake holds no file the catalog
does not reference, so tools reading the Parquet files directly count nothing twice.

The bookkeeping holds paths relative to the data directory; the views hold absolute paths (so
that any DuckDB client, opened from any directory, can query them) and ``_edx_meta`` records the
root they were built for. ``Lake.connect`` re-points the views whenever that root is not where
the store is now (moved, copied, restored, mounted elsewhere): a store never reads another
store's files.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
import time
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import duckdb

from .. import _hooks as testhooks
from .. import clock, interrupts
from ..names import path_slug
from . import catalog, files, views
from .connection import open_database
from .catalog import LAKE_FILE_OWNERS, QUARANTINE_COLUMNS  # noqa: F401 (their old home)
from .views import sql_list as _sql_list
from .errors import CatalogBusy, DiskFull, StoreBusy, StoreMoved, StoreWriteError, is_disk_full, named_file  # noqa: F401 (their old home)

CATALOG = "edx.duckdb"

# Settings of a connection that runs SQL a person typed (``Lake.connect_sandboxed``); the
# order matters: DuckDB refuses allowed_directories once external access is off.
_SANDBOX = ("SET allowed_directories = {lake}", "SET enable_external_access = false",
            "SET autoinstall_known_extensions = false", "SET autoload_known_extensions = false",
            "SET lock_configuration = true")


@dataclass
class Snapshot:
    """A freshly written Parquet file that should become a table's current data for a course."""

    table: str
    course_id: str
    org: str | None
    package_date: str
    path: Path
    rows: int
    rejected: int
    fingerprint: str
    source_file: str
    extra_columns: list[str]
    supersedes: str | None = None  # an earlier key of the same course (its file-name slug) to retire


@dataclass
class QuarantineFile:
    key: str  # identifies the source (re-importing the source replaces its quarantine file)
    kind: str
    path: Path
    rows: int


class Lake:
    def __init__(self, data_dir: str | Path):
        self.root = Path(data_dir)
        self.lake_dir = self.root / "lake"
        self.catalog_path = self.root / CATALOG
        # How long a write waits for a catalog another program holds open (an analyst's DuckDB
        # session), and who is told about it; 0: fail at once (StoreBusy). Importers set these
        # once their work has started, so that no parsed work is lost to a reader.
        self.wait_seconds = 0.0
        self.on_wait: Callable[[str], None] | None = None
        # What this object already did, so that a run does not open the catalog again for it
        # (each open is a new DuckDB instance, about 20 ms): the catalog is initialised, and the
        # lake was collected after this object's last commit.
        self._ready = False
        self._collected = False
        # the current snapshots as ``init`` read them, for the package import that follows it under the
        # same write lock (spares that import a catalog connection); dropped by any commit and when
        # the lock is released
        self._init_snapshots: list[tuple] | None = None

    # -- files -------------------------------------------------------------------------
    def init(self) -> None:
        """Create the folders, the bookkeeping tables and the views that are missing (once per object)."""
        if self._ready:
            return
        for sub in ("lake/tables", "lake/quarantine", "lake/events", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        with self.connect() as con:
            catalog.ensure(con)
            catalog.stamp_format(con)
            if not self._views_exist(con):
                self.refresh_views(con)
            if self._here() in _HELD:
                self._init_snapshots = catalog.current_snapshots(con)
        self._ready = True

    def snapshots_read_at_init(self) -> list[tuple] | None:
        """``catalog.current_snapshots`` as ``init`` read them under the write lock this process still
        holds, with no commit since (so they are still the catalog's); None otherwise. Given once."""
        rows, self._init_snapshots = self._init_snapshots, None
        return rows if self._here() in _HELD else None

    def table_file(self, table: str, course_id: str, package_date: str) -> Path:
        """A new, unique path for a table snapshot (written as ``<path>.tmp`` then renamed)."""
        d = self.lake_dir / "tables" / table / path_slug(course_id)
        d.mkdir(parents=True, exist_ok=True)
        return d / f"{package_date}-{uuid.uuid4().hex[:12]}.parquet"

    def quarantine_file(self, kind: str) -> Path:
        d = self.lake_dir / "quarantine" / kind
        d.mkdir(parents=True, exist_ok=True)
        return d / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}.parquet"

    def rel(self, path: Path) -> str:
        return str(Path(path).resolve().relative_to(self.root.resolve()))

    def abs(self, rel: str) -> Path:
        return self.root / rel

    # -- catalog -----------------------------------------------------------------------
    def connect(self, read_only: bool = False, purpose: str | None = None,
                wait: bool = True, fresh: bool = False) -> duckdb.DuckDBPyConnection:
        """Open the catalog. Views built for another location (the store was moved, copied,
        restored or mounted elsewhere) are re-pointed at this store's files first.

        If another program holds the catalog open, this waits up to ``wait_seconds`` for it
        (telling ``on_wait`` once, with ``purpose``, e.g. "commit 3 files"), then raises
        CatalogBusy; with no wait (or ``wait=False``: work that can be skipped) it raises
        StoreBusy at once.

        ``fresh``: a DuckDB instance of its own (``duckdb.connect``) rather than the process' shared one
        (store/connection.py), for a connection that changes global settings (a model build)."""
        self.root.mkdir(parents=True, exist_ok=True)
        con = self._open_waiting(read_only, purpose, self.wait_seconds if wait else 0.0, fresh)
        try:
            if not self._points_elsewhere(con):
                return con
            if not read_only:
                self._repoint(con)
                return con
        except BaseException:
            con.close()
            raise
        con.close()
        return self._open(self._repointed_catalog(), read_only=True, fresh=fresh)

    def connect_sandboxed(self) -> duckdb.DuckDBPyConnection:
        """A read-only connection for SQL a person typed: it reads files only under ``lake/``
        (not the keyring, the passphrase file, /etc ...), installs and loads no extension,
        opens no URL and cannot change these settings.

        The settings belong to the DuckDB database instance: do not keep another connection
        to the catalog open in this process while this one is open."""
        con = self.connect(read_only=True, fresh=True)  # the settings below lock the instance's
        try:
            # the lake, and the event views' schema file (views.anchor_path)
            lake = _sql_list([str(self.lake_dir.resolve()) + os.sep,
                              str(self.root.resolve() / views.ANCHOR_DIR) + os.sep])
            for stmt in _SANDBOX:
                con.execute(stmt.format(lake=lake))
        except BaseException:
            con.close()
            raise
        return con

    def _open_waiting(self, read_only: bool, purpose: str | None, seconds: float,
                      fresh: bool = False) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + max(0.0, seconds)
        told = False
        while True:
            try:
                return open_database(self.catalog_path, read_only, fresh)  # type: ignore[return-value]
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise
                holder = _lock_holder(str(exc))
                if time.monotonic() >= deadline:
                    if not seconds:
                        raise StoreBusy(f"the catalog {self.catalog_path} is open in another program{holder} (a "
                                        f"DuckDB client such as the duckdb CLI or DBeaver?); close it and try "
                                        f"again") from None
                    what = purpose or "write to it"
                    raise CatalogBusy(f"could not {what}: the catalog {self.catalog_path} is open in another "
                                      f"program{holder} and still was after {seconds:g} s of waiting; "
                                      f"nothing was committed and the parsed work was discarded (earlier commits "
                                      f"of this run stay); close the other program and run again") from None
                if not told and self.on_wait is not None:
                    self.on_wait(f"waiting for {self.catalog_path} (open in another program{holder}) to "
                                 f"{purpose or 'write to it'}… (up to {seconds:g} s)")
                told = True
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    @contextmanager
    def transaction(self, purpose: str, collect: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction on the catalog (``purpose``: what it does, for messages).

        Waits for a catalog held open elsewhere (see ``connect``); on any error it rolls back
        (quietly: a failed COMMIT has already ended the transaction) and a write the disk
        refused (full disk, I/O error) becomes one StoreWriteError line. Nothing of the
        transaction is then committed: the store is as before. ``collect``: once committed,
        delete the files nobody references any more, through the same connection (see
        ``collect_garbage``)."""
        con = self.connect(purpose=purpose)
        self._collected = False
        self._init_snapshots = None
        try:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                interrupts.check()  # Ctrl-C seen, even if turned into another error and caught: no commit
                con.execute("COMMIT")
            except BaseException as exc:
                try:
                    con.execute("ROLLBACK")
                except duckdb.Error:
                    pass  # "no transaction is active": DuckDB ended it when the commit failed
                raise self.write_error(exc, purpose) or exc
            if collect:
                self.collect_garbage(con)
        finally:
            try:
                con.close()
            except duckdb.Error:
                pass

    def write_error(self, exc: BaseException, purpose: str) -> StoreWriteError | None:
        """The one-line StoreWriteError for an error the disk caused, else None."""
        if isinstance(exc, StoreWriteError):
            return exc  # said already (a disk-full error of a stage, inside this transaction)
        text = str(exc)
        full = is_disk_full(exc)
        io = isinstance(exc, duckdb.IOException) or (isinstance(exc, duckdb.TransactionException)
                                                       and "Could not write" in text)
        if not (full or io or isinstance(exc, OSError)):
            return None
        cause = "no space left on device" if full else (text.strip().splitlines() or [type(exc).__name__])[0]
        where = named_file(text)
        return (DiskFull if full else StoreWriteError)(
            f"could not {purpose}: {cause}" + (f" (writing {where})" if where else "")
            + f"; nothing was committed, the store {self.root} is as before; "
            + ("free some space and run again" if full else "fix the cause and run again"))

    def _open(self, path: Path, read_only: bool, fresh: bool = False) -> duckdb.DuckDBPyConnection:
        try:
            return open_database(path, read_only, fresh)  # type: ignore[return-value]
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreBusy(f"the catalog {self.catalog_path} is open in another program (a DuckDB client "
                                f"such as the duckdb CLI or DBeaver?); close it and try again") from None
            raise

    # -- location ----------------------------------------------------------------------
    def _here(self) -> str:
        return str(self.root.resolve())

    def _points_elsewhere(self, con: duckdb.DuckDBPyConnection) -> bool:
        """True if the views were built for another root (or before roots were recorded), or are
        event views of an older format (which listed every part: ``views.outdated``)."""
        meta = catalog.get_metas(con, "root", views.EVENT_META, catalog.FORMAT_META)  # one query: at every open
        catalog.check_format(meta.get(catalog.FORMAT_META), self.catalog_path)
        root = meta.get("root")
        if root is None:
            return self._views_exist(con)  # a new catalog has no views yet; an old one has no record
        return root != self._here() or views.outdated(meta.get(views.EVENT_META), self._here())

    def _repoint(self, con: duckdb.DuckDBPyConnection) -> None:
        """Rebuild every view (tables, quarantine, events, models, geo) over this store's files."""
        catalog.ensure(con)
        con.execute("BEGIN TRANSACTION")
        try:
            self.refresh_views(con)
            con.execute("COMMIT")
        except duckdb.Error as exc:
            con.execute("ROLLBACK")
            raise StoreMoved(f"{self.catalog_path} was built for another location and its views cannot be "
                             f"re-pointed at {self._here()}: {str(exc).splitlines()[0]}") from None

    def _repointed_catalog(self) -> Path:
        """The store's own catalog, re-pointed; or, if it cannot be written (read-only medium,
        another program holds it open read-only), a private re-pointed copy of it."""
        try:
            with self._open(self.catalog_path, read_only=False) as con:
                if self._points_elsewhere(con):
                    self._repoint(con)
            return self.catalog_path
        except StoreMoved:
            raise
        except (StoreBusy, duckdb.Error, OSError):
            return self._private_copy()

    def _private_copy(self) -> Path:
        wal = self.catalog_path.with_name(CATALOG + ".wal")
        key = (self._here(), *(_stamp(f) for f in (self.catalog_path, wal)))
        if key in _COPIES and _COPIES[key].exists():
            return _COPIES[key]
        d = Path(tempfile.mkdtemp(prefix="edx-catalog-"))  # 0700: the catalog holds personal data
        atexit.register(shutil.rmtree, d, True)
        shutil.copyfile(self.catalog_path, d / CATALOG)
        if wal.exists():
            shutil.copyfile(wal, d / wal.name)
        with self._open(d / CATALOG, read_only=False) as con:
            self._repoint(con)
        _COPIES[key] = d / CATALOG
        return d / CATALOG

    @contextmanager
    def writer(self, wait: bool = False) -> Iterator[None]:
        """Exclusive write lock on the store (one import or sync at a time)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            try:
                stack.enter_context(files.file_lock(self.root / ".lock", wait=wait))
            except files.LockBusy:
                raise StoreBusy(f"another edx-engine process is writing to {self.root} "
                                f"(lock {self.root / '.lock'})") from None
            _HELD.add(self._here())
            try:
                yield
            finally:
                _HELD.discard(self._here())
                self._init_snapshots = None

    def current(self, con: duckdb.DuckDBPyConnection, table: str, course_id: str) -> tuple | None:
        return con.execute(
            "SELECT package_date, fingerprint, path FROM _edx_snapshots WHERE table_name=? AND course_id=?",
            [table, course_id],
        ).fetchone()

    def commit(self, snapshots: list[Snapshot], quarantine: list[QuarantineFile], log: list[tuple]) -> None:
        """Make the new files current, atomically, then delete what is no longer referenced."""
        now = clock.now(whole_seconds=True)
        testhooks.pause("package-commit")  # crash tests: every new file written, none referenced yet
        n = len(snapshots)
        with self.transaction(f"commit {n} table file{'s' if n != 1 else ''}", collect=True) as con:
            # a few statements for the whole package, not three per member
            catalog.replace_snapshots(con, [dict(table=s.table, course_id=s.course_id, org=s.org,
                                                 package_date=s.package_date, path=self.rel(s.path), rows=s.rows,
                                                 rejected=s.rejected, fingerprint=s.fingerprint,
                                                 source_file=s.source_file, extra_columns=s.extra_columns,
                                                 supersedes=s.supersedes) for s in snapshots], at=now)
            catalog.replace_quarantine_files(con, [(q.key, q.kind, self.rel(q.path) if q.rows else None, q.rows)
                                                   for q in quarantine], at=now)
            catalog.log_imports(con, log, at=now)
            # only the views a package changes (tables, quarantine): re-creating every view bound every
            # event part and model file of the store too
            views.refresh_tables(con, self.root, quarantine=bool(quarantine))

    def collect_garbage(self, con: duckdb.DuckDBPyConnection | None = None) -> int:
        """Delete every lake file the catalog does not reference; returns how many.

        The one collector for every writer's leftovers (replaced snapshots, parts of a killed
        import or scrub, ``.tmp`` files, old models and geo tables), run at the end of each
        writing command. It only runs under the store's write lock: a file another live writer
        has written but not yet committed is unreferenced too, and must not go. If this
        process does not hold the lock and another one does, nothing is collected (that
        writer collects when it ends). Subdirectories whose bookkeeping table is absent, or
        which reference files by absolute paths outside the store, are left alone."""
        if self._here() in _HELD:
            return self._collect(con)
        try:
            with self.writer():
                return self._collect(con)
        except StoreBusy:
            return 0

    def collect_unless_done(self) -> int:
        """``collect_garbage``, unless this object collected after its last commit (the end of an
        import run whose commits already collected)."""
        return 0 if self._collected else self.collect_garbage()

    def referenced_files(self, con: duckdb.DuckDBPyConnection) -> dict[str, set[str] | None]:
        """Lake subdirectory -> the paths (relative to the data directory) its bookkeeping table
        references; None where that cannot be told (no table, or paths outside the store)."""
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' "
                                            "AND database_name = current_database()").fetchall()}
        root = self.root.resolve()
        out: dict[str, set[str] | None] = {}
        for sub, table in LAKE_FILE_OWNERS:
            if table not in tables:
                out[sub] = None
                continue
            refs: set[str] | None = set()
            for (stored,) in con.execute(f"SELECT DISTINCT path FROM {table} WHERE path IS NOT NULL").fetchall():
                if os.path.isabs(stored):  # rare: strings, not Paths, for the thousands of relative ones
                    try:
                        stored = Path(stored).resolve().relative_to(root).as_posix()
                    except ValueError:
                        refs = None  # built elsewhere: what is referenced here cannot be told
                        break
                refs.add(os.path.normpath(stored))
            out[sub] = refs
        return out

    def _collect(self, con: duckdb.DuckDBPyConnection | None = None) -> int:
        if not self.catalog_path.exists() or not self.lake_dir.is_dir():
            return 0
        try:
            if con is not None:
                referenced = self.referenced_files(con)
            else:
                with self.connect(wait=False) as c:  # busy: skipped, the next writer collects
                    referenced = self.referenced_files(c)
        except (StoreBusy, duckdb.Error):
            return 0  # the catalog is busy: the next writer collects
        removed = 0
        for sub, refs in referenced.items():
            if refs is not None and (self.lake_dir / sub).is_dir():
                removed += self._collect_under(sub, refs)
        self._collected = True
        return removed

    def _collect_under(self, sub: str, refs: set[str]) -> int:
        """Delete the files under ``lake/<sub>`` not in ``refs`` (paths relative to the data directory),
        then the folders left empty. Plain strings and one ``rmdir`` only where a folder may have
        emptied: the walk covers every file of the lake (thousands of partition files after a year),
        at the end of every writing command."""
        top = os.path.join(str(self.lake_dir), sub)
        rel0 = os.path.relpath(top, str(self.root))
        removed = 0
        gone: set[str] = set()  # folders removed (their parent may then be empty)
        for dirpath, dirs, files in os.walk(top, topdown=False):
            rel = os.path.normpath(os.path.join(rel0, os.path.relpath(dirpath, top)))
            left = sum(1 for d in dirs if os.path.join(dirpath, d) not in gone)
            for name in files:
                if os.path.join(rel, name) in refs:
                    left += 1
                    continue
                try:
                    os.unlink(os.path.join(dirpath, name))
                except FileNotFoundError:
                    pass
                removed += 1
            if dirpath != top and not left:
                try:
                    os.rmdir(dirpath)  # only if empty
                    gone.add(dirpath)
                except OSError:
                    pass
        return removed

    # -- views -------------------------------------------------------------------------
    def _views_exist(self, con: duckdb.DuckDBPyConnection) -> bool:
        return views.exists(con)

    def refresh_views(self, con: duckdb.DuckDBPyConnection) -> None:
        """Rebuild every view (tables, quarantine, events, geo, models) over the current files
        (``store/views.py``); ``connect`` re-runs this when the store is no longer where they point."""
        views.refresh(con, self.root)


def _lock_holder(message: str) -> str:
    """`` (<program>, PID n)`` from DuckDB's lock error, or "" when it does not say."""
    m = re.search(r"lock is held in (.+?) \(PID (\d+)\)", message)
    return f" ({Path(m.group(1)).name}, PID {m.group(2)})" if m else ""


# Stores (resolved roots) whose write lock this process holds (``Lake.writer``).
_HELD: set[str] = set()

# Re-pointed private copies of catalogs this process could not write: (root, stamps) -> file.
_COPIES: dict[tuple, Path] = {}


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size
