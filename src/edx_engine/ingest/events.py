"""Import of the daily tracking logs (``*.log``, ``*.log.gz``, ``*.log.gz.gpg``) into the lake.

    import_events(lake, sources, gpg, progress=None) -> EventsSummary

Pipeline per file (nothing decrypted is written to disk except the Parquet columns)::

    gpg -d (own process) -> reader thread: isal gunzip, blocks of whole lines (16 MB),
        numpy newline split -> zero-copy Arrow column -> queue (2 blocks)
    -> 2 consumer threads, one DuckDB statement per block each (events_duck: all per-row
        work in C++) -> Arrow -> per-date Parquet parts

``ENGINE = "msgspec"`` (or ``EDX_EVENTS_ENGINE=msgspec``) selects the former per-row parse in
worker processes (events_parse, events_pipeline.ParsePool); both give the same rows.

Layout: ``lake/events/date=YYYY-MM-DD/<source-key>-<uuid>-<worker>.parquet``. A source is
identified by where it comes from (``origin``: its S3 address, or its absolute path; a zip
member: the zip's path and the member). Its key is the file name without
``.log``/``.gz``/``.gpg`` and a hash of the origin (``idbx-edx-events-2016-10-12@3f9a1c2b7e``;
stores imported before keep their bare keys, matched by label, path or bytes). Only the same
source delivered again (same object or path, new content) replaces its own rows; a file of
the same name from elsewhere is another source (exact duplicate events are left out as
always), and the same bytes already imported under another path are ``unchanged``. A
replacement that removes more than ``REPLACE_WARN_SHARE`` of a day's events is reported.
Catalog bookkeeping, switched in one DuckDB transaction per file:

* ``_edx_event_files``: one row per imported source file (fingerprint, rows, rejected,
  duplicates, first/last event time, imported_at);
* ``_edx_event_parts``: the Parquet parts of each source file;
* ``_edx_event_dups``: delivered rows that repeat an event already delivered (same raw
  line bytes, hence same time and partition) in an earlier file (by source key) or
  earlier in the same file; ``events`` leaves them out, ``events_all`` flags them.

Views (always present, typed and empty before the first import): ``events``,
``events_all`` and the family views ``events_video``, ``events_problem``,
``events_navigation``, ``events_enrollment``, ``events_certificate``, ``events_forum``,
``events_grades``. Bad lines go to ``lake/quarantine/events`` (the ``quarantine`` view,
kind ``events``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import re
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import duckdb
from isal.isal_zlib import IsalError

from ..decrypt import DecryptError, GpgSettings
from .. import _hooks as testhooks
from .. import interrupts
from ..store import catalog, views
from ..store.errors import DiskFull, is_disk_full
from ..store.files import QuarantineWriter
from ..store.lake import Lake
from ..store.views import sql_list as _sql_list
from ..store.views import (EVENT_COLUMNS, FAMILIES, NAVIGATION_TYPES, PROBLEM_TYPES,  # noqa: F401 (old home)
                               VIDEO_TYPES)
from ..names import strip_gpg
from .events_parse import EventLimits
from .events_pipeline import EventsParseError, ParsePool, PartSink, read_blocks, tune_malloc
from .sources import Source

KIND = "events"
# "duckdb": one SQL statement per block (events_duck); "msgspec": the former per-row parse in
# worker processes (events_parse / events_pipeline), kept as a fallback.
ENGINE = os.environ.get("EDX_EVENTS_ENGINE", "duckdb")
# Input bytes (as stored: compressed, encrypted) below which everything runs in the calling thread.
# Compressed sizes, so small: a 10 MB .log.gz.gpg holds about 90 MB of JSON, which needs both cores.
INLINE_BELOW = 1 << 20
QUARANTINE_BATCH = 2000
# A replacement (the same source delivered again) that removes more than this share of a
# day's events is reported: in the file's message, the import log and the run's summary.
REPLACE_WARN_SHARE = 0.10


# -- results ------------------------------------------------------------------------------
@dataclass
class EventsFileResult:
    label: str
    status: str  # loaded | unchanged | failed
    events: int = 0  # rows delivered by the file (including duplicates of other files' events)
    rejected: int = 0
    duplicates: int = 0  # delivered copies of this file's events left out of `events`
    duplicate_keys: int = 0  # loaded lines that gave a top-level key twice (the first value is kept)
    nuls: int = 0  # loaded lines from whose values NUL characters (\u0000) were removed (events_parse.strip_nul)
    message: str = ""
    source_key: str = ""
    nbytes: int = 0  # bytes of JSON read
    seconds: float = 0.0
    added: int = 0  # net change of the `events` view's row count made by this file's commit
    replaced: int = 0  # rows of this source's previous import that the commit removed
    warning: str = ""  # a replacement that removed a large share of a day's events; bytes after the gzip data
    truncated: int = 0  # the compressed stream ends inside its data: the number of the last line read (0: not cut)
    disk_full: bool = False  # failed because the lake's disk is full: the run stops (disk_full_error), nothing logged


@dataclass
class EventsSummary:
    files: list[EventsFileResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def loaded(self) -> list[EventsFileResult]:
        return [f for f in self.files if f.status == "loaded"]

    @property
    def failed(self) -> list[EventsFileResult]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def events(self) -> int:
        return sum(f.events for f in self.loaded)

    @property
    def rejected(self) -> int:
        return sum(f.rejected for f in self.files)

    @property
    def duplicates(self) -> int:
        return sum(f.duplicates for f in self.loaded)

    @property
    def duplicate_keys(self) -> int:
        return sum(f.duplicate_keys for f in self.loaded)

    @property
    def nuls(self) -> int:
        return sum(f.nuls for f in self.loaded)

    @property
    def added(self) -> int:
        """Net change of ``SELECT count(*) FROM events`` made by this run."""
        return sum(f.added for f in self.loaded)

    @property
    def replaced(self) -> int:
        return sum(f.replaced for f in self.loaded)

    @property
    def warnings(self) -> list[str]:
        return [f.warning for f in self.files if f.warning]

    @property
    def nbytes(self) -> int:
        return sum(f.nbytes for f in self.files)

    @property
    def partial(self) -> bool:
        return bool(self.failed) or self.rejected > 0

    def one_line(self) -> str:
        unchanged = sum(1 for f in self.files if f.status == "unchanged")
        mb = self.nbytes / 1e6
        rate = mb / self.seconds if self.seconds > 0 else 0.0
        return (f"event files: {len(self.files)} ({len(self.loaded)} loaded, {unchanged} unchanged, "
                f"{len(self.failed)} failed), events: {self.events:,} ({self.added:+,} in the store"
                + (f": {self.replaced:,} of earlier imports replaced" if self.replaced else "")
                + f"), duplicates: {self.duplicates:,}, rejected lines: {self.rejected:,}, "
                + (f"warnings: {len(self.warnings)} (see above), " if self.warnings else "")
                + (f"lines with duplicate keys: {self.duplicate_keys:,} (first value kept), "
                   if self.duplicate_keys else "")
                + (f"lines with NUL characters (\\u0000, removed): {self.nuls:,}, " if self.nuls else "")
                + f"{mb:,.1f} MB in {self.seconds:.1f} s ({rate:,.1f} MB/s)")


# -- catalog ------------------------------------------------------------------------------
def ensure_catalog(con) -> None:
    catalog.ensure(con, catalog.EVENTS)


# -- helpers ------------------------------------------------------------------------------
_KEY_SUFFIX = re.compile(r"(\.gpg)?$", re.I)


def name_key(src: Source) -> str:
    """A daily file's name without .log/.gz/.gpg, lower case: the key of stores made before
    sources had an origin, and the first part of every key."""
    name = src.events.name if src.events else Path(src.label.rsplit(":", 1)[-1]).name
    name = name.lower()
    for suffix in (".gpg", ".gz", ".log"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return re.sub(r"[^a-z0-9_.+-]", "_", name) or "events"


_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)


def source_origin(label: str) -> str:
    """Where a file comes from, the identity of a source: an S3 address as is, else the absolute
    path (a zip member: the zip's absolute path, ``:`` and the member's name)."""
    if _URL.match(label):
        return label
    with contextlib.suppress(OSError, ValueError):
        p = Path(label)
        if p.exists():
            return str(p.resolve())
        for i, ch in enumerate(label):
            if ch == ":" and i and Path(label[:i]).is_file():
                return f"{Path(label[:i]).resolve()}:{label[i + 1:]}"
    return label


def source_key(src: Source) -> str:
    """The key a file gets as a new source: its name key, ``@`` and a hash of its origin, so two
    files of the same name from two places are two sources, and a day's keys sort together."""
    return _new_key(name_key(src), source_origin(src.label))


