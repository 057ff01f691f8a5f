"""Run the indicator definitions on a store and keep the results.

DuckDB store (default): every model is written as one Parquet file under
``<data_dir>/lake/models/<name>/<name>-<id>.parquet`` and exposed in the catalog as the view
``models.<name>`` (schema ``models`` of ``edx.duckdb``). Bookkeeping: ``_edx_models``. The models
over events (``partition`` in definitions.py) are kept by event date instead: one file per date
under ``lake/model_parts/<name>/``, listed in ``_edx_model_parts``, and only the dates whose events
changed are recomputed (models/incremental.py); the models over those (month rollups, weekly and
daily series: ``grain``) are kept by partition the same way. Each model's SQL reads its inputs and
models through TEMP VIEWs (``__edx_in_<name>``) pointed at them on every build, so it comes from the cache of
compiled SQL (models/sqlcache.py) whenever its key is known: ibis is then neither imported nor run.

PostgreSQL store (``--store postgresql://...``): the input columns the definitions read
(models/inputs.py) are copied from the DuckDB catalog into schema ``edx_raw`` (DuckDB's
postgres extension), the same Ibis definitions run inside PostgreSQL, and each model becomes
the table ``edx_models.<name>``. Bookkeeping: ``edx_models._edx_models`` and ``_edx_inputs``. A
partitioned model (by date, or ``person_course`` by course) is planned as on DuckDB and only its changed
partitions' rows are deleted and inserted, listed in ``edx_models._edx_model_parts``.

Only what changed is rebuilt: a model's fingerprint hashes the definitions' source, the
parameters it uses, the fingerprints of its input tables (package snapshots from
``_edx_snapshots``; the per-date fingerprints of ``incremental.event_days`` for event views; the ``_edx_geo`` row of
``user_location``; the course registry) and the fingerprints of the models it reads. An
unchanged fingerprint skips the model.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.resources
import json
import os
import resource
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import duckdb
import pyarrow as pa

from ..store import catalog, views
from ..store.files import write_atomic
from .. import _hooks as testhooks
from .. import interrupts, pandas_guard
from ..store.errors import disk_full_cause, is_disk_full
from ..store.lake import Lake
from . import definitions as D
from . import incremental as inc
from . import sqlcache
from .params import hide_store, mask_store
from .inputs import INPUTS, all_catalog_columns, input_sql, q, typed_empty
from .registry import CourseEntry, course_info

SCHEMA = "models"  # DuckDB schema of the model views
PG_MODELS = "edx_models"
PG_RAW = "edx_raw"
EVENT_TABLES = tuple(n for n in INPUTS if n.startswith("events"))
# The session-level advisory lock a PostgreSQL build holds on its database: one build at a time, whatever the
# data directory or machine it runs from (two would drop and fill the same tables under each other).
PG_BUILD_LOCK = 0x6564785F6275696C  # "edx_buil"
PLACEHOLDER = "__edx_in_"  # TEMP VIEW a model's compiled SQL reads an input or model through (sqlcache.py)


class BuildError(Exception):
    pass


@dataclass
class ModelResult:
    name: str
    status: str  # built | unchanged
    rows: int
    seconds: float
    peak_rss_mb: float = 0.0
    days: int | None = None  # date partitions recomputed (models kept by partition)


@dataclass
class BuildResult:
    store: str
    models: list[ModelResult] = field(default_factory=list)
    seconds: float = 0.0
    copy_seconds: float = 0.0

    def one_line(self) -> str:
        built = sum(1 for m in self.models if m.status == "built")
        return (f"models: {len(self.models)} ({built} built, {len(self.models) - built} unchanged) in {self.store}, "
                f"{self.seconds:.1f} s")


@functools.lru_cache(maxsize=1)
def _code_version() -> str:
    h = hashlib.sha256()
    for mod in ("definitions.py", "inputs.py"):
        h.update((Path(__file__).parent / mod).read_bytes())
    return h.hexdigest()[:16]


def _hash(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()[:24]


def input_fingerprints(con: duckdb.DuckDBPyConnection, info: pa.Table | None,
                       only: set[str] | None = None, days: dict[str, str] | None = None,
                       columns: dict[str, dict[str, str]] | None = None) -> dict[str, str]:
    """Input name -> fingerprint (``course_info`` only when ``info`` is given). Event inputs hash the
    per-date fingerprints of ``incremental.event_days`` (``days`` if the caller has them) and their
    columns (``columns``: ``all_catalog_columns`` if the caller has it): read from the bookkeeping,
    not from the events."""
    fp: dict[str, str] = {}
    snaps: dict[str, list] = {}
    columns = columns if columns is not None else all_catalog_columns(con)
    try:
        for t, c, f, d in con.execute("SELECT table_name, course_id, fingerprint, package_date FROM _edx_snapshots "
                                      "ORDER BY 1, 2").fetchall():
            snaps.setdefault(t, []).append((c, f, d))
    except duckdb.CatalogException:
        pass
    for name in INPUTS:
        if only is not None and name not in only:
            continue
        if name == "course_info":
            if info is not None:
                fp[name] = _hash(info.to_pylist())
        elif name == "user_location":
            fp[name] = _geo_fingerprint(con, name, columns.get(name))
        elif name in EVENT_TABLES:
            cols = columns.get(name)
            if cols is None:
                fp[name] = "absent"
            else:
                if days is None:
                    days = inc.event_days(con)
                fp[name] = _hash(sorted(days.items()), sorted(cols.items()))
        else:
            fp[name] = _hash(snaps.get(name, []), sorted((columns.get(name) or {}).items()))
    return fp


def _geo_fingerprint(con: duckdb.DuckDBPyConnection, name: str, cols: dict[str, str] | None) -> str:
    """A table written by ``edx-engine locate-users``: its ``_edx_geo`` row (file, rows, IP database, run time)
    and its view's columns ``cols`` (from ``input_fingerprints``' one read of every view's columns).

    Every run writes a new file under a new name, so a new run changes the fingerprint."""
    try:
        row = con.execute("SELECT path, rows, ip_db, ip_db_date, located_at FROM _edx_geo WHERE name = ?",
                          [name]).fetchone()
    except duckdb.CatalogException:
        row = None
    if cols is None and row is None:
        return "absent"
    return _hash(row, sorted((cols or {}).items()))


def model_fingerprints(names: list[str], inputs_fp: dict[str, str], params: D.Params) -> dict[str, str]:
    code = _code_version()
    out: dict[str, str] = {}
    for n in D.order(names):
        m = D.MODELS[n]
        out[n] = _hash(code, n, params.fingerprint() if m.uses_params else "",
                       {i: inputs_fp[i] for i in sorted(m.inputs)}, {d: out[d] for d in m.deps})
    return out


class _PeakRSS:
    """Peak resident memory of this process while a block runs (sampled every 20 ms)."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def __enter__(self):
        self.peak = self._rss()

        def run():
            while not self._stop.wait(0.02):
                self.peak = max(self.peak, self._rss())
        self._t = threading.Thread(target=run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._rss())


# --- DuckDB ---------------------------------------------------------------------------------------------------

def _duck_config(con: duckdb.DuckDBPyConnection, threads: int | None, memory_limit: str | None, tmp: Path) -> None:
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    tmp.mkdir(parents=True, exist_ok=True)
    con.execute(f"SET temp_directory = {catalog.sql_str(str(tmp))}")  # a store path may hold a quote
    con.execute("SET preserve_insertion_order = false")


def _stored_models(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, str]]:
    try:
        return {n: (p, f) for n, p, f in con.execute("SELECT name, path, fingerprint FROM _edx_models").fetchall()}
    except duckdb.CatalogException:
        return {}


def build_duckdb(lake: Lake, entries: list[CourseEntry], params: D.Params, names: list[str] | None = None,
                 force: bool = False, on_model: Callable[[ModelResult], None] | None = None,
                 threads: int | None = None, memory_limit: str | None = None) -> BuildResult:
    """Build the changed models (every model with ``force``); see the module docstring.

    Models kept by date partition go first and recompute only their changed dates
    (models/incremental.py); then ``course_info`` is read (its event courses from ``course_month``)
    and the other models are rebuilt when their fingerprint changed. Everything is switched in one
    catalog transaction at the end: a build killed before leaves the previous models readable."""
    if not lake.catalog_path.exists():
        raise BuildError(f"no store at {lake.root} (run `edx-engine import` first)")
    t0 = time.perf_counter()
    res = BuildResult(store=str(lake.catalog_path))
    todo = D.order(names)
    try:
        _build_duckdb(lake, entries, params, todo, force, on_model, threads, memory_limit, res)
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        # a model's Parquet file (DuckDB's COPY) or the catalog's commit: the models switch in one
        # transaction at the end, so none changed; the half-written files go with the next collection
        raise BuildError(f"could not build the models: {disk_full_cause(exc)}; no model was changed, the store "
                         f"{lake.root} keeps the previous ones; free some space and run again") from None
    res.seconds = time.perf_counter() - t0
    return res


def _build_duckdb(lake: Lake, entries: list[CourseEntry], params: D.Params, todo: list[str], force: bool,
                  on_model: Callable[[ModelResult], None] | None, threads: int | None, memory_limit: str | None,
                  res: BuildResult) -> None:
    with lake.writer():
        with lake.connect(read_only=True, fresh=True) as con:  # global settings: an instance of its own
            _duck_config(con, threads, memory_limit, lake.root / "tmp" / "models")
            run = _DuckRun(lake, con, params, force)
            for n in todo:
                testhooks.pause("build-model")  # interrupt tests: a model about to be built
                r = run.build_partitioned(n) if D.MODELS[n].partition else run.build_whole(n, entries)
                res.models.append(r)
                if on_model:
                    on_model(r)
            confirmed = confirmed_inputs(con, res.models, run.in_fp)
        # then replaced models and partitions, and any writer's leftovers, are deleted (under the lock)
        if run.new_paths or confirmed:
            record_models(lake, run.new_paths, params, run.in_fp, run.parts, collect=True, confirmed=confirmed)
        else:
            lake.collect_garbage()


