"""The rows of a query typed at ``edx-engine sql``, as CSV, JSON or a text table.

Rows are fetched as Arrow batches (memory stays bounded; no pytz needed for time zones) and
written out in full: no value is cut short. The writers take a stream; the CLI decides which.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
from typing import IO, Iterator

import duckdb
import orjson

FORMATS = ("table", "csv", "json")
UTF8_BOM = "\ufeff"  # lets Excel read accented names as UTF-8
BATCH_ROWS = 10_000


def rows(rel: duckdb.DuckDBPyRelation, limit: int | None) -> Iterator[list[tuple]]:
    """The relation's rows, a batch at a time (``limit`` rows at most)."""
    if limit is not None:
        rel = rel.limit(limit)
    for batch in rel.to_arrow_reader(BATCH_ROWS):
        yield list(zip(*(col.to_pylist() for col in batch.columns)))


def text(v, null: str) -> str:
    """A value as text, in full: bytes (quarantined raw lines) decoded with escapes for non-UTF-8."""
    if v is None:
        return null
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).decode("utf-8", "backslashreplace")
    if isinstance(v, dt.datetime):
        return v.isoformat(sep=" ")
    return str(v)


def write_csv(stream: IO[str], columns: list[str], batches: Iterator[list[tuple]], bom: bool) -> int:
    """RFC 4180 CSV (NULL is an empty field); returns the number of rows written."""
    if bom:
        stream.write(UTF8_BOM)
    w = csv.writer(stream, lineterminator="\n")
    w.writerow(columns)
    n = 0
    for batch in batches:
        w.writerows([text(v, "") for v in row] for row in batch)
        n += len(batch)
    return n


def write_json(stream: IO[str], columns: list[str], batches: Iterator[list[tuple]]) -> int:
    """A JSON array of objects, one per line; returns the number of rows written."""
    keys = _unique(columns)
    stream.write("[")
    n = 0
    for batch in batches:
        for row in batch:
            stream.write(("\n" if n == 0 else ",\n") + orjson.dumps(dict(zip(keys, row)), default=_json).decode())
            n += 1
    stream.write("\n]\n" if n else "]\n")
    return n


def _unique(columns: list[str]) -> list[str]:
    """JSON objects need distinct keys: a repeated column name gets _2, _3 ..."""
    seen: dict[str, int] = {}
    out = []
    for c in columns:
        seen[c] = seen.get(c, 0) + 1
        out.append(c if seen[c] == 1 else f"{c}_{seen[c]}")
    return out


def _json(v):
    if isinstance(v, decimal.Decimal):  # HUGEINT sums arrive as Decimal: keep integers integers
        if v == v.to_integral_value() and abs(v) < 2**63:
            return int(v)
        return float(v) if v.is_finite() and abs(v) < 2**63 else str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).decode("utf-8", "backslashreplace")
    return str(v)  # intervals, time deltas, ...
