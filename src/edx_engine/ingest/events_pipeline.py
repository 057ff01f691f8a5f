"""Streaming machinery of the events import: block reader, Parquet sinks, parse workers.

    gpg (own process) -> gunzip (isal, reader) -> blocks of whole lines
        -> N worker processes: parse_block -> per-date Parquet part files

The reader hands blocks of complete lines (a few MB) to worker processes over pipes;
each worker parses its blocks and appends them to its own per-date Parquet files, so
memory stays bounded by (workers x buffered row group) whatever the file size, and no
plaintext touches the disk except as Parquet columns. With ``workers=0`` the same code
runs inline (small files, tests).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import traceback
import uuid
from multiprocessing.connection import Connection, wait as mp_wait
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..store.files import finish_atomic
from .events_parse import KEPT_BYTES, MAX_LINE_BYTES, SCHEMA, parse_block, too_long

BLOCK_SIZE = 4 << 20  # read size of plain (not gzipped) files
ROW_GROUP_ROWS = 65536  # rows buffered per date before a Parquet row group is written
MAX_OPEN_DATES = 32  # beyond this many open per-date files, the oldest is closed (a new part follows)
MAX_IN_FLIGHT = 2  # blocks queued per worker

# Blocks are allocated and freed all the time: keep them on the heap instead of paying
# page faults for a fresh mmap each time (glibc's defaults hand >128 kB blocks to mmap).
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}


def tune_malloc() -> None:
    """The same tuning for the current (reader) process, through mallopt; glibc only."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


PART_SCHEMA = SCHEMA.append(pa.field("source_file", pa.string())).append(pa.field("source_key", pa.string()))
# Columns with a value per event (ids, times, the JSON payloads, line numbers): their dictionary
# would only be built to be thrown away (Parquet falls back to plain encoding past 1 MB of
# dictionary). The other columns repeat (users, courses, types, pages, agents) and keep one. On the
# browser-heavy benchmark mix, parts are about 5 % smaller; the CPU difference is within the noise.
NO_DICTIONARY = {"event_id", "time", "event", "event_text", "context", "line"}
DICTIONARY_COLUMNS = [f.name for f in PART_SCHEMA if f.name not in NO_DICTIONARY]
# Columns without footer statistics: long texts and ids nobody filters by range, whose min/max Parquet
# would compute page by page (the payloads are most of a day's bytes: about 8 % of the writing's CPU).
# The columns that queries filter on keep theirs, and so do the personal ones (``scrub`` counts
# their values from the null counts).
NO_STATISTICS = {"event_id", "event", "event_text", "context", "referer", "page", "host", "accept_language",
                 "path", "line"}
STATISTICS_COLUMNS = [f.name for f in PART_SCHEMA if f.name not in NO_STATISTICS]


class EventsParseError(Exception):
    """A worker failed in an unexpected way (a bug, not bad data)."""


def read_blocks(stream, max_line: int = MAX_LINE_BYTES, rejects: list | None = None):
    """Yield ``(first_line_number, pieces)`` from a binary stream, without copying big chunks.

    ``pieces`` is a list of bytes-like objects that together hold whole lines: the tail
    carried over from earlier reads, then the current chunk up to its last newline. A
    line longer than a chunk makes a bigger block, up to ``max_line`` bytes: beyond that,
    the line is read to its end without being kept, and ``(line, reason, first KB)`` is
    appended to ``rejects`` (memory stays bounded whatever the input, e.g. a gzip bomb).
    The last line may lack its newline.
    """
    line = 1
    pending: list = []
    size = 0
    skip: list | None = None  # [first KB, length so far] of an over-long line being skipped
    read = stream.read
    while True:
        chunk = read(BLOCK_SIZE)
        if not chunk:
            break
        if skip is not None:
            i = chunk.find(b"\n")
            if i < 0:
                skip[1] += len(chunk)
                continue
            skip[1] += i
            if rejects is not None:
                rejects.append((line, too_long(max_line, skip[1]), skip[0]))
            line += 1
            skip = None
            chunk = chunk[i + 1:]
            if not chunk:
                continue
        cut = chunk.rfind(b"\n")
        if cut < 0:
            pending.append(chunk)
            size += len(chunk)
            if size > max_line:  # pending starts a line and holds no newline: too long
                skip = [b"".join(pending)[:KEPT_BYTES], size]
                pending, size = [], 0
            continue
        pieces = pending
        pieces.append(memoryview(chunk)[: cut + 1] if cut < len(chunk) - 1 else chunk)
        pending = [chunk[cut + 1:]] if cut < len(chunk) - 1 else []
        size = len(pending[0]) if pending else 0
        yield line, pieces
        line += chunk.count(b"\n", 0, cut + 1)
    if skip is not None:
        if rejects is not None:
            rejects.append((line, too_long(max_line, skip[1]), skip[0]))
        return
    if pending and any(bytes(p).strip() for p in pending):
        yield line, pending


