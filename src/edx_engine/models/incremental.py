"""Date-partitioned models: what changed since the last build, and writing only those dates.

A model with ``partition`` (definitions.py) is stored as one Parquet file per event date under
``lake/model_parts/<name>/``, each listed in ``_edx_model_parts`` with what it was computed from:

- ``fingerprint``: the event date's own fingerprint (``event_days``): its parts in
  ``_edx_event_parts`` (source, file, rows) and its excluded duplicates (``_edx_event_dups``).
  A new day, a re-delivered day, a day whose duplicates changed all change it; a withdrawn day
  disappears from ``event_days`` and its partition is removed.
- ``context``: the code of the definitions, the parameters (if the model uses them) and the
  columns of its event inputs; a change recomputes every date.
- ``names``: the fingerprint of the non-event inputs (``auth_user``), recorded only for dates that
  have events attributed through their username alone (``username_days``): a new package
  recomputes those dates only.

A model computed from date-partitioned models rather than from events (``activity_daily`` by date,
``activity_weekly`` by week, ``learner_month`` by month: ``grain`` in definitions.py) is kept the
same way. Its partition ``v`` is made from the source partitions of the dates whose grain is ``v``
(``part_of``), so its ``fingerprint`` hashes those source partitions' recorded fingerprints, contexts
and names (``signature``: whatever made a source partition change changes it); its ``context`` also
holds the fingerprints of its non-event inputs (the staff filter's ``auth_user`` and
``student_courseaccessrole``): a new package recomputes all its partitions, a new day only those of
the dates that day changed. A ``cumulative`` model (a count of learners seen for the first time
in a month) is computed from the source dates up to its partition: its fingerprint hashes all of
them, so a changed old month recomputes that month and every later one.

A model kept by course (``grain="course"``: ``person_course``, the course reports over it,
``enrolment_daily``) has one partition per course, recomputed when what that course's rows are made of
changed. Its ``fingerprint`` hashes the course's snapshots of
the per-course package tables (``course_inputs``: the importer keeps a course's rows in that course's
snapshot only), the digest of the course's rows in each partition of its date-partitioned models (a
``learner_month`` month: count and sum of row hashes), the signature of the course's partition of a
model kept by course (those rows are that partition: nothing to read) and the digest of its rows in
its other models (``courses``); its ``context`` the code, parameters, the other inputs' fingerprints (``auth_user`` and
``auth_userprofile`` are one row per user over every course: a change recomputes every course) and
the per-course inputs' columns; its ``names`` its per-partition digests (JSON), so that only the
source partitions that changed since are read again. One more row, part ``SOURCES``, records the
signatures of the source partitions the digests were taken from (``course_digests``).

``_edx_models`` keeps one row per model as for the others; its ``path`` is a zero-row file with the
model's schema (what ``models.<name>`` reads while the model has no partition).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import duckdb

from ..store import catalog
from ..store.files import finish_atomic
from .inputs import catalog_columns, q

NULL_DAY = ""  # the partition of events without an event date (hand-made catalogs only)
SOURCES = "#sources"  # a course-partitioned model's row of source partition signatures (not a course)


def _hash(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()[:24]


def _catalog_events(con: duckdb.DuckDBPyConnection) -> bool:
    """True when ``events`` is the importers' view over ``_edx_event_parts`` (not a hand-made relation)."""
    if not catalog.exists(con, "_edx_event_parts") or catalog.exists(con, "events"):
        return False
    return con.execute("SELECT count(*) FROM (SELECT 1 FROM _edx_event_parts LIMIT 1)").fetchone()[0] > 0


