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
    "timestamp": r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]00:?00)?$",
}
_ZERO_DATE = r"^0000-00-00"
_PLACEHOLDER = "\ue000"


def arrow_type(logical: str) -> pa.DataType:
    return ARROW_TYPES[logical]


def unescape_mysql(arr: pa.Array) -> pa.Array:
    r"""Undo MySQL batch escaping (``\t``, ``\n``, ``\r``, ``\0``, ``\\``) in one pass per sequence."""
    if len(arr) == 0 or not pc.any(pc.match_substring(arr, "\\")).as_py():
        return arr
    a = pc.replace_substring(arr, "\\\\", _PLACEHOLDER)
    for seq, ch in (("\\t", "\t"), ("\\n", "\n"), ("\\r", "\r"), ("\\0", "\x00"), ("\\Z", "\x1a")):
        a = pc.replace_substring(a, seq, ch)
    return pc.replace_substring(a, _PLACEHOLDER, "\\")


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
    return pc.cast(arr, ARROW_TYPES[column.type])
