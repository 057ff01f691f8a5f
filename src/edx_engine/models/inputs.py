"""What the indicator definitions read: input tables, the columns used, and their portable types.

This is the contract between the store's catalog and ``definitions.py``. Only the columns
listed here are read (and, for PostgreSQL, copied), so personal columns such as e-mail
addresses or forum bodies never leave the DuckDB catalog. A table or column the catalog
does not have (yet) is read as an empty, typed relation / typed NULLs, so every model can
be built before the first tracking log was imported.
"""

from __future__ import annotations

import duckdb

# name -> {column: DuckDB type}. Types are the portable subset (BIGINT, DOUBLE, BOOLEAN,
# VARCHAR, TIMESTAMP, DATE) that every engine maps the same way.
INPUTS: dict[str, dict[str, str]] = {
    "auth_user": {
        "id": "BIGINT", "username": "VARCHAR", "is_staff": "BOOLEAN", "date_joined": "TIMESTAMP",
        "course_id": "VARCHAR", "package_date": "VARCHAR",
    },
    "auth_userprofile": {
        "user_id": "BIGINT", "gender": "VARCHAR", "year_of_birth": "BIGINT", "level_of_education": "VARCHAR",
        "country": "VARCHAR", "course_id": "VARCHAR", "package_date": "VARCHAR",
    },
    "student_courseenrollment": {
        "id": "BIGINT", "user_id": "BIGINT", "course_id": "VARCHAR", "created": "TIMESTAMP",
        "is_active": "BOOLEAN", "mode": "VARCHAR", "package_date": "VARCHAR",
    },
    "certificates_generatedcertificate": {
        "id": "BIGINT", "user_id": "BIGINT", "course_id": "VARCHAR", "grade": "DOUBLE", "status": "VARCHAR",
        "mode": "VARCHAR", "created_date": "TIMESTAMP", "modified_date": "TIMESTAMP",
    },
    "student_courseaccessrole": {"course_id": "VARCHAR", "user_id": "BIGINT", "role": "VARCHAR"},
    "courseware_studentmodule": {
        "student_id": "BIGINT", "course_id": "VARCHAR", "module_type": "VARCHAR", "module_id": "VARCHAR",
        "created": "TIMESTAMP", "modified": "TIMESTAMP",
    },
    "course_structure": {
        "course_id": "VARCHAR", "block_id": "VARCHAR", "category": "VARCHAR", "chapter_id": "VARCHAR",
    },
    "forum": {
        "course_id": "VARCHAR", "id": "VARCHAR", "type": "VARCHAR", "author_id": "BIGINT",
        "created_at": "TIMESTAMP",
    },
    "events": {
        "event_id": "VARCHAR", "time": "TIMESTAMP", "event_date": "DATE", "username": "VARCHAR",
        "user_id": "BIGINT", "course_id": "VARCHAR", "event_type": "VARCHAR", "name": "VARCHAR",
        "event_source": "VARCHAR", "subject_id": "BIGINT", "context_course_id": "VARCHAR",
    },
    "events_video": {
        "event_id": "VARCHAR", "time": "TIMESTAMP", "event_date": "DATE", "username": "VARCHAR", "user_id": "BIGINT",
        "course_id": "VARCHAR", "event_type": "VARCHAR", "name": "VARCHAR", "video_id": "VARCHAR",
        "subject_id": "BIGINT",
    },
    "events_problem": {
        "event_id": "VARCHAR", "time": "TIMESTAMP", "event_date": "DATE", "username": "VARCHAR", "user_id": "BIGINT",
        "course_id": "VARCHAR", "event_type": "VARCHAR", "event_source": "VARCHAR", "problem_id": "VARCHAR",
        "attempts": "BIGINT", "success": "VARCHAR", "subject_id": "BIGINT",
    },
    "events_enrollment": {
        "event_id": "VARCHAR", "time": "TIMESTAMP", "event_date": "DATE", "username": "VARCHAR",
        "user_id": "BIGINT", "course_id": "VARCHAR", "event_type": "VARCHAR", "name": "VARCHAR",
        "mode": "VARCHAR", "subject_id": "BIGINT",
    },
    # Written by `edx-engine locate-users` (edx_engine.geo): Parquet under lake/geo, the catalog view
    # `user_location`, bookkeeping `_edx_geo`. One row per (course, learner). Absent until the first run.
    "user_location": {
        "course_id": "VARCHAR", "user_id": "BIGINT", "ip_country": "VARCHAR", "country": "VARCHAR",
        "source": "VARCHAR",
    },
    # Built in Python from the course registry file + course_structure + _edx_snapshots (registry.py).
    "course_info": {
        "course_id": "VARCHAR", "name": "VARCHAR", "sme": "VARCHAR", "start_date": "DATE", "end_date": "DATE",
        "in_registry": "BOOLEAN", "structure_name": "VARCHAR", "structure_start": "DATE", "structure_end": "DATE",
        "tables": "VARCHAR", "passing_grade": "DOUBLE", "passing_source": "VARCHAR",
        "passing_rule": "VARCHAR",
    },
}

