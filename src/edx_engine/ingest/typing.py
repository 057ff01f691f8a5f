"""Turning columns of text into the schema's types, rejecting (not guessing) bad values.

Validation is vectorised: each typed column is checked with a regular expression over
the whole batch; rows that fail go to the quarantine with the column and value named.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from ..schemas import Column

ARROW_TYPES = {
    "int": pa.int64(),
    "double": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us"),
    "text": pa.string(),
    "json": pa.string(),
}

_VALID = {
    "int": r"^\s*[-+]?\d{1,18}\s*$",
    "double": r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$",
    "bool": r"^(0|1|[Tt]rue|[Ff]alse|TRUE|FALSE)$",
    "timestamp": r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]00:?00)?$",
}
_ZERO_DATE = r"^0000-00-00"


def arrow_type(logical: str) -> pa.DataType:
    return ARROW_TYPES[logical]


def unescape_mysql(arr: pa.Array, counts: dict | None = None) -> pa.Array:
    r"""Undo MySQL batch escaping (``\t``, ``\n``, ``\r``, ``\0``, ``\Z``, ``\\``), vectorised.

    Values are split on the escaped backslash first, so ``\\t`` stays a backslash and a
    ``t``; the pieces are unescaped and joined back with a real backslash.

    ``\0`` (NUL, written by the ``mysql`` client of the oldest packages) is removed, not restored: edX's
    exporter deletes NUL bytes, and PostgreSQL text cannot hold one. ``counts["nuls"]`` (when given) is
    increased by the number removed.
    """
    if len(arr) == 0 or not pc.any(pc.match_substring(arr, "\\")).as_py():
        return arr
    pieces = pc.split_pattern(arr, "\\\\")
    flat = pieces.flatten()
    before = pc.sum(pc.binary_length(flat)).as_py() or 0  # (from the offsets: no pass over the text)
    flat = pc.replace_substring(flat, "\\0", "")  # first: each escape is two characters, whatever the order
    if counts is not None:
        counts["nuls"] = counts.get("nuls", 0) + (before - (pc.sum(pc.binary_length(flat)).as_py() or 0)) // 2
    for seq, ch in (("\\t", "\t"), ("\\n", "\n"), ("\\r", "\r"), ("\\Z", "\x1a")):
        flat = pc.replace_substring(flat, seq, ch)
    rebuilt = pa.ListArray.from_arrays(pieces.offsets, flat, mask=pieces.is_null())
    return pc.binary_join(rebuilt, "\\")


@dataclass
class BadValue:
    row: int  # index in the batch
    reason: str


def type_column(arr: pa.Array, column: Column, bad: list[BadValue]) -> pa.Array:
    """Cast a text column to the column's type; empty text is NULL for non-text types."""
    if column.type in ("text", "json"):
        return arr
    arr = pc.if_else(pc.equal(pc.utf8_trim_whitespace(arr), ""), pa.scalar(None, pa.string()), arr)
    if column.type == "timestamp":
        arr = pc.if_else(pc.match_substring_regex(arr, _ZERO_DATE), pa.scalar(None, pa.string()), arr)
    ok = pc.match_substring_regex(arr, _VALID[column.type])
    invalid = pc.and_(pc.is_valid(arr), pc.invert(ok))
    if pc.any(invalid).as_py():
        for i in pc.indices_nonzero(invalid).to_pylist():
            value = arr[i].as_py()
            shown = value if len(value) <= 60 else value[:57] + "..."
            bad.append(BadValue(i, f"column {column.name}: {shown!r} is not a valid {column.type}"))
        arr = pc.if_else(invalid, pa.scalar(None, pa.string()), arr)
    if column.type == "timestamp":
        arr = pc.replace_substring_regex(arr, r"(Z|[+-]00:?00)$", "")
    if column.type in ("int", "double"):
        arr = pc.utf8_trim_whitespace(arr)
    try:
        return pc.cast(arr, ARROW_TYPES[column.type])
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    # Well-formed but impossible values (2026-02-30, 24:00:00): find them one by one, reject them.
    values = arr.to_pylist()
    keep = []
    for i, value in enumerate(values):
        if value is None:
            keep.append(True)
            continue
        try:
            pc.cast(pa.array([value]), ARROW_TYPES[column.type])
            keep.append(True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            keep.append(False)
            bad.append(BadValue(i, f"column {column.name}: {value[:60]!r} is not a valid {column.type}"))
    arr = pc.if_else(pa.array(keep), arr, pa.scalar(None, pa.string()))
    return pc.cast(arr, ARROW_TYPES[column.type])
