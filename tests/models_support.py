"""Helpers for the model tests: event tables in the shape the tracking-log importer exposes.

``put_events`` writes rows straight into the catalog (hand-made fixtures). ``events_from_logs``
turns synthetic daily log files into the same tables with plain DuckDB SQL; it stands in for
the tracking-log importer only when that importer is not available (``edx_engine.ingest.events``).
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from pathlib import Path

import duckdb

EVENT_COLUMNS = {
    "event_id": "VARCHAR", "time": "TIMESTAMP", "event_date": "DATE", "username": "VARCHAR", "user_id": "BIGINT",
    "course_id": "VARCHAR", "org_id": "VARCHAR", "event_type": "VARCHAR", "name": "VARCHAR",
    "event_source": "VARCHAR", "session": "VARCHAR", "page": "VARCHAR", "module_id": "VARCHAR",
}
FAMILY_COLUMNS = {
    "events_video": {"video_id": "VARCHAR", "current_time": "DOUBLE", "old_time": "DOUBLE", "new_time": "DOUBLE"},
    "events_problem": {"problem_id": "VARCHAR", "attempts": "BIGINT", "grade": "DOUBLE", "max_grade": "DOUBLE",
                       "success": "VARCHAR"},
    "events_enrollment": {"mode": "VARCHAR"},
}


def _drop(con: duckdb.DuckDBPyConnection, name: str) -> None:
    kind = con.execute("SELECT table_type FROM information_schema.tables WHERE table_schema='main' AND table_name=?",
                       [name]).fetchone()
    if kind:
        con.execute(f"DROP {'VIEW' if kind[0] == 'VIEW' else 'TABLE'} {name}")


def put_events(db: Path, rows: list[dict]) -> None:
    """Create events + families as tables; each row dict has the base columns and family columns."""
    with duckdb.connect(str(db)) as con:
        for name, extra in [("events", {})] + list(FAMILY_COLUMNS.items()):
            cols = {**EVENT_COLUMNS, **extra}
            _drop(con, name)
            con.execute(f"CREATE TABLE {name} (" + ", ".join(f'"{c}" {t}' for c, t in cols.items()) + ")")
            sel = rows if name == "events" else [r for r in rows if r.get("family") == name]
            for i, r in enumerate(sel):
                r = {"event_id": r.get("event_id") or f"e{rows.index(r)}", **r}
                if r.get("time") is not None and "event_date" not in r:
                    r["event_date"] = r["time"].date()
                con.execute(f"INSERT INTO {name} VALUES ({', '.join('?' for _ in cols)})", [r.get(c) for c in cols])


_NORMALISE = """
CREATE OR REPLACE TEMP TABLE _ev AS
WITH raw AS (
  SELECT * FROM read_json({files}, format='newline_delimited', ignore_errors=true,
     columns={{username:'VARCHAR', event_source:'VARCHAR', event_type:'VARCHAR', name:'VARCHAR', time:'VARCHAR',
              event:'JSON', context:'JSON', session:'VARCHAR', page:'VARCHAR'}})
), n AS (
  SELECT md5(concat_ws('|', username, time, event_type, CAST(event AS VARCHAR), CAST(context AS VARCHAR))) AS event_id,
         timezone('UTC', TRY_CAST(time AS TIMESTAMPTZ)) AS time, username,
         TRY_CAST((context->>'user_id') AS BIGINT) AS user_id, (context->>'course_id') AS course_id,
         (context->>'org_id') AS org_id, event_type, name, event_source, session, page,
         (context->'module'->>'usage_key') AS module_id,
         CASE WHEN json_type(event) = 'VARCHAR' AND json_valid((event->>'$')) THEN CAST((event->>'$') AS JSON)
              WHEN json_type(event) = 'OBJECT' THEN event END AS ev
  FROM raw WHERE time IS NOT NULL
)
SELECT DISTINCT ON (event_id) *, CAST(time AS DATE) AS event_date FROM n WHERE time IS NOT NULL
"""


def events_from_logs(db: Path, log_dir: Path) -> int:
    files = sorted(str(p) for p in Path(log_dir).rglob("*.log.gz"))
    with duckdb.connect(str(db)) as con:
        con.execute("SET TimeZone='UTC'")
        con.execute(_NORMALISE.format(files="[" + ", ".join(f"'{f}'" for f in files) + "]"))
        base = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)
        _drop(con, "events")
        con.execute(f"CREATE TABLE events AS SELECT {base} FROM _ev")
        _drop(con, "events_video")
        con.execute(f"""CREATE TABLE events_video AS SELECT {base}, (ev->>'id') AS video_id,
            TRY_CAST((ev->>'currentTime') AS DOUBLE) AS "current_time",
            TRY_CAST((ev->>'old_time') AS DOUBLE) AS old_time, TRY_CAST((ev->>'new_time') AS DOUBLE) AS new_time
            FROM _ev WHERE event_type IN ('load_video','play_video','pause_video','stop_video','seek_video',
              'speed_change_video','complete_video','show_transcript','hide_transcript')
              OR name LIKE 'edx.video.%'""")
        _drop(con, "events_problem")
        con.execute(f"""CREATE TABLE events_problem AS SELECT {base},
            CASE WHEN json_type(ev) = 'OBJECT' THEN (ev->>'problem_id') END AS problem_id,
            TRY_CAST((ev->>'attempts') AS BIGINT) AS attempts, TRY_CAST((ev->>'grade') AS DOUBLE) AS grade,
            TRY_CAST((ev->>'max_grade') AS DOUBLE) AS max_grade, (ev->>'success') AS success
            FROM _ev WHERE event_type LIKE '%problem%'""")
        _drop(con, "events_enrollment")
        con.execute(f"""CREATE TABLE events_enrollment AS SELECT {base}, (ev->>'mode') AS mode
            FROM _ev WHERE event_type LIKE 'edx.course.enrollment.%'""")
        return con.execute("SELECT count(*) FROM events").fetchone()[0]


def real_events_importer() -> bool:
    try:
        import edx_engine.ingest.events  # noqa: F401
        return True
    except ModuleNotFoundError:
        return False


def synthetic_store(root: Path, **conf):
    """Generate a synthetic delivery under ``root/pkg`` and import it into ``root/data``; returns the Lake."""
    from edx_engine.cli import run_import
    from edx_engine.config import resolve
    from edx_engine.lake import Lake
    from edx_engine.synthetic import SyntheticConfig, generate

    pkg = root / "pkg"
    m = generate(pkg, SyntheticConfig(**{"courses": 3, "learners": 200, "days": 7, "seed": 0, **conf}))
    settings = resolve(data_dir=str(root / "data"))
    if real_events_importer():
        run_import(settings, [pkg], quiet=True)
    else:
        run_import(settings, [pkg / "course-data"], quiet=True)
        events_from_logs(root / "data" / "edx.duckdb", pkg)
    return Lake(root / "data"), m


# -- engine parity (DuckDB against PostgreSQL, Spark, Spark Connect) ------------------------------------------

PARITY_PARAMS_AT = dt.datetime(2026, 10, 9, 12, 0, 0)


def parity_entries(manifest) -> list:
    """The course registry the parity tests build with: the first course, named by hand."""
    from edx_engine.models import CourseEntry

    return [CourseEntry(manifest.courses[0].course_id, name="Registro", sme="Área",
                        start=dt.date(2026, 1, 1), end=None)]


def _norm(v):
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 9)
    if isinstance(v, decimal.Decimal):  # PostgreSQL numeric
        return round(float(v), 9)
    if isinstance(v, dt.datetime) and v.tzinfo is not None:  # compare timestamps as UTC wall time
        return v.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return v


def engine_rows(t) -> list[tuple]:
    """A model's rows (an Arrow table) as sorted tuples of comparable values, whatever engine wrote it."""
    return sorted((tuple(_norm(v) for v in r.values()) for r in t.to_pylist()), key=repr)