def _new_key(name: str, origin: str, digits: int = 10) -> str:
    return f"{name}@{hashlib.sha256(origin.encode()).hexdigest()[:digits]}"


@dataclass
class _Known:
    key: str
    origin: str | None  # None: imported before sources had an origin (a bare, legacy key)
    label: str
    fingerprint: str


class _Sources:
    """The sources a store holds, and which of them a file to import is."""

    def __init__(self, con) -> None:
        self.by_key = {r[0]: _Known(*r) for r in con.execute(
            "SELECT source_key, origin, source_file, fingerprint FROM _edx_event_files").fetchall()}

    def identify(self, src: Source) -> tuple[str, str, _Known | None, str]:
        """(key, origin, the known source it is or None, how it matched: origin | legacy | bytes | new).

        The same origin is the same source. A legacy (bare-key) source of the same name is it
        when its label, resolved path or bytes are this file's (so upgrading a store re-imports
        nothing). The same bytes under the same name elsewhere are that source, unchanged."""
        origin = source_origin(src.label)
        for k in self.by_key.values():
            if k.origin == origin:
                return k.key, origin, k, "origin"
        name = name_key(src)
        old = self.by_key.get(name)
        if old is not None and old.origin is None and (
                old.label == src.label or source_origin(old.label) == origin
                or (src.fingerprint and old.fingerprint == src.fingerprint)):
            return name, origin, old, "legacy"
        if src.fingerprint:
            for k in self.by_key.values():
                if k.fingerprint == src.fingerprint and k.key.split("@", 1)[0] == name:
                    return k.key, origin, k, "bytes"
        digits = 10
        while (key := _new_key(name, origin, digits)) in self.by_key:  # another origin's hash prefix
            digits += 2
        return key, origin, None, "new"

    def loaded(self, key: str, origin: str, src: Source) -> None:
        self.by_key[key] = _Known(key, origin, src.label, src.fingerprint)


