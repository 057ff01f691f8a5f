"""Every view of the catalog, built from the bookkeeping tables (``catalog``) and the schemas.

``refresh`` rebuilds them all inside the caller's transaction: one view per edX table, the
``quarantine`` view, the tracking-log views (``events``, ``events_all`` and the families),
the geo tables and ``models.*``. Views hold absolute paths (any DuckDB client opened anywhere
can query them); the bookkeeping holds relative ones, and ``_edx_meta`` the root the views
were resolved against. No stage registers anything here: this module is the one list.
"""

from __future__ import annotations

import os
import re

from pathlib import Path

import duckdb

from ..names import unknown_table_name_ok
from ..schemas import ADDED_COLUMNS, TABLES, TableSchema
from . import catalog

# -- tracking logs: the columns of every event part, and the family views ---------------------------
EVENT_COLUMNS: dict[str, str] = {
    "event_id": "VARCHAR", "time": "TIMESTAMP", "event_date": "DATE", "username": "VARCHAR", "user_id": "BIGINT",
    "course_id": "VARCHAR", "org_id": "VARCHAR", "event_type": "VARCHAR", "name": "VARCHAR",
    "event_source": "VARCHAR", "session": "VARCHAR", "ip": "VARCHAR", "agent": "VARCHAR", "host": "VARCHAR",
    "referer": "VARCHAR", "accept_language": "VARCHAR", "page": "VARCHAR", "path": "VARCHAR",
    "module_id": "VARCHAR", "event": "JSON", "event_text": "VARCHAR", "context": "JSON",
    "source_file": "VARCHAR", "line": "BIGINT",
}

VIDEO_TYPES = ("load_video", "play_video", "pause_video", "stop_video", "seek_video", "speed_change_video",
               "show_transcript", "hide_transcript", "complete_video", "video_show_cc_menu", "video_hide_cc_menu")
PROBLEM_TYPES = ("problem_check", "problem_check_fail", "problem_graded", "problem_save", "save_problem_success",
                 "save_problem_fail", "save_problem_check", "problem_reset", "reset_problem", "reset_problem_fail",
                 "problem_rescore", "problem_rescore_fail", "problem_show", "showanswer", "show_answer")
NAVIGATION_TYPES = ("seq_goto", "seq_next", "seq_prev", "page_close")


def _in(values) -> str:
    return "(" + ", ".join("'" + v + "'" for v in values) + ")"


def _num(path: str, typ: str = "DOUBLE") -> str:
    return f"TRY_CAST((event->>'{path}') AS {typ})"


# family view: (filter, [(column, expression)])
FAMILIES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "events_video": (
        f"(event_type IN {_in(VIDEO_TYPES)} OR event_type LIKE 'edx.video.%')",
        [("video_id", "(event->>'id')"),
         ("current_time", f"coalesce({_num('currentTime')}, {_num('current_time')})"),
         ("old_time", _num("old_time")), ("new_time", _num("new_time")),
         ("old_speed", _num("old_speed")), ("new_speed", _num("new_speed"))]),
    "events_problem": (
        f"(event_type IN {_in(PROBLEM_TYPES)} OR event_type LIKE 'edx.problem.%')",
        [("problem_id", "coalesce((event->>'problem_id'), (event->>'problem'), module_id)"),
         ("attempts", _num("attempts", "BIGINT")), ("grade", _num("grade")), ("max_grade", _num("max_grade")),
         ("success", "(event->>'success')")]),
    "events_navigation": (
        f"(event_type IN {_in(NAVIGATION_TYPES)} OR event_type LIKE 'edx.ui.lms.%' "
        f"OR (event_source = 'server' AND event_type LIKE '/%'))",
        [("sequence_id", "CASE WHEN event_type LIKE '/%' THEN NULL ELSE (event->>'id') END"),
         ("old_position", f"coalesce({_num('old', 'BIGINT')}, {_num('current_tab', 'BIGINT')})"),
         ("new_position", f"coalesce({_num('new', 'BIGINT')}, {_num('target_tab', 'BIGINT')})")]),
    "events_enrollment": (
        "(event_type LIKE 'edx.course.enrollment.%')",
        [("mode", "(event->>'mode')")]),
    "events_certificate": (
        "(event_type LIKE 'edx.certificate.%')",
        [("certificate_id", "(event->>'certificate_id')"), ("enrollment_mode", "(event->>'enrollment_mode')"),
         ("generation_mode", "(event->>'generation_mode')")]),
    "events_forum": (
        "(event_type LIKE 'edx.forum.%')",
        [("post_id", "(event->>'id')"),
         ("thread_id", "CASE WHEN event_type LIKE 'edx.forum.thread.%' THEN (event->>'id') "
                       "ELSE (event->'discussion'->>'id') END"),
         ("response_id", "CASE WHEN event_type LIKE 'edx.forum.response.%' THEN (event->>'id') "
                         "ELSE (event->'response'->>'id') END"),
         ("commentable_id", "(event->>'commentable_id')"), ("category_id", "(event->>'category_id')"),
         ("category_name", "(event->>'category_name')"), ("title", "(event->>'title')")]),
    "events_grades": (
        "(event_type LIKE 'edx.grades.%')",
        [("percent_grade", _num("percent_grade")), ("letter_grade", "(event->>'letter_grade')"),
         ("course_version", "(event->>'course_version')")]),
}


