"""Every bookkeeping table of the catalog (``_edx_*``), declared once, with the small typed
reads and writes other modules use instead of repeating SQL strings.

A stage that needs its tables calls ``ensure(con, <group>)``; the groups below say which
tables belong together. Tables are only ever created here (``CREATE TABLE IF NOT EXISTS``),
so a catalog made by an older version gains what it lacks and keeps its rows.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Iterable, Sequence

import duckdb

from ..clock import now
from .errors import StoreTooNew

TABLES: dict[str, str] = {
    "_edx_snapshots": """(
        table_name VARCHAR, course_id VARCHAR, org VARCHAR, package_date VARCHAR,
        path VARCHAR, rows BIGINT, rejected BIGINT, fingerprint VARCHAR, source_file VARCHAR,
        extra_columns VARCHAR, imported_at TIMESTAMP,
        PRIMARY KEY (table_name, course_id))""",
    "_edx_quarantine_files": "(key VARCHAR PRIMARY KEY, kind VARCHAR, path VARCHAR, rows BIGINT, imported_at TIMESTAMP)",
    "_edx_import_log": """(
        logged_at TIMESTAMP, source_file VARCHAR, table_name VARCHAR, course_id VARCHAR,
        package_date VARCHAR, status VARCHAR, rows BIGINT, rejected BIGINT, message VARCHAR)""",
    "_edx_meta": "(key VARCHAR PRIMARY KEY, value VARCHAR)",
    "_edx_event_files": """(
        source_key VARCHAR PRIMARY KEY, source_file VARCHAR, fingerprint VARCHAR, file_date DATE,
        rows BIGINT, rejected BIGINT, duplicates BIGINT, first_event_time TIMESTAMP, last_event_time TIMESTAMP,
        json_bytes BIGINT, imported_at TIMESTAMP, origin VARCHAR)""",
    "_edx_event_parts": """(
        source_key VARCHAR, event_date DATE, path VARCHAR, rows BIGINT, min_time TIMESTAMP, max_time TIMESTAMP)""",
    "_edx_event_dups": "(event_date DATE, source_key VARCHAR, line BIGINT, event_id UUID)",
    "_edx_geo": """(
        name VARCHAR PRIMARY KEY, path VARCHAR, rows BIGINT, ip_db VARCHAR, ip_db_date VARCHAR, located_at TIMESTAMP)""",
    "_edx_models": """(
        name VARCHAR PRIMARY KEY, path VARCHAR, fingerprint VARCHAR, rows BIGINT, seconds DOUBLE,
        params VARCHAR, built_at TIMESTAMP)""",
    "_edx_model_inputs": "(model VARCHAR, input VARCHAR, fingerprint VARCHAR, PRIMARY KEY (model, input))",
    # date-partitioned models (models/incremental.py): one row per file of an event date's partition
    # (path NULL: the date has no rows), with what it was computed from
    "_edx_model_parts": """(
        model VARCHAR, part VARCHAR, path VARCHAR, rows BIGINT, fingerprint VARCHAR, context VARCHAR,
        names VARCHAR)""",
    "_edx_scrub_log": """(
        scrubbed_at TIMESTAMP, kind VARCHAR, name VARCHAR, path VARCHAR, old_path VARCHAR,
        columns VARCHAR, json_keys VARCHAR, rows BIGINT, values_removed BIGINT)""",
    "_edx_ledger": """(
        bucket VARCHAR NOT NULL, key VARCHAR NOT NULL, kind VARCHAR, org VARCHAR, object_date VARCHAR, site VARCHAR,
        size BIGINT, etag VARCHAR, last_modified TIMESTAMP, sha256 VARCHAR,
        state VARCHAR NOT NULL, rows BIGINT, rejected BIGINT, error VARCHAR, local_path VARCHAR,
        first_seen TIMESTAMP, listed_at TIMESTAMP, downloaded_at TIMESTAMP, decrypted_at TIMESTAMP,
        imported_at TIMESTAMP, failed_at TIMESTAMP, attempts INTEGER DEFAULT 0, changes INTEGER DEFAULT 0,
        run_id VARCHAR, skipped_at TIMESTAMP, skipped_by VARCHAR, skip_reason VARCHAR, skipped_from VARCHAR,
        PRIMARY KEY (bucket, key))""",
    "_edx_sync_runs": """(
        run_id VARCHAR PRIMARY KEY, pid INTEGER, host VARCHAR, started_at TIMESTAMP, ended_at TIMESTAMP,
        status VARCHAR, options VARCHAR, listed INTEGER, new INTEGER, downloaded INTEGER, imported INTEGER,
        failed INTEGER, pending INTEGER, rows BIGINT, rejected BIGINT, bytes BIGINT, summary VARCHAR)""",
}

# Columns added to a table after stores were first made with it: ``ensure`` adds those an older
# store lacks (``ALTER TABLE ... ADD COLUMN``; its rows keep NULL). Only nullable columns that older
# versions can ignore belong here: every read and write of theirs names its columns.
ADDED_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "_edx_event_files": (("origin", "VARCHAR"),),  # sources' origin (before it: NULL)
    # `edx-engine skip` (store.ledger): who set an object aside, when, why, and the state it had
    "_edx_ledger": (("skipped_at", "TIMESTAMP"), ("skipped_by", "VARCHAR"), ("skip_reason", "VARCHAR"),
                    ("skipped_from", "VARCHAR")),
}

# Groups: which tables a writer needs before it writes.
STORE = ("_edx_snapshots", "_edx_quarantine_files", "_edx_import_log", "_edx_meta")
EVENTS = ("_edx_event_files", "_edx_event_parts", "_edx_event_dups", "_edx_import_log", "_edx_quarantine_files")
GEO = ("_edx_geo",)
MODELS = ("_edx_models", "_edx_model_inputs", "_edx_model_parts")
SCRUB = ("_edx_scrub_log",)
LEDGER = ("_edx_ledger", "_edx_sync_runs")

# Lake subdirectories and the bookkeeping table that lists their files (``Lake.collect_garbage``).
LAKE_FILE_OWNERS = (("tables", "_edx_snapshots"), ("quarantine", "_edx_quarantine_files"),
                    ("events", "_edx_event_parts"), ("models", "_edx_models"), ("geo", "_edx_geo"),
                    ("model_parts", "_edx_model_parts"))

# Schema of the quarantine Parquet files (rejected lines), and of the empty ``quarantine`` view.
QUARANTINE_COLUMNS = {
    "kind": "VARCHAR", "source_file": "VARCHAR", "line": "BIGINT", "reason": "VARCHAR",
    "raw": "BLOB", "imported_at": "TIMESTAMP",
}


def ddl(names: Iterable[str]) -> str:
    """The CREATE statements of ``names`` (idempotent), in order."""
    return "".join(f"CREATE TABLE IF NOT EXISTS {n} {TABLES[n]};\n" for n in names)


# The store's format, recorded in ``_edx_meta`` (``FORMAT_META``) by every version that writes it. Bump it
# when a change makes a store unsafe for older versions to read or write (a bookkeeping column an older
# version would not fill, a lake layout it would not find): those versions then refuse the store with one
# line (``Lake.connect``) instead of failing half-way through a command. Versions before the record
# existed cannot refuse anything: a store they never wrote is format 1. A nullable column an older
# version neither reads nor needs (``ADDED_COLUMNS``) is no reason for a bump: its statements name
# their columns, so it ignores the new one (the ledger's skip columns: an older sync just retries a
# skipped object, as it did before the skip).
STORE_FORMAT = 1
FORMAT_META = "store_format"


def stamp_format(con: duckdb.DuckDBPyConnection) -> None:
    """Record this version's store format (once: a store already marked with it is not written)."""
    if get_meta(con, FORMAT_META) != str(STORE_FORMAT):
        set_meta(con, FORMAT_META, str(STORE_FORMAT))


