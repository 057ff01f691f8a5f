"""Course registry: what the programme says about its courses, merged with what the packages say.

Registry sources, first found wins:
1. ``--registry PATH`` (TOML or CSV);
2. ``courses.toml`` in the working directory;
3. the ``[courses]`` section of the config file (``edx-engine.toml``).

TOML shapes accepted (see ``courses.example.toml``)::

    [courses."course-v1:IDBx+IDB1x+2T2016"]          # a table per course id ...
    name = "..."; sme = "..."; start = 2016-05-01; end = 2016-07-31

    [[course]]                                        # ... or an array of tables with ``id``
    id = "IDBx/IDB1x/2T2014"; name = "..."

CSV: a header with ``id,name,sme,start,end`` (optional ``passing_grade``, ``passing_rule``; other
columns ignored).

``passing_grade`` (0..1) is used for a course whose package carries no grading policy;
``passing_rule`` says how a grade is compared with it: ``>=`` (at or above, edX's convention and
the default) or ``>`` (above, as the original IDBx system counted).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from ..store import catalog
from .inputs import INPUTS, catalog_columns

DEFAULT_REGISTRY = "courses.toml"


class RegistryError(Exception):
    pass


@dataclass
class CourseEntry:
    course_id: str
    name: str | None = None
    sme: str | None = None
    start: dt.date | None = None
    end: dt.date | None = None
    passing_grade: float | None = None  # the course's pass mark (0..1), when no grading policy says it
    passing_rule: str | None = None  # ">=" (at or above the mark, edX) or ">" (above it, the original system)


def _date(v: Any, where: str) -> dt.date | None:
    if v is None or v == "":
        return None
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return v
    try:
        return dt.date.fromisoformat(str(v).strip()[:10])
    except ValueError:
        raise RegistryError(f"{where}: not a date (YYYY-MM-DD): {v!r}") from None


def _entry(cid: str, d: dict, where: str) -> CourseEntry:
    if not isinstance(d, dict):
        raise RegistryError(f"{where}: expected a table for course {cid!r}")
    s = lambda k: (str(d[k]).strip() or None) if d.get(k) is not None else None  # noqa: E731
    return CourseEntry(cid.strip(), s("name"), s("sme"), _date(d.get("start"), f"{where} {cid} start"),
                       _date(d.get("end"), f"{where} {cid} end"), _grade(d.get("passing_grade"), f"{where} {cid}"),
                       _rule(d.get("passing_rule"), f"{where} {cid}"))


def _rule(v: Any, where: str) -> str | None:
    from .definitions import PASSING_RULES

    if v is None or str(v).strip() == "":
        return None
    if str(v).strip() not in PASSING_RULES:
        raise RegistryError(f"{where}: passing_rule must be one of {', '.join(PASSING_RULES)}, not {v!r}")
    return str(v).strip()


def _grade(v: Any, where: str) -> float | None:
    if v is None or v == "":
        return None
    try:
        g = float(v)
    except (TypeError, ValueError):
        g = -1.0
    if not 0 <= g <= 1:
        raise RegistryError(f"{where}: passing_grade must be a number from 0 to 1, not {v!r}")
    return g


def parse_toml_registry(doc: dict, where: str) -> list[CourseEntry]:
    out: list[CourseEntry] = []
    courses = doc.get("courses", {})
    if isinstance(courses, dict):
        for cid, d in courses.items():
            out.append(_entry(cid, d, where))
    elif isinstance(courses, list):  # [[courses]] with id
        doc = {"course": courses}
    for d in doc.get("course", []) or []:
        if not isinstance(d, dict) or not d.get("id"):
            raise RegistryError(f"{where}: every [[course]] needs an id")
        out.append(_entry(str(d["id"]), d, where))
    return out


def load_registry(path: str | Path | None = None, config: dict | None = None) -> tuple[list[CourseEntry], str]:
    """Entries and a description of where they came from."""
    p = Path(path) if path else Path(DEFAULT_REGISTRY)
    if path and not p.exists():
        raise RegistryError(f"course registry {p} does not exist")
    if p.exists():
        if p.suffix.lower() == ".csv":
            with open(p, newline="", encoding="utf-8-sig") as f:
                rows = list(csv.DictReader(f))
            if rows and "id" not in rows[0]:
                raise RegistryError(f"{p}: the CSV needs an 'id' column (id,name,sme,start,end)")
            entries = [_entry(r["id"], r, str(p)) for r in rows if (r.get("id") or "").strip()]
        else:
            try:
                doc = tomllib.loads(p.read_text("utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise RegistryError(f"{p}: invalid TOML: {exc}") from None
            entries = parse_toml_registry(doc, str(p))
        return _dedupe(entries), str(p)
    section = (config or {}).get("courses")
    if section:
        return _dedupe(parse_toml_registry({"courses": section}, "config [courses]")), "config file [courses]"
    return [], "none"


def _dedupe(entries: list[CourseEntry]) -> list[CourseEntry]:
    seen: dict[str, CourseEntry] = {}
    for e in entries:
        seen[e.course_id] = e  # the last definition wins
    return list(seen.values())


# --- course_info: registry + package metadata ---------------------------------------------------------------

_PER_COURSE_TABLES = ("student_courseenrollment", "course_structure", "certificates_generatedcertificate",
                      "auth_user")


def course_info(con: duckdb.DuckDBPyConnection, entries: list[CourseEntry],
                event_courses: set[str] | None = None) -> pa.Table:
    """One row per course known to the registry, the packages or the events (INPUTS['course_info']).

    ``event_courses``: the courses the events' context names, when the caller knows them without
    reading every event (the DuckDB build takes them from ``course_day``); else the events are read."""
    ids: set[str] = {e.course_id for e in entries}
    if event_courses is None and catalog_columns(con, "events") is not None:
        event_courses = {r[0] for r in con.execute(
            "SELECT DISTINCT course_id FROM events WHERE course_id IS NOT NULL AND course_id <> ''").fetchall()}
    ids |= event_courses or set()
    for t in _PER_COURSE_TABLES:
        if catalog_columns(con, t) is not None:
            ids |= {r[0] for r in con.execute(
                f"SELECT DISTINCT course_id FROM {t} WHERE course_id IS NOT NULL AND course_id <> ''").fetchall()}
    structure: dict[str, tuple] = {}
    if catalog_columns(con, "course_structure") is not None:
        for cid, name, start, end in con.execute(
                "SELECT course_id, display_name, start, TRY_CAST(json_extract_string(metadata, '$.end') AS TIMESTAMP) "
                "FROM course_structure WHERE category = 'course' ORDER BY course_id, block_id").fetchall():
            structure.setdefault(cid, (name, start, end))
    tables: dict[str, list[str]] = {}
    try:
        for cid, t in catalog.courses_with_rows(con):
            tables.setdefault(cid, []).append(t)
    except duckdb.CatalogException:
        pass
    for cid in sorted(event_courses or ()):
        tables.setdefault(cid, []).append("events")
    reg = {e.course_id: e for e in entries}
    cutoffs = grading_cutoffs(con)
    rows = []
    for cid in sorted(ids):
        e = reg.get(cid)
        sname, sstart, send = structure.get(cid, (None, None, None))
        sstart = sstart.date() if isinstance(sstart, dt.datetime) else sstart
        send = send.date() if isinstance(send, dt.datetime) else send
        rows.append({
            "course_id": cid,
            "name": (e and e.name) or sname or cid,
            "sme": (e and e.sme) or None,
            "start_date": (e and e.start) or sstart,
            "end_date": (e and e.end) or send,
            "in_registry": e is not None,
            "structure_name": sname, "structure_start": sstart, "structure_end": send,
            "tables": ",".join(tables.get(cid, [])),
            **_passing(cutoffs.get(cid), e),
            "passing_rule": e.passing_rule if e is not None else None,
        })
    return pa.Table.from_pylist(rows, schema=COURSE_INFO_SCHEMA)


def _passing(cutoff: float | None, entry: CourseEntry | None) -> dict:
    """The course's pass mark: its grading policy, else the registry, else NULL (the build's default)."""
    if cutoff is not None:
        return {"passing_grade": cutoff, "passing_source": "grading_policy"}
    if entry is not None and entry.passing_grade is not None:
        return {"passing_grade": entry.passing_grade, "passing_source": "registry"}
    return {"passing_grade": None, "passing_source": None}


def grading_cutoffs(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """Per course, the lowest grade cutoff (``GRADE_CUTOFFS``) of the course export's
    ``policies/{run}/grading_policy.json``: the grade a learner needs to pass."""
    have = catalog_columns(con, "course_content")
    if not have or "content" not in have:
        return {}
    out: dict[str, float] = {}
    for cid, text in con.execute("SELECT course_id, content FROM course_content WHERE content IS NOT NULL "
                                 "AND regexp_matches(path, '(^|/)policies/[^/]+/grading_policy\\.json$') "
                                 "ORDER BY course_id, path").fetchall():
        g = cutoff_of_policy(text)
        if g is not None and cid not in out:
            out[cid] = g
    return out


def cutoff_of_policy(text: str) -> float | None:
    """min(GRADE_CUTOFFS) of a grading_policy.json text; None when it has no usable cutoff."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    cut = doc.get("GRADE_CUTOFFS") if isinstance(doc, dict) else None
    if not isinstance(cut, dict):
        return None
    vals = [float(v) for v in cut.values() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and 0 <= v <= 1]
    return min(vals) if vals else None


_ARROW = {"VARCHAR": pa.string(), "DATE": pa.date32(), "BOOLEAN": pa.bool_(), "DOUBLE": pa.float64()}
COURSE_INFO_SCHEMA = pa.schema([(c, _ARROW[t]) for c, t in INPUTS["course_info"].items()])
