"""Reader for the ``.sql`` files of a database package: MySQL batch-mode TSV.

Rules (edx-data-formats.md §3): UTF-8, header line, one row per line, ``NULL`` is NULL,
an empty field is an empty string, ``\\t \\n \\\\ \\0`` escapes inside values; except that
``courseware_studentmodule`` (Python's csv writer) escapes a TAB, LF or CR with a backslash and the
real character, so its rows can span lines (``_Tracked``). Columns are matched by header name,
never by position. Parsing is done by Arrow's streaming CSV
reader in C++; rows with the wrong number of fields are handed back as rejects with
their line number, never guessed.
"""

from __future__ import annotations

import bisect
import re
import threading
import time
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..schemas import ADDED_COLUMNS, Column, TableSchema
from .typing import BadValue, type_column, unescape_mysql


class FileRejected(Exception):
    """The whole file is unusable; the message names the file (and line where known)."""


@dataclass
class Reject:
    line: int
    reason: str
    raw: bytes


@dataclass
class Header:
    names: list[str]
    extra: list[str] = field(default_factory=list)  # not in the schema: kept as text, reported
    missing_optional: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)  # stored name -> the file's (``check_header``)


_LONE_CR = re.compile(rb"\r(?!\n)")
# a backslash and a TAB, LF or CR: escaped by Python's csv writer (escapechar '\\'), which wrote
# courseware_studentmodule (edx-package-details.md §3), when the backslash run before it is odd.
# A literal first byte: re skips to each backslash (8 times faster than three bytes.find scans).
_BREAK_AFTER_BACKSLASH = re.compile(rb"\\[\t\n\r]")
_AS_ESCAPE = {b"\t": b"\\t", b"\n": b"\\n", b"\r": b"\\r"}