def check_format(recorded: str | None, path: Path) -> None:
    """Refuse a store a newer version wrote in a format this one does not know (before anything is
    read or re-pointed: this version's views or bookkeeping would not fit it)."""
    if recorded is not None and (not recorded.isdigit() or int(recorded) > STORE_FORMAT):
        raise StoreTooNew(f"{path} was written by a newer edx-engine (store format {recorded}; this version "
                          f"knows format {STORE_FORMAT} and older): use that version or a newer one; "
                          "nothing was changed")


def ensure(con: duckdb.DuckDBPyConnection, names: Iterable[str] = STORE) -> None:
    """Create the tables ``names`` that do not exist yet (and bring old ones up to date)."""
    names = tuple(names)
    if MODELS[0] in names:
        con.execute("CREATE SCHEMA IF NOT EXISTS models")  # the models' views live there
    con.execute(ddl(names))
    for table in names:
        if table in ADDED_COLUMNS:
            have = _columns_of_table(con, table)
            for column, sql_type in ADDED_COLUMNS[table]:
                if column not in have:  # a store made before the column: its rows keep NULL
                    con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")


def _columns_of_table(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    """The columns of a table the caller knows exists, from binding it (``duckdb_columns()`` lists the
    columns of every view too, binding each: ~5 ms on every commit)."""
    return {d[0] for d in con.execute(f"SELECT * FROM {table} LIMIT 0").description}


def exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """True if the catalog has the (main schema) table ``name``.

    A catalog lookup, not a query of ``duckdb_tables()``: that one computes every table's statistics
    (~3.5 ms on a new connection, and every open of the store asks it once). A qualified name finds
    tables only, not views; a missing table is a binder error, which leaves an open transaction usable."""
    if '"' in name:  # the lookup's name parser has no escape for a quote
        return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                                "AND schema_name = 'main' AND table_name = ?", [name]).fetchone()[0])
    try:
        con.table(f'main."{name}"')
    except duckdb.CatalogException:
        return False
    return True