class _Plain:
    """Plaintext (decompressed) bytes of a raw stream, gzip or not, read in large chunks.

    ``n`` counts the raw bytes consumed (for progress). Concatenated gzip members are
    followed. A stream that ends inside a member ends the plaintext there (``truncated``: what
    was decompressed is kept, the caller says the file is cut); bytes after the last member that
    are neither a gzip member nor zero padding are skipped (``garbage``: their count), as
    ``gzip -d`` does ("trailing garbage ignored").
    """

    CHUNK = 512 << 10  # compressed bytes per read (about 4 MB of JSON)

    def __init__(self, raw, gzip_name: bool = False) -> None:
        from isal import isal_zlib

        self.raw, self.n = raw, 0
        self._zlib = isal_zlib
        head = raw.read(self.CHUNK)
        self.n += len(head)
        self.gz = head[:2] == b"\x1f\x8b"
        if gzip_name and not self.gz:
            # an empty or cut .gz would otherwise be read as an empty plain log and replace the day
            raise OSError(f"not a gzip stream ({len(head)} bytes, no gzip header) although the name ends in .gz")
        self.pending = head
        self.d = isal_zlib.decompressobj(31) if self.gz else None
        self._start = True
        self.truncated = False
        self.garbage = 0

    MAX_OUT = 16 << 20

    def read(self, size: int = -1) -> bytes:  # size is ignored: decompressed chunks of up to 16 MB
        """The next chunk of plaintext; a UTF-8 byte order mark at the start of the file is dropped."""
        data = self._read()
        if self._start:
            if len(data) < 3 and data and b"\xef\xbb\xbf".startswith(data):
                data += self._read()  # a mark split across chunks (only for tiny chunks)
            self._start = False
            if data.startswith(b"\xef\xbb\xbf"):
                data = data[3:] or self._read()
        return data

    def _read(self) -> bytes:
        while True:
            if not self.pending:
                self.pending = self.raw.read(self.CHUNK)
                self.n += len(self.pending)
                if not self.pending:
                    if self.d is not None:
                        self.truncated, self.d = True, None  # ended inside a member: keep what was read
                    return b""
            if not self.gz:
                data, self.pending = self.pending, b""
                return data
            if self.d is None:
                if self.truncated or self.garbage:
                    self.garbage += len(self.pending)
                    self.pending = b""
                    continue
                if not self.pending.lstrip(b"\x00"):  # zero padding after the last member
                    self.pending = b""
                    continue
                head = self.pending.lstrip(b"\x00")
                if head[:2] != b"\x1f\x8b"[:len(head[:2])]:  # not the start of another member: trailing garbage
                    self.garbage, self.pending = len(self.pending), b""
                    continue
                self.d = self._zlib.decompressobj(31)
            out = self.d.decompress(self.pending, self.MAX_OUT)
            if self.d.eof:
                self.pending = self.d.unused_data
                self.d = None
            else:
                self.pending = self.d.unconsumed_tail
            if out:
                return out


class _QuarantineWriter(QuarantineWriter):
    """Rejected lines of one source file (the store's quarantine writer), in line order per
    batch, remembering the first (line, reason) for the file's one-line message."""

    def __init__(self, lake: Lake, label: str):
        super().__init__(lambda: lake.quarantine_file(KIND), KIND, label)
        self.lake = lake
        self.first: tuple[int, str] | None = None

    def add(self, rejects: list) -> None:
        if not rejects:
            return
        rejects.sort()
        if self.first is None or rejects[0][0] < self.first[0]:
            self.first = (rejects[0][0], rejects[0][1])
        super().add(rejects)


# -- decryption ahead of parsing ----------------------------------------------------------
class _Opened:
    """A file's plaintext stream whose decryption was started ahead of its turn (gpg unlocks the
    key, writes a pipe's worth and waits)."""

    def __init__(self, src: Source, gpg: GpgSettings):
        self._cm = src.open(gpg)
        self.stream = self._cm.__enter__()

    def __enter__(self):
        return self.stream

    def __exit__(self, *exc) -> bool | None:
        return self._cm.__exit__(*exc)

    def abandon(self) -> None:
        """Not needed after all: stop its gpg."""
        with contextlib.suppress(BaseException):
            self._cm.__exit__(_Abandoned, _Abandoned(), None)


class _Abandoned(BaseException):
    """Thrown into a decryption started ahead to stop it."""


class _Ahead:
    """At most one encrypted file's decryption started ahead of its turn, so that the S2K unlock
    of its key (0.1 to 0.5 s per file, in gpg-agent; the run's first file also makes the session
    keyring) overlaps the work before it (the catalog's preparation, the previous file's parse and
    commit). It is started in a thread: the first file's unlock used to hold up the catalog's
    preparation. Only a guess: a file started ahead that turns out unchanged is stopped (one unlock
    spent for nothing, never a wrong result)."""

    def __init__(self, gpg: GpgSettings):
        self.gpg = gpg
        self.started: dict[int, tuple[threading.Thread, list]] = {}

    def start(self, src: Source) -> None:
        if not src.encrypted or id(src) in self.started or self.started:
            return
        got: list = []

        def open_() -> None:
            try:
                got.append(_Opened(src, self.gpg))
            except BaseException:  # noqa: BLE001 - its turn opens it again and reports what is wrong
                pass

        t = threading.Thread(target=open_, name="events-ahead", daemon=True)
        t.start()
        self.started[id(src)] = (t, got)

    @staticmethod
    def _wait(item: "tuple[threading.Thread, list] | None") -> _Opened | None:
        if item is None:
            return None
        t, got = item
        while t.is_alive():
            t.join(0.1)
        return got[0] if got else None

    def take(self, src: Source) -> _Opened | None:
        opened = self._wait(self.started.get(id(src)))  # (removed once waited for: Ctrl-C leaves it to close())
        self.started.pop(id(src), None)
        return opened

    def drop(self, src: Source) -> None:
        opened = self._wait(self.started.get(id(src)))
        self.started.pop(id(src), None)
        if opened is not None:
            opened.abandon()

    def close(self) -> None:
        for item in self.started.values():
            opened = self._wait(item)
            if opened is not None:
                opened.abandon()
        self.started.clear()


