"""Tracking-log lines -> typed Arrow tables, one DuckDB statement per block (the hot path).

    gpg (own process) -> reader thread: isal inflate, blocks of whole lines (8 MB),
        numpy newline split, Arrow UTF-8 check -> zero-copy Arrow string column + line numbers
    -> bounded queue (2 blocks)
    -> 2 consumer threads (the caller and one more), each with its own cursor on one
        in-memory DuckDB database (threads=1 per query: two queries in parallel use the
        2 cores better than one 2-thread query): one SQL statement per block does one
        try(json_transform) parse (NULL: not JSON), event normalisation, context fields,
        time, course id fallback, user id and the id hashes
    -> good rows: per-date Parquet parts (PartSink); bad rows: (line, reason, raw bytes)

No per-row Python work is done for good lines. Bad lines (rare) get their exact reason
from the same rules as before (``events_parse._slow``) and their raw bytes from the block.

``event_id`` is a UUID made of two 64-bit DuckDB hashes: ``hash(raw line)`` and
``hash(time, length(raw line))``, where the raw line ends with a single LF (a copy delivered with
CRLF or trailing blanks gets the same id). Identical lines get identical ids; two different lines
get the same id only if both 64-bit hashes collide, and duplicates are only looked for
within one event date, among lines with the same microsecond time and length for the
second half to agree. See docs/events.md.
"""

from __future__ import annotations

import codecs
import queue
import re
import threading

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..names import COURSE_IN_URL
from .events_parse import JSON_TYPE, SCHEMA, STRING_FIELDS, UUID_TYPE, _is_utf8, _slow, repair_lone_surrogates

BLOCK_BYTES = 8 << 20  # JSON bytes per block (a longer line makes a bigger block)
QUEUE_BLOCKS = 2  # blocks decoded ahead of the SQL
BATCH_ROWS = 4096  # rows per Arrow record batch handed to DuckDB
MEMORY_LIMIT = "512MB"  # no spilling (temp_directory unset): decrypted data never goes to disk

_SPEC = "{" + ", ".join(f'"{f}": "VARCHAR"' for f in ("time", *STRING_FIELDS)) + \
    ', "event": "JSON", "context": "JSON"}'
_CTX_SPEC = ('{"course_id": "VARCHAR", "org_id": "VARCHAR", "user_id": "VARCHAR", "path": "VARCHAR", '
             '"module": {"usage_key": "VARCHAR"}}')


def _course(expr: str) -> str:
    """SQL: the course id in a URL (names.COURSE_IN_URL), percent-decoded, or NULL."""
    return f"nullif(url_decode(regexp_extract({expr}, '{COURSE_IN_URL}', 1)), '')"