@dataclass
class PartPlan:
    """What a build does to a partitioned model (``_Planner.plan_partitioned``), whatever the engine."""
    keys: dict[str, str]  # partition -> fingerprint now
    context: str
    todo: list[str]  # partitions to recompute
    removed: list[str]  # partitions whose sources are gone
    full: bool  # every partition recomputed, none kept
    fp: str  # the model's fingerprint once built
    unchanged: bool
    part_names: dict[str, str | None]  # recomputed partition -> ``names`` to record
    src_days: list[str] | None  # the source partitions the recomputed ones read (None: all)
    upto_days: list[str] | None  # a cumulative model's: those up to them (None: all)
    stored: dict[str, inc.StoredPart]  # the recorded partitions before this build
    same_schema: bool  # no recorded partition was built under another context
    courses: list[str] | None = None  # a course-partitioned model: the courses it reads (None: all)
    extra: list[inc.PartRow] = field(default_factory=list)  # bookkeeping rows that are no partition

    def part_rows(self, written: dict[str, list[tuple[str | None, int]]]) -> list[inc.PartRow]:
        """The bookkeeping rows of the recomputed partitions (``written``: partition -> (path, rows))."""
        return [inc.PartRow(d, p, k, self.keys[d], self.context, self.part_names[d]) for d in self.todo
                for p, k in (written.get(d) or [(None, 0)])]

    def replaced(self) -> list[str]:
        return sorted(set(self.todo) | set(self.removed) | (set(self.stored) if self.full else set())
                      | {r.day for r in self.extra})

    def kept(self) -> dict[str, inc.StoredPart]:
        gone = set(self.replaced())
        return {d: sp for d, sp in self.stored.items() if d not in gone}


def partition_tables(table: Callable[..., Any], plan: PartPlan) -> Callable[[str], Any]:
    """The table getter of a partitioned model's computation on an engine whose ``table(name, days)``
    reads an input (limited to ``days`` when given): partitioned inputs and events limited to the
    plan's source partitions, ``<name>`` + ``D.UPTO`` to every partition up to the last one recomputed."""
    def get(name: str):
        if name.endswith(D.UPTO):
            return table(name.removesuffix(D.UPTO), plan.upto_days)
        if name in EVENT_TABLES or (name in D.MODELS and D.MODELS[name].partition):
            return table(name, plan.src_days)
        return table(name)

    return get


class _Planner:
    """What the builds of every engine share: the inputs' fingerprints, the models' fingerprints as this
    build leaves them, and which partitions of a partitioned model to recompute (models/incremental.py).
    DuckDB, PostgreSQL and Spark builds computing the same plan is what lets them skip the same work,
    and a DuckDB and a Spark build alternate on one store."""

    def __init__(self, con: duckdb.DuckDBPyConnection, params: D.Params, force: bool, info: pa.Table | None = None):
        self.con, self.params, self.force = con, params, force
        self.days = inc.event_days(con)
        self.columns = all_catalog_columns(con)  # the catalog does not change during a build
        self.in_fp = input_fingerprints(con, info, days=self.days, columns=self.columns)
        self.fps: dict[str, str] = {}
        self.part_sigs: dict[str, dict[str, str]] = {}  # partitioned model -> part -> signature (this build)
        self._name_days: set[str] | None = None
        self._name_checked: set[str] = set()
        self._whole_digests: dict[str, tuple[str, dict[str, str]]] = {}  # model kept whole -> (fingerprint, digests)
        self.base: str | None = None  # the store's place as the catalog's views spell it (event_days_sql)
        self._event_sources: dict[tuple[str, tuple[str, ...]], str | None] = {}

    def whole_fp(self, n: str) -> str:
        """The fingerprint of a model kept whole (``model_fingerprints``, over this build's models)."""
        m = D.MODELS[n]
        return _hash(_code_version(), n, self.params.fingerprint() if m.uses_params else "",
                     {i: self.in_fp[i] for i in sorted(m.inputs)}, {d: self.fps[d] for d in m.deps})

    def plan_partitioned(self, n: str, stored: dict[str, inc.StoredPart], old_fp: str | None,
                         root: Path) -> PartPlan:
        """The plan of partitioned model ``n``: ``stored`` its recorded partitions (their files under
        ``root``: a partition whose file is gone is recomputed), ``old_fp`` its recorded fingerprint
        (None: not built, or its stored form is gone). Sets the model's fingerprint for the models over it."""
        m = D.MODELS[n]
        keys, members, reads, context, names = self._partition_plan(n)
        uses_names = members is None and any(i not in EVENT_TABLES for i in m.inputs)
        full = self.force or old_fp is None or not old_fp.startswith("p:")
        todo, removed = inc.plan(keys, {} if full else stored, context, names, root, full)
        named = self.name_days(todo) if uses_names and todo else set()
        part_names = {d: (names if d in named else None) for d in todo}
        final = {d: (keys[d], stored[d].names) for d in keys if d not in part_names}
        final.update({d: (keys[d], part_names[d]) for d in todo})
        fp = "p:" + _hash(context, sorted(final.items()))
        self.fps[n] = fp
        src_days = upto_days = None
        if len(todo) < len(keys):
            src_days = todo if members is None else sorted(set().union(*(members[p] for p in todo)))
            upto_days = None if reads is None else sorted(set().union(*(reads[p] for p in todo)))
        return PartPlan(keys, context, todo, removed, full, fp,
                        not todo and not removed and not full and old_fp == fp, part_names, src_days, upto_days,
                        stored, not full and bool(stored) and all(sp.context == context for sp in stored.values()))

    def plan_courses(self, n: str, stored: dict[str, inc.StoredPart], old_fp: str | None, root: Path,
                     scan: Callable[[list[str]], dict[str, dict[str, str]]],
                     whole: Callable[[str], dict[str, str]]) -> PartPlan:
        """The plan of course-partitioned model ``n`` (models/incremental.py): ``stored`` its recorded
        partitions (with the ``SOURCES`` row), ``old_fp`` its recorded fingerprint; ``scan`` gives the
        digests per course of source partitions (``<model>|<part>``), ``whole`` those of a model kept
        whole. A course is recomputed when its snapshots, its digests or the context changed."""
        m = D.MODELS[n]
        stored = dict(stored)
        src = stored.pop(inc.SOURCES, None)
        full = self.force or src is None or old_fp is None or not old_fp.startswith("c:")
        context = _hash(_code_version(), n, self.params.fingerprint() if m.uses_params else "",
                        {i: self.in_fp[i] for i in sorted(m.inputs) if i not in m.course_inputs},
                        {i: sorted((self.columns.get(i) or {}).items()) for i in sorted(m.course_inputs)})
        by_date = [d for d in m.deps if D.MODELS[d].partition and D.MODELS[d].grain != "course"]
        sigs = {f"{d}|{p}": sig for d in by_date for p, sig in self.part_sigs[d].items()}
        digests = inc.course_digests(sigs, None if full else json.loads(src.names or "{}"), stored, scan)
        for d in m.deps:  # a model kept by course: course c's rows are its partition c, whose signature says them
            if D.MODELS[d].grain == "course":
                for c, sig in self.part_sigs[d].items():
                    digests.setdefault(c, {})[f"{d}|{c}"] = sig
        rows: dict[str, dict[str, str]] = {}
        for d in m.deps:
            if not D.MODELS[d].partition:
                fp, got = self._whole_digests.get(d, (None, None))
                if got is None or fp is None or fp != self.fps.get(d):  # once per build and state of d
                    self._whole_digests[d] = (self.fps.get(d), whole(d))
                for c, h in self._whole_digests[d][1].items():
                    rows.setdefault(c, {})[d] = h
        snaps = self.course_snapshots(m.course_inputs)
        keys = {c: _hash(context, snaps.get(c, []), sorted(digests.get(c, {}).items()), sorted(rows.get(c, {}).items()))
                for c in set(snaps) | set(digests) | set(rows)}
        todo, removed = inc.plan(keys, {} if full else stored, context, None, root, full)
        part_names = {c: json.dumps(digests.get(c, {}), sort_keys=True) for c in todo}
        fp = "c:" + _hash(context, sorted(keys.items()))
        self.fps[n] = fp
        sources = json.dumps(sigs, sort_keys=True)
        extra = [inc.PartRow(inc.SOURCES, None, 0, _hash(sources), context, sources)]
        unchanged = not full and not todo and not removed and old_fp == fp and src.names == sources
        return PartPlan(keys, context, todo, removed, full, fp, unchanged, part_names, None, None, stored,
                        not full and bool(stored) and all(sp.context == context for sp in stored.values()),
                        None if full or len(todo) == len(keys) else todo, extra)

    def course_snapshots(self, tables: tuple[str, ...]) -> dict[str, list]:
        """Course -> its current snapshots (table, fingerprint, package date) of ``tables``."""
        out: dict[str, list] = {}
        if not tables or not catalog.exists(self.con, "_edx_snapshots"):
            return out
        for t, c, f, d in self.con.execute(
                "SELECT table_name, course_id, fingerprint, package_date FROM _edx_snapshots WHERE table_name IN "
                "(SELECT unnest(?::VARCHAR[])) ORDER BY 2, 1", [list(tables)]).fetchall():
            out.setdefault(c or "", []).append((t, f, d))
        return out

    def remember_sigs(self, n: str, kept: dict[str, inc.StoredPart], rows: list[inc.PartRow]) -> None:
        """The partitions' signatures as this build leaves them (what the models over them hash)."""
        sigs = {d: inc.signature(sp.fingerprint, sp.context, sp.names) for d, sp in kept.items()}
        for r in rows:
            sigs.setdefault(r.day, inc.signature(r.fingerprint, r.context, r.names))
        self.part_sigs[n] = sigs

    def event_source(self, name: str, days: list[str]) -> str | None:
        """``views.event_days_sql`` of event input ``name`` on ``days``, once per build: the username
        scan, the models over events and the PostgreSQL copy read the same dates."""
        key = (name, tuple(days))
        if key not in self._event_sources:
            self._event_sources[key] = views.event_days_sql(self.con, self.base, name, days) if self.base else None
        return self._event_sources[key]

    def name_days(self, days: list[str]) -> set[str]:
        """Those of ``days`` (being recomputed) with events attributed through usernames; one scan of
        just those dates' events per build."""
        if self._name_days is None or not set(days) <= self._name_checked:
            todo = sorted(set(days) - self._name_checked)
            scoped = None if len(todo) == len(self.days) else todo
            source = self.event_source("events", scoped) if scoped else None
            found = inc.username_days(self.con, scoped, source)
            self._name_days = (self._name_days or set()) | found
            self._name_checked |= set(todo)
        return self._name_days

    def _partition_plan(self, n: str) -> tuple[dict[str, str], dict[str, set[str]] | None,
                                               dict[str, set[str]] | None, str, str]:
        """(partition -> fingerprint, partition -> own source dates and -> the source dates it is
        computed from (None, None: over events), context, names).

        Over events: the event dates' fingerprints; the context holds the code, parameters and event
        columns; ``names`` the other inputs' fingerprints (recorded for username-attributed dates only).
        Over partitioned models: ``incremental.derived_parts`` of their partitions as this build left
        them; the context also holds the inputs' and the other models' fingerprints."""
        m = D.MODELS[n]
        events_in = [i for i in m.inputs if i in EVENT_TABLES]
        sources = [d for d in m.deps if D.MODELS[d].partition]
        if bool(events_in) == bool(sources):
            raise BuildError(f"model {n}: a partitioned model reads either events or partitioned models")
        base = (_code_version(), n, self.params.fingerprint() if m.uses_params else "")
        if events_in:
            context = _hash(*base, {i: sorted((self.columns.get(i) or {}).items()) for i in events_in})
            names = _hash({i: self.in_fp[i] for i in sorted(m.inputs) if i not in EVENT_TABLES})
            return self.days, None, None, context, names
        keys, members, reads = inc.derived_parts({s: self.part_sigs[s] for s in sources}, m.grain, m.cumulative)
        context = _hash(*base, m.grain, m.cumulative, {i: self.in_fp[i] for i in sorted(m.inputs)},
                        {d: self.fps[d] for d in m.deps if d not in sources})
        return keys, members, reads, context, ""


