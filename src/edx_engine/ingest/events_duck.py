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

``event_id`` is a UUID made of two 64-bit DuckDB hashes, stored as its canonical text:
``hash(raw line)`` and ``hash(time, length(raw line))``, where the raw line ends with a single LF (a copy delivered with
CRLF or trailing blanks gets the same id). Identical lines get identical ids; two different lines
get the same id only if both 64-bit hashes collide, and duplicates are only looked for
within one event date, among lines with the same microsecond time and length for the
second half to agree. See docs/events.md.
"""

from __future__ import annotations

import os
import queue
import threading

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..names import course_in_url_sql
from .events_parse import (BAD_OFFSET_RE, JSON_TYPE, KEPT_BYTES, MAX_LINE_BYTES, SCHEMA, STRING_FIELDS, _is_utf8,
                           _slow, invalid_utf8_rows, repair_lone_surrogates, strip_nul, too_long, uuid_text)

BLOCK_BYTES = 8 << 20  # JSON bytes per block (a longer line makes a bigger block)
QUEUE_BLOCKS = 2  # blocks decoded ahead of the SQL
BATCH_ROWS = 4096  # rows per Arrow record batch handed to DuckDB
MEMORY_LIMIT = "512MB"  # no spilling (temp_directory unset): decrypted data never goes to disk

# ``event`` as VARCHAR: a string comes out unescaped (its content), anything else as its JSON text, so a
# string holding JSON and an object end up alike without a second parse to unescape the string
_SPEC = "{" + ", ".join(f'"{f}": "VARCHAR"' for f in ("time", *STRING_FIELDS, "event")) + \
    ', "context": "JSON"}'
_CTX_SPEC = ('{"course_id": "VARCHAR", "org_id": "VARCHAR", "user_id": "VARCHAR", "path": "VARCHAR", '
             '"module": {"usage_key": "VARCHAR"}}')


def _course(expr: str) -> str:
    """SQL: the course id in a URL (names.course_id_from_url), percent-decoded, or NULL."""
    return course_in_url_sql(expr)


# ``raw`` is scanned as VARCHAR. There is no separate validity pass: a line that can be an object
# (first and last non-blank characters '{' and '}') gets one ``try(json_transform(...))``, which is
# NULL when the line is not valid JSON. try() re-evaluates the vector row by row after an error,
# so the cheap bracket test keeps most bad lines (log noise, truncated lines) out of it, and lines
# with invalid UTF-8 are hidden before the SQL (``_mask_invalid_utf8``), since yyjson would refuse
# them too. Reasons: 'no time', 'invalid time' are final; 'check' means "not valid JSON or not an
# object for DuckDB" and is classified (or skipped when blank) in Python from the raw bytes.
_SQL = f"""
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
           CASE WHEN e.event <> '' THEN json_valid(e.event) END AS evok,
           -- the line as hashed for event_id: a copy delivered with CRLF or trailing blanks is the same event
           CASE WHEN ends_with(txt, '\r\n') OR ends_with(txt, ' \n') OR ends_with(txt, '\t\n')
                THEN rtrim(txt, ' \t\r\n') || '\n' ELSE txt END AS idtxt @KEYS@
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
    -- CASE, not coalesce: the regexes run only on the rest; blanks around a context's id are no part of it
    -- (>= '!': the first byte is no blank nor control character; trim() alone costs 0.45 us a row)
    CASE WHEN c.course_id >= '!' AND NOT (ends_with(c.course_id, ' ') OR ends_with(c.course_id, '\t')
                                          OR ends_with(c.course_id, '\r') OR ends_with(c.course_id, '\n'))
         THEN c.course_id
         WHEN trim(c.course_id, ' \t\r\n') <> '' THEN trim(c.course_id, ' \t\r\n')
         ELSE coalesce({_course('e.page')},
                       CASE WHEN starts_with(e.event_type, '/') THEN {_course('e.event_type')} END,
                       {_course('c.path')}) END AS course_id,
    c.org_id AS org_id,
    e.event_type AS event_type, e.name AS name, e.event_source AS event_source, e.session AS session,
    e.ip AS ip, e.agent AS agent, e.host AS host, e.referer AS referer, e.accept_language AS accept_language,
    e.page AS page, c.path AS path,
    c.module.usage_key AS module_id,
    -- JSON (an object, a list, a scalar, a string holding JSON) or else the string's text; "" and null: neither
    CASE WHEN evok THEN e.event END AS event,
    CASE WHEN NOT evok THEN e.event END AS event_text,
    CASE WHEN e.context <> 'null' THEN e.context::VARCHAR END AS context,
    @DUPKEYS@
    contains(txt, '\\u0000') AS nul,  -- a NUL escape somewhere (events_parse.strip_nul): rare, a memchr-fast test
    line,
    CASE WHEN NOT ok THEN 'check'
         WHEN e.time IS NULL OR e.time = '' THEN 'no time'
         -- ISO 8601 only (DuckDB's casts also take 'epoch', 'infinity', BC dates) and a year that
         -- a date can hold after conversion to UTC (Parquet readers and Python need 1..9999)
         WHEN ts IS NULL OR NOT isfinite(ts) OR year(ts) NOT BETWEEN 1 AND 9999
              OR NOT (CASE WHEN e.time[5] = '-' THEN true ELSE ltrim(e.time)[5] = '-' END)
              -- an offset no place has (the cast moves +25:00 by a day); UTC's own suffixes skip the regex
              OR (NOT ends_with(e.time, '+00:00') AND NOT ends_with(e.time, 'Z')
                  AND regexp_matches(e.time, '{BAD_OFFSET_RE}'))
              THEN 'invalid time'
         @WINDOW@ END AS reason
FROM t
"""


# top-level keys given twice (the first value is kept): a second parse of the line, hence optional
_KEYS = ", CASE WHEN e IS NOT NULL THEN try(json_keys(txt)) END AS k"
_DUPKEYS = "len(k) <> len(list_distinct(k)) AS dupkeys,"


def block_sql(lo=None, hi=None, dupkeys: bool = False) -> str:
    """The block statement; times outside [lo, hi) (datetimes, None: unbounded) are 'implausible time'."""
    cond = ([f"ts < TIMESTAMP '{lo.isoformat(sep=' ')}'"] if lo is not None else []) + \
           ([f"ts >= TIMESTAMP '{hi.isoformat(sep=' ')}'"] if hi is not None else [])
    return (_SQL.replace("@WINDOW@", f"WHEN {' OR '.join(cond)} THEN 'implausible time'" if cond else "")
            .replace("@KEYS@", _KEYS if dupkeys else "").replace("@DUPKEYS@", _DUPKEYS if dupkeys else ""))


SQL = block_sql()  # no time window


class Block:
    """Whole lines from ``first`` on, as an Arrow table for the SQL; ``rejects`` are lines already
    quarantined by the reader (over-long lines: hidden from the SQL, their numbers in ``hidden``)."""

    __slots__ = ("first", "data", "offsets", "table", "nbytes", "rejects", "hidden")

    def __init__(self, first: int, data, offsets: np.ndarray, table: pa.Table, rejects: list | None = None):
        self.first, self.data, self.offsets, self.table = first, data, offsets, table
        self.nbytes = len(data)
        self.rejects = rejects or []
        self.hidden = {r[0] for r in self.rejects}

    def raw(self, line: int) -> bytes:
        i = line - self.first
        b = bytes(self.data[self.offsets[i]:self.offsets[i + 1]])
        return b[:-1] if b.endswith(b"\n") else b


def make_block(first: int, data, max_line: int = MAX_LINE_BYTES) -> Block:
    """A block of whole lines, each ending with a newline -> Arrow table (raw, line); zero-copy.

    ``raw`` includes the newline (JSON ignores it; ``event_id`` hashes it: the last line of a
    file gets one added, so the same line hashes the same wherever it is). Lines longer than
    ``max_line`` (a vectorised length test) go to the block's ``rejects`` and are hidden from the SQL."""
    buf = np.frombuffer(data, np.uint8)
    nl = np.flatnonzero(buf == 10)
    n = len(nl)
    offsets = np.empty(n + 1, np.int64)
    offsets[0] = 0
    np.add(nl, 1, out=offsets[1:])
    rejects = []
    long_idx = np.flatnonzero(np.diff(offsets) > max_line + 1)  # + 1: the newline
    for i in long_idx.tolist():
        a, length = int(offsets[i]), int(offsets[i + 1] - offsets[i]) - 1
        rejects.append((first + i, too_long(max_line, length), bytes(data[a:a + min(length, KEPT_BYTES)])))
    # large_string over the raw bytes. Lines with invalid UTF-8 (rare) and over-long lines are hidden
    # from the SQL (first byte set to '#' in a copy of the block) so that the JSON parse never sees them.
    scan = _mask_lines(data, offsets, long_idx.tolist())
    raw = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(scan))
    lines = pa.array(np.arange(first, first + n, dtype=np.int64))
    # several record batches: DuckDB scans Arrow batches in parallel, one batch per thread
    step = BATCH_ROWS
    batches = [pa.RecordBatch.from_arrays([raw.slice(i, step), lines.slice(i, step)], names=["raw", "line"])
               for i in range(0, max(n, 1), step)]
    return Block(first, data, offsets, pa.Table.from_batches(batches), rejects)