# ``raw`` is scanned as VARCHAR. There is no separate validity pass: a line that can be an object
# (first and last non-blank characters '{' and '}') gets one ``try(json_transform(...))``, which is
# NULL when the line is not valid JSON. try() re-evaluates the vector row by row after an error,
# so the cheap bracket test keeps most bad lines (log noise, truncated lines) out of it, and lines
# with invalid UTF-8 are hidden before the SQL (``_mask_invalid_utf8``), since yyjson would refuse
# them too. Reasons: 'no time', 'invalid time' are final; 'check' means "not valid JSON or not an
# object for DuckDB" and is classified (or skipped when blank) in Python from the raw bytes.
SQL = f"""
WITH p AS (
    SELECT line, raw AS txt,
           CASE WHEN (starts_with(raw, '{{') OR starts_with(ltrim(raw, ' \t\r\n'), '{{'))
                     AND (ends_with(raw, '}}\n') OR ends_with(rtrim(raw, ' \t\r\n'), '}}'))
                THEN try(json_transform(raw, '{_SPEC}')) END AS e
    FROM blk
), t AS (
    SELECT line, txt, e IS NOT NULL AS ok, e,
           CASE WHEN ends_with(e.time, '+00:00') OR ends_with(e.time, 'Z') THEN TRY_CAST(e.time AS TIMESTAMP)
                ELSE TRY_CAST(e.time AS TIMESTAMPTZ)::TIMESTAMP END AS ts,
           CASE WHEN e.context IS NOT NULL AND starts_with(e.context, '{{')
                THEN json_transform(e.context, '{_CTX_SPEC}') END AS c,
           CASE WHEN starts_with(e.event, '"') THEN (e.event->>'$') END AS estr,
           -- the line as hashed for event_id: a copy delivered with CRLF or trailing blanks is the same event
           CASE WHEN ends_with(txt, '\r\n') OR ends_with(txt, ' \n') OR ends_with(txt, '\t\n')
                THEN rtrim(txt, ' \t\r\n') || '\n' ELSE txt END AS idtxt
    FROM p
)
SELECT
    hash(idtxt) AS h1, hash(ts, strlen(idtxt)) AS h2,
    ts AS time, ts::DATE AS event_date,
    e.username AS username,
    CASE WHEN TRY_CAST(c.user_id AS BIGINT) IS NOT NULL
              AND (c.user_id = TRY_CAST(c.user_id AS BIGINT)::VARCHAR
                   OR regexp_full_match(c.user_id, '\\s*-?[0-9]+\\s*'))
         THEN TRY_CAST(c.user_id AS BIGINT) END AS user_id,
    CASE WHEN c.course_id <> '' THEN c.course_id  -- CASE, not coalesce: the regexes run only on the rest
         ELSE coalesce({_course('e.page')},
                       CASE WHEN starts_with(e.event_type, '/') THEN {_course('e.event_type')} END,
                       {_course('c.path')}) END AS course_id,
    c.org_id AS org_id,
    e.event_type AS event_type, e.name AS name, e.event_source AS event_source, e.session AS session,
    e.ip AS ip, e.agent AS agent, e.host AS host, e.referer AS referer, e.accept_language AS accept_language,
    e.page AS page, c.path AS path,
    c.module.usage_key AS module_id,
    CASE WHEN estr IS NOT NULL THEN (CASE WHEN estr <> '' AND json_valid(estr) THEN estr END)
         WHEN e.event = 'null' THEN NULL
         ELSE e.event::VARCHAR END AS event,
    CASE WHEN estr IS NOT NULL AND estr <> '' AND NOT json_valid(estr) THEN estr END AS event_text,
    CASE WHEN e.context <> 'null' THEN e.context::VARCHAR END AS context,
    line,
    CASE WHEN NOT ok THEN 'check'
         WHEN e.time IS NULL OR e.time = '' THEN 'no time'
         -- ISO 8601 only (DuckDB's casts also take 'epoch', 'infinity', BC dates) and a year that
         -- a date can hold after conversion to UTC (Parquet readers and Python need 1..9999)
         WHEN ts IS NULL OR NOT isfinite(ts) OR year(ts) NOT BETWEEN 1 AND 9999
              OR NOT (CASE WHEN e.time[5] = '-' THEN true ELSE ltrim(e.time)[5] = '-' END)
              THEN 'invalid time' END AS reason
FROM t
"""


class Block:
    __slots__ = ("first", "data", "offsets", "table", "nbytes")

    def __init__(self, first: int, data, offsets: np.ndarray, table: pa.Table):
        self.first, self.data, self.offsets, self.table = first, data, offsets, table
        self.nbytes = len(data)

    def raw(self, line: int) -> bytes:
        i = line - self.first
        b = bytes(self.data[self.offsets[i]:self.offsets[i + 1]])
        return b[:-1] if b.endswith(b"\n") else b


def make_block(first: int, data) -> Block:
    """A block of whole lines, each ending with a newline -> Arrow table (raw, line); zero-copy.

    ``raw`` includes the newline (JSON ignores it; ``event_id`` hashes it: the last line of a
    file gets one added, so the same line hashes the same wherever it is)."""
    buf = np.frombuffer(data, np.uint8)
    nl = np.flatnonzero(buf == 10)
    n = len(nl)
    offsets = np.empty(n + 1, np.int64)
    offsets[0] = 0
    np.add(nl, 1, out=offsets[1:])
    # large_string over the raw bytes. Lines with invalid UTF-8 (rare) are hidden from the SQL
    # (first byte set to '#' in a copy of the block) so that the JSON parse never sees them.
    scan = _mask_invalid_utf8(data, offsets)
    raw = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(scan))
    lines = pa.array(np.arange(first, first + n, dtype=np.int64))
    # several record batches: DuckDB scans Arrow batches in parallel, one batch per thread
    step = BATCH_ROWS
    batches = [pa.RecordBatch.from_arrays([raw.slice(i, step), lines.slice(i, step)], names=["raw", "line"])
               for i in range(0, max(n, 1), step)]
    return Block(first, data, offsets, pa.Table.from_batches(batches))


