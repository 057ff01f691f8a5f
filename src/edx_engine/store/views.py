"""Every view of the catalog, built from the bookkeeping tables (``catalog``) and the schemas.

``refresh`` rebuilds them all inside the caller's transaction: one view per edX table, the
``quarantine`` view, the tracking-log views (``events``, ``events_all`` and the families),
the geo tables and ``models.*``. Views hold absolute paths (any DuckDB client opened anywhere
can query them); the bookkeeping holds relative ones, and ``_edx_meta`` the root the views
were resolved against. No stage registers anything here: this module is the one list.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid

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


_ident = catalog.sql_ident


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
    _add_missing_columns(con, {name: paths[name] for name in TABLES if paths.get(name)})
    # Tables edX delivers that the registry does not describe: a view of the same name over
    # their untyped (text) snapshots. Names come from file names: checked and quoted.
    for name in sorted(set(paths) - set(TABLES)):
        if unknown_table_name_ok(name):
            con.execute(f"CREATE OR REPLACE VIEW {_ident(name)} AS "
                        f"SELECT * FROM read_parquet({sql_list(paths[name])}, union_by_name=true)")


def _add_missing_columns(con: duckdb.DuckDBPyConnection, paths: dict[str, list[str]]) -> None:
    """A registry column that none of a table's snapshot files holds is added to its view as NULL:
    snapshots written by an older version, before the column was registered, would otherwise leave
    the view without a column a newer store has (a query naming it failed until the next package)."""
    if not paths:
        return
    have = dict(con.execute(
        "SELECT table_name, list(column_name) FROM duckdb_columns() WHERE database_name = current_database() "
        f"AND schema_name = current_schema() AND table_name IN {_in(paths)} GROUP BY 1").fetchall())
    for name, files in paths.items():
        missing = [c for c in TABLES[name].columns if c.name not in set(have.get(name) or ())]
        if missing:
            extra = ", ".join(f"NULL::{c.duckdb_type} AS {c.name}" for c in missing)
            con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT *, {extra} "
                        f"FROM read_parquet({sql_list(files)}, union_by_name=true)")


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


# -- the event views: one glob over the lake's date folders, the catalog deciding which parts count --
# ``_edx_meta['event_views']`` = "<format>;parts=<complete|mixed>;sql=<digest>;form=<glob|list>": the
# format of the views (a catalog without it, or with another, lists every part by path: ``Lake.connect``
# rebuilds its views), whether every part holds every column of EVENT_VIEW_COLUMNS, a digest of the
# views' SQL (a commit that would write the same views binds nothing) and whether they read the glob.
# The format follows the definitions: a change of the columns or families makes every catalog
# re-create its views once. (A catalog whose ``events`` is a table records "sql=table".)
EVENT_META = "event_views"
EVENT_VIEW_COLUMNS: dict[str, str] = {**EVENT_COLUMNS, "source_key": "VARCHAR"}
EVENT_FORMAT = "glob-" + hashlib.sha1(repr((EVENT_VIEW_COLUMNS, FAMILIES)).encode()).hexdigest()[:8]
EVENT_GLOB = "lake/events/date=*/*.parquet"
_PART_PATH = r"^lake/events/date=\d{4}-\d{2}-\d{2}/[^/]+\.parquet$"  # the parts the glob sees
# The schema file: an empty Parquet file with every column typed as the views read it, first in
# the views' file list. DuckDB reads a glob with the first file's columns and types (casting
# old parts' UUID event_id to text) and opens no other footer to bind: without it the views would
# need union_by_name, which reads every part's footer at every bind. Outside lake/ (whose every
# file the bookkeeping references); in a date folder, as hive partitioning wants of every file.
ANCHOR_DIR = "views"
ANCHOR_DATE = "1970-01-01"  # its folder's date (hive partitioning wants one); it holds no row
GLOB_MARK = "_edx_part"  # the column of the glob views that names each row's part file
_GLOB_UNSAFE = "*?[]{}\\"  # characters a DuckDB glob reads as pattern or escape: such a store lists its parts


def outdated(record: str | None, root: str | Path) -> bool:
    """True if the event views must be made again on open: their record (``_edx_meta['event_views']``,
    read by the caller with the store's other keys: this runs at every open) names another format (an
    older version listed every part), or views that read a schema file which is gone (a backup of only
    the catalog and ``lake/``). Views another version re-wrote are still valid to read; the next commit
    makes them again (``event_views`` checks the views themselves, not only the record)."""
    rec = _parse_record(record)
    if rec.get("format") != EVENT_FORMAT:
        return True
    return rec.get("form") == "glob" and rec.get("parts") == "complete" and not anchor_path(root).exists()


def _stored_sql(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The SQL DuckDB keeps for ``events`` and ``events_all`` (reading it binds nothing). Not to be
    hashed: DuckDB renders it differently before and after the catalog is reloaded."""
    return [r[0] or "" for r in con.execute(
        "SELECT sql FROM duckdb_views() WHERE schema_name = 'main' AND view_name IN ('events', 'events_all') "
        "ORDER BY view_name").fetchall()]