# -- typed reads ----------------------------------------------------------------------------------
def snapshot_counts(con: duckdb.DuckDBPyConnection, table: str, course_id: str | None) -> tuple[int, int]:
    """(rows, rejected lines) of a table's current snapshot for a course; (0, 0) if none."""
    r = con.execute("SELECT rows, rejected FROM _edx_snapshots WHERE table_name=? AND course_id=?",
                    [table, course_id]).fetchone()
    return (int(r[0] or 0), int(r[1] or 0)) if r else (0, 0)


def event_file_counts(con: duckdb.DuckDBPyConnection, source_key: str) -> tuple[int, int]:
    """(rows, rejected lines) of an imported event log; (0, 0) if none."""
    r = con.execute("SELECT rows, rejected FROM _edx_event_files WHERE source_key=?", [source_key]).fetchone()
    return (int(r[0] or 0), int(r[1] or 0)) if r else (0, 0)


def current_snapshots(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str, str, str]]:
    """(table, course, package date, fingerprint, stored path) of every current snapshot."""
    return con.execute("SELECT table_name, course_id, package_date, fingerprint, path FROM _edx_snapshots").fetchall()


def courses_with_rows(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(course, table) of every current snapshot that holds rows, by table name."""
    return con.execute("SELECT course_id, table_name FROM _edx_snapshots WHERE rows > 0 ORDER BY table_name").fetchall()


def paths(con: duckdb.DuckDBPyConnection, table: str, order: str = "path") -> list[str]:
    """The stored (relative) paths a bookkeeping table lists, ordered by ``order``."""
    if table not in TABLES:
        raise KeyError(table)
    return [r[0] for r in con.execute(f"SELECT path FROM {table} ORDER BY {order}").fetchall()]


def named_paths(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    """(name, stored path) of ``_edx_models`` or ``_edx_geo``, by name; [] if the table is absent."""
    if table not in ("_edx_models", "_edx_geo") or not exists(con, table):
        return []
    return [(n, p) for n, p in con.execute(f"SELECT name, path FROM {table} ORDER BY name").fetchall()]


def model_part_paths(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """Model -> the stored paths of its date partitions (only models kept by partition); {} if none."""
    if not exists(con, "_edx_model_parts"):
        return {}
    return {m: ps for m, ps in con.execute(
        "SELECT model, list(path ORDER BY part, path) FILTER (WHERE path IS NOT NULL) FROM _edx_model_parts "
        "GROUP BY model").fetchall()}


def sql_str(value: str) -> str:
    """A quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def sql_ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def sql_list(values: Iterable[str]) -> str:
    """A DuckDB list literal of quoted strings."""
    return "[" + ", ".join(sql_str(v) for v in values) + "]"


def _in_dates(dates: Sequence[str]) -> str:
    """``(SELECT unnest([...]::DATE[]))``: the right side of ``event_date IN`` for ``dates``."""
    return f"(SELECT unnest({sql_list(dates)}::DATE[]))"


# -- typed writes ---------------------------------------------------------------------------------
# Each runs inside the caller's transaction (``Lake.transaction`` or an explicit BEGIN): the
# caller decides what commits together. ``at`` defaults to `clock.now` in whole seconds.

def replace_snapshot(con: duckdb.DuckDBPyConnection, *, table: str, course_id: str, org: str | None,
                     package_date: str | None, path: str, rows: int, rejected: int, fingerprint: str | None,
                     source_file: str | None, extra_columns: Sequence[str] = (), supersedes: str | None = None,
                     at: dt.datetime | None = None) -> None:
    """Make ``path`` the current snapshot of (table, course); ``supersedes``: a provisional
    course id (a bare slug) the real id replaces, whose row goes too."""
    con.execute("DELETE FROM _edx_snapshots WHERE table_name=? AND course_id=?", [table, course_id])
    if supersedes and supersedes != course_id:
        con.execute("DELETE FROM _edx_snapshots WHERE table_name=? AND course_id=?", [table, supersedes])
    con.execute("INSERT INTO _edx_snapshots VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [table, course_id, org, package_date, path, rows, rejected, fingerprint, source_file,
                 ",".join(extra_columns), at or now(True)])