class _Tracked:
    """A read-only stream that remembers the last byte it read (to detect truncation).

    MySQL's batch output does not escape a carriage return inside a value, and Arrow's CSV
    reader would end the row there. A CR not followed by LF is therefore handed on as the
    escape ``\\r``, which ``unescape_mysql`` turns back into a CR. CRLF line ends stay as they are.

    ``courseware_studentmodule`` comes from Python's csv writer with ``escapechar='\\'``: a TAB, LF
    or CR inside a value is a backslash and the real character, so such a record spans several
    lines. A backslash (after an even run of backslashes) and a real TAB, LF or CR is handed on as
    the two-character escape (``\\t``, ``\\n``, ``\\r``), which ``unescape_mysql`` turns back; each
    LF so joined is kept in ``joins`` so that reported lines stay the file's (``file_line``).

    A line that is not UTF-8 (a learner's free text in another encoding) would make Arrow refuse
    the whole file. Each one is handed on as a line of one field, which Arrow reports as a row with
    the wrong number of fields, and kept in ``bad_utf8`` (file line -> reason, raw bytes), so that
    the reader quarantines that line with its real reason and loads the rest.
    """

    def __init__(self, raw: BinaryIO, prefix: bytes = b"", fields: int = 1):
        self.raw, self.prefix = raw, prefix
        # the stand-in for a line that is not UTF-8: one field more than the header has, so that Arrow
        # reports it as a row with the wrong number of fields (whatever the table's width)
        self._mask = b"\t" * fields + _NOT_UTF8
        self.last = prefix[-1:] if prefix else b""
        self.nbytes = len(prefix)
        self.closed = False
        self._held = b""  # trailing backslashes and CRs held back from the previous chunk (what follows?)
        self.joins: list[int] = []  # handed-on line numbers that hold an escaped LF (one entry per LF)
        self._tail = b""  # the last two bytes handed on
        self._stopped = False  # `stop`: every read from now on is the end of the stream
        self._state = threading.Condition()
        self._busy = 0  # reads in progress (Arrow's I/O thread reads ahead)
        self._ended = False  # a read returned the end after `stop`
        self._carry = b""  # the start of a line whose end is not read yet
        self._line = 2  # file line of the first line of the next data handed on (the header is line 1)
        self.bad_utf8: dict[int, tuple[str, bytes]] = {}
        self.too_long = 0  # the file line that is longer than BLOCK_BYTES (the stream then ends there)
        self.nuls = 0  # NUL bytes removed from the lines handed on

    def stop(self) -> None:
        """End the stream here: Arrow's read-ahead thread gets end-of-file at its next read."""
        with self._state:
            self._stopped = True

    def wait_ended(self, timeout: float) -> None:
        """Wait (without the GIL) until no read is in progress and one has returned the end after
        ``stop``, or ``timeout`` seconds (Arrow's read-ahead may be paused with its queue full:
        then it does not read again)."""
        deadline = time.monotonic() + timeout
        with self._state:
            while (self._busy or not self._ended) and (left := deadline - time.monotonic()) > 0:
                self._state.wait(left)
        time.sleep(0.05)  # Arrow's thread releases the end-of-file buffer (it takes the GIL for that)

    def _next(self, n: int) -> bytes:
        if self.prefix:
            out, self.prefix = self.prefix, b""
            return out
        chunk = self.raw.read(n if n and n > 0 else 1 << 20)
        if chunk:
            self.last = chunk[-1:]
            self.nbytes += len(chunk)
        return chunk

    def read(self, n: int = -1) -> bytes:
        with self._state:
            if self._stopped:
                self._ended = True
                self._state.notify_all()
                return b""
            self._busy += 1
        try:
            return self._read(n)
        finally:
            with self._state:
                self._busy -= 1
                self._state.notify_all()

    def _read(self, n: int) -> bytes:
        while True:
            data = self._next(n)
            eof = not data
            if self._held:
                data, self._held = self._held + data, b""
            if not eof and data.endswith((b"\r", b"\\")):
                keep = len(data) - len(data.rstrip(b"\\\r"))
                if keep < len(data):
                    data, self._held = data[:-keep], data[-keep:]
                elif len(data) <= BLOCK_BYTES:  # nothing else yet (a file of nothing else is not held forever)
                    self._held = data
                    continue
            data = self._escaped_breaks(data)
            if b"\r" in data:
                data = _LONE_CR.sub(rb"\\r", data)
            out = self._whole_lines(data, eof)
            if out or eof or self.too_long:
                return out

    def _escaped_breaks(self, data: bytes) -> bytes:
        """Escaped TAB/LF/CR (backslash + the real character) as two-character escapes. A run of
        backslashes never spans two reads (``_read`` holds a trailing run back), so its length is
        found within ``data``."""
        out, last, lfs, counted = [], 0, 0, 0  # lfs: the real LFs in data[:counted]
        for m in _BREAK_AFTER_BACKSLASH.finditer(data):
            at = m.start()  # the backslash just before the character
            start = at
            while start > 0 and data[start - 1] == 0x5C:  # the run of backslashes ending at `at`
                start -= 1
            if (at - start) % 2:  # an even run: an escaped backslash, then a real separator or line end
                continue
            ch = data[at + 1:at + 2]
            out += [data[last:at], _AS_ESCAPE[ch]]
            last = at + 2
            if ch == b"\n":
                # the handed-on line of this LF: the real LFs before it (data only continues the held line)
                lfs += data.count(b"\n", counted, at)
                counted = at + 2
                self.joins.append(self._line + lfs)
        if not out:
            return data
        out.append(data[last:])
        return b"".join(out)

    def file_line(self, line: int) -> int:
        """The file's line number of a handed-on line (records that span lines make them differ)."""
        return line + bisect.bisect_left(self.joins, line)

    def _whole_lines(self, data: bytes, eof: bool) -> bytes:
        """``data`` up to its last line end (the rest is held for the next read), each line that is
        not UTF-8 replaced by ``_NOT_UTF8``; at the end of the stream, whatever is held."""
        if not eof:
            cut = data.rfind(b"\n")
            if cut < 0:
                self._carry += data
                if len(self._carry) <= BLOCK_BYTES:
                    return b""  # (the caller reads on)
                return self._end_too_long()  # (without waiting for its end: memory stays bounded)
            if self._carry and len(self._carry) + data.find(b"\n") + 1 > BLOCK_BYTES:
                return self._end_too_long()  # the held line ends here, over the limit
            data, self._carry = self._carry + data[:cut + 1], data[cut + 1:]
        else:
            if self._carry and len(self._carry) + (data.find(b"\n") % (len(data) + 1)) > BLOCK_BYTES:
                return self._end_too_long()
            data, self._carry = self._carry + data, b""
        if b"\x00" in data:  # (memchr) edX's exporter deletes NUL bytes: a file that holds some is no
            self.nuls += data.count(b"\x00")  # export of theirs, but its values lose them the same way
            data = data.replace(b"\x00", b"")
        if data and not data.isascii() and not _valid_utf8(data):
            data = self._mask_bad_lines(data)
        self._line += data.count(b"\n")
        if data:
            self._tail = (self._tail + data)[-2:]
        return data

    @property
    def open_record(self) -> bool:
        """Whether what was handed on ends with an escaped LF: a record that continues past the end."""
        return self._tail == b"\\n" and self.last == b"\n"

    def _end_too_long(self) -> bytes:
        """A line longer than any table's (BLOCK_BYTES, whatever the reads' sizes): the stream ends
        here and the reader refuses the file, naming the line."""
        self.too_long, self._carry, self._stopped = self._line, b"", True
        return b""

    def _mask_bad_lines(self, data: bytes) -> bytes:
        from .events_parse import invalid_utf8_rows

        ends = (np.flatnonzero(np.frombuffer(data, np.uint8) == 10) + 1).tolist()
        if not ends or ends[-1] != len(data):
            ends.append(len(data))  # the last line of the file, without its line end
        offsets = np.array([0, *ends], np.int64)
        lines = [data[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
        for i in invalid_utf8_rows(data, offsets):
            raw = lines[i].rstrip(b"\r\n")
            where = _first_bad_byte(raw)
            self.bad_utf8[self._line + i] = (f"invalid UTF-8 bytes (byte {where} of the line)", raw)
            lines[i] = self._mask + (b"\n" if lines[i].endswith(b"\n") else b"")
        return b"".join(lines)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


_NOT_UTF8 = b"(a line that is not UTF-8)"  # one field: Arrow reports the row, the reader names the reason


def _valid_utf8(data: bytes) -> bool:
    arr = pa.StringArray.from_buffers(1, pa.py_buffer(np.array([0, len(data)], np.int32)), pa.py_buffer(data))
    try:
        arr.validate(full=True)
        return True
    except pa.ArrowInvalid:
        return False


def _first_bad_byte(line: bytes) -> int:
    """1-based position of the first byte of ``line`` that does not decode as UTF-8 (0: none)."""
    try:
        line.decode("utf-8")
        return 0
    except UnicodeDecodeError as exc:
        return exc.start + 1


def read_header_line(raw: BinaryIO, label: str) -> tuple[bytes, bytes]:
    """The first line (without newline) and what was read after it.

    A file that ends inside its header line was cut short (edX's files end with a newline)."""
    buf = b""
    while b"\n" not in buf:
        chunk = raw.read(1 << 16)
        if not chunk:
            break
        buf += chunk
        if len(buf) > 1 << 20:
            raise FileRejected(f"{label}: line 1: header line longer than 1 MiB; not an edX table file")
    if not buf:
        raise FileRejected(f"{label}: file is empty (no header line)")
    if b"\n" not in buf:
        if b"\r" in buf:
            raise FileRejected(f"{label}: its lines end with a carriage return alone, no line feed; "
                               "edX's files end their lines with a line feed (convert the file, e.g. `tr '\\r' '\\n'`)")
        raise FileRejected(f"{label}: line 1: file is truncated (ends in the middle of the header line)")
    line, _, rest = buf.partition(b"\n")
    return line.rstrip(b"\r").removeprefix(b"\xef\xbb\xbf"), rest  # a byte order mark is not a column name


def check_header(line: bytes, schema: TableSchema, label: str, delimiter: str = "\t") -> Header:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise FileRejected(f"{label}: line 1: header is not valid UTF-8") from None
    names = [n.strip().strip('"') for n in text.split(delimiter)]
    # another year's spelling of a column (user_id_map's user_id/id) takes the registry's name
    names = [schema.aliases[n] if n in schema.aliases and schema.aliases[n] not in names else n for n in names]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise FileRejected(f"{label}: line 1: duplicate column(s) in header: {', '.join(dupes)}")
    missing = [c.name for c in schema.columns if c.required and c.name not in names]
    if missing:
        raise FileRejected(
            f"{label}: line 1: missing column(s) {', '.join(missing)} for table {schema.name} "
            f"(header has: {', '.join(names[:8])}{'...' if len(names) > 8 else ''})"
        )
    names, renamed = _stored_names(names, schema)
    extra = [n for n in names if schema.column(n) is None]
    optional = [c.name for c in schema.columns if not c.required and c.name not in names]
    return Header(names, extra, optional, renamed)


def _stored_names(names: list[str], schema: TableSchema) -> tuple[list[str], dict[str, str]]:
    """The header's names as stored, and what was renamed. A column the registry does not describe
    must not take the place of the importer's own (``org``, ``package_date``, ``source_file``: the
    models pick each user's newest row by ``package_date``) nor, in other letter case, of another
    column (DuckDB's names ignore case: the view would rename one of them): it is stored as
    ``<name>_in_file``. An empty name (a header ending in a tab) is stored as ``column_<position>``."""
    # every column the stored file has whatever the header (the schema's, the importer's own); an exact
    # ``course_id`` is the file's own course column (checked against the file's course), not a rival
    taken = {c.name.lower() for c in schema.columns} | {c.name.lower() for c in ADDED_COLUMNS}
    out, renamed = [], {}
    for i, n in enumerate(names, start=1):
        new = n
        if schema.column(n) is None and n != "course_id":
            if not n:
                new = f"column_{i}"
            elif n.lower() in taken:
                new = f"{n}_in_file"
            k = 2
            while new != n and (new.lower() in taken or new in names):
                new = f"{n}_in_file{k}" if n else f"column_{i}_{k}"
                k += 1
            if new != n:
                renamed[new] = n
        taken.add(new.lower())
        out.append(new)
    return out, renamed


def output_schema(schema: TableSchema, header: Header, added: list[tuple[str, pa.DataType]]) -> pa.Schema:
    from .typing import arrow_type

    fields = [pa.field(c.name, arrow_type(c.type)) for c in schema.columns]
    fields += [pa.field(n, pa.string()) for n in header.extra]
    have = {f.name for f in fields}
    fields += [pa.field(n, t) for n, t in added if n not in have]
    return pa.schema(fields)


def type_batch(
    batch: pa.RecordBatch, schema: TableSchema, header: Header, unescape: bool, counts: dict | None = None
) -> tuple[dict[str, pa.Array], list[BadValue]]:
    """Typed arrays for every schema column (+ extras as text); bad values are reported per row.
    ``counts``: see ``unescape_mysql``."""
    bad: list[BadValue] = []
    out: dict[str, pa.Array] = {}
    n = batch.num_rows
    for col in list(schema.columns) + [Column(x) for x in header.extra]:
        if col.name in batch.schema.names:
            arr = batch.column(col.name)
            if unescape and col.type in ("text", "json"):
                arr = unescape_mysql(arr, counts)
            out[col.name] = type_column(arr, col, bad)
        else:
            out[col.name] = pa.nulls(n, pa.string())
    return out, bad


EMPTY_LINE = "empty line"
BLOCK_BYTES = 4 << 20  # Arrow's read block: also the longest line a table file may have


class LineMap:
    """File line numbers of the rows of a CSV/TSV body read by Arrow (header on line 1).

    Arrow skips rows with the wrong number of fields (``invalid_row``) and numbers the others
    by batch position only; the skipped lines tell where each later row really is.
    """

    def __init__(self, file_line=None) -> None:
        self.skipped: list[int] = []
        self.rows = 0  # data rows delivered by Arrow so far
        self.file_line = file_line or (lambda line: line)  # Arrow's line -> the file's (``_Tracked.file_line``)

    def invalid_row(self, row) -> Reject:
        lineno = (row.number + 1) if row.number is not None else -1
        bisect.insort(self.skipped, lineno)
        return Reject(lineno, f"expected {row.expected_columns} fields, found {row.actual_columns}",
                      (row.text or "").encode("utf-8", "surrogateescape"))

    def line_of(self, j: int) -> int:
        """The file line of the j-th delivered row (0-based)."""
        lineno = j + 2
        for r in self.skipped:
            if r <= lineno:
                lineno += 1
            else:
                break
        return lineno

    def drop_bad_rows(self, batch: pa.RecordBatch, cols: dict[str, pa.Array], bad: list[BadValue],
                      rejects: list[Reject], delimiter: str) -> tuple[dict[str, pa.Array], int]:
        """Move the rows with bad values to ``rejects`` (with their line); the rest and its count."""
        n = batch.num_rows
        first, self.rows = self.rows, self.rows + n
        if not bad:
            return cols, n
        reasons: dict[int, list[str]] = {}
        for b in bad:
            reasons.setdefault(b.row, []).append(b.reason)
        for i in sorted(reasons):
            if reasons[i] == [EMPTY_LINE]:
                rejects.append(Reject(self.file_line(self.line_of(first + i)), EMPTY_LINE, b""))
                continue
            raw_row = delimiter.join("NULL" if batch.column(k)[i].as_py() is None else str(batch.column(k)[i].as_py())
                                     for k in range(batch.num_columns))
            rejects.append(Reject(self.file_line(self.line_of(first + i)), "; ".join(reasons[i]), raw_row.encode()))
        keep = pa.array([i not in reasons for i in range(n)])
        return {k: v.filter(keep) for k, v in cols.items()}, n - len(reasons)


def _empty_lines(batch: pa.RecordBatch) -> list[BadValue]:
    """Rows that came from an empty line (Arrow does not count them as short rows)."""
    if batch.num_columns < 2 or batch.num_rows == 0:
        return []
    empty = None
    for col in batch.columns:
        e = pc.or_kleene(pc.is_null(col), pc.equal(col, ""))
        empty = e if empty is None else pc.and_kleene(empty, e)
    return [BadValue(i, EMPTY_LINE) for i in pc.indices_nonzero(empty).to_pylist()]


def read_mysql_tsv(raw: BinaryIO, label: str, schema: TableSchema, header_cb=None,
                   counts: dict | None = None) -> Iterator[tuple[dict[str, pa.Array], int, list[Reject]]]:
    """Stream a table file: yields (typed columns, row count, rejects) per block.

    Raises FileRejected for a bad header or a truncated file (a line that is not UTF-8 is a reject).
    NUL characters (raw bytes, ``\\0`` escapes) are removed from the values, as edX's exporter removes
    them; ``counts["nuls"]`` (when given) is increased by their number once the whole file is read.
    """
    line, rest = read_header_line(raw, label)
    header = check_header(line, schema, label)
    if header_cb:
        header_cb(header)
    stream = _Tracked(raw, rest, len(header.names))
    pending: list[Reject] = []

    def on_invalid(row) -> str:
        got = lines.invalid_row(row)
        if got.line in stream.bad_utf8:  # a line handed on as one field because it is not UTF-8
            got = Reject(got.line, *stream.bad_utf8.pop(got.line))
        pending.append(Reject(stream.file_line(got.line), got.reason, got.raw))
        return "skip"

    lines = LineMap(stream.file_line)
    reader = None
    finished = False

    try:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(column_names=header.names, use_threads=False, block_size=BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False,
                                             newlines_in_values=False, ignore_empty_lines=False,
                                             invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in header.names}, null_values=["NULL"],
                strings_can_be_null=True, quoted_strings_can_be_null=False,
                check_utf8=False,  # _Tracked has validated every line (and masked those that are not UTF-8)
            ),
        )
        for batch in reader:
            cols, bad = type_batch(batch, schema, header, unescape=True, counts=counts)
            bad += _empty_lines(batch)
            rejects, pending[:] = list(pending), []
            cols, n = lines.drop_bad_rows(batch, cols, bad, rejects, "\t")
            yield cols, n, rejects
        finished = True
    except pa.ArrowInvalid as exc:
        msg = str(exc)
        if stream.too_long:  # the stream ended at a line over the limit (before any row, Arrow saw nothing)
            raise _too_long(label, stream.file_line(stream.too_long)) from None
        if "Empty CSV file" in msg and stream.nbytes == len(rest) and not rest.strip():
            finished = True
            return  # a header and no rows: an empty table is a valid snapshot
        if "straddl" in msg:  # Arrow: a row longer than its read block (e.g. a zip bomb with no newline)
            raise _too_long(label, stream.file_line(lines.rows + len(lines.skipped) + 2)) from None  # the first line not delivered
        raise FileRejected(f"{label}: cannot parse: {msg.splitlines()[0]}") from None
    finally:
        if not finished:  # an error, Ctrl-C, or the caller stopped reading (closed this generator)
            _stop_reading(reader, stream)
    if stream.too_long:
        raise _too_long(label, stream.file_line(stream.too_long))
    # edX's files always end with a newline: a file without one was cut short.
    if stream.nbytes and (stream.last != b"\n" or stream.open_record):
        last_line = stream.file_line(lines.rows + len(lines.skipped) + 1)
        raise FileRejected(f"{label}: line {last_line}: file is truncated (ends in the middle of a line)")
    if counts is not None:
        counts["nuls"] = counts.get("nuls", 0) + stream.nuls
    if pending:
        yield {}, 0, list(pending)