class _DuckRun(_Planner):
    """One DuckDB build: the current inputs' fingerprints, each model's current files, what was written."""

    def __init__(self, lake: Lake, con: duckdb.DuckDBPyConnection, params: D.Params, force: bool):
        super().__init__(con, params, force)
        self.lake = lake
        self.stored = _stored_models(con)
        self._ib = None
        self.sql_cache = sqlcache.SqlCache(sqlcache.cache_dir(lake.root))
        con.execute("SET python_enable_replacements = false")  # as ibis sets it: names are catalog names only
        self.fps.update({n: f for n, (_, f) in self.stored.items()})
        self.current: dict[str, list[str]] = {n: [str(lake.root / p)] for n, (p, _) in self.stored.items()}
        root = str(lake.root) + os.sep
        for n, ps in catalog.model_part_paths(con).items():
            if n in self.current and ps:
                self.current[n] = [root + p for p in ps]
        self.info: pa.Table | None = None
        self.new_paths: dict[str, tuple[Path, str, int, float]] = {}
        self.parts: dict[str, inc.PartsUpdate] = {}
        self._in_sql: dict[str, str] = {}
        self.base = str(Path(lake.root).resolve())  # as the catalog's views spell the store's place
        self.part_state: dict[str, dict[str, tuple[str, list[str]]]] = {}  # model -> part -> (signature, files)
        self.schema_path: dict[str, str] = {}
        self.scope: tuple[set[str], list[str]] | None = None  # (inputs and models, courses) _bind limits
        self._snapshot_paths: dict[str, list[tuple[str | None, str]]] | None = None  # table -> (course, path)

    @property
    def ib(self):
        """Ibis on the build's connection, made (and ibis imported) only when a model must be compiled."""
        if self._ib is None:
            import ibis

            self._ib = ibis.duckdb.from_connection(self.con)
        return self._ib

    def _bind(self, name: str, days: list[str] | None) -> None:
        """Point the TEMP VIEW ``__edx_in_<name>`` at the input or model ``name`` as it is now (event
        inputs and partitioned models limited to the dates ``days`` when given; models: their current
        files)."""
        if name == "course_info":
            self.con.register(PLACEHOLDER + name, self.course_info())
            return
        scoped = self.scope is not None and name in self.scope[0]
        if name in EVENT_TABLES:
            sql = self._input_sql(name) if days is None else self._event_days_sql(name, days)
        elif name in INPUTS:
            source = self._course_snapshots_sql(name, self.scope[1]) if scoped else None
            sql = self._input_sql(name) if source is None else input_sql(self.con, name, self.columns, source)
        else:
            if scoped and D.MODELS[name].grain == "course":
                days = self.scope[1]  # a model kept by course: the files of the courses computed only
            sql = f"SELECT * FROM read_parquet({views.sql_list(self._model_files(name, days))})"
        if scoped:
            sql = f"SELECT * FROM ({sql}) WHERE {inc.course_filter(self.scope[1])}"
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {q(PLACEHOLDER + name)} AS {sql}")

    def _course_snapshots_sql(self, name: str, courses: list[str]) -> str | None:
        """The catalog's view of package table ``name`` read from the snapshots of ``courses`` only (and
        any without a course), with the view's columns and types: a build of three courses out of two
        hundred opens their files, not every course's (``union_by_name`` reads every listed footer).
        None (read the view) when the table is no snapshot table or the files cannot be bound."""
        if self._snapshot_paths is None:
            self._snapshot_paths = {}
            if catalog.exists(self.con, "_edx_snapshots"):
                for t, c, p in self.con.execute("SELECT table_name, course_id, path FROM _edx_snapshots "
                                                "ORDER BY table_name, course_id, path").fetchall():
                    self._snapshot_paths.setdefault(t, []).append((c, p))
        view = self.columns.get(name)
        snaps = self._snapshot_paths.get(name)
        if not view or not snaps:
            return None
        want = set(courses)
        root = str(self.lake.root) + os.sep
        paths = [root + p for c, p in snaps if c is None or c in want]
        if not paths:
            return typed_empty(view)
        scan = f"read_parquet({views.sql_list(paths)}, union_by_name=true)"
        try:
            have = {d[0] for d in self.con.execute(f"SELECT * FROM {scan} LIMIT 0").description}
        except duckdb.Error:
            return None
        return "SELECT " + ", ".join((f"CAST({q(c)} AS {t})" if c in have else f"CAST(NULL AS {t})") + f" AS {q(c)}"
                                     for c, t in view.items()) + f" FROM {scan}"

    def _model_files(self, name: str, days: list[str] | None) -> list[str]:
        """The current files of model ``name`` (``<model>__upto``: of that model), only those of the
        dates ``days`` when given and the model is kept by partition (its schema file if none)."""
        name = name.removesuffix(D.UPTO)
        parts = self.part_state.get(name)
        if days is None or parts is None:
            return self.current[name]
        return sorted(f for d in days if d in parts for f in parts[d][1]) or [self.schema_path[name]]

    def _event_days_sql(self, name: str, days: list[str]) -> str:
        """Event input ``name`` on the dates ``days``, reading only those dates' parts where the
        catalog's views allow it (``views.event_days_sql``), else the whole view filtered."""
        source = self.event_source(name, days)
        sql = self._input_sql(name) if source is None else input_sql(self.con, name, self.columns, source)
        return f"SELECT * FROM ({sql}) WHERE {inc.day_filter(days)}"

    def _input_sql(self, name: str) -> str:
        """``input_sql`` of an input, made once per build (the catalog does not change during one)."""
        if name not in self._in_sql:
            self._in_sql[name] = input_sql(self.con, name, self.columns)
        return self._in_sql[name]

    def model_sql(self, n: str, days: list[str] | None = None, upto_days: list[str] | None = None) -> str:
        """The SQL of model ``n`` over the placeholders, which it binds: from the cache when its key is
        known (no ibis), else compiled (and kept). ``upto_days``: what a cumulative model's
        ``<dep>__upto`` placeholders read (definitions.Tables.upto)."""
        m = D.MODELS[n]
        schemas = []
        for name in _placeholders(m):
            self._bind(name, upto_days if name.endswith(D.UPTO) else days)
            rel = self.con.sql(f"SELECT * FROM {q(PLACEHOLDER + name)}")
            schemas.append([name, [[c, str(t)] for c, t in zip(rel.columns, rel.types)]])
        key = sqlcache.make_key(_code_version(), n, self.params.fingerprint() if m.uses_params else "", schemas)
        entry = self.sql_cache.get(key)
        if entry is not None:
            return entry.render(self.params.built_at)
        sql, entry = self._compile(n, days, upto_days)
        if entry is not None:
            self.sql_cache.put(key, entry)
        return sql

    def _compile(self, n: str, days: list[str] | None,
                 upto_days: list[str] | None = None) -> tuple[str, sqlcache.Entry | None]:
        """Compile model ``n`` against the placeholders: (SQL for this build, cache entry or None).

        A model with ``uses_built_at`` is compiled with the real value and both sentinels; it is cached
        only when the sentinels' texts differ by one literal (``sqlcache.template``) and the template
        gives back the real compile exactly. A model reading a table it does not declare is not cached
        (that table's schema is not in the key)."""
        import dataclasses

        m = D.MODELS[n]
        declared = set(_placeholders(m))
        read: set[str] = set()

        def get(name: str):
            read.add(name)
            if name not in declared:
                self._bind(name, upto_days if name.endswith(D.UPTO) else days)
            return self.ib.sql(f"SELECT * FROM {q(PLACEHOLDER + name)}")

        def compile_with(params: D.Params) -> str:
            sqlcache.stats.compiles += 1
            return str(self.ib.compile(m.build(D.Tables(get, upto=True), params)))

        sql = compile_with(self.params)
        entry: sqlcache.Entry | None = sqlcache.Entry(sql)
        if m.uses_built_at:
            a, b = (compile_with(dataclasses.replace(self.params, built_at=s)) for s in sqlcache.SENTINELS)
            entry = sqlcache.template(a, b)
            if entry is not None and entry.render(self.params.built_at) != sql:
                entry = None
        return sql, (entry if read <= declared else None)

    def course_info(self, entries: list[CourseEntry] | None = None) -> pa.Table:
        if self.info is None:
            self.info = course_info(self.con, entries or [], self._event_courses())
            self.in_fp["course_info"] = _hash(self.info.to_pylist())
        return self.info

    def _event_courses(self) -> set[str] | None:
        """Courses the events' context names, from ``course_month`` (a dozen files a year) or else
        ``course_day`` (when built: they are, before ``courses``)."""
        files = self.current.get("course_month") or self.current.get("course_day")
        if not files:
            return None
        return {r[0] for r in self.con.execute(
            f"SELECT DISTINCT course_id FROM read_parquet({views.sql_list(files)}) WHERE nevents_context > 0"
        ).fetchall()}

    def build_whole(self, n: str, entries: list[CourseEntry]) -> ModelResult:
        if "course_info" in D.all_inputs(n):
            self.course_info(entries)
        self.fps[n] = self.whole_fp(n)
        old = self.stored.get(n)
        if not self.force and old and old[1] == self.fps[n] and (self.lake.root / old[0]).exists():
            return ModelResult(n, "unchanged", -1, 0.0)
        s0 = time.perf_counter()
        with _PeakRSS() as mem:
            path, rows = self.write_whole(n)
        r = ModelResult(n, "built", rows, time.perf_counter() - s0, mem.peak / 2**20)
        self.new_paths[n] = (path, self.fps[n], rows, r.seconds)
        self.current[n] = [str(path)]
        return r

    def write_whole(self, n: str) -> tuple[Path, int]:
        """Compute model ``n`` whole into a new file: (its path, rows)."""
        d = self.lake.lake_dir / "models" / n
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{n}-{uuid.uuid4().hex[:12]}.parquet"
        sql = self.model_sql(n)
        write_atomic(path, lambda tmp: self.con.execute(
            f"COPY ({sql}) TO {catalog.sql_str(str(tmp))} (FORMAT parquet, COMPRESSION zstd)"))
        return path, self.con.execute(f"SELECT count(*) FROM read_parquet({catalog.sql_str(str(path))})").fetchone()[0]

    def build_partitioned(self, n: str) -> ModelResult:
        """Recompute the changed partitions of a partitioned model (all of them when forced): the
        changed event dates of a model over events, the partitions over changed source dates of a
        model over partitioned models (models/incremental.py)."""
        root = self.lake.root
        old = self.stored.get(n)
        old_fp = old[1] if old and (root / old[0]).exists() else None
        by_course = D.MODELS[n].grain == "course"
        if by_course:
            plan = self.plan_courses(n, inc.stored_parts(self.con, n), old_fp, root, self.part_digests,
                                     self.whole_digests)
        else:
            plan = self.plan_partitioned(n, inc.stored_parts(self.con, n), old_fp, root)
        if plan.unchanged:
            self._remember(n, plan.stored, [], root / old[0])
            return ModelResult(n, "unchanged", -1, 0.0)
        s0 = time.perf_counter()
        with _PeakRSS() as mem:
            write = self.write_courses if by_course else self.write_partitions
            written, schema = write(n, plan, old[0] if old and plan.same_schema else None)
        rows = plan.part_rows(written)
        self.parts[n] = inc.PartsUpdate(plan.replaced(), rows + plan.extra)
        keep = plan.kept()
        self._remember(n, keep, rows, schema)
        total = sum(sp.rows for sp in keep.values()) + sum(r.rows for r in rows)
        r = ModelResult(n, "built", total, time.perf_counter() - s0, mem.peak / 2**20)
        r.days = len(plan.todo)
        self.new_paths[n] = (schema, plan.fp, total, r.seconds)
        return r

    def write_partitions(self, n: str, plan: PartPlan, schema: str | None) -> tuple[dict, Path]:
        """Compute the partitions ``plan.todo`` of model ``n`` into new files: (partition -> [(path, rows)],
        the schema file: ``schema`` when it still exists)."""
        sql = self.model_sql(n, plan.src_days, plan.upto_days)
        root = self.lake.root
        written = inc.write_parts(self.con, sql, D.MODELS[n].partition, n, root,
                                  self.lake.lake_dir / "model_parts" / n) if plan.todo else {}
        return written, self._schema_file(n, sql, schema)

    def write_courses(self, n: str, plan: PartPlan, schema: str | None) -> tuple[dict, Path]:
        """Compute the courses ``plan.todo`` of course-partitioned model ``n`` into new files, its
        per-course inputs and models limited to those courses (all of them when ``plan.courses`` is None)."""
        m = D.MODELS[n]
        if plan.courses is not None:
            self.scope = (set(m.course_inputs) | set(m.deps), plan.courses)
        try:
            sql = self.model_sql(n)
        finally:
            self.scope = None
        if plan.courses is not None:
            sql = f"SELECT * FROM ({sql}) WHERE {inc.course_filter(plan.courses)}"
        written = inc.write_parts(self.con, sql, m.partition, n, self.lake.root,
                                  self.lake.lake_dir / "model_parts" / n, hashed=True) if plan.todo else {}
        return written, self._schema_file(n, sql, schema)

    def part_digests(self, keys: list[str]) -> dict[str, dict[str, str]]:
        """Source partition (``<model>|<part>``) -> course -> digest of the course's rows in it (row count
        and sum of row hashes), read from the partitions' files as this build left them."""
        out: dict[str, dict[str, str]] = {k: {} for k in keys}
        for dep, parts in _parts_by_model(keys).items():
            state = self.part_state[dep]
            files = [f for p in parts for f in state[p][1]]
            if files:
                col = q(D.MODELS[dep].partition)
                for p, c, h in self.con.execute(
                        f"SELECT coalesce(CAST({col} AS VARCHAR), ''), course_id, {_DIGEST} FROM "
                        f"read_parquet({views.sql_list(files)}) t WHERE course_id IS NOT NULL GROUP BY 1, 2").fetchall():
                    out[f"{dep}|{p}"][c] = h
        return out

    def whole_digests(self, dep: str) -> dict[str, str]:
        """Course -> digest of its rows in model ``dep`` (kept whole: ``courses``, one row a course)."""
        return dict(self.con.execute(f"SELECT course_id, {_DIGEST} FROM read_parquet({views.sql_list(self.current[dep])}) "
                                     f"t WHERE course_id IS NOT NULL GROUP BY 1").fetchall())

    def _remember(self, n: str, kept: dict[str, inc.StoredPart], rows: list[inc.PartRow], schema: Path) -> None:
        """A partitioned model's partitions as this build leaves them (what the models over it read)."""
        self.remember_sigs(n, kept, rows)
        root = str(self.lake.root) + os.sep  # string joins: thousands of partitions after a few years
        state = {d: (inc.signature(sp.fingerprint, sp.context, sp.names), [root + p for p in sp.paths])
                 for d, sp in kept.items()}
        for r in rows:
            sig, files = state.setdefault(r.day, (inc.signature(r.fingerprint, r.context, r.names), []))
            if r.path:
                files.append(root + r.path)
        self.part_state[n] = state
        self.schema_path[n] = str(schema)
        self.current[n] = sorted(f for _, fs in state.values() for f in fs) or [str(schema)]

    def _schema_file(self, n: str, sql: str, reuse: str | None) -> Path:
        """The zero-row file giving a partitioned model's schema: the recorded one while the context
        (code, parameters, event columns) is the same, else a new one."""
        if reuse and (self.lake.root / reuse).exists():
            return self.lake.root / reuse
        schema = self.lake.lake_dir / "models" / n / f"{n}-{uuid.uuid4().hex[:12]}.parquet"
        schema.parent.mkdir(parents=True, exist_ok=True)
        return write_atomic(schema, lambda tmp: self.con.execute(
            f"COPY (SELECT * FROM ({sql}) LIMIT 0) TO {catalog.sql_str(str(tmp))} (FORMAT parquet)"))