def _glob_views(stored: list[str]) -> bool:
    """Whether both views are this version's glob views (``_edx_part``: a name only they use). The
    record alone cannot tell: an older version re-writing the views leaves it as it was."""
    return len(stored) == 2 and all(GLOB_MARK in sql for sql in stored)


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def anchor_path(root: str | Path) -> Path:
    """The schema file of the event views of the store at ``root``."""
    return Path(root) / ANCHOR_DIR / f"date={ANCHOR_DATE}" / f"events-{EVENT_FORMAT}.parquet"


def _event_record(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return _parse_record(catalog.get_meta(con, EVENT_META))


def _parse_record(value: str | None) -> dict[str, str]:
    fmt, *rest = (value or "").split(";")
    return {"format": fmt, **dict(f.split("=", 1) for f in rest if "=" in f)}


def event_views(con: duckdb.DuckDBPyConnection, base: str) -> None:
    """(Re)create ``events``, ``events_all`` and the family views, unless they are already these.

    In the lake's layout the views read ``lake/events/date=*/*.parquet`` (a definition of constant
    size, whose bind opens one small file), keep only the parts ``_edx_event_parts`` lists (the
    glob also sees parts written but not yet committed, and replaced ones not yet collected) and
    leave out the duplicates ``_edx_event_dups`` lists. ``event_date`` is the folder's name: a
    filter on it skips other days' files unopened. A commit that changes neither the store's
    place nor whether there are duplicates writes the same views: nothing is re-created.

    The family views select from ``events`` by name: they are created where missing or made by
    another format only.
    A catalog whose ``events`` is a table of its own (hand-made test fixtures, an analyst's own
    load) keeps it: a view never replaces a table."""
    catalog.ensure(con, catalog.EVENTS)
    rec = _event_record(con)
    current = rec.get("format") == EVENT_FORMAT
    if current and rec.get("form") == "glob" and not _glob_views(_stored_sql(con)):
        current = False  # another version re-wrote the views since this record was made
    if con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = 'events'"
                   ).fetchone()[0]:
        if not current:
            catalog.set_meta(con, EVENT_META, f"{EVENT_FORMAT};parts=;sql=table")
        return
    all_sql, ev_sql, parts = _event_sql(con, base, rec.get("parts") if current else None)
    digest = _digest(f"{all_sql}\n{ev_sql}")
    same = current and rec.get("sql") == digest  # the views this record describes, unchanged
    have = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE schema_name = 'main' AND view_name "
                                      f"IN {_in(['events_all', 'events', *FAMILIES])}").fetchall()}
    if not (same and {"events_all", "events"} <= have):
        con.execute(f"CREATE OR REPLACE VIEW events_all AS {all_sql}")
        con.execute(f"CREATE OR REPLACE VIEW events AS {ev_sql}")
    for view, (where, extra) in FAMILIES.items():
        if view in have and current:
            continue
        ex = ", ".join(f"{expr} AS {name}" for name, expr in extra)
        con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT *, {ex} FROM events WHERE {where}")
    form = "glob" if GLOB_MARK in ev_sql else "list"  # (a list names every part: its digest follows them)
    if not (same and rec.get("parts") == parts and rec.get("form") == form):
        catalog.set_meta(con, EVENT_META, f"{EVENT_FORMAT};parts={parts};sql={digest};form={form}")


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def event_days_sql(con: duckdb.DuckDBPyConnection, base: str, name: str, days: list[str]) -> str | None:
    """The SELECT of event view ``name`` (``events`` or a family view) reading only the parts of the
    dates ``days``: the view's own SQL with its glob narrowed to those dates' listed parts.

    Why: every bind and query of the glob lists every date folder of the lake (about 8 ms a query at
    365 days), so a build that recomputes one date paid for the whole history in each model over
    events. The narrowed SQL keeps the view's semi-join on the listed parts and its duplicate join,
    so its rows of ``days`` are the view's rows of ``days`` (the caller still filters on
    ``event_date``). None, and the caller reads the view, unless the views are this version's glob
    views over parts that all hold every column (the schema file first: the same columns and types
    whichever parts are read)."""
    if (name != "events" and name not in FAMILIES) or not days or not all(_DAY.fullmatch(d) for d in days):
        return None
    rec = _event_record(con)
    if rec.get("format") != EVENT_FORMAT or rec.get("form") != "glob" or rec.get("parts") != "complete" \
            or not anchor_path(base).exists() or not _glob_views(_stored_sql(con)):
        return None  # (the schema file checked first: a build never writes it)
    all_sql, ev_sql, _ = _event_sql(con, base, "complete")
    if GLOB_MARK not in ev_sql or _digest(f"{all_sql}\n{ev_sql}") != rec.get("sql"):
        return None  # the views are not (or no longer) these
    paths = [p for (p,) in con.execute(
        "SELECT DISTINCT path FROM _edx_event_parts WHERE regexp_extract(path, '^lake/events/date=([0-9-]+)/', 1) "
        "IN (SELECT unnest(?::VARCHAR[])) ORDER BY path", [sorted(set(days))]).fetchall()]
    if any(ch in p for p in paths for ch in _GLOB_UNSAFE):
        return None  # a name DuckDB would read as a pattern (never one the importer writes)
    # a listed part gone from the disk (damage): the glob never saw it, the list must not name it
    files = [f"{base}/{p}" for p in paths if os.path.exists(f"{base}/{p}")]
    _, ev_sql, _ = _event_sql(con, base, "complete", files=files)
    if name == "events":
        return ev_sql
    where, extra = FAMILIES[name]
    ex = ", ".join(f"{expr} AS {col}" for col, expr in extra)
    return f"SELECT *, {ex} FROM ({ev_sql}) WHERE {where}"