def _too_long(label: str, line: int) -> FileRejected:
    return FileRejected(f"{label}: line {line} longer than the limit ({BLOCK_BYTES >> 20} MB); not an edX table file")


def _stop_reading(reader, stream: _Tracked) -> None:
    """Stop Arrow's reading of ``stream`` before the reader is left: its streaming reader reads ahead
    on Arrow's I/O thread, which calls ``stream.read`` (Python) from there. Left mid-file, that thread
    could still be in Python when the interpreter shuts down after Ctrl-C ("Fatal Python error:
    PyGILState_Release", SIGABRT), and the reader's destructor, which waits for that thread, could wait
    forever for the GIL its own thread holds (a hang). So the stream ends now, and the reader is read
    to that end: once Arrow delivers the end, its thread is done with the stream."""
    stream.stop()
    if reader is None:
        return
    try:
        while True:
            reader.read_next_batch()  # the blocks already read ahead (the GIL is released meanwhile)
    except StopIteration:
        return
    except BaseException:  # noqa: BLE001 - a parse error in what was read ahead, or another Ctrl-C
        pass
    stream.wait_ended(1.0)


def locate_bad_utf8(raw: BinaryIO) -> tuple[int, int] | None:
    """(line, byte column) of the first invalid UTF-8 sequence, for the error message."""
    lineno, carry = 1, b""
    while True:
        chunk = raw.read(1 << 20)
        if not chunk and not carry:
            return None
        data = carry + chunk
        lines = data.split(b"\n")
        carry = lines.pop() if chunk else b""
        for ln in lines:
            if where := _first_bad_byte(ln):
                return lineno, where
            lineno += 1
        if not chunk:
            return None