def _parts_by_model(keys: list[str]) -> dict[str, list[str]]:
    """Source partitions (``<model>|<part>``) grouped by model."""
    by_model: dict[str, list[str]] = {}
    for k in keys:
        dep, part = k.split("|", 1)
        by_model.setdefault(dep, []).append(part)
    return by_model


# A course's rows in a model, in one value: their count and the sum of their hashes (whole rows).
_DIGEST = "count(*) || ':' || CAST(sum(CAST(hash(t) AS HUGEINT)) AS VARCHAR)"


def _placeholders(m: D.Model) -> list[str]:
    """What model ``m``'s SQL reads: its inputs, its models, and for a cumulative model its partitioned
    models up to the partitions computed (``<dep>__upto``)."""
    upto = [d + D.UPTO for d in m.deps if m.cumulative and D.MODELS[d].partition]
    return [*m.inputs, *m.deps, *upto]


def confirmed_inputs(con: duckdb.DuckDBPyConnection, results: list[ModelResult],
                     in_fp: dict[str, str]) -> list[list[str]]:
    """Rows of ``_edx_model_inputs`` ([model, input, fingerprint]) to record for the models a build left
    unchanged although an input they read changed since they were recorded.

    In practice only a model kept by event date is so (the other kinds hash their inputs' fingerprints
    into the one that leaves them unchanged): its dates are recomputed for a change of ``auth_user``
    only when they have events attributed through a username alone (``incremental.username_days``);
    the other dates never read it (``definitions.event_users``), so their partitions are what a full
    build would give and the build keeps them. The model then stays as it was, but it is as current as
    one just built: recording the inputs it was checked against keeps ``stale_models`` from calling it
    (and every model over it) older than its data until a ``--full`` build. ``course_info`` is not
    data (``_NOT_DATA``) and is not recorded here. No row when nothing changed: a build with nothing
    to do writes nothing."""
    kept = [r.name for r in results if r.status == "unchanged"]
    if not kept:
        return []
    try:
        recorded = {(m, i): f for m, i, f in con.execute(
            "SELECT model, input, fingerprint FROM _edx_model_inputs WHERE model IN (SELECT unnest(?::VARCHAR[]))",
            [kept]).fetchall()}
    except duckdb.CatalogException:
        return []
    return [[n, i, in_fp[i]] for n in kept for i in sorted(D.MODELS[n].inputs)
            if i in in_fp and i not in _NOT_DATA and recorded.get((n, i)) != in_fp[i]]