def _mask_lines(data, offsets: np.ndarray, also: list[int]):
    """``data``, or a copy in which each line holding invalid UTF-8 (or listed in ``also``) is all '#'
    up to its line end. The whole line, not its first byte only: DuckDB's string functions must never
    see invalid UTF-8 (``rtrim`` of a CRLF line holding a bad byte looped forever). The rejected
    line's own bytes are taken from the block's data, not from this copy."""
    bad = invalid_utf8_rows(data, offsets) + also
    if not bad:
        return data
    out = bytearray(data)
    for i in bad:
        a, b = int(offsets[i]), int(offsets[i + 1])
        while b > a and out[b - 1] in (0x0A, 0x0D):  # keep the line end
            b -= 1
        out[a:b] = b"#" * (b - a)
    return out


def _mask_invalid_utf8(data, offsets: np.ndarray):
    """``data``, or a copy in which each line holding invalid UTF-8 starts with '#'."""
    return _mask_lines(data, offsets, [])


def iter_blocks(stream, block_bytes: int | None = None, max_line: int = MAX_LINE_BYTES):
    """Blocks of whole lines from a binary stream (``read()`` returns chunks, b"" at the end).

    A line longer than a block makes a bigger block, up to ``max_line`` bytes. Beyond that the
    line is read to its end without being kept (memory stays bounded whatever the input, e.g. a
    gzip bomb with no newline) and comes out as an empty block whose ``rejects`` hold its number,
    its length and its first KB. Longer lines that end inside a block are caught by ``make_block``.
    """
    block_bytes = block_bytes or BLOCK_BYTES
    pending: list = []
    size = 0
    has_nl = False  # whether a pending chunk holds a newline (pending always starts a line)
    skip: list | None = None  # [first KB, length so far] of an over-long line being skipped
    line = 1
    read = stream.read
    while True:
        chunk = read(block_bytes)
        if chunk and skip is not None:
            i = chunk.find(b"\n")
            if i < 0:
                skip[1] += len(chunk)
                continue
            skip[1] += i
            yield _long_line(line, skip, max_line)
            line, skip = line + 1, None
            chunk = chunk[i + 1:]
            if not chunk:
                continue
        if chunk:
            pending.append(chunk)
            size += len(chunk)
            has_nl = has_nl or b"\n" in chunk
            if not has_nl and size > max_line:
                head = pending[0] if len(pending[0]) >= KEPT_BYTES else b"".join(pending)  # no copy of the whole
                skip = [bytes(head[:KEPT_BYTES]), size]
                pending, size = [], 0
                continue
            if size < block_bytes or not has_nl:  # (no newline yet: a line longer than the block)
                continue
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            cut = data.rfind(b"\n")
            if cut == len(data) - 1:
                pending, size = [], 0
                blk = data
            else:
                rest = data[cut + 1:]
                pending, size = [rest], len(rest)
                blk = memoryview(data)[: cut + 1]
            has_nl = False
            b = make_block(line, blk, max_line)
            line += len(b.offsets) - 1
            yield b
            continue
        if skip is not None:
            yield _long_line(line, skip, max_line)
            return
        data = b"".join(pending)
        if data.strip():
            if not data.endswith(b"\n"):
                data += b"\n"
            yield make_block(line, data, max_line)
        return