def block_lines(pieces) -> list:
    """The lines of a block given as pieces (each piece but the last ends with a newline)."""
    if len(pieces) == 1:
        b = pieces[0]
        lines = (b if isinstance(b, bytes) else bytes(b)).split(b"\n")
    else:
        lines = b"".join(pieces).split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    return lines


class PartSink:
    """Per-date Parquet files of one source file written by one process."""

    def __init__(self, events_dir: Path, source_key: str, source_file: str, tag: str,
                 compression: str = "zstd", compression_level: int | None = 1):
        self.dir, self.key, self.label, self.tag = Path(events_dir), source_key, source_file, tag
        self.compression, self.level = compression, compression_level
        self.buffers: dict[str, list[pa.Table]] = {}
        self.buffered: dict[str, int] = {}
        self.writers: dict[str, tuple[pq.ParquetWriter, Path, list]] = {}  # date -> writer, final path, [rows,min,max]
        self.parts: list[dict] = []
        self.rows = 0
        self.row_group_rows = ROW_GROUP_ROWS

    def add(self, table: pa.Table | None) -> None:
        if table is None or table.num_rows == 0:
            return
        dates = table.column("event_date")
        mm = pc.min_max(dates)
        lo, hi = mm["min"], mm["max"]
        if lo == hi:
            self._buffer(lo.as_py().isoformat(), table)
            return
        for d in pc.unique(dates).to_pylist():
            self._buffer(d.isoformat(), table.filter(pc.equal(dates, pa.scalar(d, pa.date32()))))

    def _buffer(self, date: str, table: pa.Table) -> None:
        self.buffers.setdefault(date, []).append(table)
        self.buffered[date] = self.buffered.get(date, 0) + table.num_rows
        if self.buffered[date] >= self.row_group_rows:
            self._flush(date)

    def _flush(self, date: str) -> None:
        tables = self.buffers.pop(date, [])
        self.buffered.pop(date, None)
        if not tables:
            return
        t = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        n = t.num_rows
        t = t.append_column(PART_SCHEMA.field("source_file"), pa.array([self.label] * n, pa.string()))
        t = t.append_column(PART_SCHEMA.field("source_key"), pa.array([self.key] * n, pa.string()))
        if date not in self.writers:
            if len(self.writers) >= MAX_OPEN_DATES:
                self._close(next(iter(self.writers)))
            d = self.dir / f"date={date}"
            d.mkdir(parents=True, exist_ok=True)
            final = d / f"{self.key}-{uuid.uuid4().hex[:12]}-{self.tag}.parquet"
            tmp = final.with_name(final.name + ".tmp")
            w = pq.ParquetWriter(tmp, PART_SCHEMA, compression=self.compression,
                                 compression_level=self.level, use_dictionary=DICTIONARY_COLUMNS,
                                 write_statistics=STATISTICS_COLUMNS)
            self.writers[date] = (w, final, [0, None, None])
        w, _, st = self.writers[date]
        w.write_table(t, row_group_size=max(n, 1))
        ts = pc.min_max(t.column("time"))
        st[0] += n
        lo, hi = ts["min"].value, ts["max"].value
        st[1] = lo if st[1] is None or lo < st[1] else st[1]
        st[2] = hi if st[2] is None or hi > st[2] else st[2]
        self.rows += n

    def _close(self, date: str) -> None:
        w, final, st = self.writers.pop(date)
        w.close()
        finish_atomic(final.with_name(final.name + ".tmp"), final)
        self.parts.append({"path": str(final), "date": date, "rows": st[0], "min_time": st[1], "max_time": st[2]})

    def close(self) -> list[dict]:
        for date in list(self.buffers):
            self._flush(date)
        for date in list(self.writers):
            self._close(date)
        return self.parts

    def discard(self) -> None:
        self.buffers.clear()
        for date, (w, final, _) in list(self.writers.items()):
            try:
                w.close()
            except Exception:
                pass
            final.with_name(final.name + ".tmp").unlink(missing_ok=True)
        self.writers.clear()
        for p in self.parts:
            Path(p["path"]).unlink(missing_ok=True)
        self.parts = []