def record_models(lake: Lake, new_paths: dict[str, tuple[Path, str, int, float]], params: D.Params,
                  in_fp: dict[str, str], parts: dict[str, inc.PartsUpdate] | None = None,
                  collect: bool = False, confirmed: list[list[str]] | None = None) -> None:
    """Make freshly written model files current, with what they were built from, in one transaction
    (DuckDB and Spark builds alike). ``parts``: the date partitions replaced and written for the
    models kept by partition; a model written whole (Spark) loses any partitions it had. ``collect``:
    then delete the files nobody references any more, through the same connection. ``confirmed``:
    input fingerprints of models kept as they were (``confirmed_inputs``), recorded in the same
    transaction."""
    parts = parts or {}
    names = list(new_paths)
    models = [[n, lake.rel(path), fp, rows, secs, params.fingerprint(), params.built_at]
              for n, (path, fp, rows, secs) in new_paths.items()]
    # what each model was built from, so that `stale_models` can tell when its data moved on
    inputs = [[n, i, in_fp[i]] for n in names for i in sorted(D.MODELS[n].inputs)]
    whole = [n for n in names if parts.get(n) is None]  # its partitions (if it had any) are gone
    replaced = [[n, d] for n in names if parts.get(n) is not None for d in parts[n].replaced]
    part_rows = [[n, r.day, r.path, r.rows, r.fingerprint, r.context, r.names]
                 for n in names if parts.get(n) is not None for r in parts[n].rows]
    with lake.connect() as con:
        catalog.ensure(con, catalog.MODELS)
        con.execute("BEGIN TRANSACTION")
        # a few statements for the whole build, not several per model (each costs about a millisecond)
        con.execute("DELETE FROM _edx_models WHERE name IN (SELECT unnest(?::VARCHAR[]))", [names])
        _insert(con, "_edx_models", models)
        con.execute("DELETE FROM _edx_model_inputs WHERE model IN (SELECT unnest(?::VARCHAR[]))", [names])
        _insert(con, "_edx_model_inputs", inputs)
        if confirmed:
            con.execute("DELETE FROM _edx_model_inputs USING (SELECT unnest(?::VARCHAR[]) AS m, unnest(?::VARCHAR[]) "
                        "AS i) r WHERE model = r.m AND input = r.i", [[m for m, _, _ in confirmed],
                                                                     [i for _, i, _ in confirmed]])
            _insert(con, "_edx_model_inputs", confirmed)
        con.execute("DELETE FROM _edx_model_parts WHERE model IN (SELECT unnest(?::VARCHAR[]))", [whole])
        if replaced:
            con.execute("DELETE FROM _edx_model_parts USING (SELECT unnest(?::VARCHAR[]) AS m, unnest(?::VARCHAR[]) "
                        "AS p) r WHERE model = r.m AND part = r.p", [[m for m, _ in replaced], [d for _, d in replaced]])
        _insert(con, "_edx_model_parts", part_rows)
        views.model_views(con, lake.root)
        con.execute("COMMIT")
        if collect:
            lake.collect_garbage(con)


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[list]) -> None:
    """``rows`` into ``table`` in one statement (values in the table's column order): one list per
    column, unnested side by side, so the statement's size does not grow with the rows."""
    if not rows:
        return
    types = [t for (t,) in con.execute("SELECT data_type FROM duckdb_columns() WHERE table_name = ? "
                                       "AND schema_name = current_schema() ORDER BY column_index", [table]).fetchall()]
    cols = ", ".join(f"unnest(?::{t}[])" for t in types)
    con.execute(f"INSERT INTO {table} SELECT {cols}", [list(c) for c in zip(*rows)])


# The registry is read from wherever the caller points (--registry, ./courses.toml, the config): it is
# not data that arrives, so a model is never called stale because another registry file is in view.
_NOT_DATA = frozenset({"course_info"})


def stale_models(lake: Lake) -> list[str]:
    """Built models whose input data changed after they were built (in dependency order).

    Compares the inputs' fingerprints recorded at build time with the store's current ones; a
    model that reads a stale model is stale too. Models built before inputs were recorded, and
    models never built, are not listed (``read_model`` reports those)."""
    if not lake.catalog_path.exists():
        return []
    with lake.connect(read_only=True) as con:
        try:
            recorded: dict[str, dict[str, str]] = {}
            for m, i, f in con.execute("SELECT model, input, fingerprint FROM _edx_model_inputs").fetchall():
                recorded.setdefault(m, {})[i] = f
            built = {n for (n,) in con.execute("SELECT name FROM _edx_models").fetchall()}
        except duckdb.CatalogException:
            return []
        wanted = {i for fps in recorded.values() for i in fps} - _NOT_DATA
        current = input_fingerprints(con, None, only=wanted)
    stale: list[str] = []
    for n in D.order([n for n in built if n in D.MODELS]):
        rec = recorded.get(n)
        changed = rec is not None and any(current.get(i) != f for i, f in rec.items() if i not in _NOT_DATA)
        if changed or any(d in stale for d in D.MODELS[n].deps):
            stale.append(n)
    return [n for n in stale if n in built]


def stale_models_postgres(lake: Lake, url: str) -> list[str]:
    """The models built in PostgreSQL ``url`` whose inputs changed in the data directory since they were copied
    (``stale_models`` for a PostgreSQL store): a package table's fingerprint (with what a scrub made of it,
    ``scrub_marks``) against ``edx_models._edx_inputs``, an event input's dates against ``_edx_input_days``."""
    import psycopg

    if not lake.catalog_path.exists():
        return []
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as pg:
        try:
            built = {r[0] for r in pg.execute(f"SELECT name FROM {PG_MODELS}._edx_models").fetchall()}
            copied = dict(pg.execute(f"SELECT name, fingerprint FROM {PG_MODELS}._edx_inputs").fetchall())
            days: dict[str, dict[str, str]] = {}
            for n, d, f in pg.execute(f"SELECT name, day, fingerprint FROM {PG_MODELS}._edx_input_days").fetchall():
                days.setdefault(n, {})[d] = f
        except psycopg.errors.UndefinedTable:
            return []
    with lake.connect(read_only=True) as con:
        now_days, columns = inc.event_days(con), all_catalog_columns(con)
        current = input_fingerprints(con, None, only=set(copied) - _NOT_DATA, days=now_days, columns=columns)
        for n, mark in scrub_marks(con).items():
            if n in current:
                current[n] = _hash(current[n], mark)
    changed = set()
    for n, key in copied.items():
        if n in _NOT_DATA:
            continue
        if n in EVENT_TABLES:
            if key != "days:" + _hash(sorted((columns.get(n) or {}).items())) or days.get(n, {}) != now_days:
                changed.add(n)
        elif current.get(n) != key:
            changed.add(n)
    return [n for n in D.order([n for n in built if n in D.MODELS]) if set(D.all_inputs(n)) & changed]


def stale_warning(lake: Lake, names: list[str] | None = None, store: str | None = None) -> str | None:
    """One line for a report, an export or `sql` when (some of) ``names`` are older than their data (in the
    PostgreSQL ``store`` when given)."""
    try:
        stale = stale_models_postgres(lake, store) if store else stale_models(lake)
    except Exception:  # a warning only: a store that cannot be read is the command's own error to report
        interrupts.check()
        return None
    if names is not None:
        stale = [n for n in stale if n in names]
    if not stale:
        return None
    shown = ", ".join(stale[:4]) + (f" and {len(stale) - 4} more" if len(stale) > 4 else "")
    how = "`edx-engine build --store ...`" if store else "`edx-engine build`"
    return f"model(s) {shown} are older than the data they are computed from: run {how} to refresh them"


# --- PostgreSQL --------------------------------------------------------------------------------------------------

def _load_postgres_extension(con: duckdb.DuckDBPyConnection) -> None:
    """DuckDB's postgres extension: the file of the locked wheel ``duckdb-extension-postgres-scanner``
    first (0.15 s, its signature checked), else one that DuckDB's own ``INSTALL`` put in its extension
    folder. Asking DuckDB by name first cost 0.5 s per build when it had none of its own."""
    try:
        base = importlib.resources.files("duckdb_extension_postgres_scanner")
    except ModuleNotFoundError:
        base = None
    f = None if base is None else base / "extensions" / f"v{duckdb.__version__}" / "postgres_scanner.duckdb_extension"
    if f is not None and Path(str(f)).exists():
        con.execute(f"LOAD {catalog.sql_str(str(f))}")
        return
    try:
        con.execute("LOAD postgres_scanner")
    except duckdb.Error:
        if base is None:
            raise BuildError("PostgreSQL stores need DuckDB's postgres extension: "
                             f"pip install duckdb-extension-postgres-scanner=={duckdb.__version__}") from None
        raise BuildError(f"postgres extension for DuckDB {duckdb.__version__} not found in {base}") from None


