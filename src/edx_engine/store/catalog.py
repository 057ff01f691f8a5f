"""Every bookkeeping table of the catalog (``_edx_*``), declared once, with the small typed
reads other modules use instead of repeating SQL strings.

A stage that needs its tables calls ``ensure(con, <group>)``; the groups below say which
tables belong together. Tables are only ever created here (``CREATE TABLE IF NOT EXISTS``),
so a catalog made by an older version gains what it lacks and keeps its rows.
"""

from __future__ import annotations

from typing import Iterable

import duckdb

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
    "_edx_scrub_log": """(
        scrubbed_at TIMESTAMP, kind VARCHAR, name VARCHAR, path VARCHAR, old_path VARCHAR,
        columns VARCHAR, json_keys VARCHAR, rows BIGINT, values_removed BIGINT)""",
    "_edx_ledger": """(
        bucket VARCHAR NOT NULL, key VARCHAR NOT NULL, kind VARCHAR, org VARCHAR, object_date VARCHAR, site VARCHAR,
        size BIGINT, etag VARCHAR, last_modified TIMESTAMP, sha256 VARCHAR,
        state VARCHAR NOT NULL, rows BIGINT, rejected BIGINT, error VARCHAR, local_path VARCHAR,
        first_seen TIMESTAMP, listed_at TIMESTAMP, downloaded_at TIMESTAMP, decrypted_at TIMESTAMP,
        imported_at TIMESTAMP, failed_at TIMESTAMP, attempts INTEGER DEFAULT 0, changes INTEGER DEFAULT 0,
        run_id VARCHAR,
        PRIMARY KEY (bucket, key))""",
    "_edx_sync_runs": """(
        run_id VARCHAR PRIMARY KEY, pid INTEGER, host VARCHAR, started_at TIMESTAMP, ended_at TIMESTAMP,
        status VARCHAR, options VARCHAR, listed INTEGER, new INTEGER, downloaded INTEGER, imported INTEGER,
        failed INTEGER, pending INTEGER, rows BIGINT, rejected BIGINT, bytes BIGINT, summary VARCHAR)""",
}

# Groups: which tables a writer needs before it writes.
STORE = ("_edx_snapshots", "_edx_quarantine_files", "_edx_import_log", "_edx_meta")
EVENTS = ("_edx_event_files", "_edx_event_parts", "_edx_event_dups", "_edx_import_log", "_edx_quarantine_files")
GEO = ("_edx_geo",)
MODELS = ("_edx_models", "_edx_model_inputs")
SCRUB = ("_edx_scrub_log",)
LEDGER = ("_edx_ledger", "_edx_sync_runs")

# Lake subdirectories and the bookkeeping table that lists their files (``Lake.collect_garbage``).
LAKE_FILE_OWNERS = (("tables", "_edx_snapshots"), ("quarantine", "_edx_quarantine_files"),
                    ("events", "_edx_event_parts"), ("models", "_edx_models"), ("geo", "_edx_geo"))

# Schema of the quarantine Parquet files (rejected lines), and of the empty ``quarantine`` view.
QUARANTINE_COLUMNS = {
    "kind": "VARCHAR", "source_file": "VARCHAR", "line": "BIGINT", "reason": "VARCHAR",
    "raw": "BLOB", "imported_at": "TIMESTAMP",
}


def ddl(names: Iterable[str]) -> str:
    """The CREATE statements of ``names`` (idempotent), in order."""
    return "".join(f"CREATE TABLE IF NOT EXISTS {n} {TABLES[n]};\n" for n in names)


def ensure(con: duckdb.DuckDBPyConnection, names: Iterable[str] = STORE) -> None:
    """Create the tables ``names`` that do not exist yet (and bring old ones up to date)."""
    names = tuple(names)
    if MODELS[0] in names:
        con.execute("CREATE SCHEMA IF NOT EXISTS models")  # the models' views live there
    con.execute(ddl(names))
    if "_edx_event_files" in names and not has_column(con, "_edx_event_files", "origin"):
        # stores made before sources had an origin: the column is added, their rows keep NULL
        con.execute("ALTER TABLE _edx_event_files ADD COLUMN origin VARCHAR")


def exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """True if the catalog has the (main schema) table ``name``."""
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                            "AND schema_name = 'main' AND table_name = ?", [name]).fetchone()[0])


def has_column(con: duckdb.DuckDBPyConnection, table: str, column: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_columns() WHERE database_name = current_database() AND "
                            "schema_name = 'main' AND table_name = ? AND column_name = ?",
                            [table, column]).fetchone()[0])


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


def set_meta(con: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
    con.execute(f"CREATE TABLE IF NOT EXISTS _edx_meta {TABLES['_edx_meta']}")
    con.execute("INSERT OR REPLACE INTO _edx_meta VALUES (?, ?)", [key, value])


def get_meta(con: duckdb.DuckDBPyConnection, key: str) -> str | None:
    if not exists(con, "_edx_meta"):
        return None
    row = con.execute("SELECT value FROM _edx_meta WHERE key = ?", [key]).fetchone()
    return row[0] if row else None