class _FileState:
    def __init__(self) -> None:
        self.rejects: list[tuple[int, str, bytes]] = []
        self.rows = 0
        self.counts: dict[str, int] = {}  # "nuls": lines from whose values NUL characters were removed


def worker_fd_main(fd: int) -> None:
    """Entry point of a parse worker process (``fd``: its end of a socket pair)."""
    import gc

    gc.disable()  # parsed rows hold no reference cycles; collections would only cost time
    _worker_main(Connection(fd))


def _worker_main(conn) -> None:  # runs in a child process
    sink: PartSink | None = None
    checks = None
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        kind = msg[0]
        try:
            if kind == "begin":
                sink = PartSink(*msg[1])
                checks = msg[2]
            elif kind == "block":
                pieces = [conn.recv_bytes() for _ in range(msg[2])]
                rejects: list = []
                counts: dict = {}
                table = parse_block(block_lines(pieces), msg[1], rejects, checks, counts)
                del pieces
                sink.add(table)  # type: ignore[union-attr]
                conn.send(("done", table.num_rows if table is not None else 0, rejects, counts.get("nuls", 0)))
            elif kind == "end":
                conn.send(("parts", sink.close() if sink else []))  # type: ignore[union-attr]
                sink = None
            elif kind == "abort":
                if sink:
                    sink.discard()
                sink = None
                conn.send(("aborted",))
            elif kind == "stop":
                return
        except BaseException:
            if sink:
                try:
                    sink.discard()
                except Exception:
                    pass
                sink = None
            conn.send(("error", traceback.format_exc()))