def build_postgres(lake: Lake, url: str, entries: list[CourseEntry], params: D.Params,
                   names: list[str] | None = None, force: bool = False,
                   on_model: Callable[[ModelResult], None] | None = None, take_over: bool = False) -> BuildResult:
    """Build the changed models in PostgreSQL (see the module docstring): the inputs they read are
    copied first (an event input: only its changed dates), then each model is rebuilt in one
    transaction, a partitioned model only in its changed partitions (the plan of the DuckDB build).

    A database holds the models of one data directory (its ``store_id``, recorded in ``edx_models._edx_store``
    by the first build that completes): a build from another one stops with one line, unless ``take_over``
    (then every model is copied and rebuilt, as with ``force`` and whatever ``names`` says, and the database is
    this store's from then on). The first build after an ``edx-engine scrub`` refreshes everything the database
    holds, whatever ``names`` says (`_build_postgres`): no copy made before the scrub is left."""
    import psycopg

    if not lake.catalog_path.exists():
        raise BuildError(f"no store at {lake.root} (run `edx-engine import` first)")
    t0 = time.perf_counter()
    res = BuildResult(store=mask_store(url))
    try:
        pg = psycopg.connect(url, autocommit=True)
    except psycopg.Error as exc:
        raise BuildError(f"cannot connect to PostgreSQL {mask_store(url)}: {_pg_message(exc, url)}") from None
    try:
        with pg, lake.writer():
            if not pg.execute("SELECT pg_try_advisory_lock(%s)", [PG_BUILD_LOCK]).fetchone()[0]:
                raise BuildError(f"another build is writing into PostgreSQL {mask_store(url)} (from this or another "
                                 f"data directory or machine): run this one again when it has finished")
            try:
                store_id = _store_id(lake)
                _pg_bookkeeping(pg)
                other = _pg_owner(pg, store_id)
                if other and not take_over:
                    raise BuildError(f"PostgreSQL {mask_store(url)} holds the models of another data directory "
                                     f"({other}): this build would replace them. Build into another database, or "
                                     f"run `edx-engine build --store ... --take-over` once (`run` has no such "
                                     f"option: replacing them is a decision, not a daily step) to replace them "
                                     f"with this data directory's")
                scrubbed = _build_postgres(lake, pg, url, entries, params, None if other else names,
                                           force or bool(other), on_model, res)
                _pg_claim(pg, lake, store_id, scrubbed)
            finally:
                # released here, not by closing the connection: the server ends a closed session a moment
                # later, and a build started right after this one found the lock still held (a CI run)
                with contextlib.suppress(psycopg.Error):
                    pg.execute("SELECT pg_advisory_unlock(%s)", [PG_BUILD_LOCK])
    except psycopg.errors.InsufficientPrivilege as exc:
        raise BuildError(f"PostgreSQL {mask_store(url)} refused: {_pg_message(exc, url)} (the role needs CREATE on "
                         f"the database, or schemas {PG_RAW} and {PG_MODELS} it may create tables in, made for it "
                         f"by their owner; docs/scale.md)") from None
    except (psycopg.Error, duckdb.Error) as exc:
        interrupts.check()  # Ctrl-C that DuckDB or the driver reported as an error: exit 130, not a failed build
        raise BuildError(f"the build in PostgreSQL {mask_store(url)} stopped: {_pg_message(exc, url)}") from None
    res.seconds = time.perf_counter() - t0
    return res


def _pg_message(exc: BaseException, url: str) -> str:
    """A driver's error in one line, without the store's password (`hide_store`)."""
    text = " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip()) or type(exc).__name__
    return hide_store(text, url)


def _build_postgres(lake: Lake, pg, url: str, entries: list[CourseEntry], params: D.Params,
                    names: list[str] | None, force: bool, on_model, res: BuildResult) -> str:
    """The body of `build_postgres` on an open connection: driver errors reach it as one line. Builds ``names``
    (and what they need; None: every model); when the data directory was scrubbed since the database's last
    complete build (`scrub_state` against ``_edx_store``), also every model the database holds and every input
    copied into ``edx_raw``: the copies made before the scrub (usernames in ``edx_raw.auth_user`` and in the
    models over it) are replaced by this build, not by some later full one. Returns the scrub state built from."""
    with lake.connect(read_only=True, fresh=True) as con:  # it loads the postgres extension
        con.execute("SET TimeZone = 'UTC'")
        scrubbed = scrub_state(con)
        todo = D.order(names)
        needed = set().union(*(D.all_inputs(n) for n in todo))
        if names and scrubbed != _pg_store_value(pg, "scrub_state", ""):
            held = {r[0] for r in pg.execute(f"SELECT name FROM {PG_MODELS}._edx_models").fetchall()}
            todo = D.order(sorted(set(names) | (held & set(D.MODELS))))
            needed |= set().union(*(D.all_inputs(n) for n in todo)) | (_pg_tables(pg, PG_RAW) & set(INPUTS))
        c0 = time.perf_counter()
        run = _PgRun(lake.root, con, pg, params, force, course_info(con, entries))
        _pg_copy_inputs(con, pg, url, run, sorted(needed))
        res.copy_seconds = time.perf_counter() - c0
        for n in todo:
            m = D.MODELS[n]
            r = (run.build_whole(n) if not m.partition else run.build_courses(n) if m.grain == "course"
                 else run.build_partitioned(n))
            res.models.append(r)
            if on_model:
                on_model(r)
    return scrubbed


def scrub_state(con: duckdb.DuckDBPyConnection) -> str:
    """What ``edx-engine scrub`` has done to the data directory so far (every file it rewrote, package tables and
    events alike), in one value: "" when never scrubbed. Recorded in ``edx_models._edx_store`` by a complete
    PostgreSQL build, so the next one knows whether a scrub happened since."""
    try:
        n, h = con.execute("SELECT count(*), md5(coalesce(string_agg(path, '|' ORDER BY path), '')) "
                           "FROM _edx_scrub_log").fetchone()
    except duckdb.CatalogException:  # never scrubbed
        return ""
    return f"{n}:{h}" if n else ""


def _pg_store_value(pg, key: str, default: str | None = None) -> str | None:
    row = pg.execute(f"SELECT value FROM {PG_MODELS}._edx_store WHERE key = %s", [key]).fetchone()
    return default if row is None else row[0]


def _pg_bookkeeping(pg) -> None:
    """The schemas and the bookkeeping tables of a PostgreSQL store (``_edx_model_parts``: a partitioned
    model's partitions and what each was built from, as ``_edx_model_parts`` of the DuckDB catalog;
    ``_edx_input_days``: the event dates copied into an event input, with their fingerprints)."""
    have = {r[0] for r in pg.execute("SELECT nspname FROM pg_namespace WHERE nspname IN (%s, %s)",
                                     [PG_RAW, PG_MODELS]).fetchall()}
    for schema in (PG_RAW, PG_MODELS):  # only when missing: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database
        if schema not in have:
            pg.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    pg.execute(f"CREATE TABLE IF NOT EXISTS {PG_MODELS}._edx_models (name TEXT PRIMARY KEY, fingerprint TEXT, "
               f"rows BIGINT, seconds DOUBLE PRECISION, params TEXT, built_at TIMESTAMP)")
    pg.execute(f"CREATE TABLE IF NOT EXISTS {PG_MODELS}._edx_inputs (name TEXT PRIMARY KEY, fingerprint TEXT)")
    pg.execute(f"CREATE TABLE IF NOT EXISTS {PG_MODELS}._edx_store (key TEXT PRIMARY KEY, value TEXT)")
    pg.execute(f"CREATE TABLE IF NOT EXISTS {PG_MODELS}._edx_model_parts (model TEXT, part TEXT, rows BIGINT, "
               f"fingerprint TEXT, context TEXT, names TEXT, PRIMARY KEY (model, part))")
    pg.execute(f"CREATE TABLE IF NOT EXISTS {PG_MODELS}._edx_input_days (name TEXT, day TEXT, fingerprint TEXT, "
               f"PRIMARY KEY (name, day))")


def _store_id(lake: Lake) -> str:
    """The data directory's identity (``_edx_meta.store_id``, made at its first PostgreSQL build): it moves
    with the directory, which its path would not."""
    with lake.connect(read_only=True) as con:
        sid = catalog.get_meta(con, "store_id")
    if sid is None:
        sid = uuid.uuid4().hex
        with lake.connect() as con:
            catalog.set_meta(con, "store_id", sid)
    return sid


def _pg_owner(pg, store_id: str) -> str | None:
    """The data directory (path, machine) whose models the database holds, when it is not ``store_id``."""
    rec = dict(pg.execute(f"SELECT key, value FROM {PG_MODELS}._edx_store").fetchall())
    if rec.get("store_id") in (None, store_id):
        return None
    return f"{rec.get('data_dir', '?')} on {rec.get('host', '?')}, last built {rec.get('built_at', '?')}"


def _pg_claim(pg, lake: Lake, store_id: str, scrubbed: str) -> None:
    """Record this data directory as the one whose models the database holds (after a complete build), and the
    `scrub_state` its copies were made from."""
    import socket

    with pg.transaction():
        for k, v in (("store_id", store_id), ("data_dir", str(Path(lake.root).resolve())),
                     ("host", socket.gethostname()), ("built_at", time.strftime("%Y-%m-%d %H:%M:%S")),
                     ("scrub_state", scrubbed)):
            pg.execute(f"INSERT INTO {PG_MODELS}._edx_store VALUES (%s, %s) ON CONFLICT (key) DO UPDATE "
                       f"SET value = EXCLUDED.value", [k, v])


def _pg_tables(pg, schema: str) -> set[str]:
    return {r[0] for r in pg.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                                     [schema]).fetchall()}