_BATCH = 256  # rows per statement of the batch writes below (a few thousand parameters at most)


def _values(width: int, n: int) -> str:
    """``(?, ?), (?, ?)``: ``n`` rows of ``width`` parameters."""
    return ", ".join(["(" + ", ".join("?" * width) + ")"] * n)


def _delete_pairs(con: duckdb.DuckDBPyConnection, table: str, a: str, b: str, pairs: Sequence[tuple]) -> None:
    """DELETE the rows of ``table`` whose (a, b) is one of ``pairs``, a few statements in all."""
    for i in range(0, len(pairs), _BATCH):
        chunk = pairs[i:i + _BATCH]
        con.execute(f"DELETE FROM {table} USING (VALUES {_values(2, len(chunk))}) v(x, y) WHERE {a} = v.x AND {b} = v.y",
                    [x for p in chunk for x in p])


def _insert_rows(con: duckdb.DuckDBPyConnection, table: str, rows: Sequence[Sequence]) -> None:
    for i in range(0, len(rows), _BATCH):
        chunk = rows[i:i + _BATCH]
        con.execute(f"INSERT INTO {table} VALUES {_values(len(chunk[0]), len(chunk))}", [x for r in chunk for x in r])


def replace_snapshots(con: duckdb.DuckDBPyConnection, snapshots: Sequence[dict], at: dt.datetime | None = None) -> None:
    """``replace_snapshot`` for each of ``snapshots`` (its keyword arguments), in order, with the same
    result, in one DELETE and one INSERT (a package commit ran three statements per member, ~5 ms each)."""
    at = at or now(True)
    gone: list[tuple[str, str]] = []
    final: dict[tuple[str, str], list] = {}  # what stays, later snapshots of the same key winning
    for s in snapshots:
        olds = [(s["table"], s["course_id"])]
        if s.get("supersedes") and s["supersedes"] != s["course_id"]:
            olds.append((s["table"], s["supersedes"]))
        for k in olds:
            gone.append(k)
            final.pop(k, None)
        final[olds[0]] = [s["table"], s["course_id"], s.get("org"), s.get("package_date"), s["path"], s["rows"],
                          s["rejected"], s.get("fingerprint"), s.get("source_file"),
                          ",".join(s.get("extra_columns") or ()), s.get("at") or at]
    if gone:
        _delete_pairs(con, "_edx_snapshots", "table_name", "course_id", gone)
    if final:
        _insert_rows(con, "_edx_snapshots", list(final.values()))


def replace_quarantine_files(con: duckdb.DuckDBPyConnection, files: Sequence[tuple[str, str, str | None, int]],
                             at: dt.datetime | None = None) -> None:
    """``replace_quarantine_file`` for each (key, kind, path, rows), in order, in two statements."""
    at = at or now(True)
    final: dict[str, list] = {}
    for key, kind, path, rows in files:
        final.pop(key, None)
        if path is not None and rows:
            final[key] = [key, kind, path, rows, at]
    keys = list(dict.fromkeys(k for k, *_ in files))
    for i in range(0, len(keys), _BATCH):
        chunk = keys[i:i + _BATCH]
        con.execute(f"DELETE FROM _edx_quarantine_files WHERE key IN ({', '.join('?' * len(chunk))})", chunk)
    if final:
        _insert_rows(con, "_edx_quarantine_files", list(final.values()))


