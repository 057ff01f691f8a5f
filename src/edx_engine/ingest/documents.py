"""Loaders for the package's non-TSV files: course structure, forum, e-mail opt-in, OLX export.

Each yields rows as dicts of Python values keyed by the schema's column names, in
bounded batches, plus rejects (line, reason, raw bytes) for lines it cannot read.
"""

from __future__ import annotations

import re
import tarfile
from datetime import datetime, timezone
from typing import BinaryIO, Iterator

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv

from ..names import course_id_from_usage_key
from ..schemas import TABLES
from .events_parse import JSON_NUL_RE
from .tsv import FileRejected, Header, LineMap, Reject, check_header, read_header_line
from .typing import type_column

BATCH = 20_000

# The store holds no NUL, as edX's table exporter deletes them (PostgreSQL text cannot hold one): the
# tracking logs' rule (events_parse.JSON_NUL_RE, strip_nul), on the bytes of a document.
_JSON_NUL = re.compile(JSON_NUL_RE.encode())


def without_nul_escapes(data: bytes, counts: dict | None = None) -> bytes:
    """JSON text ``data`` without its \\u0000 escapes; ``counts["nuls"]`` increased by their number."""
    if b"\\u0000" not in data:
        return data
    n = 0

    def sub(m: re.Match) -> bytes:
        nonlocal n
        if m.group(1) is None:
            n += 1
            return b""
        return m.group(1)

    out = _JSON_NUL.sub(sub, data)
    if counts is not None:
        counts["nuls"] = counts.get("nuls", 0) + n
    return out


def _ts(value) -> datetime | None:
    """Mongo/JSON dates: ISO string, {"$date": iso|millis|{"$numberLong": ...}}, or epoch millis."""
    if isinstance(value, dict):
        value = value.get("$date", value.get("$numberLong"))
        if isinstance(value, dict):
            value = value.get("$numberLong")
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (int, float)) or (isinstance(value, str) and value.lstrip("-").isdigit()):
            return datetime.fromtimestamp(int(value) / 1000, tz=timezone.utc).replace(tzinfo=None)
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        if dt.tzinfo is not None:
            dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    except (ValueError, OverflowError, OSError):  # not a date, or one outside years 1..9999
        return None
    return dt


def _text(v) -> str | None:
    """A text column's value: strings as they are, anything else as its JSON text."""
    if v is None or isinstance(v, str):
        return v
    try:
        return orjson.dumps(v).decode()
    except TypeError:  # an integer beyond 64 bits
        return str(v)


def _bool(v) -> bool | None:
    if v is None or v == "":
        return None
    if isinstance(v, str):
        return v.lower() in ("true", "1")
    return bool(v)


def _int(v) -> int | None:
    if isinstance(v, dict):
        v = v.get("$numberLong", v.get("$numberInt"))
    try:
        n = int(v) if v not in (None, "") else None
    except (TypeError, ValueError, OverflowError):
        return None
    return n if n is None or -(1 << 63) <= n < (1 << 63) else None