def _event_sql(con: duckdb.DuckDBPyConnection, base: str, parts: str | None,
               files: list[str] | None = None) -> tuple[str, str, str]:
    """(``events_all`` SQL, ``events`` SQL, whether every part holds every column the views read:
    ``complete``, ``mixed`` or "" not known). ``parts``: what the catalog's record says of that.
    ``files``: the glob views read these parts instead of the glob (``event_days_sql``)."""
    n, outside = con.execute("SELECT count(*), count(*) FILTER (WHERE NOT regexp_full_match(path, ?)) "
                             "FROM _edx_event_parts", [_PART_PATH]).fetchone()
    if not n:  # a part written from now on holds every column (the importer's schema)
        empty = ", ".join(f"NULL::{t} AS {c}" for c, t in EVENT_COLUMNS.items())
        return f"SELECT {empty}, NULL::BOOLEAN AS duplicate WHERE false", f"SELECT {empty} WHERE false", \
            parts or "complete"
    # parts written before event_id became text hold it as UUID: every part reads as the same text
    cols = ", ".join("CAST(e.event_id AS VARCHAR) AS event_id" if c == "event_id" else f"e.{c}" for c in EVENT_COLUMNS)
    hive_in_base = bool(_HIVE_DATE.search(base))
    if outside or hive_in_base or any(ch in base for ch in _GLOB_UNSAFE):
        # parts outside the lake's date folders (hand-made stores), or a store path a glob cannot
        # spell, or one with a date= folder of its own: the parts listed one by one
        paths = [f"{base}/{p}" for p in catalog.paths(con, "_edx_event_parts")]
        src, where = _event_parts_sql(paths, hive=not hive_in_base), ""
        parts = parts or ""
    else:
        if not parts:  # once per catalog (its first views of this format): every part's footer
            parts = "complete" if _parts_complete(con, base) else "mixed"
        src = _glob_sql(base, _anchor(base, con) if parts == "complete" else None, files)
        where = f" WHERE e.{GLOB_MARK} IN (SELECT {catalog.sql_str(base + '/')} || path FROM _edx_event_parts)"
    on = "ON d.source_key = e.source_key AND d.line = e.line AND d.event_date = e.event_date"
    if con.execute("SELECT count(*) FROM _edx_event_dups").fetchone()[0]:
        return (f"SELECT {cols}, (d.line IS NOT NULL) AS duplicate FROM {src} e LEFT JOIN _edx_event_dups d {on}"
                f"{where}", f"SELECT {cols} FROM {src} e ANTI JOIN _edx_event_dups d {on}{where}", parts)
    return f"SELECT {cols}, false AS duplicate FROM {src} e{where}", f"SELECT {cols} FROM {src} e{where}", parts