sql_list = catalog.sql_list  # a DuckDB list literal of quoted strings (its home is catalog)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- the one entry point -----------------------------------------------------------------------------
def refresh(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """Rebuild every view over the files the bookkeeping lists, for the store at ``root``."""
    base = str(Path(root).resolve())
    table_views(con, base)
    quarantine_view(con, base)
    event_views(con, base)
    geo_views(con, Path(root))
    model_views(con, Path(root))
    catalog.set_meta(con, "root", base)


def exists(con: duckdb.DuckDBPyConnection, name: str = "auth_user") -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name=?", [name]).fetchone()[0])


def refresh_tables(con: duckdb.DuckDBPyConnection, root: Path, quarantine: bool = True) -> None:
    """What a package commit changes: the table views and (``quarantine``) the quarantine view. The
    event, geo and model views stay as they are: their bookkeeping did not change, and re-creating
    them binds every event part and model file of the store. A catalog that lacks the event views
    (made before them) gets them."""
    base = str(Path(root).resolve())
    table_views(con, base)
    if quarantine:
        quarantine_view(con, base)
    if not exists(con, "events"):
        event_views(con, base)


def table_views(con: duckdb.DuckDBPyConnection, base: str) -> None:
    """One view per edX table over its current snapshots; typed empty views for absent tables."""
    rows = con.execute("SELECT table_name, list(path ORDER BY course_id) FROM _edx_snapshots GROUP BY 1").fetchall()
    paths = {t: [f"{base}/{p}" for p in ps] for t, ps in rows}
    for name, schema in TABLES.items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {_table_sql(schema, paths.get(name))}")
    # Tables edX delivers that the registry does not describe: a view of the same name over
    # their untyped (text) snapshots. Names come from file names: checked and quoted.
    for name in sorted(set(paths) - set(TABLES)):
        if unknown_table_name_ok(name):
            con.execute(f"CREATE OR REPLACE VIEW {_ident(name)} AS "
                        f"SELECT * FROM read_parquet({sql_list(paths[name])}, union_by_name=true)")


def _table_sql(schema: TableSchema, paths: list[str] | None) -> str:
    if paths:
        return f"SELECT * FROM read_parquet({sql_list(paths)}, union_by_name=true)"
    cols = list(schema.columns) + [c for c in ADDED_COLUMNS if schema.column(c.name) is None]
    return "SELECT " + ", ".join(f"NULL::{c.duckdb_type} AS {c.name}" for c in cols) + " WHERE false"


def quarantine_view(con: duckdb.DuckDBPyConnection, base: str) -> None:
    qpaths = [f"{base}/{p}" for p in catalog.paths(con, "_edx_quarantine_files")]
    if qpaths:
        sql = f"SELECT * FROM read_parquet({sql_list(qpaths)}, union_by_name=true)"
    else:
        sql = ("SELECT " + ", ".join(f"NULL::{t} AS {c}" for c, t in catalog.QUARANTINE_COLUMNS.items())
               + " WHERE false")
    con.execute(f"CREATE OR REPLACE VIEW quarantine AS {sql}")


def event_views(con: duckdb.DuckDBPyConnection, base: str, families: bool = True) -> None:
    """(Re)create ``events``, ``events_all`` and the family views.

    ``families=False`` (an events commit): the family views are only created where missing. They
    select from ``events`` by name, so a new ``events`` needs no new family view, and creating one
    binds ``events``, i.e. reads the footer of every part of the store (9 binds per commit took
    0.66 of a small day's 1.0 s in a store of 200 days).

    A catalog whose ``events`` is a table of its own (hand-made test fixtures, an analyst's own
    load) keeps it: a view never replaces a table."""
    catalog.ensure(con, catalog.EVENTS)
    if con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = 'events'"
                   ).fetchone()[0]:
        return
    paths = [f"{base}/{p}" for p in catalog.paths(con, "_edx_event_parts")]
    # parts written before event_id became text hold it as UUID: every part reads as the same text
    cols = ", ".join("CAST(e.event_id AS VARCHAR) AS event_id" if c == "event_id" else f"e.{c}" for c in EVENT_COLUMNS)
    if paths:
        src = _event_parts_sql(paths)
        has_dups = con.execute("SELECT count(*) FROM _edx_event_dups").fetchone()[0] > 0
        if has_dups:
            all_sql = (f"SELECT {cols}, (d.line IS NOT NULL) AS duplicate FROM {src} e "
                       f"LEFT JOIN _edx_event_dups d ON d.source_key = e.source_key AND d.line = e.line "
                       f"AND d.event_date = e.event_date")
            ev_sql = (f"SELECT {cols} FROM {src} e ANTI JOIN _edx_event_dups d "
                      f"ON d.source_key = e.source_key AND d.line = e.line AND d.event_date = e.event_date")
        else:
            all_sql = f"SELECT {cols}, false AS duplicate FROM {src} e"
            ev_sql = f"SELECT {cols} FROM {src} e"
    else:
        empty = ", ".join(f"NULL::{t} AS {c}" for c, t in EVENT_COLUMNS.items())
        all_sql = f"SELECT {empty}, NULL::BOOLEAN AS duplicate WHERE false"
        ev_sql = f"SELECT {empty} WHERE false"
    con.execute(f"CREATE OR REPLACE VIEW events_all AS {all_sql}")
    con.execute(f"CREATE OR REPLACE VIEW events AS {ev_sql}")
    have = set() if families else {r[0] for r in con.execute(
        "SELECT view_name FROM duckdb_views() WHERE schema_name = 'main' AND NOT internal").fetchall()}
    for view, (where, extra) in FAMILIES.items():
        if view in have:
            continue
        ex = ", ".join(f"{expr} AS {name}" for name, expr in extra)
        con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT *, {ex} FROM events WHERE {where}")