def read_course_structure(raw: BinaryIO, label: str, counts: dict | None = None) -> tuple[list[dict], str | None]:
    """Blocks in course order, and the course id the structure belongs to (``counts``: ``without_nul_escapes``)."""
    data = without_nul_escapes(raw.read(), counts)
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise FileRejected(f"{label}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise FileRejected(f"{label}: expected a JSON object keyed by block id")
    course_key = next((k for k, v in doc.items() if isinstance(v, dict) and v.get("category") == "course"), None)
    rows: list[dict] = []
    seen: set[str] = set()

    def visit(key: str, parent: str | None, pos: int | None, chapter: str | None) -> None:
        if key in seen or key not in doc:
            return
        seen.add(key)
        block = doc[key] if isinstance(doc[key], dict) else {}  # an odd block keeps its id, nothing else
        meta = block.get("metadata") if isinstance(block.get("metadata"), dict) else {}
        cat = _text(block.get("category"))
        chapter = key if cat == "chapter" else chapter
        rows.append({
            "block_id": key, "category": cat, "display_name": _text(meta.get("display_name")),
            "parent_id": parent, "position": pos, "chapter_id": chapter,
            "start": _ts(meta.get("start")), "due": _ts(meta.get("due")),
            "graded": _bool(meta.get("graded")), "format": _text(meta.get("format")),
            "metadata": orjson.dumps(meta).decode(),
        })
        children = block.get("children")
        for i, child in enumerate(children if isinstance(children, list) else []):
            if isinstance(child, str):
                visit(child, key, i, chapter)

    if course_key:
        visit(course_key, None, None, None)
    for key in doc:  # orphans (not reachable from the course block) are kept too
        visit(key, None, None, None)
    course_id = course_id_from_usage_key(course_key) if course_key else None
    if course_key and course_key.startswith("i4x://"):
        # i4x://Org/Course/course/Run names the run as the block name
        course_id = course_id_from_usage_key(course_key)
    return rows, course_id


def read_forum(raw: BinaryIO, label: str, counts: dict | None = None) -> Iterator[tuple[list[dict], list[Reject]]]:
    """Forum documents as rows, in batches (``counts``: ``without_nul_escapes``)."""
    rows: list[dict] = []
    rejects: list[Reject] = []
    for lineno, line in enumerate(_lines(raw, label), start=1):
        if not line.strip():
            continue
        try:
            d = orjson.loads(without_nul_escapes(line, counts))
            if not isinstance(d, dict):
                raise ValueError("not a JSON object")
        except (orjson.JSONDecodeError, ValueError) as exc:
            rejects.append(Reject(lineno, f"not a JSON document: {str(exc)[:80]}", line))
            continue
        rows.append(_forum_row(d, line))
        if len(rows) >= BATCH:
            yield rows, rejects
            rows, rejects = [], []
    if rows or rejects:
        yield rows, rejects


def _forum_row(d: dict, line: bytes) -> dict:
    """One forum document as a row; values of unexpected types become text or NULL, never errors."""
    oid = d.get("_id")
    votes = d.get("votes")
    parents = d.get("parent_ids")
    parent = d.get("parent_id") or (parents[-1] if isinstance(parents, list) and parents else None)
    return {
        "id": _oid(oid), "type": _text(d.get("_type")), "author_id": _int(d.get("author_id")),
        "author_username": _text(d.get("author_username")), "title": _text(d.get("title")),
        "body": _text(d.get("body")), "commentable_id": _text(d.get("commentable_id")),
        "thread_type": _text(d.get("thread_type")),
        "comment_thread_id": _oid(d.get("comment_thread_id")), "parent_id": _oid(parent),
        "created_at": _ts(d.get("created_at")), "updated_at": _ts(d.get("updated_at")),
        "last_activity_at": _ts(d.get("last_activity_at")),
        "votes_up": _int(votes.get("up_count")) if isinstance(votes, dict) else None,
        "comment_count": _int(d.get("comment_count")), "anonymous": _bool(d.get("anonymous")),
        "anonymous_to_peers": _bool(d.get("anonymous_to_peers")), "closed": _bool(d.get("closed")),
        "pinned": _bool(d.get("pinned")), "endorsed": _bool(d.get("endorsed")),
        "raw": line.decode("utf-8", "replace"), "course_id": _text(d.get("course_id")),
    }


def _oid(v) -> str | None:
    if isinstance(v, dict):
        v = v.get("$oid")
    return _text(v)


def _lines(raw: BinaryIO, label: str) -> Iterator[bytes]:
    """Lines of a newline-terminated file; one that ends inside a line was cut short."""
    carry = b""
    while chunk := raw.read(1 << 20):
        data = carry + chunk
        parts = data.split(b"\n")
        carry = parts.pop()
        yield from parts
    if carry.strip():
        raise FileRejected(f"{label}: file is truncated (ends in the middle of a line)")


def read_email_opt_in(raw: BinaryIO, label: str) -> Iterator[tuple[dict[str, pa.Array], int, list[Reject]]]:
    """The organisation's opt-in CSV (comma-separated, quoted, header), by the same line rules as
    the TSV tables: bad rows and bad values are quarantined with their line, a cut file is rejected."""
    from ..schemas import Column

    schema = TABLES["email_opt_in"]
    line, rest = read_header_line(raw, label)
    header: Header = check_header(line, schema, label, delimiter=",")
    body = rest + raw.read()  # one row per learner of the organisation: small
    if not body.strip():
        return  # a header and no rows: an empty snapshot
    if not body.endswith(b"\n"):
        raise FileRejected(f"{label}: file is truncated (ends in the middle of a line)")
    lines = LineMap()
    pending: list[Reject] = []

    def on_invalid(row) -> str:
        pending.append(lines.invalid_row(row))
        return "skip"

    try:
        reader = pacsv.open_csv(
            pa.BufferReader(body),  # not a Python file: Arrow's I/O thread never calls into Python
            read_options=pacsv.ReadOptions(column_names=header.names, use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=",", invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in header.names},
                                                 null_values=[], strings_can_be_null=False),
        )
        for batch in reader:
            bad: list = []
            cols = {}
            for col in list(schema.columns) + [Column(x) for x in header.extra]:
                arr = batch.column(col.name) if col.name in header.names else pa.nulls(batch.num_rows, pa.string())
                cols[col.name] = type_column(arr, col, bad)
            rejects, pending[:] = list(pending), []
            cols, n = lines.drop_bad_rows(batch, cols, bad, rejects, ",")
            yield cols, n, rejects
    except pa.ArrowInvalid as exc:
        msg = str(exc)
        if "utf8" in msg.lower() or "utf-8" in msg.lower():
            raise FileRejected(f"{label}: invalid UTF-8 bytes in the data") from None
        raise FileRejected(f"{label}: cannot parse: {msg.splitlines()[0]}") from None
    if pending:
        yield {}, 0, list(pending)


_POLICY_RE = re.compile(r"(?:^|/)policies/[^/]+/(?:grading_policy|policy)\.json$")
POLICY_MAX_BYTES = 4 << 20


def read_course_content(raw: BinaryIO, label: str) -> list[dict]:
    """The OLX export is kept as a listing of its members (the archive itself is not loaded), plus the
    text of the course policies (``policies/{run}/grading_policy.json`` holds the grade cutoffs)."""
    rows = []
    try:
        with tarfile.open(fileobj=raw, mode="r|gz") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                content = None
                if _POLICY_RE.search(m.name) and m.size <= POLICY_MAX_BYTES:
                    f = tar.extractfile(m)
                    content = f.read().decode("utf-8", "replace") if f else None
                rows.append({"path": m.name, "size": m.size, "content": content})
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise FileRejected(f"{label}: not a readable tar.gz archive ({exc})") from None
    return rows