def _glob_sql(base: str, anchor: Path | None, parts: list[str] | None = None) -> str:
    """Every part under the lake's date folders (or only ``parts``), ``_edx_part`` its file name; with
    the schema file first, or, without one (a store that cannot be written, parts lacking columns), by name."""
    glob = [f"{base}/{EVENT_GLOB}"] if parts is None else parts
    if anchor is None:
        files, options = sql_list(glob), ", union_by_name=true"
    else:  # the schema file holds no row: nothing to filter out (a filter on its date would also drop the
        # events of that date, which a store whose time window is switched off may hold); an unfiltered
        # query opens it, one empty file
        files, options = sql_list([str(anchor), *glob]), ""
    return (f"(SELECT * REPLACE (\"date\" AS event_date), filename AS {GLOB_MARK} FROM read_parquet({files}, "
            f"hive_partitioning=true, hive_types={{'date': DATE}}{options}))")


def _parts_complete(con: duckdb.DuckDBPyConnection, base: str) -> bool:
    """Whether every listed part holds every column the views read (it reads each part's footer)."""
    files = [f"{base}/{p}" for p in catalog.paths(con, "_edx_event_parts")]
    need = list(EVENT_VIEW_COLUMNS)
    full = con.execute(f"SELECT count(*) FROM (SELECT file_name FROM parquet_schema({sql_list(files)}) "
                       f"WHERE name IN {_in(need)} GROUP BY file_name HAVING count(DISTINCT name) = {len(need)})"
                       ).fetchone()[0]
    return full == len(set(files))


def _anchor(base: str, con: duckdb.DuckDBPyConnection) -> Path | None:
    """The schema file of the store at ``base``, written if missing; None if it cannot be (a full
    disk, a read-only store: the views then read by name). Written through a cursor of ``con``'s database
    (its own transaction, no new database: ~1 ms against ~20 ms for a fresh in-memory DuckDB), since an
    error in the caller's transaction would abort it."""
    path = anchor_path(base)
    if path.exists():
        return path
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    cols = ", ".join(f"NULL::{t} AS {c}" for c, t in EVENT_VIEW_COLUMNS.items())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with con.cursor() as own:
            own.execute(f"COPY (SELECT {cols} WHERE false) TO {catalog.sql_str(str(tmp))} (FORMAT parquet)")
        os.replace(tmp, path)
    except (OSError, duckdb.Error):
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        return None
    return path


_DATE_DIR = re.compile(r"/date=\d{4}-\d{2}-\d{2}/[^/]+$")
# A store kept under a folder named date=... (a dated backup): hive partitioning would read that
# folder's date, the first in the path, as every event's date. Its parts' own event_date is used.
_HIVE_DATE = re.compile(r"(^|/)date=")


def _event_parts_sql(paths: list[str], hive: bool = True) -> str:
    """The listed parts as one relation (the views' only form before the glob, still used where
    the glob cannot be). In the lake's layout ``event_date`` is read from the folder name, so a
    filter on it prunes whole files before any is opened (``hive``: unless the store's own path
    holds a ``date=`` folder)."""
    if hive and all(_DATE_DIR.search(p) for p in paths):
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