def _pg_copy_inputs(con: duckdb.DuckDBPyConnection, pg, url: str, run: "_PgRun", needed: list[str]) -> None:
    """Copy the inputs the models read into ``edx_raw`` where they changed: a table whole, an event
    input by date (only the dates whose events changed since the last copy, unless its columns changed)."""
    stored = dict(pg.execute(f"SELECT name, fingerprint FROM {PG_MODELS}._edx_inputs").fetchall())
    raw = _pg_tables(pg, PG_RAW)
    whole, by_day = [], {}
    for n in needed:
        key = _event_copy_key(run, n) if n in EVENT_TABLES else run.in_fp[n]
        if run.force or stored.get(n) != key or n not in raw:
            whole.append((n, key))
        elif n in EVENT_TABLES:
            copied = dict(pg.execute(f"SELECT day, fingerprint FROM {PG_MODELS}._edx_input_days WHERE name = %s",
                                     [n]).fetchall())
            changed = [d for d, f in run.days.items() if copied.get(d) != f]
            gone = [d for d in copied if d not in run.days]
            if changed or gone:
                by_day[n] = (changed, gone)
    if not whole and not by_day:
        return
    for n, _ in whole:  # before anything is changed
        _refuse_dependants(pg, f"{PG_RAW}.{n}", f"input {n} is copied again")
    for n, (changed, gone) in by_day.items():  # forget first: a copy killed half-way is redone
        with pg.transaction():
            pg.execute(f"DELETE FROM {PG_MODELS}._edx_input_days WHERE name = %s AND day = ANY(%s)",
                       [n, changed + gone])
            pg.execute(f"DELETE FROM {PG_RAW}.{q(n)} WHERE {inc.day_filter(changed + gone)}")
    _load_postgres_extension(con)
    con.execute("SET enable_progress_bar = false")  # library code: no bar on the terminal of a long copy
    # PostgreSQL text cannot hold NUL (U+0000). The import removes it (ingest: events_parse.strip_nul, tsv,
    # documents); a store imported by an older version may still hold some, and one such value stopped the
    # whole copy: it is copied without them, as the import now stores it.
    con.execute("SET pg_null_byte_replacement = ''")
    con.execute(f"ATTACH {catalog.sql_str(url)} AS pgdb (TYPE postgres, READ_WRITE)")
    try:
        con.register("_course_info_arrow", run.info)
        for n, _ in whole:
            src = "SELECT * FROM _course_info_arrow" if n == "course_info" else input_sql(con, n, run.columns)
            con.execute(f"DROP TABLE IF EXISTS pgdb.{PG_RAW}.{q(n)}")
            con.execute(f"CREATE TABLE pgdb.{PG_RAW}.{q(n)} AS {src}")
        for n, (changed, _) in by_day.items():
            if changed:  # only those dates' parts read (event_days_sql), where the views allow it
                source = run.event_source(n, changed)
                con.execute(f"INSERT INTO pgdb.{PG_RAW}.{q(n)} SELECT * FROM "
                            f"({input_sql(con, n, run.columns, source)}) WHERE {inc.day_filter(changed)}")
    finally:
        con.execute("DETACH pgdb")
    for n, key in whole:
        if n in EVENT_TABLES:  # the models recomputing a few dates read them by this index
            pg.execute(f"CREATE INDEX IF NOT EXISTS {q(n + '_event_date')} ON {PG_RAW}.{q(n)} (event_date)")
        pg.execute(f"ANALYZE {PG_RAW}.{q(n)}")
        with pg.transaction():
            pg.execute(f"INSERT INTO {PG_MODELS}._edx_inputs VALUES (%s, %s) ON CONFLICT (name) DO UPDATE "
                       f"SET fingerprint = EXCLUDED.fingerprint", [n, key])
            if n in EVENT_TABLES:
                _pg_record_days(pg, n, run.days, replace=True)
    for n, (changed, _) in by_day.items():
        pg.execute(f"ANALYZE {PG_RAW}.{q(n)}")
        _pg_record_days(pg, n, {d: run.days[d] for d in changed})