def _warm_up() -> None:
    """Load in a thread, while gpg-agent unlocks the first file's key, what the first block's parse
    would load (DuckDB's Arrow scan imports pyarrow.dataset: about 0.1 s in a cold process)."""
    import sys

    def load() -> None:
        with contextlib.suppress(Exception):  # only a head start: the parse imports it anyway
            import pyarrow.dataset  # noqa: F401

    if "pyarrow.dataset" not in sys.modules:
        threading.Thread(target=load, name="events-warm", daemon=True).start()


def _next_to_import(sources: list[Source], i: int, known: "_Sources") -> Source | None:
    """The file after ``i`` when it is encrypted and will probably be imported (not already in the
    store); one look-up per file, so a long run of unchanged files costs nothing more."""
    if i + 1 >= len(sources) or not sources[i + 1].encrypted:
        return None
    src = sources[i + 1]
    _key, _origin, same, _how = known.identify(src)
    return src if same is None or not src.fingerprint or same.fingerprint != src.fingerprint else None


# -- import -------------------------------------------------------------------------------
def import_events(lake: Lake, sources: list[Source], gpg: GpgSettings, progress: Any = None,
                  workers: int | None = None, limits: EventLimits | None = None,
                  on_file: Callable[[EventsFileResult], None] | None = None) -> EventsSummary:
    """Import daily tracking-log files; each file is switched in atomically on its own.

    ``on_file`` is called with each file's result (the caller reports failures and rejected lines).

    ``workers``: parallel parsers (default: 2, or 0 = inline, one thread, when there is little
    data): SQL consumer threads for the DuckDB engine, worker processes for the msgspec one.
    ``limits``: line size limit, plausible time window, duplicate-key counting (``[events]``).
    """
    limits = limits or EventLimits()
    t0 = time.perf_counter()
    summary = EventsSummary()
    sources = [s for s in sources]
    ahead = _Ahead(gpg)
    try:
        if sources:
            ahead.start(sources[0])  # its key unlocks while the catalog is read (a guess: see _Ahead)
            if ahead.started:
                _warm_up()
        return _import_all(lake, sources, gpg, progress, workers, limits, on_file, summary, t0, ahead)
    finally:
        ahead.close()


def _import_all(lake: Lake, sources: list[Source], gpg: GpgSettings, progress: Any, workers: int | None,
                limits: EventLimits, on_file: Callable[[EventsFileResult], None] | None, summary: EventsSummary,
                t0: float, ahead: "_Ahead") -> EventsSummary:
    lake.init()
    with lake.connect() as con:
        ensure_catalog(con)
        if not con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name='events'").fetchone()[0]:
            con.execute("BEGIN TRANSACTION")
            views.event_views(con, str(lake.root.resolve()))
            con.execute("COMMIT")
        known = _Sources(con)
    if workers is None:
        total = sum(s.size for s in sources)
        workers = 0 if total < INLINE_BELOW else min(2, max(1, os.cpu_count() or 1))
    overall = None
    if progress is not None:
        overall = progress.add_task("event files", total=max(1, sum(s.size for s in sources)), unit="B")
    done_bytes = 0
    if workers:
        tune_malloc()  # large blocks reuse heap memory instead of fresh mmaps (page faults)
    if ENGINE == "msgspec":
        pool = ParsePool(workers)
    else:
        pool = _DuckEngine(workers)
    collected = False
    try:
        for i, src in enumerate(sources):
            key, origin, same, how = known.identify(src)
            if same is not None and src.fingerprint and same.fingerprint == src.fingerprint:
                ahead.drop(src)
                res = EventsFileResult(src.label, "unchanged", source_key=key, message="already imported" + (
                    f" (the same bytes, from {same.label})" if same.label != src.label else ""))
                _log(lake, src, res, adopt=(key, origin) if how == "legacy" else None)
            else:
                opened = ahead.take(src)
                nxt = _next_to_import(sources, i, known)
                if nxt is not None:  # its key unlocks while this file is parsed and committed
                    ahead.start(nxt)
                last = i == len(sources) - 1  # collect through its commit: no connection of its own
                res = _import_one(lake, src, key, origin, gpg, pool, progress, overall, done_bytes, limits,
                                  opened=opened, collect=last)
                if res.status == "loaded":
                    known.loaded(key, origin, src)
                    collected = last
            summary.files.append(res)
            done_bytes += src.size
            if progress is not None:
                progress.update(overall, completed=done_bytes)
            if on_file is not None:
                on_file(res)
    finally:
        pool.close()
    if summary.loaded and not collected:  # replaced parts: once per run, not per file (it walks the whole lake)
        _collect_garbage(lake)
    summary.seconds = time.perf_counter() - t0
    return summary


CONSUMERS = 2  # DuckDB engine: threads running one block's SQL each (the caller included)
ROW_GROUP_ROWS = 16384  # DuckDB engine: rows buffered per date before a row group is written (memory)


