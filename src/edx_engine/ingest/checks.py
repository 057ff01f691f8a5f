"""Plausibility checks of imported snapshots: keys that should be unique, user ids that should exist.

A package is a dump of edX's database, where primary keys are enforced and every learner of a
course's files is in that course's ``auth_user`` file. A file that breaks this is not what its
header says (two column names swapped, a shifted column, a concatenation): the rows are kept as
they are and the import summary says what looks wrong (docs/decisions.md, "Keys and user ids").
The checks read only the key columns of the Parquet files just written, with DuckDB (bounded
memory, spilling to the store's tmp folder).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from ..schemas import TableSchema, schema_for

# A user-id column is reported when more than this share of its distinct ids is not in auth_user
# (a few staff accounts with state but no enrolment are normal; a swapped column misses ~all).
MISSING_SHARE = 0.01
# ... and another integer column of the same table is named as the likely holder of the user ids
# when at least this share of its distinct values are auth_user ids.
HOLDER_SHARE = 0.99


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


_SHARED: dict[str, duckdb.DuckDBPyConnection] = {}


def _connect(tmp: Path | None) -> duckdb.DuckDBPyConnection:
    """A cursor on one in-memory database per temp directory (a new database per check cost ~25 ms
    each, for hundreds of checks in a package)."""
    key = str(tmp)
    if key not in _SHARED:
        con = duckdb.connect()
        con.execute("SET memory_limit = '512MB'")
        if tmp is not None:
            tmp.mkdir(parents=True, exist_ok=True)
            con.execute(f"SET temp_directory = {_lit(tmp)}")
        _SHARED[key] = con
    return _SHARED[key].cursor()


def key_warnings(path: Path, schema: TableSchema, columns: list[str], label: str, tmp: Path | None = None
                 ) -> list[str]:
    """One line per registry key of ``schema`` whose values occur more than once in the file."""
    out: list[str] = []
    keys = [k for k in schema.keys if all(c in columns for c in k)]
    if not keys:
        return out
    with _connect(tmp) as con:
        for i, key in enumerate(schema.keys):
            if key not in keys:
                continue
            cols = ", ".join(_q(c) for c in key)
            shown = ", ".join(f"'{c}=' || CAST({_q(c)} AS VARCHAR)" for c in key)
            notnull = " AND ".join(f"{_q(c)} IS NOT NULL" for c in key)
            dup, rows, example = con.execute(
                f"SELECT count(*), coalesce(sum(n), 0), min(concat_ws(', ', {shown})) FROM (SELECT {cols}, count(*) AS n "
                f"FROM read_parquet({_lit(path)}) WHERE {notnull} GROUP BY {cols} HAVING count(*) > 1)"
            ).fetchone()
            if dup:
                what = "primary key" if i == 0 else "unique key"
                out.append(f"{label}: {dup:,} value(s) of the {what} ({', '.join(key)}) occur more than once "
                           f"({rows:,} rows, e.g. {example}); rows kept: is the header right?")
    return out


def user_id_warnings(path: Path, schema: TableSchema, columns: list[str], users: Path, label: str,
                     tmp: Path | None = None) -> list[str]:
    """Lines for user-id columns whose ids are mostly not in ``users`` (the auth_user snapshot of the
    same course and package), naming another integer column that holds them if there is one."""
    out: list[str] = []
    refs = [c for c in schema.user_refs if c in columns]
    if not refs:
        return out
    ints = [c.name for c in schema.columns if c.type == "int" and c.name in columns]
    with _connect(tmp) as con:
        con.execute(f"CREATE TEMP TABLE u AS SELECT DISTINCT id FROM read_parquet({_lit(users)}) WHERE id IS NOT NULL")
        for col in refs:
            total, missing, example = _coverage(con, path, col)
            if not total or missing / total <= MISSING_SHARE:
                continue
            line = (f"{label}: {missing:,} of {total:,} user ids in column {col} are not in auth_user of the same "
                    f"package (e.g. {example})")
            for other in ints:
                if other == col:
                    continue
                t2, m2, _ = _coverage(con, path, other)
                if t2 and (t2 - m2) / t2 >= HOLDER_SHARE:
                    line += f"; column {other} holds auth_user ids: are {col} and {other} swapped in the header?"
                    break
            out.append(line + "; rows kept")
    return out


def _coverage(con: duckdb.DuckDBPyConnection, path: Path, col: str) -> tuple[int, int, object]:
    """(distinct non-null values, how many are not auth_user ids, the smallest of those)."""
    return con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE u.id IS NULL), min(v) FILTER (WHERE u.id IS NULL) "
        f"FROM (SELECT DISTINCT {_q(col)} AS v FROM read_parquet({_lit(path)}) WHERE {_q(col)} IS NOT NULL) s "
        f"LEFT JOIN u ON u.id = s.v"
    ).fetchone()


def snapshot_warnings(snapshots: list, current_users, tmp: Path | None = None) -> dict[int, list[str]]:
    """User-id warnings for this run's snapshots, by index in ``snapshots``.

    ``current_users(course_id, package_date)`` gives the store's auth_user file of that course and
    package when this run did not import one (None: nothing to compare with)."""
    users = {(s.course_id, s.package_date): s.path for s in snapshots if s.table == "auth_user"}
    out: dict[int, list[str]] = {}
    for i, s in enumerate(snapshots):
        schema = schema_for(s.table)
        if not schema.user_refs or not s.rows:
            continue
        u = users.get((s.course_id, s.package_date)) or current_users(s.course_id, s.package_date)
        if u is None:
            continue
        columns = pq.read_schema(s.path).names
        if lines := user_id_warnings(s.path, schema, columns, Path(u), s.source_file, tmp):
            out[i] = lines
    return out
