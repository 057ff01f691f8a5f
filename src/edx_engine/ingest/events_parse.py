"""Tracking-log lines -> typed Arrow tables (the hot path of the events import).

``parse_block(block, first_line, rejects)`` takes a block of complete lines (bytes, as
read from the decompressed stream) and returns an Arrow table with one row per good
line; bad lines are appended to ``rejects`` as ``(line_number, reason, raw_bytes)``.

The fast path decodes each line with msgspec into a typed Struct whose ``event`` and
``context`` are kept as raw JSON (``msgspec.Raw``); columns are then built as Python
lists and converted to Arrow in one call each. Lines the typed decoder refuses (odd
types, non-object JSON, truncation, ...) go through a slow, forgiving path that
decides whether the line is usable or must be quarantined, and why.
"""

from __future__ import annotations

import binascii
import codecs
import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from operator import attrgetter
from typing import Any

import numpy as np

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from ..config import ConfigError
from ..names import course_id_from_url

STRING_FIELDS = ("username", "event_source", "event_type", "name", "session", "ip", "agent", "host", "referer",
                 "accept_language", "page")

# -- limits on hostile input (the one place for their defaults; ``[events]`` in the config file) ------------
MAX_LINE_BYTES = 32 << 20  # a longer line is quarantined by its length (first KB kept), the rest loads
EARLIEST_TIME = date(2012, 1, 1)  # edX tracking logs do not go back further
DAYS_AFTER_FILE = 1  # an event dated more than this many days after its file's date is implausible
KEPT_BYTES = 1024  # bytes of an over-long line kept in the quarantine
COUNT_DUPLICATE_KEYS = False  # a second parse of every line (about +60% CPU): off unless asked; docs/events.md


@dataclass(frozen=True)
class EventLimits:
    """Limits applied to each line: size, plausible time window, duplicate-key counting.

    ``earliest=None`` / ``days_after_file=None`` switch that side of the time window off."""

    max_line_bytes: int = MAX_LINE_BYTES
    earliest: date | None = EARLIEST_TIME
    days_after_file: int | None = DAYS_AFTER_FILE
    count_duplicate_keys: bool = COUNT_DUPLICATE_KEYS

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> "EventLimits":
        """From the ``[events]`` section: ``max_line_bytes``, ``earliest_time`` (a date or ""),
        ``max_days_after_file`` (an integer, or -1 for no upper bound), ``count_duplicate_keys``."""
        kw: dict[str, Any] = {}
        if "max_line_bytes" in section:
            v = section["max_line_bytes"]
            if type(v) is not int or v < 1024:
                raise ConfigError(f"[events] max_line_bytes must be an integer >= 1024, not {v!r}")
            kw["max_line_bytes"] = v
        if "earliest_time" in section:
            v = section["earliest_time"]
            try:
                kw["earliest"] = None if v in ("", None) else (v if isinstance(v, date) else date.fromisoformat(v))
            except (TypeError, ValueError):
                raise ConfigError(f"[events] earliest_time must be a date (YYYY-MM-DD) or \"\", not {v!r}") from None
        if "count_duplicate_keys" in section:
            v = section["count_duplicate_keys"]
            if type(v) is not bool:
                raise ConfigError(f"[events] count_duplicate_keys must be true or false, not {v!r}")
            kw["count_duplicate_keys"] = v
        if "max_days_after_file" in section:
            v = section["max_days_after_file"]
            if type(v) is not int or v < -1:
                raise ConfigError(f"[events] max_days_after_file must be an integer >= 0 (-1: no limit), not {v!r}")
            kw["days_after_file"] = None if v == -1 else v
        return cls(**kw)

    def window(self, file_date: str | None) -> tuple[datetime | None, datetime | None]:
        """[lo, hi): the plausible event times for a file of that date (None: unbounded)."""
        lo = datetime(self.earliest.year, self.earliest.month, self.earliest.day) if self.earliest else None
        hi = None
        if file_date and self.days_after_file is not None:
            try:
                hi = datetime.fromisoformat(file_date) + timedelta(days=self.days_after_file + 1)
            except ValueError:
                hi = None
        return lo, hi