class _DuckEngine:
    """The DuckDB-per-block parse (events_duck) behind the ParsePool interface used below.

    ``workers``: DuckDB threads (0: one thread and no reader thread, for small inputs).
    """

    def __init__(self, workers: int):
        from .events_duck import DuckParser

        self.threaded = workers > 0
        self.parser = DuckParser(1)  # one thread per query: the parallelism is one query per consumer thread
        self.others = [self.parser.cursor() for _ in range(CONSUMERS - 1)] if self.threaded else []
        self.sink: PartSink | None = None
        self._writer: _SinkWriter | None = None

    def begin(self, events_dir: Path, source_key: str, source_file: str, checks: tuple,
              dupkeys: bool = False) -> None:
        """``checks``: (max line bytes, plausible time window lo, hi) for this file."""
        import uuid

        self.sink = PartSink(events_dir, source_key, source_file, f"{uuid.uuid4().hex[:6]}d")
        self.sink.row_group_rows = ROW_GROUP_ROWS
        self.max_line = checks[0]
        self.last_line = 0  # the number of the last line read (a truncated file's note names it)
        for p in (self.parser, *self.others):
            p.window(checks[1], checks[2], dupkeys)
            p.dupkeys = p.nuls = 0

    @property
    def dupkeys(self) -> int:
        return sum(p.dupkeys for p in (self.parser, *self.others))

    @property
    def nuls(self) -> int:
        return sum(p.nuls for p in (self.parser, *self.others))

    def run(self, counting: "_Plain", quarantine: "_QuarantineWriter", res: "EventsFileResult", tick) -> None:
        """Parse the whole stream: blocks go to this thread and, when threaded, one more consumer."""
        from .events_duck import BlockReader, iter_blocks

        if not self.threaded:
            for block in iter_blocks(counting, max_line=self.max_line):
                interrupts.check()  # Ctrl-C that DuckDB took as its own (an error caught by a library)
                self._one(self.parser, block, quarantine, res)
                tick()
            return
        reader = BlockReader(counting, self.max_line)
        writer = self._writer = _SinkWriter(self.sink, quarantine)  # type: ignore[arg-type]
        lock = threading.Lock()
        errors: list[BaseException] = []

        def consume(parser, main: bool) -> None:
            try:
                while (block := reader.get()) is not None:
                    interrupts.check()
                    rejects: list = []
                    table = parser.parse(block, rejects)
                    with lock:
                        self._count(block, res)
                    writer.put(table, rejects)
                    del block, table
                    if main:
                        tick()
            except BaseException as exc:
                errors.append(exc)
                reader.close()

        others = [threading.Thread(target=consume, args=(p, False), name="events-sql", daemon=True)
                  for p in self.others]
        clean = False
        try:
            for t in others:
                t.start()
            consume(self.parser, True)
            for t in others:
                # after Ctrl-C, do not wait for a consumer that may never return (it can be stuck on a lock the
                # interrupted main thread held): it is a daemon, nothing is committed, the process is ending
                while t.is_alive() and not any(isinstance(e, KeyboardInterrupt) for e in errors):
                    t.join(0.2)
            clean = not errors
        finally:
            reader.close()
            # every table written, or (after an error or Ctrl-C) the writing stopped: never left running
            writer.finish(stop=not clean)
        self._writer = None
        if errors:
            raise errors[0]
        if writer.error is not None:
            raise writer.error

    def _count(self, block, res) -> None:
        """The last line read and the bytes read, for the file's result (a cut file's note names the line)."""
        self.last_line = max(self.last_line, block.first + len(block.offsets) - 2, *(r[0] for r in block.rejects))
        res.nbytes += block.nbytes

    def _one(self, parser, block, quarantine, res) -> None:
        rejects: list = []
        table = parser.parse(block, rejects)
        self._count(block, res)
        self.sink.add(table)  # type: ignore[union-attr]
        if rejects:
            quarantine.add(rejects)

    def end(self) -> list[dict]:
        parts = self.sink.close()  # type: ignore[union-attr]
        self.sink = None
        return parts

    def abort(self) -> None:
        if self._writer is not None:  # (a Ctrl-C that cut run's own wait short): stop it before the discard
            self._writer.finish(stop=True)
            self._writer = None
        if self.sink is not None:
            self.sink.discard()
        self.sink = None

    def close(self) -> None:
        for p in self.others:
            p.close()
        self.parser.close()


class _SinkWriter:
    """The Parquet writing of a threaded parse, in a thread of its own: the SQL consumers hand it
    their tables and go on with the next block. When they wrote under a shared lock, each waited for
    the other's row groups (0.77 s of waiting per 345 MB day on two cores); a third thread fills
    those gaps. The queue is bounded (memory: ``QUEUE`` parsed blocks at most); an error of the
    writing (a full disk) reaches the consumers at their next ``put``."""

    QUEUE = 3

    def __init__(self, sink: PartSink, quarantine: "_QuarantineWriter"):
        self.sink, self.quarantine = sink, quarantine
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._q: queue.Queue = queue.Queue(maxsize=self.QUEUE)
        self._t = threading.Thread(target=self._run, name="events-write", daemon=True)
        self._t.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None or self._stop.is_set():
                return
            try:
                table, rejects = item
                self.sink.add(table)
                if rejects:
                    self.quarantine.add(rejects)
            except BaseException as exc:  # noqa: BLE001 - given to the consumers and the caller
                self.error = exc
                self._stop.set()
                return

    def put(self, table, rejects: list) -> None:
        while True:
            if self.error is not None:
                raise self.error
            if self._stop.is_set():
                raise RuntimeError("the events writer has stopped")
            try:
                self._q.put((table, rejects), timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self, stop: bool = False) -> None:
        """Wait until everything handed over is written (``stop``: drop what is still queued).
        Always waits for the thread: the sink must not be closed or discarded under its writing."""
        if stop:
            self._stop.set()
            with contextlib.suppress(queue.Empty):
                while True:
                    self._q.get_nowait()
        while self._t.is_alive():
            with contextlib.suppress(queue.Full):
                self._q.put(None, timeout=0.1)
            self._t.join(0.1)