def log_imports(con: duckdb.DuckDBPyConnection, entries: Sequence[Sequence], at: dt.datetime | None = None) -> None:
    """``log_import`` for each entry (its positional arguments but ``at``), in one INSERT."""
    at = at or now(True)
    if entries:
        _insert_rows(con, "_edx_import_log", [[at, *e] for e in entries])


def replace_quarantine_file(con: duckdb.DuckDBPyConnection, key: str, kind: str, path: str | None, rows: int,
                            at: dt.datetime | None = None) -> None:
    """The quarantine file of ``key`` (one per table file or log file) is ``path``; with no
    rejected rows (or no path) the key has none."""
    con.execute("DELETE FROM _edx_quarantine_files WHERE key=?", [key])
    if path is not None and rows:
        con.execute("INSERT INTO _edx_quarantine_files VALUES (?,?,?,?,?)", [key, kind, path, rows, at or now(True)])


def log_import(con: duckdb.DuckDBPyConnection, source_file: str, table: str | None, course_id: str | None,
               package_date: str | None, status: str, rows: int, rejected: int, message: str | None,
               at: dt.datetime | None = None) -> None:
    """One row of ``_edx_import_log`` (what `edx-engine status` lists per import)."""
    con.execute("INSERT INTO _edx_import_log VALUES (?,?,?,?,?,?,?,?,?)",
                [at or now(True), source_file, table, course_id, package_date, status, rows, rejected, message])


def redact_import_log(con: duckdb.DuckDBPyConnection, pattern: str, replacement: str) -> None:
    """Rewrite the messages that quote rejected values (``... is not a valid ...``), if the table exists."""
    if exists(con, "_edx_import_log"):
        con.execute("UPDATE _edx_import_log SET message = regexp_replace(message, ?, ?) "
                    "WHERE message LIKE '%is not a valid%'", [pattern, replacement])


def set_event_origin(con: duckdb.DuckDBPyConnection, source_key: str, origin: str) -> None:
    """Record where a legacy (origin-less) event source comes from; a known origin is kept."""
    con.execute("UPDATE _edx_event_files SET origin = ? WHERE source_key = ? AND origin IS NULL",
                [origin, source_key])


def replace_event_parts(con: duckdb.DuckDBPyConnection, source_key: str,
                        parts: Sequence[tuple[str, str, int, int | None, int | None]]) -> None:
    """The Parquet parts of an event source: (event date, stored path, rows, min and max event
    time in microseconds since the epoch) each; replaces the source's earlier parts."""
    con.execute("DELETE FROM _edx_event_parts WHERE source_key=?", [source_key])
    if parts:
        con.executemany(
            "INSERT INTO _edx_event_parts VALUES (?, ?::DATE, ?, ?, make_timestamp(?), make_timestamp(?))",
            [[source_key, *p] for p in parts])


def replace_event_file(con: duckdb.DuckDBPyConnection, *, source_key: str, source_file: str,
                       fingerprint: str | None, file_date: str | None, rows: int, rejected: int,
                       first_event_time: int | None, last_event_time: int | None, json_bytes: int,
                       origin: str | None, at: dt.datetime | None = None) -> None:
    """The row of an imported event source; its duplicates are counted from ``_edx_event_dups``
    (so `replace_event_dups` runs first)."""
    con.execute("DELETE FROM _edx_event_files WHERE source_key=?", [source_key])
    con.execute(
        "INSERT INTO _edx_event_files (source_key, source_file, fingerprint, file_date, rows, rejected, "
        "duplicates, first_event_time, last_event_time, json_bytes, imported_at, origin) "
        "VALUES (?, ?, ?, ?::DATE, ?, ?, (SELECT count(*) FROM _edx_event_dups WHERE source_key=?), "
        "make_timestamp(?), make_timestamp(?), ?, ?, ?)",
        [source_key, source_file, fingerprint, file_date, rows, rejected, source_key, first_event_time,
         last_event_time, json_bytes, at or now(True), origin])