_BAD_UTF8 = re.compile(r"Invalid UTF8 sequence at string index (\d+)")


def _mask_invalid_utf8(data, offsets: np.ndarray):
    """``data``, or a copy in which each line holding invalid UTF-8 starts with '#'.

    Arrow's UTF-8 validation (fast) names the first bad line; the rest is validated after it.
    If its message cannot be read, the lines are checked with Python's decoder instead."""
    n = len(offsets) - 1
    arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))
    bad = []
    start = 0
    while start < n:
        try:
            arr.slice(start).validate(full=True)
            break
        except pa.ArrowInvalid as exc:
            m = _BAD_UTF8.search(str(exc))
            if m is None:
                return _mask_slow(data, offsets)
            i = start + int(m.group(1))
            bad.append(int(offsets[i]))
            start = i + 1
    if not bad:
        return data
    out = bytearray(data)
    for o in bad:
        out[o] = 0x23  # '#'
    return out


def _mask_slow(data, offsets: np.ndarray):
    mv = memoryview(data)
    out = None
    for i in range(len(offsets) - 1):
        a, b = int(offsets[i]), int(offsets[i + 1])
        try:
            codecs.utf_8_decode(mv[a:b], "strict", True)
        except UnicodeDecodeError:
            if out is None:
                out = bytearray(data)
            out[a] = 0x23
    return data if out is None else out


def iter_blocks(stream, block_bytes: int | None = None):
    """Blocks of whole lines from a binary stream (``read()`` returns chunks, b"" at the end)."""
    block_bytes = block_bytes or BLOCK_BYTES
    pending: list = []
    size = 0
    line = 1
    read = stream.read
    while True:
        chunk = read(block_bytes)
        if chunk:
            pending.append(chunk)
            size += len(chunk)
            if size < block_bytes:
                continue
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            cut = data.rfind(b"\n")
            if cut < 0:  # a line longer than the block: keep reading
                pending, size = [data], len(data)
                continue
            if cut == len(data) - 1:
                pending, size = [], 0
                blk = data
            else:
                rest = data[cut + 1:]
                pending, size = [rest], len(rest)
                blk = memoryview(data)[: cut + 1]
            b = make_block(line, blk)
            line += len(b.offsets) - 1
            yield b
            continue
        data = b"".join(pending)
        if data.strip():
            if not data.endswith(b"\n"):
                data += b"\n"
            yield make_block(line, data)
        return


class BlockReader:
    """Runs ``iter_blocks`` in a thread, ``QUEUE_BLOCKS`` ahead, for one or more consumer threads.

    ``get()`` returns the next block, None at the end, and re-raises the reader's exception
    (every consumer sees the end and the error). ``close()`` stops everything early.
    """

    _END = ("end", None)

    def __init__(self, stream):
        self.stream = stream
        self._stop = threading.Event()
        self._q: queue.Queue = queue.Queue(maxsize=QUEUE_BLOCKS)
        self._t = threading.Thread(target=self._run, name="events-reader", daemon=True)
        self._t.start()

    def _run(self) -> None:
        try:
            for b in iter_blocks(self.stream):
                if not self._put(("block", b)):
                    return
            self._put(self._END)
        except BaseException as exc:  # re-raised in the consumers
            self._put(("error", exc))

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(self) -> "Block | None":
        while True:
            if self._stop.is_set():
                return None
            try:
                kind, val = self._q.get(timeout=0.1)
            except queue.Empty:
                continue
            if kind == "block":
                return val
            self._q.put((kind, val))  # for the other consumers
            if kind == "end":
                return None
            raise val

    def close(self) -> None:
        """Stop the reader thread and wake the consumers."""
        self._stop.set()
        while self._t.is_alive():
            try:
                self._q.get(timeout=0.1)
            except queue.Empty:
                pass
        self._t.join()