def too_long(limit: int, length: int) -> str:
    """The quarantine reason of an over-long line."""
    lim = f"{limit >> 20} MB" if limit % (1 << 20) == 0 else f"{limit:,} bytes"
    return f"line longer than {lim} ({length:,} bytes)"


JSON_TYPE = pa.json_(pa.string())
UUID_TYPE = pa.uuid()  # how parts written before event_id became text store it (still read: store/views.py)


def uuid_text(ids: bytes, n: int) -> pa.Array:
    """``n`` concatenated 16-byte ids -> their canonical lowercase 8-4-4-4-12 text (what DuckDB's
    ``CAST(uuid AS VARCHAR)`` gives). ``event_id`` is stored as this text, not with Parquet's UUID
    logical type, which Spark cannot read (issue 14 §3: no engine-specific Parquet features)."""
    hexed = np.frombuffer(binascii.hexlify(ids), dtype=np.uint8).reshape(n, 32)
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    for a, b, c in ((0, 0, 8), (9, 8, 12), (14, 12, 16), (19, 16, 20), (24, 20, 32)):
        out[:, a:a + c - b] = hexed[:, b:c]
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out.tobytes()))

# Column order of the Parquet files (the catalog views select from these by name).
SCHEMA = pa.schema([
    ("event_id", pa.string()),  # canonical UUID text (uuid_text)
    ("time", pa.timestamp("us")),
    ("event_date", pa.date32()),
    ("username", pa.string()),
    ("user_id", pa.int64()),
    ("course_id", pa.string()),
    ("org_id", pa.string()),
    ("event_type", pa.string()),
    ("name", pa.string()),
    ("event_source", pa.string()),
    ("session", pa.string()),
    ("ip", pa.string()),
    ("agent", pa.string()),
    ("host", pa.string()),
    ("referer", pa.string()),
    ("accept_language", pa.string()),
    ("page", pa.string()),
    ("path", pa.string()),
    ("module_id", pa.string()),
    ("event", JSON_TYPE),
    ("event_text", pa.string()),
    ("context", JSON_TYPE),
    ("line", pa.int64()),
])


# -- NUL (U+0000) ------------------------------------------------------------------------------------------
# A browser can send the JSON escape \u0000 in any field it fills (event_type, page, the event string...);
# the parse turns it into a NUL character, which PostgreSQL text cannot hold (`build --store` failed for the
# whole store) and which CSV readers choke on. The store holds none: NUL is removed from every text value
# of an event, and the \u0000 escapes from its JSON values (event, context), as edX's own table exporter
# deletes NUL bytes (edx-package-details.md §3). The line's event_id is still the hash of the line as
# delivered. Only lines holding the escape (``NUL_ESCAPE``, found by the block's SQL) pay for this.
NUL_ESCAPE = b"\\u0000"
NUL_TEXT_COLUMNS = (*STRING_FIELDS, "course_id", "org_id", "path", "module_id", "event_text")
NUL_JSON_COLUMNS = ("event", "context")
# In JSON text every backslash starts an escape: scanned from the left, a \u0000 escape is removed and any
# other escape is kept whole, so the 'u0000' after an escaped backslash (text, not an escape) stays.
JSON_NUL_RE = r"\\u0000|(\\(?:u[0-9A-Fa-f]{4}|[^u]))"


def strip_nul(table: pa.Table) -> tuple[pa.Table, int]:
    """``table`` (event rows, SCHEMA or the block statement's columns) without NUL characters in its text
    columns and \\u0000 escapes in its JSON columns; and the number of rows that held some."""
    table = table.combine_chunks()  # one chunk per column: the rows' flags line up across columns
    changed = None
    cols = []
    for name in table.column_names:
        col = table.column(name)
        if name not in NUL_TEXT_COLUMNS and name not in NUL_JSON_COLUMNS:
            cols.append(col)
            continue
        chunks = []
        for c in col.chunks:
            ext = isinstance(c, pa.ExtensionArray)
            s = c.storage if ext else c
            new = (pc.replace_substring(s, "\x00", "") if name in NUL_TEXT_COLUMNS
                   else pc.replace_substring_regex(s, pattern=JSON_NUL_RE, replacement=r"\1"))
            diff = pc.fill_null(pc.not_equal(pc.binary_length(s), pc.binary_length(new)), False)
            changed = diff if changed is None else pc.or_(changed, diff)
            chunks.append(pa.ExtensionArray.from_storage(c.type, new) if ext else new)
        cols.append(pa.chunked_array(chunks, col.type))
    if changed is None or table.num_rows == 0:
        return table, 0
    return pa.Table.from_arrays(cols, schema=table.schema), int(pc.sum(changed).as_py() or 0)