def recount_event_duplicates(con: duckdb.DuckDBPyConnection, dates: Sequence[str]) -> None:
    """Refresh ``duplicates`` of every event source with parts on ``dates`` (another source's
    import can change which copy of an event is the kept one)."""
    if dates:
        con.execute(
            "UPDATE _edx_event_files f SET duplicates = (SELECT count(*) FROM _edx_event_dups d "
            "WHERE d.source_key = f.source_key) WHERE source_key IN "
            f"(SELECT DISTINCT source_key FROM _edx_event_parts WHERE event_date IN {_in_dates(dates)})")


def replace_event_dups(con: duckdb.DuckDBPyConnection, dates: Sequence[str], root: str) -> None:
    """Recompute ``_edx_event_dups`` for ``dates`` from the parts on those dates (``root``: the
    store's absolute path, the parts' paths are relative to it).

    Identical lines have identical times, so duplicates always share a date partition. The copy
    kept is the one in the smallest source key (then the smallest line number)."""
    dl = _in_dates(dates)
    con.execute(f"DELETE FROM _edx_event_dups WHERE event_date IN {dl}")
    paths = [f"{root}/{r[0]}" for r in con.execute(
        f"SELECT path FROM _edx_event_parts WHERE event_date IN {dl}").fetchall()]
    if not paths:
        return
    src = f"read_parquet({sql_list(paths)}, hive_partitioning=false)"
    con.execute(f"""
        INSERT INTO _edx_event_dups
        SELECT event_date, source_key, line, event_id FROM (
            SELECT event_date, source_key, line, event_id,
                   row_number() OVER (PARTITION BY event_id ORDER BY source_key, line) AS rn
            FROM {src}
            WHERE event_id IN (SELECT event_id FROM {src} GROUP BY event_id HAVING count(*) > 1)
        ) WHERE rn > 1""")


def replace_geo(con: duckdb.DuckDBPyConnection, name: str, path: str, rows: int, ip_db: str | None,
                ip_db_date: str | None, located_at: dt.datetime) -> None:
    """The current file of the geo table ``name`` (``locate-users``)."""
    con.execute("DELETE FROM _edx_geo WHERE name=?", [name])
    con.execute("INSERT INTO _edx_geo VALUES (?,?,?,?,?,?)", [name, path, rows, ip_db, ip_db_date, located_at])


def repoint(con: duckdb.DuckDBPyConnection, table: str, old_path: str, new_path: str) -> None:
    """A bookkeeping table that lists lake files (LAKE_FILE_OWNERS) now lists ``new_path`` for
    ``old_path`` (a file rewritten under a new name, e.g. by ``scrub``)."""
    if table not in {t for _, t in LAKE_FILE_OWNERS}:
        raise KeyError(table)
    con.execute(f"UPDATE {table} SET path=? WHERE path=?", [new_path, old_path])


def log_scrub(con: duckdb.DuckDBPyConnection, *, kind: str, name: str, path: str, old_path: str, columns: str,
              json_keys: str, rows: int, values_removed: int, at: dt.datetime | None = None) -> None:
    """One row of ``_edx_scrub_log`` per file scrubbed (``path`` the new file, ``old_path`` the one it replaced)."""
    con.execute("INSERT INTO _edx_scrub_log VALUES (?,?,?,?,?,?,?,?,?)",
                [at or now(True), kind, name, path, old_path, columns, json_keys, rows, values_removed])


def set_meta(con: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
    con.execute(f"CREATE TABLE IF NOT EXISTS _edx_meta {TABLES['_edx_meta']}")
    con.execute("INSERT OR REPLACE INTO _edx_meta VALUES (?, ?)", [key, value])


def get_metas(con: duckdb.DuckDBPyConnection, *keys: str) -> dict[str, str]:
    """Several ``_edx_meta`` values in one query (absent keys are absent)."""
    if not exists(con, "_edx_meta"):
        return {}
    return dict(con.execute(f"SELECT key, value FROM _edx_meta WHERE key IN ({', '.join('?' * len(keys))})",
                            list(keys)).fetchall())


def get_meta(con: duckdb.DuckDBPyConnection, key: str) -> str | None:
    return get_metas(con, key).get(key)