class DuckParser:
    """One in-memory DuckDB connection that turns blocks into event tables."""

    def __init__(self, threads: int = 2, con=None):
        import duckdb

        if con is None:
            # rows come back in any order: they carry their line number
            con = duckdb.connect(config={"threads": max(1, threads), "memory_limit": MEMORY_LIMIT,
                                         "preserve_insertion_order": False, "temp_directory": "",
                                         "allocator_flush_threshold": "64MB",
                                         "allocator_bulk_deallocation_flush_threshold": "128MB"})
        # naive times are UTC; offsets are converted to UTC. Set on every cursor too: a cursor is a
        # session of its own and starts in the host's time zone.
        con.execute("SET TimeZone='UTC'")
        self.con = con

    def cursor(self) -> "DuckParser":
        """Another parser on the same database, for another thread."""
        return DuckParser(con=self.con.cursor())

    def _run(self, table: pa.Table) -> pa.Table:
        self.con.register("blk", table)
        try:
            return self.con.sql(SQL).to_arrow_table()  # relation: DuckDB builds Arrow directly (arrow collector)
        finally:
            self.con.unregister("blk")

    def parse(self, block: Block, rejects: list) -> pa.Table | None:
        """Good rows as a SCHEMA table (or None); bad lines appended to ``rejects``."""
        res = self._run(block.table)
        reason = res.column("reason")
        repaired = None
        if reason.null_count < len(reason):
            idx = pc.indices_nonzero(pc.is_valid(reason)).to_numpy()
            bad = res.select(["line", "reason"]).take(idx).to_pylist()
            fixed: dict[int, bytes] = {}
            for r in bad:
                line, why = r["line"], r["reason"]
                raw = block.raw(line)
                if why == "check":
                    got = _slow(raw)
                    if got is None:
                        continue  # blank line
                    if not isinstance(got, str) and (f := repair_lone_surrogates(raw)) is not None:
                        fixed[line] = f  # parsed again below, with U+FFFD for the lone surrogates
                        continue
                    why = got if isinstance(got, str) else ("not JSON" if _is_utf8(raw) else "invalid UTF-8")
                rejects.append((line, why, raw))
            if fixed:
                repaired = self._repaired(fixed, block, rejects)
            # the good rows as zero-copy slices around the (few) bad ones, rather than a filtered copy
            pieces, prev = [], 0
            for i in idx.tolist():
                if i > prev:
                    pieces.append(res.slice(prev, i - prev))
                prev = i + 1
            if prev < res.num_rows:
                pieces.append(res.slice(prev))
            if repaired is not None:
                pieces.append(repaired)
            res = pa.concat_tables(pieces) if pieces else res.slice(0, 0)
        if res.num_rows == 0:
            return None
        return _to_schema(res)

    def _repaired(self, fixed: dict[int, bytes], block: Block, rejects: list) -> pa.Table | None:
        """Rows of the lines whose lone surrogate escapes were replaced; the rest go to ``rejects``."""
        lines = sorted(fixed)
        table = pa.table({"raw": pa.array([fixed[n] + b"\n" for n in lines], pa.large_binary()).cast(pa.large_string()),
                          "line": pa.array(lines, pa.int64())})
        res = self._run(table)
        reason = res.column("reason")
        for line, why in zip(res.column("line").to_pylist(), reason.to_pylist()):
            if why is not None:
                rejects.append((line, "not JSON" if why == "check" else why, block.raw(line)))
        return res.filter(pc.is_null(reason)) if res.num_rows else None

    def close(self) -> None:
        self.con.close()


def _to_schema(res: pa.Table) -> pa.Table:
    n = res.num_rows
    ids = np.empty((n, 2), dtype=">u8")
    ids[:, 0] = res.column("h1").to_numpy()
    ids[:, 1] = res.column("h2").to_numpy()
    storage = pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), n, [None, pa.py_buffer(ids)])
    cols = {
        "event_id": pa.ExtensionArray.from_storage(UUID_TYPE, storage),
        "event": _json(res.column("event")),
        "context": _json(res.column("context")),
    }
    arrays = []
    for f in SCHEMA:
        a = cols.get(f.name)
        if a is None:
            a = res.column(f.name)
            if a.type != f.type:
                a = a.cast(f.type)
        arrays.append(a)
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _json(col: pa.ChunkedArray) -> pa.ChunkedArray:
    chunks = [c.cast(pa.string()) if c.type != pa.string() else c for c in col.chunks]
    return pa.chunked_array([pa.ExtensionArray.from_storage(JSON_TYPE, c) for c in chunks], JSON_TYPE)