class _Module(msgspec.Struct, gc=False):
    usage_key: str | None = None


class _Ctx(msgspec.Struct, gc=False):
    course_id: str | None = None
    org_id: str | None = None
    user_id: int | str | None = None
    path: str | None = None
    module: _Module | None = None


_NO_RAW = msgspec.Raw(b"")


class _Line(msgspec.Struct, gc=False):
    time: str | None = None
    username: str | None = None
    event_source: str | None = None
    event_type: str | None = None
    name: str | None = None
    session: str | None = None
    ip: str | None = None
    agent: str | None = None
    host: str | None = None
    referer: str | None = None
    accept_language: str | None = None
    page: str | None = None
    event: msgspec.Raw = _NO_RAW
    context: msgspec.Raw = _NO_RAW


_decode_line = msgspec.json.Decoder(_Line).decode
_decode_ctx = msgspec.json.Decoder(_Ctx).decode
_decode_str = msgspec.json.Decoder(str).decode
_decode_raw = msgspec.json.Decoder(msgspec.Raw).decode
_decode_any = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode
_EMPTY_CTX = _Ctx()
_sha1 = hashlib.sha1


def _is_utf8(line: bytes) -> bool:
    """Whether the bytes are UTF-8, decided from the bytes (never from a parser's exception type,
    which changed between msgspec releases: 0.23 raises DecodeError where 0.18 raised UnicodeDecodeError)."""
    if line.isascii():
        return True
    try:
        codecs.utf_8_decode(line, "strict", True)
        return True
    except UnicodeDecodeError:
        return False


_BAD_UTF8 = re.compile(r"Invalid UTF8 sequence at string index (\d+)")


def invalid_utf8_rows(data, offsets) -> list[int]:
    """Indices of the lines ``data[offsets[i]:offsets[i+1]]`` that are not UTF-8 (from the bytes).

    Arrow's validator (fast, C++) names the first bad line; the rest is validated after it.
    If its message cannot be read, each line is checked with Python's decoder instead."""
    n = len(offsets) - 1
    arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))
    bad: list[int] = []
    start = 0
    while start < n:
        try:
            arr.slice(start).validate(full=True)
            break
        except pa.ArrowInvalid as exc:
            m = _BAD_UTF8.search(str(exc))
            if m is None:
                mv = memoryview(data)
                return [i for i in range(n) if not _is_utf8(bytes(mv[int(offsets[i]):int(offsets[i + 1])]))]
            i = start + int(m.group(1))
            bad.append(i)
            start = i + 1
    return bad


def _as_text(v) -> str | None:
    if v is None or isinstance(v, str):
        return v
    return _encode(v).decode()


# A \uD800-\uDBFF escape not followed by a \uDC00-\uDFFF one, or the reverse. Python's json (edX's
# writer) reads and writes such lone surrogates (a browser's text cut inside an emoji); strict
# parsers refuse them.
_LONE_SURROGATE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
                             rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}")


def repair_lone_surrogates(line: bytes) -> bytes | None:
    """The line with each lone surrogate escape replaced by ``\\ufffd`` (U+FFFD), or None if it has none."""
    fixed, n = _LONE_SURROGATE.subn(rb"\\ufffd", line)
    return fixed if n else None


def _slow(line: bytes) -> _Line | str | None:
    """A line the typed decoder refused: a usable record, a reject reason, or None (blank line).

    A line whose only fault is a lone surrogate escape is decoded with U+FFFD in its place."""
    if not line.strip():
        return None
    if not _is_utf8(line):  # from the bytes: a parser upgrade must not change the reason
        return "invalid UTF-8"
    try:
        obj = _decode_any(line)
    except msgspec.DecodeError as exc:
        fixed = repair_lone_surrogates(line)
        if fixed is None:
            return "truncated JSON" if "truncated" in str(exc) else "not JSON"
        try:
            obj = _decode_any(fixed)
        except msgspec.DecodeError:
            return "not JSON"
    if not isinstance(obj, dict):
        return "not a JSON object"
    t = obj.get("time")
    if t is None or t == "":
        return "no time"
    if not isinstance(t, str):
        return "invalid time"
    kw = {f: _as_text(obj.get(f)) for f in STRING_FIELDS}
    ev = obj.get("event", msgspec.UNSET)
    ctx = obj.get("context", msgspec.UNSET)
    return _Line(time=t, event=_NO_RAW if ev is msgspec.UNSET else msgspec.Raw(_encode(ev)),
                 context=_NO_RAW if ctx is msgspec.UNSET else msgspec.Raw(_encode(ctx)), **kw)