def _long_line(line: int, skip: list, max_line: int) -> Block:
    """An empty block carrying the reject of an over-long line that was read without being kept."""
    b = make_block(line, b"", max_line)
    b.rejects.append((line, too_long(max_line, skip[1]), skip[0]))
    b.hidden.add(line)
    b.nbytes = skip[1] + 1  # read, though not kept: counted in the file's bytes
    return b


class BlockReader:
    """Runs ``iter_blocks`` in a thread, ``QUEUE_BLOCKS`` ahead, for one or more consumer threads.

    ``get()`` returns the next block, None at the end, and re-raises the reader's exception
    (every consumer sees the end and the error). ``close()`` stops everything early.
    """

    _END = ("end", None)

    def __init__(self, stream, max_line: int = MAX_LINE_BYTES):
        self.stream, self.max_line = stream, max_line
        self._stop = threading.Event()
        self._q: queue.Queue = queue.Queue(maxsize=QUEUE_BLOCKS)
        self._t = threading.Thread(target=self._run, name="events-reader", daemon=True)
        self._t.start()

    def _run(self) -> None:
        try:
            for b in iter_blocks(self.stream, max_line=self.max_line):
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


_DATABASES: dict[tuple[int, int], object] = {}  # (process id, threads) -> the in-memory database
_DATABASES_LOCK = threading.Lock()