def event_days(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Event date (ISO text) -> fingerprint of what the events of that date are made of.

    Read from the bookkeeping alone (no event is read), so it costs the same whatever the size of
    the store's history. A catalog whose ``events`` is hand-made (tests, benchmarks) is fingerprinted
    from its rows instead."""
    if _catalog_events(con):
        parts = con.execute(
            "SELECT CAST(event_date AS VARCHAR), list(source_key || '|' || path || '|' || rows "
            "ORDER BY source_key, path) FROM _edx_event_parts GROUP BY 1").fetchall()
        dups = {d: (n, h) for d, n, h in con.execute(
            "SELECT CAST(event_date AS VARCHAR), count(*), CAST(sum(hash(source_key, line)) AS VARCHAR) "
            "FROM _edx_event_dups GROUP BY 1").fetchall()}
        return {d or NULL_DAY: _hash(p, dups.get(d)) for d, p in parts}
    cols = catalog_columns(con, "events")
    if cols is None or "event_date" not in cols:
        return {}
    keys = ", ".join(q(c) for c in ("event_id", "time", "user_id", "username", "course_id", "event_type")
                     if c in cols) or "event_date"
    rows = con.execute(f"SELECT CAST(event_date AS VARCHAR), count(*), CAST(sum(hash({keys})) AS VARCHAR) "
                       f"FROM events GROUP BY 1").fetchall()
    return {d or NULL_DAY: _hash(n, h) for d, n, h in rows}


def part_of(day: str, grain: str) -> str:
    """The partition (ISO text) a source date ``day`` falls in at ``grain``: the date itself ("day"),
    the Monday of its ISO week ("week", as ``definitions.weeks``), the first of its month ("month")."""
    if day == NULL_DAY or grain == "day":
        return day
    d = dt.date.fromisoformat(day)
    d = d - dt.timedelta(days=d.weekday()) if grain == "week" else d.replace(day=1)
    return d.isoformat()


def signature(fingerprint: str, context: str, names: str | None) -> str:
    """What a recorded partition was computed from, in one value (a derived partition hashes these)."""
    return _hash(fingerprint, context, names)


def derived_parts(sources: dict[str, dict[str, str]], grain: str, cumulative: bool = False
                  ) -> tuple[dict[str, str], dict[str, set[str]], dict[str, set[str]]]:
    """(partition -> fingerprint, partition -> its source dates, partition -> the source dates it is
    computed from) of a model over partitioned models: the same dates, or with ``cumulative`` every
    date up to the partition's own (the NULL date first).

    ``sources``: source model -> date -> ``signature`` of its partition now (after this build's
    changes). A partition's fingerprint hashes the signatures of the dates it is computed from."""
    own: dict[str, set[str]] = {}
    for parts in sources.values():
        for d in parts:
            own.setdefault(part_of(d, grain), set()).add(d)
    read = own
    if cumulative:
        read, acc = {}, set()
        for p in sorted(own):
            acc = acc | own[p]
            read[p] = acc
    fps = {p: _hash(sorted((m, d, sources[m][d]) for m in sorted(sources) for d in ds if d in sources[m]))
           for p, ds in read.items()}
    return fps, own, read


def day_filter(days: list[str]) -> str:
    """SQL condition on ``event_date`` selecting exactly ``days``."""
    real = [d for d in days if d != NULL_DAY]
    conds = []
    if real:
        conds.append("event_date IN (" + ", ".join(f"DATE '{d}'" for d in real) + ")")
    if NULL_DAY in days:
        conds.append("event_date IS NULL")
    return "(" + " OR ".join(conds or ["false"]) + ")"


def part_filter(parts: list[str], column: str) -> str:
    """SQL condition on the partition column ``column`` selecting exactly the partitions ``parts``
    (``day_filter`` for a model's own partition column: PostgreSQL deletes and re-inserts by it)."""
    real = [d for d in parts if d != NULL_DAY]
    conds = []
    if real:
        conds.append(f"{q(column)} IN (" + ", ".join(f"DATE '{d}'" for d in real) + ")")
    if NULL_DAY in parts:
        conds.append(f"{q(column)} IS NULL")
    return "(" + " OR ".join(conds or ["false"]) + ")"


def course_filter(courses: list[str]) -> str:
    """SQL condition selecting the rows of exactly ``courses`` (by ``course_id``)."""
    if not courses:
        return "false"
    return "course_id IN (" + ", ".join(catalog.sql_str(c) for c in courses) + ")"


def course_digests(sigs: dict[str, str], recorded: dict[str, str] | None, stored: dict[str, "StoredPart"],
                   scan: Callable[[list[str]], dict[str, dict[str, str]]]) -> dict[str, dict[str, str]]:
    """Course -> {source partition: digest of the course's rows in it} of a course-partitioned model.

    ``sigs``: source partition (``<model>|<part>``) -> its signature now; ``recorded``: the signatures
    the stored digests were taken from (the ``SOURCES`` row; None: none usable); ``stored``: the
    recorded courses (their ``names``: their digests). Only the partitions whose signature changed
    (or that are new) are read again (``scan``: partition -> course -> digest); the others' digests
    are the recorded ones. A course absent from a partition has no digest for it: a course leaving a
    partition changes its digests as one entering it does."""
    rescan = sorted(k for k, sig in sigs.items() if recorded is None or recorded.get(k) != sig)
    again = set(rescan)
    out: dict[str, dict[str, str]] = {}
    if recorded is not None:
        for c, sp in stored.items():
            for k, d in json.loads(sp.names or "{}").items():
                if k in sigs and k not in again:
                    out.setdefault(c, {})[k] = d
    for k, per in scan(rescan).items() if rescan else ():
        for c, d in per.items():
            out.setdefault(c, {})[k] = d
    return out


def username_days(con: duckdb.DuckDBPyConnection, days: list[str] | None, source: str | None = None) -> set[str]:
    """The dates among ``days`` having events with a username but no user id: the only ones whose
    learner attribution reads ``auth_user`` (a superset: payload user ids are not looked at).
    ``source``: a SELECT to read instead of the ``events`` view (its parts of ``days`` only)."""
    cols = catalog_columns(con, "events")
    if cols is None or not {"user_id", "username", "event_date"} <= set(cols):
        return set()
    where = "" if days is None else f" AND {day_filter(days)}"
    src = "events" if source is None else f"({source}) AS events"
    return {d or NULL_DAY for (d,) in con.execute(
        f"SELECT DISTINCT CAST(event_date AS VARCHAR) FROM {src} WHERE user_id IS NULL "
        f"AND coalesce(username, '') <> ''{where}").fetchall()}


@dataclass
class StoredPart:
    fingerprint: str
    context: str
    names: str | None
    paths: list[str] = field(default_factory=list)
    rows: int = 0


def stored_parts(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, StoredPart]:
    """Event date -> the recorded partition of model ``name`` (its files, rows, what it was built from)."""
    if not catalog.exists(con, "_edx_model_parts"):
        return {}
    out: dict[str, StoredPart] = {}
    for d, path, rows, fp, ctx, names in con.execute(
            "SELECT part, path, rows, fingerprint, context, names FROM _edx_model_parts WHERE model = ? "
            "ORDER BY part, path", [name]).fetchall():
        sp = out.setdefault(d, StoredPart(fp, ctx, names))
        if path:
            sp.paths.append(path)
        sp.rows += int(rows or 0)
    return out


@dataclass
class PartRow:
    """One row of ``_edx_model_parts`` to record (path relative to the data directory, or None: no rows)."""
    day: str
    path: str | None
    rows: int
    fingerprint: str
    context: str
    names: str | None


@dataclass
class PartsUpdate:
    """A partitioned model's change: the dates replaced or removed, and their new rows."""
    replaced: list[str]
    rows: list[PartRow]


def plan(days: dict[str, str], stored: dict[str, StoredPart], context: str, names: str | None, root: Path,
         full: bool) -> tuple[list[str], list[str]]:
    """(dates to recompute, dates to remove): new, changed, built under another context, attributed
    through usernames under other packages (``names`` None: not looked at), or whose file is missing."""
    todo = []
    base = str(root) + os.sep
    for d, fp in sorted(days.items()):
        s = stored.get(d)
        if (full or s is None or s.fingerprint != fp or s.context != context
                or (names is not None and s.names is not None and s.names != names)
                or any(not os.path.exists(base + p) for p in s.paths)):
            todo.append(d)
    return todo, sorted(d for d in stored if d not in days)


def write_parts(con: duckdb.DuckDBPyConnection, sql: str, column: str, name: str, root: Path,
                out_dir: Path, hashed: bool = False) -> dict[str, list[tuple[str, int]]]:
    """Run ``sql`` once, writing one Parquet file per value of ``column`` under ``out_dir``.

    Returns value (event date, course id) -> [(path relative to ``root``, rows)]. Files are written in a temporary
    directory, fsynced and renamed into place; until the catalog lists them they are garbage. ``hashed``
    (course ids): the temporary folders are named by the value's md5 and the value is read back from the
    file, since a folder named by a long course id, escaped by DuckDB ('+' is '%2B'), exceeds the
    255 bytes a file name may have and the whole build fails."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".tmp-{uuid.uuid4().hex[:12]}"
    # Sorted by partition: DuckDB keeps at most 100 partition files open (``partitioned_write_max_open_files``)
    # and, rows arriving in any order, closes and reopens them: a full build of 200 courses wrote 1,545
    # files for 200 partitions, and each file costs a count, two fsyncs and a read at every later build.
    # Sorted, a partition is one file (two where the stream is split between threads; the sort spills to
    # disk under the memory limit), and one query reads every file's rows and partition value.
    if hashed:
        con.execute(f"COPY (SELECT *, md5(CAST({q(column)} AS VARCHAR)) AS __edx_part FROM ({sql}) "
                    f"ORDER BY __edx_part) TO {catalog.sql_str(str(tmp))} (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (__edx_part))")
    else:
        con.execute(f"COPY (SELECT * FROM ({sql}) ORDER BY {q(column)}) TO {catalog.sql_str(str(tmp))} (FORMAT parquet, "
                    f"COMPRESSION zstd, PARTITION_BY ({q(column)}), WRITE_PARTITION_COLUMNS true)")
    out: dict[str, list[tuple[str, int]]] = {}
    if not tmp.is_dir():
        return out
    files = sorted(str(f) for f in tmp.glob("*/*.parquet"))
    found = {f: (n, v) for f, n, v in con.execute(  # one query for every file: rows and the partition's value
        f"SELECT filename, count(*), CAST(any_value({q(column)}) AS VARCHAR) FROM read_parquet(?, "
        f"hive_partitioning = false, filename = true) GROUP BY filename", [files]).fetchall()} if files else {}
    root = root.resolve()
    for sub in sorted(tmp.iterdir()):
        value = sub.name.split("=", 1)[1] if "=" in sub.name else sub.name
        day = NULL_DAY if value in ("NULL", "__HIVE_DEFAULT_PARTITION__") else urllib.parse.unquote(value)
        for f in sorted(sub.glob("*.parquet")):
            rows, read = found.get(str(f)) or con.execute(  # (a name DuckDB would spell otherwise)
                f"SELECT count(*), CAST(any_value({q(column)}) AS VARCHAR) FROM read_parquet(?, hive_partitioning = "
                f"false)", [str(f)]).fetchone()
            if hashed:
                day = read if read is not None else NULL_DAY
            label = re.sub(r"[^A-Za-z0-9.-]+", "_", day)[-60:] or "null"  # a course id holds '/', ':', '+'
            final = out_dir / f"{name}-{label}-{uuid.uuid4().hex[:12]}.parquet"
            finish_atomic(f, final)
            out.setdefault(day, []).append((str(final.resolve().relative_to(root)), int(rows)))
        sub.rmdir()
    tmp.rmdir()
    return out