@dataclass
class _Staged:
    """One file parsed and written, not yet referenced by the catalog: what ``_commit`` needs.

    ``res.status`` is ``failed`` (with its message) when the file could not be read; nothing of it
    is left on disk then."""

    res: EventsFileResult
    parts: list[dict] = field(default_factory=list)
    qpath: Path | None = None

    def discard(self) -> None:
        """Delete the file's written parts and quarantine file (a commit that did not happen)."""
        for p in self.parts:
            Path(p["path"]).unlink(missing_ok=True)
        if self.qpath:
            self.qpath.unlink(missing_ok=True)


def _import_one(lake: Lake, src: Source, key: str, origin: str, gpg: GpgSettings, pool, progress, overall,
                done_before: int, limits: EventLimits, opened: "_Opened | None" = None,
                collect: bool = False) -> EventsFileResult:
    t0 = time.perf_counter()
    task = (progress.add_task(Path(src.label).name[-48:], total=max(1, src.size), unit="B")
            if progress is not None else None)

    def tick(n: int) -> None:
        if task is not None:
            progress.update(task, completed=n)
            progress.update(overall, completed=done_before + n)

    staged = _stage_one(lake, src, key, gpg, pool, limits, tick, opened=opened)
    res = staged.res
    if res.disk_full:
        if task is not None:
            progress.remove_task(task)
        raise disk_full_error(lake, res)
    if res.status == "failed":
        res.seconds = time.perf_counter() - t0
        _log(lake, src, res)
        if task is not None:
            progress.remove_task(task)
        return res
    reached: list[bool] = []  # with ``collect``: the transaction's body ran (an error may come from the collector)
    try:
        res.duplicates = _commit(lake, src, key, origin, staged.parts, staged.qpath, res.rejected, res, collect,
                                 reached)
    except BaseException:
        if not reached:  # else the file may be committed (Ctrl-C in the collector): never delete its parts;
            staged.discard()  # if the COMMIT failed instead, the next collector removes them
        raise
    res.seconds = time.perf_counter() - t0
    if task is not None:
        progress.update(task, completed=max(1, src.size))
        progress.remove_task(task)
    return res


def _stage_one(lake: Lake, src: Source, key: str, gpg: GpgSettings, pool, limits: EventLimits,
               tick: Callable[[int], None] | None = None, opened: "_Opened | None" = None) -> _Staged:
    """Parse one file into its Parquet parts and quarantine file (the catalog is not touched), so
    the parse can run anywhere (a worker process, a Spark task) and the commit on one writer.

    ``opened``: the file's decryption, started ahead (``_Ahead``)."""
    res = EventsFileResult(src.label, "loaded", source_key=key)
    quarantine = _QuarantineWriter(lake, src.label)
    checks = (limits.max_line_bytes, *limits.window(_file_date(src)))
    if isinstance(pool, _DuckEngine):
        pool.begin(lake.lake_dir / "events", key, src.label, checks, limits.count_duplicate_keys)
    else:
        pool.begin(lake.lake_dir / "events", key, src.label, checks)
    parts: list[dict] = []
    try:
        with opened if opened is not None else src.open(gpg) as raw:
            counting = _Plain(raw, gzip_name=_gzip_name(src.label))

            def tick_() -> None:
                if tick is not None:
                    tick(counting.n)

            if isinstance(pool, _DuckEngine):
                try:
                    pool.run(counting, quarantine, res, tick_)
                except duckdb.Error as exc:
                    raise EventsParseError(f"{type(exc).__name__}: {exc}") from None
            else:
                last_block: tuple[int, list] = (1, [])
                long_lines: list = []  # over-long lines, read without being kept
                for first, pieces in read_blocks(counting, limits.max_line_bytes, long_lines):
                    pool.submit(first, pieces)
                    last_block = (first, pieces)  # a cut names the number of its last line
                    res.nbytes += sum(len(p) for p in pieces)
                    if pool.state.rejects:
                        quarantine.add(pool.drain_rejects())
                    if long_lines:
                        quarantine.add(list(long_lines))
                        long_lines.clear()
                    tick_()
                quarantine.add(long_lines)
        if counting.truncated:  # the intact part is kept; the cut is a rejected "line" a person can find
            last = pool.last_line if isinstance(pool, _DuckEngine) else _last_line(*last_block)
            res.truncated = max(last, 1)
            quarantine.add([(last + 1, f"the file ends inside its compressed data (cut after {counting.n:,} "
                                       f"bytes): lines after line {last:,} may be missing", b"")])
        if counting.garbage:
            _warn(res, f"{src.label}: {counting.garbage:,} bytes after the end of the gzip data ignored "
                       "(not gzip data; gzip -d ignores them too)")
        parts = pool.end()
        if not isinstance(pool, _DuckEngine):
            quarantine.add(pool.drain_rejects())
    except (DecryptError, EOFError, OSError, zlib.error, IsalError, EventsParseError, ValueError) as exc:
        pool.abort()
        quarantine.discard()
        interrupts.check()  # DuckDB reports Ctrl-C as "Query interrupted": not a failed file
        res.status = "failed"
        res.message = _failure_message(src.label, exc)
        res.disk_full = is_disk_full(exc)
        return _Staged(res)
    except BaseException:
        pool.abort()
        quarantine.discard()
        raise
    qpath = quarantine.close()
    res.events = sum(p["rows"] for p in parts)
    res.nuls = pool.nuls
    if isinstance(pool, _DuckEngine):
        res.duplicate_keys = pool.dupkeys
    res.rejected = quarantine.rows
    if quarantine.rows:
        line, reason = quarantine.first or (0, "")
        res.message = f"{quarantine.rows} line(s) rejected, first: line {line}: {reason}"
    if res.truncated:
        res.message += f"; the compressed stream is truncated: lines after line {res.truncated:,} may be missing"
    if not res.events and not quarantine.rows and not res.nbytes:  # a day of logs with no line at all
        _warn(res, f"{src.label} holds no lines (an empty day of logs)")
    return _Staged(res, parts, qpath)