def _database_cursor(threads: int):
    """A new session on this process's in-memory parse database (made once per process and
    thread count: opening a DuckDB database and running its first query cost tens of ms, paid
    by every import call and every file of a backfill worker otherwise). Keyed by process id:
    a database inherited through fork() is never used."""
    import duckdb

    key = (os.getpid(), max(1, threads))
    with _DATABASES_LOCK:
        db = _DATABASES.get(key)
        if db is None:
            # rows come back in any order: they carry their line number
            db = duckdb.connect(config={"threads": key[1], "memory_limit": MEMORY_LIMIT,
                                        "preserve_insertion_order": False, "temp_directory": "",
                                        "allocator_flush_threshold": "64MB",
                                        "allocator_bulk_deallocation_flush_threshold": "128MB"})
            _DATABASES[key] = db
        return db.cursor()  # type: ignore[attr-defined]


class DuckParser:
    """One session (cursor) on the in-memory DuckDB database that turns blocks into event tables."""

    def __init__(self, threads: int = 2, con=None):
        if con is None:
            con = _database_cursor(threads)
        # naive times are UTC; offsets are converted to UTC. Set on every cursor too: a cursor is a
        # session of its own and starts in the host's time zone.
        con.execute("SET TimeZone='UTC'")
        self.con = con
        self.sql = SQL
        self.dupkeys = 0  # good rows whose line gave a top-level key twice (with ``window(dupkeys=True)``)
        self.nuls = 0  # good rows from whose values NUL characters were removed (events_parse.strip_nul)

    def cursor(self) -> "DuckParser":
        """Another parser on the same database, for another thread."""
        return DuckParser(con=self.con.cursor())

    def window(self, lo=None, hi=None, dupkeys: bool = False) -> None:
        """Plausible times [lo, hi) for the next blocks (a file's window); count duplicate keys or not."""
        self.sql = block_sql(lo, hi, dupkeys)

    def _run(self, table: pa.Table) -> pa.Table:
        self.con.register("blk", table)
        try:
            return self.con.sql(self.sql).to_arrow_table()  # relation: DuckDB builds Arrow directly (arrow collector)
        finally:
            self.con.unregister("blk")

    def parse(self, block: Block, rejects: list) -> pa.Table | None:
        """Good rows as a SCHEMA table (or None); bad lines appended to ``rejects``."""
        if block.rejects:
            rejects.extend(block.rejects)
        if block.table.num_rows == 0:
            return None
        res = self._run(block.table)
        reason = res.column("reason")
        repaired = None
        if "dupkeys" in res.column_names:
            self.dupkeys += pc.sum(pc.and_kleene(res.column("dupkeys"), pc.is_null(reason))).as_py() or 0
        if reason.null_count < len(reason):
            idx = pc.indices_nonzero(pc.is_valid(reason)).to_numpy()
            bad = res.select(["line", "reason"]).take(idx).to_pylist()
            fixed: dict[int, bytes] = {}
            for r in bad:
                line, why = r["line"], r["reason"]
                if line in block.hidden:
                    continue  # already in block.rejects (over-long line)
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
        nul = pc.fill_null(res.column("nul"), False)
        if pc.any(nul).as_py():  # only those rows are rewritten (rows carry their line: any order will do)
            clean, n = strip_nul(res.filter(nul))
            self.nuls += n
            res = pa.concat_tables([res.filter(pc.invert(nul)), clean])
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
        """Close this session (the shared database stays open for the next import)."""
        self.con.close()


def _to_schema(res: pa.Table) -> pa.Table:
    n = res.num_rows
    ids = np.empty((n, 2), dtype=">u8")
    ids[:, 0] = res.column("h1").to_numpy()
    ids[:, 1] = res.column("h2").to_numpy()
    cols = {
        "event_id": uuid_text(ids.tobytes(), n),
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
