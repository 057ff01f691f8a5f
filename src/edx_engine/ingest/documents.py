"""Loaders for the package's non-TSV files: course structure, forum, e-mail opt-in, OLX export.

Each yields rows as dicts of Python values keyed by the schema's column names, in
bounded batches, plus rejects (line, reason, raw bytes) for lines it cannot read.
"""

from __future__ import annotations

import io
import tarfile
from datetime import datetime, timezone
from typing import BinaryIO, Iterator

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv

from ..names import course_id_from_usage_key
from ..schemas import TABLES
from .tsv import FileRejected, Header, Reject, check_header, read_header_line
from .typing import type_column

BATCH = 20_000


def _ts(value) -> datetime | None:
    """Mongo/JSON dates: ISO string, {"$date": iso|millis|{"$numberLong": ...}}, or epoch millis."""
    if isinstance(value, dict):
        value = value.get("$date", value.get("$numberLong"))
        if isinstance(value, dict):
            value = value.get("$numberLong")
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.lstrip("-").isdigit()):
        return datetime.fromtimestamp(int(value) / 1000, tz=timezone.utc).replace(tzinfo=None)
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return dt


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
        return int(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None


def read_course_structure(raw: BinaryIO, label: str) -> tuple[list[dict], str | None]:
    """Blocks in course order, and the course id the structure belongs to."""
    data = raw.read()
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
        block = doc[key] or {}
        meta = block.get("metadata") or {}
        cat = block.get("category")
        chapter = key if cat == "chapter" else chapter
        rows.append({
            "block_id": key, "category": cat, "display_name": meta.get("display_name"),
            "parent_id": parent, "position": pos, "chapter_id": chapter,
            "start": _ts(meta.get("start")), "due": _ts(meta.get("due")),
            "graded": _bool(meta.get("graded")), "format": meta.get("format"),
            "metadata": orjson.dumps(meta).decode(),
        })
        for i, child in enumerate(block.get("children") or []):
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


def read_forum(raw: BinaryIO, label: str) -> Iterator[tuple[list[dict], list[Reject]]]:
    rows: list[dict] = []
    rejects: list[Reject] = []
    for lineno, line in enumerate(_lines(raw), start=1):
        if not line.strip():
            continue
        try:
            d = orjson.loads(line)
            if not isinstance(d, dict):
                raise ValueError("not a JSON object")
        except (orjson.JSONDecodeError, ValueError) as exc:
            rejects.append(Reject(lineno, f"not a JSON document: {str(exc)[:80]}", line))
            continue
        oid = d.get("_id")
        votes = d.get("votes") or {}
        parent = d.get("parent_id") or (d.get("parent_ids") or [None])[-1]
        rows.append({
            "id": oid.get("$oid") if isinstance(oid, dict) else (str(oid) if oid is not None else None),
            "type": d.get("_type"), "author_id": _int(d.get("author_id")),
            "author_username": d.get("author_username"), "title": d.get("title"), "body": d.get("body"),
            "commentable_id": d.get("commentable_id"), "thread_type": d.get("thread_type"),
            "comment_thread_id": _oid(d.get("comment_thread_id")), "parent_id": _oid(parent),
            "created_at": _ts(d.get("created_at")), "updated_at": _ts(d.get("updated_at")),
            "last_activity_at": _ts(d.get("last_activity_at")),
            "votes_up": _int(votes.get("up_count")) if isinstance(votes, dict) else None,
            "comment_count": _int(d.get("comment_count")), "anonymous": _bool(d.get("anonymous")),
            "anonymous_to_peers": _bool(d.get("anonymous_to_peers")), "closed": _bool(d.get("closed")),
            "pinned": _bool(d.get("pinned")), "endorsed": _bool(d.get("endorsed")),
            "raw": line.decode("utf-8", "replace"), "course_id": d.get("course_id"),
        })
        if len(rows) >= BATCH:
            yield rows, rejects
            rows, rejects = [], []
    if rows or rejects:
        yield rows, rejects


def _oid(v):
    if isinstance(v, dict):
        return v.get("$oid")
    return v


def _lines(raw: BinaryIO) -> Iterator[bytes]:
    carry = b""
    while chunk := raw.read(1 << 20):
        data = carry + chunk
        parts = data.split(b"\n")
        carry = parts.pop()
        yield from parts
    if carry:
        yield carry


def read_email_opt_in(raw: BinaryIO, label: str) -> Iterator[tuple[dict[str, pa.Array], int, list[Reject]]]:
    """The organisation's opt-in CSV (comma-separated, quoted, header)."""
    schema = TABLES["email_opt_in"]
    line, rest = read_header_line(raw, label)
    header: Header = check_header(line, schema, label, delimiter=",")
    rejects: list[Reject] = []

    def on_invalid(row) -> str:
        rejects.append(Reject((row.number or 0) + 1, f"expected {row.expected_columns} fields, found "
                              f"{row.actual_columns}", (row.text or "").encode()))
        return "skip"

    body = io.BytesIO(rest + raw.read())  # one row per learner of the organisation: small
    reader = pacsv.open_csv(
        body,
        read_options=pacsv.ReadOptions(column_names=header.names),
        parse_options=pacsv.ParseOptions(delimiter=",", invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in header.names},
                                             null_values=[], strings_can_be_null=False),
    )
    from ..schemas import Column

    for batch in reader:
        bad: list = []
        cols = {}
        for col in list(schema.columns) + [Column(x) for x in header.extra]:
            arr = batch.column(col.name) if col.name in header.names else pa.nulls(batch.num_rows, pa.string())
            cols[col.name] = type_column(arr, col, bad)
        if bad:
            raise FileRejected(f"{label}: {bad[0].reason}")
        yield cols, batch.num_rows, rejects
        rejects = []
    if rejects:
        yield {}, 0, rejects


def read_course_content(raw: BinaryIO, label: str) -> list[dict]:
    """The OLX export is kept as a listing of its members (the archive itself is not loaded)."""
    try:
        with tarfile.open(fileobj=raw, mode="r|gz") as tar:
            return [{"path": m.name, "size": m.size} for m in tar if m.isfile()]
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise FileRejected(f"{label}: not a readable tar.gz archive ({exc})") from None