# Which store tables each input depends on (for change detection).
SOURCE_TABLES = {name: [name] for name in INPUTS if name not in ("course_info", "user_location")}
SOURCE_TABLES["user_location"] = ["_edx_geo"]


def all_catalog_columns(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str]]:
    """``catalog_columns`` of every view/table of the main schema, in one query (each query of
    information_schema binds the views again: one per input cost ~5 ms each on every report)."""
    out: dict[str, dict[str, str]] = {}
    for t, c, d in con.execute("SELECT table_name, column_name, data_type FROM information_schema.columns "
                               "WHERE table_schema='main' ORDER BY table_name, ordinal_position").fetchall():
        out.setdefault(t, {})[c] = d
    return out


def catalog_columns(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, str] | None:
    """Columns of a catalog view/table (main schema), or None if it does not exist."""
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema='main' AND table_name=? ORDER BY ordinal_position", [name]).fetchall()
    return {r[0]: r[1] for r in rows} if rows else None


# Events whose payload names the learner they are about (``event.user_id``): enrolment events are
# often logged by another account (staff batch enrolment) or by none (``username: "anonymous"``),
# and certificates are generated in batches by staff. docs/indicators.md "Common rules".
SUBJECT_EVENTS = ("edx.course.enrollment.%", "edx.certificate.%")


def _subject_sql(have: dict[str, str]) -> str:
    """SQL: ``event.user_id`` of the events in SUBJECT_EVENTS (the learner the event is about), else NULL."""
    if "event" not in have or "event_type" not in have:
        return "CAST(NULL AS BIGINT)"
    like = " OR ".join(f"event_type LIKE '{p}'" for p in SUBJECT_EVENTS)
    return (f"CASE WHEN ({like}) AND json_valid(event::VARCHAR) "
            f"THEN TRY_CAST(json_extract_string(event::VARCHAR, '$.user_id') AS BIGINT) END")


def _event_course_sql(have: dict[str, str]) -> str:
    """SQL: the event's course id; an enrolment event without one in its context names it in its payload."""
    if "event" not in have or "event_type" not in have:
        return q("course_id")
    return ("CASE WHEN (course_id IS NULL OR course_id = '') AND event_type LIKE 'edx.course.enrollment.%' "
            "AND json_valid(event::VARCHAR) THEN nullif(json_extract_string(event::VARCHAR, '$.course_id'), '') "
            "ELSE course_id END")


def input_sql(con: duckdb.DuckDBPyConnection, name: str, columns: dict[str, dict[str, str]] | None = None,
              source: str | None = None) -> str:
    """A DuckDB SELECT giving exactly the INPUTS columns of ``name``, typed; empty if absent.
    ``columns``: ``all_catalog_columns`` when the caller has it (saves a query of information_schema).
    ``source``: a SELECT to read instead of the catalog's view ``name``, with the view's columns and types."""
    spec = INPUTS[name]
    have = columns.get(name) if columns is not None else catalog_columns(con, name)
    if have is None:
        return typed_empty(spec)
    cols = []
    for c, t in spec.items():
        if name.startswith("events") and c == "subject_id" and c not in have:
            cols.append(f"{_subject_sql(have)} AS {q(c)}")
        elif name.startswith("events") and c == "course_id" and "course_id" in have:
            cols.append(f"{_event_course_sql(have)} AS {q(c)}")
        elif name.startswith("events") and c == "context_course_id" and "course_id" in have:
            cols.append(f"{q('course_id')} AS {q(c)}")  # the course the context named (not the payload's)
        elif c not in have:
            cols.append(f"CAST(NULL AS {t}) AS {q(c)}")
        elif have[c].upper().startswith("TIMESTAMP WITH TIME ZONE") and t == "TIMESTAMP":
            cols.append(f"timezone('UTC', {q(c)}) AS {q(c)}")  # UTC wall time, whatever the session zone
        elif have[c].upper() == t:
            cols.append(q(c))
        else:
            cols.append(f"TRY_CAST({q(c)} AS {t}) AS {q(c)}")
    return f"SELECT {', '.join(cols)} FROM " + (q(name) if source is None else f"({source}) AS {q(name)}")


def typed_empty(columns: dict[str, str]) -> str:
    """A DuckDB SELECT of no rows with ``columns`` (name -> type)."""
    return "SELECT " + ", ".join(f"CAST(NULL AS {t}) AS {q(c)}" for c, t in columns.items()) + " WHERE false"


def q(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'