def _last_line(first: int, pieces: list) -> int:
    """The number of the last line of a block of ``read_blocks`` (0: none)."""
    text = b"".join(bytes(p) for p in pieces)
    return first - 1 + text.count(b"\n") + bool(text) * (not text.endswith(b"\n"))


def _warn(res: EventsFileResult, line: str) -> None:
    """Add ``line`` (if any) to the file's warning (printed, counted, and in its message and log)."""
    res.warning = "; ".join(w for w in (res.warning, line) if w)


def _gzip_name(label: str) -> bool:
    """Whether the file's name says its plaintext is gzip (``….log.gz`` or ``….log.gz.gpg``)."""
    return strip_gpg(label)[0].lower().endswith(".gz")


def disk_full_error(lake: Lake, res: EventsFileResult) -> DiskFull:
    """The run's one line for a log file whose parts the full disk refused. The run stops there: every
    later file would fail alike (each read to its end first), and the file is not recorded as failed
    (a sync would have marked the object failed, the disk not being the input's fault); the files
    before it are committed, and the rerun imports it and the rest. Reproduced on a real full tmpfs."""
    return DiskFull(f"no space left on device while importing {res.label} (writing the lake in {lake.root}); that "
                    f"file is not imported and not marked failed, the files before it are; free some space and "
                    f"run again")


def _failure_message(label: str, exc: BaseException) -> str:
    if isinstance(exc, DecryptError):
        return str(exc)
    if isinstance(exc, EOFError):
        return f"{label}: compressed stream is truncated ({exc})"
    if isinstance(exc, EventsParseError):
        last = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        return f"{label}: internal error while parsing: {last[-1] if last else exc}"
    if isinstance(exc, (zlib.error, IsalError)):
        return f"{label}: compressed stream is corrupt ({exc})"
    if isinstance(exc, OSError) and exc.errno in (28, 122):  # ENOSPC, EDQUOT: the lake's disk, not the input
        return f"{label}: no space left on device while writing the lake ({exc.filename or exc.strerror})"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{label}: cannot read: {text}"


def _file_date(src: Source) -> str | None:
    return src.events.date if src.events else None


def _log(lake: Lake, src: Source, res: EventsFileResult, con=None, adopt: tuple[str, str] | None = None) -> None:
    """One import-log row; ``adopt`` = (legacy key, origin) records where that source comes from."""
    row = [src.label, KIND, None, _file_date(src), res.status, res.events, res.rejected, res.message]
    if con is not None:
        catalog.log_import(con, *row)
        return
    with lake.transaction(f"record {src.label}") as c:
        catalog.log_import(c, *row)
        if adopt is not None:
            catalog.set_event_origin(c, adopt[0], adopt[1])


def _commit(lake: Lake, src: Source, key: str, origin: str, parts: list[dict], qpath: Path | None, qrows: int,
            res: EventsFileResult, collect: bool = False, reached: list | None = None) -> int:
    """Switch the file's new parts in (one transaction); returns its duplicate count.

    Replaces only this source's own earlier rows. Sets ``res.added`` (net change of ``events``),
    ``res.replaced`` and, when a day lost more than REPLACE_WARN_SHARE of its events,
    ``res.warning`` (also in the message and the import log). ``collect``: collect the lake's
    garbage through the same connection once committed (``reached`` then tells the caller that an
    error may have come after the COMMIT)."""
    testhooks.pause("events-commit")  # fault tests: the file's parts written, none referenced yet
    with lake.transaction(f"commit {src.label} ({res.events:,} events)", collect=collect) as con:
        dups = _commit_in(lake, con, src, key, origin, parts, qpath, qrows, res)
        if collect and reached is not None:
            reached.append(True)
        return dups