_NAIVE_RE = r"(T|\s)\d\d:\d\d(:\d\d(\.\d*)?)?$"
# a UTC offset that no place has (hours beyond 14, minutes beyond 59): casts take +25:00 or +05:99 and
# move the event by days into another date. RE2 syntax (DuckDB and Arrow alike); 'invalid time'.
BAD_OFFSET_RE = (r"\d:\d\d(:\d\d(\.\d*)?)?\s*[+-]((1[5-9]|[2-9]\d)(:?\d\d){0,2}|\d\d:?[6-9]\d(:?\d\d)?)\s*$")


def _parse_time_one(s: str | None) -> int | None:
    """Microseconds since the epoch (UTC) or None; naive times are UTC."""
    if not s:
        return None
    try:
        d = datetime.fromisoformat(s.strip())
    except ValueError:
        return None
    if d.tzinfo is not None:
        try:
            d = d.astimezone(timezone.utc).replace(tzinfo=None)
        except OverflowError:  # beyond year 9999 (or before year 1) once in UTC
            return None
    delta = d - datetime(1970, 1, 1)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_times(times: pa.Array) -> pa.Array:
    """Strings -> timestamp[us] (UTC, naive); null where unparseable or the UTC offset is no place's."""
    ts = _parse_times(times)
    bad = pc.match_substring_regex(times, BAD_OFFSET_RE)
    if pc.any(bad).as_py():
        ts = pc.if_else(bad, pa.scalar(None, ts.type), ts)
    return ts