def _pg_columns(pg, table: str) -> list[tuple[str, str, bool]]:
    """(name, type, NOT NULL) of each column of ``table``, in order: a table kept for a model must match its
    definition in all three (a NOT NULL the definition dropped would make its INSERT fail)."""
    return pg.execute("SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute "
                      "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                      [table]).fetchall()


def _pg_dependants(pg, table: str) -> list[str]:
    """The views (and materialized views) of the database that read ``table`` (schema.name), by name."""
    if pg.execute("SELECT to_regclass(%s)", [table]).fetchone()[0] is None:
        return []
    return [r[0] for r in pg.execute(
        "SELECT DISTINCT quote_ident(vn.nspname) || '.' || quote_ident(v.relname) FROM pg_depend d "
        "JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class "
        "JOIN pg_namespace vn ON vn.oid = v.relnamespace "
        "WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = %s::regclass AND v.oid <> d.refobjid "
        "ORDER BY 1", [table]).fetchall()]


def _refuse_dependants(pg, table: str, why: str) -> None:
    """Stop the build (one line) when views read ``table``, which the build must drop: ``why``."""
    views = _pg_dependants(pg, table)
    if views:
        shown = ", ".join(views[:5]) + (f" and {len(views) - 5} more" if len(views) > 5 else "")
        raise BuildError(f"{why} and the build must drop {table}, but view(s) {shown} depend on it: drop them "
                         f"(DROP VIEW ...) and create them again after the build (views on edx_models.* whose "
                         f"columns stay the same survive rebuilds; docs/scale.md)")


def scrub_marks(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Package table -> what ``edx-engine scrub`` made of its snapshots (the paths of the scrubbed files), for the
    tables some of whose snapshots the scrub rewrote. A PostgreSQL build adds it to the input's fingerprint, so
    the first build after a scrub copies the scrubbed table again and rebuilds the models over it (the copy in
    ``edx_raw`` and the models made from it would keep the names otherwise). The DuckDB models need no such
    mark: the scrub rewrites their files itself. Scrubbed event files need none either: a rewritten part has
    a new path, which is part of its date's fingerprint (``incremental.event_days``)."""
    try:
        rows = con.execute("SELECT s.table_name, list(s.path ORDER BY s.path) FROM _edx_snapshots s "
                           "WHERE s.path IN (SELECT path FROM _edx_scrub_log) GROUP BY 1").fetchall()
    except duckdb.CatalogException:  # never scrubbed
        return {}
    return {t: "scrubbed:" + _hash(paths) for t, paths in rows}


def _event_copy_key(run: "_PgRun", n: str) -> str:
    """What an event input copied by date must share with its last copy: its columns (else it is copied whole)."""
    return "days:" + _hash(sorted((run.columns.get(n) or {}).items()))


def _pg_record_days(pg, n: str, days: dict[str, str], replace: bool = False) -> None:
    with pg.cursor() as cur:
        if replace:
            cur.execute(f"DELETE FROM {PG_MODELS}._edx_input_days WHERE name = %s", [n])
        cur.executemany(f"INSERT INTO {PG_MODELS}._edx_input_days VALUES (%s, %s, %s) ON CONFLICT (name, day) "
                        f"DO UPDATE SET fingerprint = EXCLUDED.fingerprint", [(n, d, f) for d, f in days.items()])


class _PgRun(_Planner):
    """One PostgreSQL build: the shared plan (``_Planner``, over the DuckDB catalog ``con``), the models
    and partitions recorded in PostgreSQL (``pg``), each model replaced in one transaction."""

    def __init__(self, root: Path, con: duckdb.DuckDBPyConnection, pg, params: D.Params, force: bool,
                 info: pa.Table):
        super().__init__(con, params, force, info)
        import ibis

        self.root, self.pg, self.info = root, pg, info
        for n, mark in scrub_marks(con).items():  # the copies in edx_raw are not scrubbed in place: copy again
            if n in self.in_fp:
                self.in_fp[n] = _hash(self.in_fp[n], mark)
        self.base = str(Path(root).resolve())
        self.stored = dict(pg.execute(f"SELECT name, fingerprint FROM {PG_MODELS}._edx_models").fetchall())
        self.existing = _pg_tables(pg, PG_MODELS)
        self.fps.update(self.stored)
        pandas_guard.allow()  # ibis's PostgreSQL backend imports pandas when it connects
        self.ib = ibis.postgres.from_connection(pg)

    def table(self, name: str, parts: list[str] | None = None):
        """Input or model ``name`` (only the partitions ``parts`` when given: event dates of an event input)."""
        t = self.ib.table(name, database=PG_RAW if name in INPUTS else PG_MODELS)
        if parts is None:
            return t
        return t.filter(_in_parts(t["event_date" if name in INPUTS else D.MODELS[name].partition], parts))

    def sql(self, expr) -> str:
        """PostgreSQL SQL of an Ibis expression, as Ibis' own ``create_table`` renders it: its
        ``compile`` (sqlglot with copy=False) drops the cast to double of an integer division."""
        return self.ib.compiler.to_sqlglot(expr).sql(self.ib.dialect)

    def build_whole(self, n: str) -> ModelResult:
        self.fps[n] = self.whole_fp(n)
        if not self.force and self.stored.get(n) == self.fps[n] and n in self.existing:
            return ModelResult(n, "unchanged", -1, 0.0)
        s0 = time.perf_counter()
        expr = D.MODELS[n].build(D.Tables(self.table), self.params)
        t = f"{PG_MODELS}.{q(n)}"
        with self.pg.transaction():
            self._create(n, expr)
            self.pg.execute(f"INSERT INTO {t} {self.sql(expr)}")
            rows = self.pg.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            self.pg.execute(f"DELETE FROM {PG_MODELS}._edx_model_parts WHERE model = %s", [n])
            r = ModelResult(n, "built", rows, time.perf_counter() - s0)
            self._record(n, self.fps[n], rows, r.seconds)
        self.pg.execute(f"ANALYZE {t}")
        self.existing.add(n)
        return r

    def stored_parts(self, n: str) -> dict[str, inc.StoredPart]:
        """The recorded partitions of model ``n`` (``edx_models._edx_model_parts``; no files: rows only)."""
        return {d: inc.StoredPart(f, c, nm, [], int(k or 0)) for d, k, f, c, nm in self.pg.execute(
            f"SELECT part, rows, fingerprint, context, names FROM {PG_MODELS}._edx_model_parts WHERE model = %s",
            [n]).fetchall()}

    def build_partitioned(self, n: str) -> ModelResult:
        """Delete and insert the changed partitions of model ``n`` (all of them: drop and create) in one
        transaction, with their bookkeeping rows: a reader sees the model before or after, never half."""
        plan = self.plan_partitioned(n, self.stored_parts(n), self.stored.get(n) if n in self.existing else None,
                                     self.root)
        if plan.unchanged:
            self.remember_sigs(n, plan.stored, [])
            return ModelResult(n, "unchanged", -1, 0.0)
        s0 = time.perf_counter()
        m = D.MODELS[n]
        expr = m.build(D.Tables(partition_tables(self.table, plan), upto=True), self.params)
        col = q(m.partition)
        return self._replace_rows(n, plan, expr, s0, lambda parts: inc.part_filter(parts, m.partition),
                                  f"to_char({col}, 'YYYY-MM-DD')")

    def build_courses(self, n: str) -> ModelResult:
        """Recompute the changed courses of course-partitioned model ``n`` (the plan of the DuckDB build,
        ``_Planner.plan_courses``, over PostgreSQL's own digests), its per-course inputs and models limited
        to those courses: their rows deleted and inserted in one transaction with their bookkeeping rows
        and the ``SOURCES`` row (forced or first built: the table dropped and created)."""
        plan = self.plan_courses(n, self.stored_parts(n), self.stored.get(n) if n in self.existing else None,
                                 self.root, self.part_digests, self.whole_digests)
        if plan.unchanged:
            self.remember_sigs(n, plan.stored, [])
            return ModelResult(n, "unchanged", -1, 0.0)
        s0 = time.perf_counter()
        m = D.MODELS[n]
        scope = set(m.course_inputs) | set(m.deps)

        def get(name: str):
            t = self.table(name)
            return t.filter(t.course_id.isin(plan.courses)) if plan.courses is not None and name in scope else t

        expr = m.build(D.Tables(get), self.params)
        return self._replace_rows(n, plan, expr, s0, inc.course_filter, "course_id")

    def _replace_rows(self, n: str, plan: PartPlan, expr, s0: float, where: Callable[[list[str]], str],
                      key_sql: str) -> ModelResult:
        """The rows of ``expr`` in the recomputed partitions in place of those of the replaced ones, with
        their bookkeeping rows (and the plan's extra rows), in one transaction; the table made anew when
        ``_recreate`` says so. A reader sees the model before or after, never half. ``where``: the SQL
        condition of a list of partitions; ``key_sql``: a row's partition as text."""
        cols = ", ".join(q(c) for c in expr.schema().names)
        t = f"{PG_MODELS}.{q(n)}"
        with self.pg.transaction():
            if self._recreate(n, plan):
                if self._create(n, expr):
                    self.pg.execute(f"CREATE INDEX ON {t} ({q(D.MODELS[n].partition)})")
            else:
                self.pg.execute(f"DELETE FROM {t} WHERE {where(plan.replaced())}")
            counts: list[tuple[str | None, int]] = []
            if plan.todo:  # a full build too: only the planned partitions are inserted and recorded
                self.pg.execute(f"INSERT INTO {t} ({cols}) SELECT {cols} FROM ({self.sql(expr)}) AS _s "
                                f"WHERE {where(plan.todo)}")
                counts = self.pg.execute(f"SELECT {key_sql}, count(*) FROM {t} WHERE {where(plan.todo)} "
                                         f"GROUP BY 1").fetchall()
            rows = plan.part_rows({inc.NULL_DAY if k is None else k: [(None, c)] for k, c in counts})
            keep = plan.kept()
            total = sum(sp.rows for sp in keep.values()) + sum(r.rows for r in rows)
            r = ModelResult(n, "built", total, time.perf_counter() - s0)
            r.days = len(plan.todo)
            self._record_parts(n, plan, rows + plan.extra)
            self._record(n, plan.fp, total, r.seconds)
        self.pg.execute(f"ANALYZE {t}")
        self.existing.add(n)
        self.remember_sigs(n, keep, rows)
        return r

    def part_digests(self, keys: list[str]) -> dict[str, dict[str, str]]:
        """Source partition (``<model>|<part>``) -> course -> digest of the course's rows in it, read from
        the partitioned model's table as this build left it (``_DuckRun.part_digests`` on PostgreSQL)."""
        out: dict[str, dict[str, str]] = {k: {} for k in keys}
        for dep, parts in _parts_by_model(keys).items():
            col = D.MODELS[dep].partition
            for p, c, h in self._digests(
                    f"SELECT coalesce(to_char({q(col)}, 'YYYY-MM-DD'), ''), course_id, {_PG_DIGEST} FROM "
                    f"{PG_MODELS}.{q(dep)} t WHERE course_id IS NOT NULL AND {inc.part_filter(parts, col)} "
                    f"GROUP BY 1, 2"):
                out[f"{dep}|{p}"][c] = h
        return out

    def whole_digests(self, dep: str) -> dict[str, str]:
        """Course -> digest of its rows in model ``dep`` (kept whole: ``courses``, one row a course)."""
        return {c: h for c, h in self._digests(f"SELECT course_id, {_PG_DIGEST} FROM {PG_MODELS}.{q(dep)} t "
                                               f"WHERE course_id IS NOT NULL GROUP BY 1")}

    def _digests(self, sql: str) -> list[tuple]:
        """Rows of a digest query, the rows' text fixed whatever the session's settings (a client's PGTZ
        or DateStyle would otherwise change every digest and recompute every course)."""
        with self.pg.transaction():
            self.pg.execute("SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, MDY'; "
                            "SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 1")
            return self.pg.execute(sql).fetchall()

    def _recreate(self, n: str, plan: PartPlan) -> bool:
        """Whether partitioned model ``n``'s table is made anew: forced, first built, or every recorded partition
        replaced because the context changed (new definitions can change the columns: DuckDB's new schema file)."""
        return plan.full or n not in self.existing or not (plan.same_schema or plan.kept())

    def _create(self, n: str, expr) -> bool:
        """An empty table for model ``n`` with the column types of ``expr``, as Ibis' ``create_table`` makes it
        (PostgreSQL's own types of the SELECT would differ: sum(bigint) is numeric); True when it was made anew.
        A table that already has exactly those columns (names, types, NOT NULL) is emptied (TRUNCATE) rather than
        dropped: the views others built on it and the grants on it stay. Else it is dropped and created, and a view
        depending on it stops the build with one line naming the view (dropping it would destroy someone's work)."""
        import sqlglot as sg
        import sqlglot.expressions as sge

        defs = expr.schema().to_sqlglot_column_defs("postgres")
        target = f"{PG_MODELS}.{q(n)}"
        if self.pg.execute("SELECT to_regclass(%s)", [target]).fetchone()[0] is not None:
            self.pg.execute(f"CREATE TEMP TABLE _edx_new_shape ({', '.join(d.sql('postgres') for d in defs)})")
            same = _pg_columns(self.pg, "pg_temp._edx_new_shape") == _pg_columns(self.pg, target)
            self.pg.execute("DROP TABLE pg_temp._edx_new_shape")
            if same:
                self.pg.execute(f"TRUNCATE {target}")
                return False
            _refuse_dependants(self.pg, f"{PG_MODELS}.{n}", f"the columns of model {n} changed")
            self.pg.execute(f"DROP TABLE {target}")
        self.pg.execute(sge.Create(kind="TABLE", this=sge.Schema(this=sg.table(n, db=PG_MODELS, quoted=True),
                                                                 expressions=defs)).sql("postgres"))
        return True

    def _record_parts(self, n: str, plan: PartPlan, rows: list[inc.PartRow]) -> None:
        with self.pg.cursor() as cur:
            cur.execute(f"DELETE FROM {PG_MODELS}._edx_model_parts WHERE model = %s AND part = ANY(%s)",
                        [n, plan.replaced()])
            cur.executemany(f"INSERT INTO {PG_MODELS}._edx_model_parts VALUES (%s,%s,%s,%s,%s,%s)",
                            [(n, r.day, r.rows, r.fingerprint, r.context, r.names) for r in rows])

    def _record(self, n: str, fp: str, rows: int, seconds: float) -> None:
        self.pg.execute(f"INSERT INTO {PG_MODELS}._edx_models VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (name) DO "
                        f"UPDATE SET fingerprint=EXCLUDED.fingerprint, rows=EXCLUDED.rows, "
                        f"seconds=EXCLUDED.seconds, params=EXCLUDED.params, built_at=EXCLUDED.built_at",
                        [n, fp, rows, seconds, self.params.fingerprint(), self.params.built_at])


# A course's rows in a model on PostgreSQL, in one value: their count and the sum of 60 bits of the md5 of each
# whole row's text (bigint terms, a numeric sum). Compared only with digests taken on PostgreSQL.
_PG_DIGEST = "count(*) || ':' || sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint)"


def _in_parts(col, parts: list[str]):
    """Ibis condition: ``col`` (a date) is one of the partitions ``parts`` (``NULL_DAY``: NULL)."""
    import datetime as dt

    import ibis

    real = [dt.date.fromisoformat(d) for d in parts if d != inc.NULL_DAY]
    cond = col.isin(real) if real else ibis.literal(False)
    return cond | col.isnull() if inc.NULL_DAY in parts else cond


# --- reading models back --------------------------------------------------------------------------------------

def read_model(lake: Lake, name: str, store: str | None = None, course: str | None = None) -> pa.Table:
    """A built model as an Arrow table (optionally one course), from DuckDB or PostgreSQL."""
    if name not in D.MODELS:
        raise BuildError(f"unknown model {name!r}")
    if store:
        import ibis
        import psycopg

        try:
            with psycopg.connect(store, autocommit=True) as pg:
                pandas_guard.allow()  # ibis's PostgreSQL backend imports pandas when it connects
                ib = ibis.postgres.from_connection(pg)
                try:
                    t = ib.table(name, database=PG_MODELS)
                except Exception:
                    raise BuildError(f"model {name} is not built in {mask_store(store)} (run `edx-engine build "
                                     f"--store ...`)") from None
                if course is not None:
                    t = t.filter(t.course_id == course)
                return t.to_pyarrow()
        except psycopg.Error as exc:
            raise BuildError(f"cannot read from PostgreSQL {mask_store(store)}: {_pg_message(exc, store)}") from None
    if not lake.catalog_path.exists():
        raise BuildError(f"no store at {lake.root} (run `edx-engine import` first)")
    with lake.connect(read_only=True) as con:
        ok = con.execute("SELECT count(*) FROM duckdb_views() WHERE schema_name = 'models' AND view_name = ?",
                         [name]).fetchone()[0]
        if not ok:
            raise BuildError(f"model {name} is not built yet (run `edx-engine build`)")
        sql = f"SELECT * FROM models.{q(name)}"
        if course is not None:
            return con.execute(sql + " WHERE course_id = ?", [course]).to_arrow_table()
        return con.execute(sql).to_arrow_table()


def evaluate(lake: Lake, entries: list[CourseEntry], params: D.Params, name: str) -> pa.Table:
    """Compute one model on the DuckDB catalog without storing it (e.g. ``courses``): the models it
    reads are computed along with it, not read from the store."""
    if not lake.catalog_path.exists():
        raise BuildError(f"no store at {lake.root} (run `edx-engine import` first)")
    import ibis

    with lake.connect(read_only=True, fresh=True) as con:  # ibis sets global settings
        con.execute("SET TimeZone = 'UTC'")
        info = course_info(con, entries)
        ib = ibis.duckdb.from_connection(con)

        def get(n: str):
            if n == "course_info":
                return ibis.memtable(info)
            if n in INPUTS:
                return ib.sql(input_sql(con, n))
            return D.MODELS[n].build(tables, params)
        tables = D.Tables(get)
        return ib.to_pyarrow(D.MODELS[name].build(tables, params))