def _commit_in(lake: Lake, con, src: Source, key: str, origin: str, parts: list[dict], qpath: Path | None,
               qrows: int, res: EventsFileResult, refresh: bool = True) -> int:
    """``_commit``'s work inside the caller's transaction ``con`` (a backfill commits many files
    in one); ``refresh``: rebuild the views afterwards (once per transaction is enough)."""
    qkey = f"{KIND}:{key}"  # (the bookkeeping tables exist: import_events and the backfill ensure them first)
    old_dates = {r[0] for r in con.execute(
        "SELECT DISTINCT event_date FROM _edx_event_parts WHERE source_key=?", [key]).fetchall()}
    if res.truncated and old_dates:  # a cut copy of a file already imported whole (or cut later): keep that
        res.status, res.events, res.rejected = "failed", 0, 0
        res.message = (f"{src.label}: the compressed stream is truncated after line {res.truncated:,}; "
                       "the earlier import of this file is kept")
        _log(lake, src, res, con)
        return 0
    new_dates = {p["date"] for p in parts}
    affected = sorted({str(d) for d in old_dates} | new_dates)
    before = _day_counts(con, affected)
    res.replaced = con.execute("SELECT coalesce(sum(rows), 0) FROM _edx_event_parts WHERE source_key=?",
                               [key]).fetchone()[0]
    catalog.replace_event_parts(con, key, [(p["date"], lake.rel(Path(p["path"])), p["rows"], p["min_time"],
                                            p["max_time"]) for p in parts])
    dups = _recompute_duplicates(lake, con, affected, key, parts)
    after = _day_counts(con, affected)
    res.added = sum(after.values()) - sum(before.values())
    _warn(res, _replacement_warning(src.label, before, after))
    first = min((p["min_time"] for p in parts if p["min_time"] is not None), default=None)
    last = max((p["max_time"] for p in parts if p["max_time"] is not None), default=None)
    catalog.replace_event_file(con, source_key=key, source_file=src.label, fingerprint=src.fingerprint,
                               file_date=_file_date(src), rows=res.events, rejected=qrows, first_event_time=first,
                               last_event_time=last, json_bytes=res.nbytes, origin=origin)
    catalog.recount_event_duplicates(con, affected)
    had_quarantine = bool(con.execute("SELECT count(*) FROM _edx_quarantine_files WHERE key=?", [qkey]).fetchone()[0])
    catalog.replace_quarantine_file(con, qkey, KIND, lake.rel(qpath) if qpath is not None and qrows else None, qrows)
    res.duplicates = dups
    res.message = "; ".join(m for m in (
        res.message, f"{dups} duplicate event(s) shared with other deliveries" if dups else "",
        f"{res.duplicate_keys} line(s) with a duplicate key (first value kept)" if res.duplicate_keys else "",
        res.warning) if m)
    _log(lake, src, res, con)
    if refresh:
        _refresh_views(lake, con, quarantine=had_quarantine or bool(qpath is not None and qrows))
    return dups


def _refresh_views(lake: Lake, con, quarantine: bool = True) -> None:
    """The views an events commit may change: ``events`` and ``events_all`` (re-created only when
    their SQL would change: ``views.event_views``), and ``quarantine`` when the commit changed its
    files. The family views select from ``events`` by name and stay; the table, model and geo views
    are left as they are."""
    base = str(lake.root.resolve())
    if quarantine:
        views.quarantine_view(con, base)
    views.event_views(con, base)


def _day_counts(con, dates: list[str]) -> dict[str, int]:
    """Rows of ``events`` per date (parts' rows less the duplicates left out), from the bookkeeping."""
    if not dates:
        return {}
    dl = f"(SELECT unnest({_sql_list(dates)}::DATE[]))"
    return {str(d): int(n) for d, n in con.execute(
        f"SELECT d, sum(n) FROM (SELECT event_date AS d, rows AS n FROM _edx_event_parts WHERE event_date IN {dl} "
        f"UNION ALL SELECT event_date, -1 FROM _edx_event_dups WHERE event_date IN {dl}) GROUP BY d").fetchall()}


def _replacement_warning(label: str, before: dict[str, int], after: dict[str, int]) -> str:
    """One line when a day lost more than REPLACE_WARN_SHARE of its events, else ""."""
    lost = sorted(((before[d] - after.get(d, 0)) / before[d], d) for d in before
                  if before[d] > 0 and before[d] - after.get(d, 0) > REPLACE_WARN_SHARE * before[d])
    if not lost:
        return ""
    share, d = lost[-1]
    n = before[d] - after.get(d, 0)
    more = f"; {len(lost) - 1} other day(s) lost more than {REPLACE_WARN_SHARE:.0%} too" if len(lost) > 1 else ""
    return (f"{label} replaced its earlier import and {d} lost {n:,} of its {before[d]:,} events "
            f"({share:.0%}){more}")


def _recompute_duplicates(lake: Lake, con, dates: list[str], key: str, parts: list[dict]) -> int:
    """Recompute ``_edx_event_dups`` for the given dates; returns the number of excluded copies
    of events delivered by ``key``.

    Identical lines have identical times, so duplicates always share a date partition.
    The copy kept is the one in the smallest source key (then the smallest line number).
    """
    if not dates:
        return 0
    dl = f"(SELECT unnest({_sql_list(dates)}::DATE[]))"
    catalog.replace_event_dups(con, dates, str(lake.root.resolve()))
    if not parts or not con.execute(f"SELECT count(*) FROM _edx_event_dups WHERE event_date IN {dl}").fetchone()[0]:
        return 0  # (the usual case: no duplicates on these dates, so the file's parts need not be read again)
    mine = f"read_parquet({_sql_list([p['path'] for p in parts])}, hive_partitioning=false)"
    return con.execute(f"SELECT count(*) FROM _edx_event_dups WHERE event_date IN {dl} "
                       f"AND CAST(event_id AS VARCHAR) IN (SELECT CAST(event_id AS VARCHAR) FROM {mine})").fetchone()[0]


def _collect_garbage(lake: Lake) -> int:
    """Delete lake files the catalog no longer references (replaced files, crashed runs): the
    store's one collector, which knows the event parts (``_edx_event_parts``) too."""
    return lake.collect_garbage()