_DATE_DIR = re.compile(r"/date=\d{4}-\d{2}-\d{2}/[^/]+$")


def _event_parts_sql(paths: list[str]) -> str:
    """The parts as one relation. In the lake's layout (``date=YYYY-MM-DD/`` folders) ``event_date``
    is read from the folder name, so a filter on it prunes whole files before any is opened (the
    rows' own ``event_date`` is the same value: parts are written per date)."""
    if all(_DATE_DIR.search(p) for p in paths):
        return (f"(SELECT * REPLACE (\"date\" AS event_date) FROM read_parquet({sql_list(paths)}, "
                f"hive_partitioning=true, hive_types={{'date': DATE}}, union_by_name=true))")
    return f"read_parquet({sql_list(paths)}, hive_partitioning=false, union_by_name=true)"


def geo_views(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """One view per table ``locate-users`` wrote (``_edx_geo``); nothing before the first run."""
    for name, p in catalog.named_paths(con, "_edx_geo"):
        full = str((root / p).resolve()).replace("'", "''")
        con.execute(f"CREATE OR REPLACE VIEW {_ident(name)} AS SELECT * FROM read_parquet('{full}')")


def model_views(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """``models.<name>`` over each built model's file (``_edx_models``), or over exactly the files of its
    date partitions when it is kept by partition (``_edx_model_parts``); the schema always exists."""
    con.execute("CREATE SCHEMA IF NOT EXISTS models")
    parts = catalog.model_part_paths(con)
    dirs: dict[str, str] = {}

    def resolved(f: str) -> str:
        """``(root / f).resolve()``, resolving each directory once (thousands of partition files)."""
        head, tail = os.path.split(f)
        if head not in dirs:
            dirs[head] = str((root / head).resolve())
        return os.path.join(dirs[head], tail)

    for name, p in catalog.named_paths(con, "_edx_models"):
        files = [resolved(f) for f in parts.get(name) or []] or [str((root / p).resolve())]
        con.execute(f"CREATE OR REPLACE VIEW models.{_ident(name)} AS SELECT * FROM read_parquet({sql_list(files)})")