class ParsePool:
    """Parse blocks of one file at a time, inline (workers=0) or in worker processes.

    Workers are plain ``python -c`` subprocesses talking over a socket pair, so nothing
    depends on how the calling program was started (no re-import of ``__main__``).
    """

    def __init__(self, workers: int = 2):
        self.n = workers
        self.checks: tuple | None = None
        self.state = _FileState()
        self.sink: PartSink | None = None
        self.error: str | None = None
        self._start()

    def _start(self) -> None:
        self.conns: list[Connection] = []
        self.procs: list[subprocess.Popen] = []
        self.in_flight: dict[int, int] = {}
        for _ in range(self.n):
            parent, child = socket.socketpair()
            fd = child.fileno()
            code = f"from edx_engine.ingest.events_pipeline import worker_fd_main; worker_fd_main({fd})"
            p = subprocess.Popen([sys.executable, "-c", code], pass_fds=(fd,), stdin=subprocess.DEVNULL,
                                 env={**os.environ, **MALLOC_ENV})
            child.close()
            conn = Connection(parent.detach())
            self.conns.append(conn)
            self.procs.append(p)
            self.in_flight[id(conn)] = 0

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    # -- one file ---------------------------------------------------------------------
    def begin(self, events_dir: Path, source_key: str, source_file: str, checks: tuple | None = None) -> None:
        """``checks``: (max line bytes, plausible time window lo, hi) for ``parse_block``."""
        self.state = _FileState()
        self.error = None
        self.checks = checks
        run = uuid.uuid4().hex[:6]
        if self.n == 0:
            self.sink = PartSink(events_dir, source_key, source_file, f"{run}0")
            return
        try:
            for i, c in enumerate(self.conns):
                c.send(("begin", (str(events_dir), source_key, source_file, f"{run}{i}"), checks))
        except OSError as exc:
            raise EventsParseError(f"parse worker unreachable: {exc}") from None

    def submit(self, first_line: int, pieces: list) -> None:
        if self.n == 0:
            table = parse_block(block_lines(pieces), first_line, self.state.rejects, self.checks, self.state.counts)
            if table is not None:
                self.state.rows += table.num_rows
                self.sink.add(table)  # type: ignore[union-attr]
            return
        while True:
            free = [c for c in self.conns if self.in_flight[id(c)] < MAX_IN_FLIGHT]
            if free:
                c = min(free, key=lambda c: self.in_flight[id(c)])
                break
            self._collect(block=True)
        try:
            c.send(("block", first_line, len(pieces)))
            for piece in pieces:
                c.send_bytes(piece)
        except OSError as exc:
            self._check()
            raise EventsParseError(f"parse worker unreachable: {exc}") from None
        self.in_flight[id(c)] += 1
        self._collect(block=False)

    def _handle(self, c, msg) -> None:
        if msg[0] == "done":
            self.in_flight[id(c)] -= 1
            self.state.rows += msg[1]
            self.state.rejects.extend(msg[2])
            self.state.counts["nuls"] = self.state.counts.get("nuls", 0) + msg[3]
        elif msg[0] == "error":
            self.in_flight[id(c)] = max(0, self.in_flight[id(c)] - 1)
            self.error = self.error or msg[1]

    def _recv(self, c):
        try:
            return c.recv()
        except (EOFError, OSError):
            self._check()
            raise EventsParseError("parse worker closed its connection") from None

    def _collect(self, block: bool) -> None:
        busy = [c for c in self.conns if self.in_flight[id(c)] > 0]
        if busy:
            for c in mp_wait(busy, timeout=None if block else 0):
                self._handle(c, self._recv(c))
        self._check()

    def _check(self) -> None:
        if self.error:
            raise EventsParseError(self.error)
        for p in self.procs:
            if p.poll() is not None:
                raise EventsParseError(f"parse worker died (exit code {p.returncode})")

    @property
    def nuls(self) -> int:
        """Lines of the current file from whose values NUL characters were removed."""
        return self.state.counts.get("nuls", 0)

    def drain_rejects(self) -> list:
        r, self.state.rejects = self.state.rejects, []
        return r

    def end(self) -> list[dict]:
        """Finish the file: close the part files; returns [{path, date, rows, min_time, max_time}]."""
        if self.n == 0:
            parts = self.sink.close()  # type: ignore[union-attr]
            self.sink = None
            return parts
        while any(self.in_flight[id(c)] for c in self.conns):
            self._collect(block=True)
        parts: list[dict] = []
        try:
            for c in self.conns:
                c.send(("end",))
        except OSError as exc:
            raise EventsParseError(f"parse worker unreachable: {exc}") from None
        for c in self.conns:
            msg = self._recv(c)
            if msg[0] == "error":
                self.error = self.error or msg[1]
            else:
                parts.extend(msg[1])
        if self.error:
            for p in parts:
                Path(p["path"]).unlink(missing_ok=True)
            raise EventsParseError(self.error)
        return parts

    def abort(self) -> None:
        """Forget the current file; its part files are deleted."""
        if self.n == 0:
            if self.sink:
                self.sink.discard()
            self.sink = None
            return
        try:
            for c in self.conns:
                while self.in_flight[id(c)] > 0:
                    self._handle(c, self._recv(c))
                c.send(("abort",))
            for c in self.conns:
                self._recv(c)
            self.error = None
            self._check()
        except (OSError, EOFError, EventsParseError):
            self.close()  # a worker is gone or confused: start afresh
            self._start()
        self.error = None

    def close(self) -> None:
        for c in self.conns:
            try:
                c.send(("stop",))
            except OSError:
                pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for c in self.conns:
            c.close()
        self.conns, self.procs, self.in_flight = [], [], {}

    def __enter__(self) -> "ParsePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