def _parse_times(times: pa.Array) -> pa.Array:
    try:
        return times.cast(pa.timestamp("us", "UTC")).cast(pa.timestamp("us"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    try:  # mixed naive and offset-carrying times: naive ones are UTC
        fixed = pc.replace_substring_regex(times, pattern=_NAIVE_RE, replacement=r"\0Z")
        return fixed.cast(pa.timestamp("us", "UTC")).cast(pa.timestamp("us"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    return pa.array([_parse_time_one(s) for s in times.to_pylist()], pa.int64()).cast(pa.timestamp("us"))


def _user_id(u) -> int | None:
    if type(u) is int:
        return u if -(1 << 63) <= u < (1 << 63) else None
    if isinstance(u, str):
        u = u.strip()
        if u.lstrip("-").isdigit():
            try:
                v = int(u)
                return v if -(1 << 63) <= v < (1 << 63) else None
            except ValueError:
                return None
    return None


_BLANKS = " \t\r\n"  # as the DuckDB engine's trim()


def _course_from(page, event_type, path) -> str | None:
    if page and (c := course_id_from_url(page)):
        return c
    if event_type and event_type.startswith("/") and (c := course_id_from_url(event_type)):
        return c
    if path and (c := course_id_from_url(path)):
        return c
    return None


def normalise_event(raw: bytes) -> tuple[str | bytes | None, str | None]:
    """(event JSON text or None, event_text or None) for the raw JSON of the ``event`` field."""
    if not raw:
        return None, None
    c = raw[0]
    if c == 34:  # '"': a string; its content is JSON, or text kept as is
        try:
            s = _decode_str(raw)
        except (UnicodeDecodeError, msgspec.DecodeError):
            return raw, None  # invalid UTF-8: the caller rejects the line (checked on the bytes)
        if not s:
            return None, None
        try:
            _decode_raw(s)
        except msgspec.DecodeError:
            return None, s
        return s, None
    if raw == b"null":
        return None, None
    return raw, None


_get = {f: attrgetter(f) for f in (*STRING_FIELDS, "time")}


def _bad_utf8_lines(lines: list[bytes]) -> set[int]:
    """Indices of the lines that are not UTF-8 (anywhere: msgspec does not check the fields it skips)."""
    data = b"\n".join(lines) + b"\n"
    if data.isascii():
        return set()
    offsets = np.empty(len(lines) + 1, np.int64)
    offsets[0] = 0
    np.cumsum(np.fromiter(map(len, lines), np.int64, len(lines)) + 1, out=offsets[1:])
    return set(invalid_utf8_rows(data, offsets))


def parse_block(lines: list[bytes], first_line: int, rejects: list, checks: tuple | None = None,
                counts: dict | None = None) -> pa.Table | None:
    """Parse consecutive lines (without their newlines); ``first_line`` is the 1-based number of the first.

    ``checks``: (max line bytes, plausible window lo, hi as datetimes or None). ``counts["nuls"]`` (when
    given) is increased by the lines from whose values NUL characters were removed (``strip_nul``)."""
    max_line, lo, hi = checks or (MAX_LINE_BYTES, None, None)
    recs: list[_Line] = []
    nos: list[int] = []
    ids: list[bytes] = []
    dec = _decode_line
    sha1 = _sha1
    bad_utf8 = _bad_utf8_lines(lines)
    line_no = first_line - 1
    for ln in lines:
        line_no += 1
        if len(ln) > max_line:
            rejects.append((line_no, too_long(max_line, len(ln)), bytes(ln[:KEPT_BYTES])))
            continue
        if bad_utf8 and line_no - first_line in bad_utf8:
            if ln.strip():
                rejects.append((line_no, "invalid UTF-8", ln))
            continue
        try:
            r = dec(ln)
        except (msgspec.DecodeError, UnicodeDecodeError):
            r = _slow(ln)
            if r is None:
                continue
            if type(r) is str:
                rejects.append((line_no, r, ln))
                continue
        if r.time is None:
            rejects.append((line_no, "no time", ln))
            continue
        recs.append(r)
        nos.append(line_no)
        ids.append(sha1(ln).digest()[:16])
    if not recs:
        return None
    table = _columns(recs, nos, ids, lines, first_line, rejects, (lo, hi))
    if table is not None and any(NUL_ESCAPE in ln for ln in lines):
        table, n = strip_nul(table)
        if counts is not None:
            counts["nuls"] = counts.get("nuls", 0) + n
    return table


def _columns(recs: list[_Line], nos: list[int], ids: list[bytes], lines: list[bytes], first_line: int,
             rejects: list, window: tuple = (None, None)) -> pa.Table | None:
    ts = parse_times(pa.array(list(map(_get["time"], recs)), pa.string()))
    bad: set[int] = set()
    if ts.null_count:
        for j, ok in enumerate(ts.is_valid().to_pylist()):
            if not ok:
                bad.add(j)
                rejects.append((nos[j], "invalid time" if recs[j].time else "no time", lines[nos[j] - first_line]))
    out = _outside(ts, *window)
    if out is not None:
        for j in out:
            if j not in bad:
                bad.add(j)
                rejects.append((nos[j], "implausible time", lines[nos[j] - first_line]))

    # event and context: raw JSON (not yet checked for UTF-8: msgspec only checks strings it decodes)
    ctx_raw: list[bytes | None] = []
    ctxs: list[_Ctx] = []
    events: list = []
    texts: list = []
    dctx = _decode_ctx
    norm = normalise_event
    empty = _EMPTY_CTX
    for r in recs:
        c = bytes(r.context)
        if not c or c == b"null":
            ctx_raw.append(None)
            ctxs.append(empty)
        else:
            ctx_raw.append(c)
            try:
                ctxs.append(dctx(c))
            except msgspec.DecodeError:
                ctxs.append(_slow_ctx(c))
            except UnicodeDecodeError:
                ctxs.append(empty)
        e, t = norm(bytes(r.event))
        events.append(e)
        texts.append(t)
    ev_arr = _utf8(events)
    ctx_arr = _utf8(ctx_raw)
    if ev_arr is None or ctx_arr is None:  # invalid UTF-8 inside event or context: reject those lines
        for j in range(len(recs)):
            if j not in bad and not (_ok_utf8(events[j]) and _ok_utf8(ctx_raw[j])):
                bad.add(j)
                rejects.append((nos[j], "invalid UTF-8", lines[nos[j] - first_line]))
    if bad:
        keep = [j for j in range(len(recs)) if j not in bad]
        if not keep:
            return None
        recs, nos, ids, ctx_raw, ctxs, events, texts = (
            [x[j] for j in keep] for x in (recs, nos, ids, ctx_raw, ctxs, events, texts))
        ts = ts.take(pa.array(keep, pa.int64()))
        ev_arr, ctx_arr = _utf8(events), _utf8(ctx_raw)

    cols: dict[str, pa.Array] = {}
    strs = {f: list(map(_get[f], recs)) for f in STRING_FIELDS}
    course = [c.course_id for c in ctxs]
    pages, etypes = strs["page"], strs["event_type"]
    paths = [c.path for c in ctxs]
    for j, cid in enumerate(course):
        if cid and cid[0] not in _BLANKS and cid[-1] not in _BLANKS:
            continue
        cid = cid.strip(_BLANKS) if cid else cid  # blanks around a context's id are no part of it
        course[j] = cid or _course_from(pages[j], etypes[j], paths[j])
    uids = [_user_id(c.user_id) for c in ctxs]
    modules = [c.module.usage_key if c.module is not None else None for c in ctxs]

    cols["event_id"] = uuid_text(b"".join(ids), len(ids))
    cols["time"] = ts
    cols["event_date"] = ts.cast(pa.date32())
    for f in STRING_FIELDS:
        cols[f] = pa.array(strs[f], pa.string())
    cols["user_id"] = pa.array(uids, pa.int64())
    cols["course_id"] = pa.array(course, pa.string())
    cols["org_id"] = pa.array([c.org_id for c in ctxs], pa.string())
    cols["path"] = pa.array(paths, pa.string())
    cols["module_id"] = pa.array(modules, pa.string())
    cols["event"] = pa.ExtensionArray.from_storage(JSON_TYPE, ev_arr)
    cols["event_text"] = pa.array(texts, pa.string())
    cols["context"] = pa.ExtensionArray.from_storage(JSON_TYPE, ctx_arr)
    cols["line"] = pa.array(nos, pa.int64())
    return pa.Table.from_arrays([cols[f.name] for f in SCHEMA], schema=SCHEMA)


def _outside(ts: pa.Array, lo: datetime | None, hi: datetime | None) -> list[int] | None:
    """Indices of the times outside [lo, hi) (None when all are inside)."""
    mask = None
    if lo is not None:
        mask = pc.less(ts, pa.scalar(lo, pa.timestamp("us")))
    if hi is not None:
        m = pc.greater_equal(ts, pa.scalar(hi, pa.timestamp("us")))
        mask = m if mask is None else pc.or_(mask, m)
    if mask is None or not pc.any(mask).as_py():
        return None
    return pc.indices_nonzero(pc.fill_null(mask, False)).to_pylist()


def _ok_utf8(v) -> bool:
    if v is None or isinstance(v, str) or v.isascii():
        return True
    return _is_utf8(v)


def _utf8(values: list) -> pa.Array | None:
    """bytes/str/None -> string array; None when some bytes are not UTF-8."""
    try:
        return pa.array(values, pa.binary()).cast(pa.string())
    except (pa.ArrowInvalid, UnicodeError):
        return None


class _LooseCtx(msgspec.Struct, gc=False):
    course_id: object = None
    org_id: object = None
    user_id: object = None
    path: object = None
    module: object = None


def _slow_ctx(raw: bytes) -> _Ctx:
    """A context whose fields have unexpected types (or that is not an object)."""
    try:
        obj = _decode_any(raw)
    except msgspec.DecodeError:
        return _EMPTY_CTX
    if not isinstance(obj, dict):
        return _EMPTY_CTX
    mod = obj.get("module")
    usage = mod.get("usage_key") if isinstance(mod, dict) else None

    def s(v):
        return v if isinstance(v, str) else (None if v is None else _as_text(v))

    uid = obj.get("user_id")
    return _Ctx(course_id=s(obj.get("course_id")), org_id=s(obj.get("org_id")),
                user_id=uid if isinstance(uid, (int, str)) and not isinstance(uid, bool) else None,
                path=s(obj.get("path")), module=_Module(s(usage)))
