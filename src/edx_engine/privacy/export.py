"""Shareable exports: pseudonymised research files and small-cell-suppressed public tables.

``export_table(lake, name, path, ...)`` reads a built model (``models.<name>``: masterfile,
person_course, ...) or an edX table of the store (auth_userprofile, certificates, ...) and
writes CSV or Parquet where

- every user-id column (user_id, student_id, author_id, auth_user.id, ...) holds the learner's
  keyed pseudonym instead of the id (``--anonymised``);
- every personal column is dropped: the registry's flags, the usual
  identifying names (username, email, ...), edX's own linkable ids (anonymous_user_id, hash_id,
  certificate uuids) and free text (studentmodule state);
- with ``--public``, an aggregated table goes through small-cell suppression (``PUBLIC_SPECS``);
  row-level tables cannot be public.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..store.catalog import sql_ident, sql_str
from ..store.lake import Lake
from ..outputs import OutputError, csv_ready, is_directory, output_file, write_atomically
from ..schemas import ADDED_COLUMNS, TABLES
from . import suppress as S
from .pseudonym import Pseudonymizer
from .scrub import DERIVED_PERSONAL, table_personal_columns

USER_ID_COLUMNS = ("user_id", "student_id", "author_id", "owner_id", "uid")
TABLE_USER_ID = {"auth_user": ("id",), "user_id_map": ("id",)}
ALWAYS_DROP = ("hash_id", "anonymous_user_id", "verify_uuid", "download_uuid")
EXPORT_DROP: dict[str, tuple[str, ...]] = {
    "courseware_studentmodule": ("state",),  # learners' answers: free text
    "auth_userprofile": ("id",),  # the profile id is a second user id
    "certificates_generatedcertificate": ("key",),
    "student_languageproficiency": ("user_profile_id",),
}
NOT_EXPORTABLE = {
    "events": "tracking logs keep user ids and free text inside their JSON; export models built from them",
    "quarantine": "rejected raw lines are personal data",
    "forum": "forum posts are personal free text; export forum_weekly (or other models) instead",
    "wiki_articlerevision": "wiki revisions are personal free text",
}
ROW_LEVEL_MODELS = ("person_course", "masterfile", "enrolment_report", "demographics", "learner_day")


def _course_summary(t: pa.Table, k: int) -> pa.Table:
    counts = [c for c in ("enrolled", "enrolled_active", "unenrolled", "active", "active_events", "explored",
                          "certificates_failed", "approved", "certified", "male", "female", "other_unknown")
              if c in t.column_names]
    return S.suppress(t, counts, k, row_sums=[("enrolled", ["male", "female", "other_unknown"]),
                                             ("enrolled", ["enrolled_active", "unenrolled"])])


def _general_report(t: pa.Table, k: int) -> pa.Table:
    counts = [c for c in ("total", "active", "approved", "certified", "failed", "male", "female", "other_unknown")
              if c in t.column_names]
    return S.suppress(t, counts, k, row_sums=[("total", ["male", "female", "other_unknown"])])


def _active_users(t: pa.Table, k: int) -> pa.Table:
    return S.suppress(t, ["enrolled", "active", "active_events"], k, column_totals=False)


def _per_course_time(count_cols: list[str], key: str, cat: str | None = None,
                     linked: dict[str, list[str]] | None = None):
    """Per course and period (and category): each count column protected on its own; ``linked``
    columns (posts, events) are hidden wherever the people count they bound is hidden."""
    def run(t: pa.Table, k: int) -> pa.Table:
        if not cat:
            cols = [c for c in count_cols if c in t.column_names]
            links = {p: [c for c in ls if c in t.column_names] for p, ls in (linked or {}).items()
                     if p in t.column_names}
            return S.suppress(t, cols, k, by=["course_id"], linked=links)
        out, names = t, []
        for c in count_cols:
            if c not in out.column_names:
                continue
            out = S.suppress_crosstab(out.drop_columns([S.SUPPRESSED_COLUMN])
                                      if S.SUPPRESSED_COLUMN in out.column_names else out,
                                      key, cat, c, k, by=["course_id"])
            names.append(out.column(S.SUPPRESSED_COLUMN).to_pylist())
        if names:  # name every hidden column of a row, not only the last one's
            merged = [";".join(x for x in parts if x) or None for parts in zip(*names)]
            out = out.set_column(out.column_names.index(S.SUPPRESSED_COLUMN), S.SUPPRESSED_COLUMN,
                                 pa.array(merged, pa.string()))
        return out
    return run


def _enrolment_daily(t: pa.Table, k: int) -> pa.Table:
    """``enrollments`` together with the public dashboard's weekly enrolments (a week is the sum of its
    days: ``suppress.suppress_enrolments``); activations and deactivations, which nothing else publishes,
    each as their own crosstab."""
    names: list[list[str | None]] = []
    if "enrollments" in t.column_names:
        t, _ = S.suppress_enrolments(t, k)
        names.append(t.column(S.SUPPRESSED_COLUMN).to_pylist())
        t = t.drop_columns([S.SUPPRESSED_COLUMN])
    out = _per_course_time(["activations", "deactivations"], "date", "mode")(t, k)
    if S.SUPPRESSED_COLUMN in out.column_names:
        names.append(out.column(S.SUPPRESSED_COLUMN).to_pylist())
    merged = [";".join(x for x in parts if x) or None for parts in zip(*names)] if names else [None] * out.num_rows
    col = pa.array(merged, pa.string())
    if S.SUPPRESSED_COLUMN in out.column_names:
        return out.set_column(out.column_names.index(S.SUPPRESSED_COLUMN), S.SUPPRESSED_COLUMN, col)
    return out.append_column(S.SUPPRESSED_COLUMN, col)


def _together(name: str) -> pa.Table:
    """The course tables have no rule of their own: suppressed apart they hid different cells of the same
    facts and gave hidden ones back together. A library caller gets this error, not a weaker table."""
    raise ValueError(f"the public {name} is suppressed together with the other course tables: "
                     f"call privacy.export.public_table({name!r}, table, k, read=...) or public_course_tables()")


# Aggregated models that may be published, and how each is suppressed on its own (outputs call
# ``public_table``: the course tables are suppressed together, see COURSE_TABLES).
PUBLIC_SPECS: dict[str, Callable[[pa.Table, int], pa.Table]] = {
    "course_summary": lambda t, k: _together("course_summary"),
    "general_report": lambda t, k: _together("general_report"),
    "course_breakdown": lambda t, k: _together("course_breakdown"),
    "active_users": _active_users,
    "enrolment_daily": lambda t, k: _enrolment_daily(t, k),
    "activity_daily": _per_course_time(["active_learners"], "date", linked={"active_learners": ["nevents"]}),
    "activity_weekly": _per_course_time(["active_learners"], "week", linked={"active_learners": ["nevents"]}),
    "forum_weekly": _per_course_time(["authors"], "week",
                                     linked={"authors": ["posts", "threads", "comments", "responses"]}),
    "user_location_summary": lambda t, k: S.suppress(
        t, ["learners", "from_profile", "from_ip", "not_locatable"], k,
        row_sums=[("learners", ["from_profile", "from_ip", "not_locatable"])]),
}


# Tables that publish the same facts (a course's enrolment, its learners by gender, age bands as sums of
# years of birth): their public versions all come from ONE suppression (``suppress.suppress_course_tables``)
# of course_summary and course_breakdown, whichever of them is published and by which path.
COURSE_TABLES = ("course_summary", "general_report", "course_breakdown")


def public_course_tables(summary: pa.Table, breakdown: pa.Table, k: int,
                         general: pa.Table | None = None) -> dict[str, pa.Table]:
    """The public course_summary, course_breakdown, age bands (and general_report, given the model)."""
    s, b, ages = S.suppress_course_tables(summary, breakdown, k)
    out = {"course_summary": s, "course_breakdown": b, "age_bands": ages}
    if general is not None:
        out["general_report"] = S.general_from_summary(general, s)
    return out


ROW_ORDER = ("course_id", "date", "week", "country", "dimension", "value", "user_id", "mode", "video_id",
             "problem_id")


def sorted_rows(t: pa.Table) -> pa.Table:
    """``t`` in the order reports and exports write (by these key columns where present)."""
    keys = [c for c in ROW_ORDER if c in t.column_names]
    return t.sort_by([(k, "ascending") for k in keys]) if keys and t.num_rows else t


def private_order(columns: list[str], drop: list[str], ids: list[str], pz: Pseudonymizer) -> tuple[str, list[str]]:
    """ORDER BY of a pseudonymised export, and its parameters: the exports' key columns, the user ids by a
    keyed hash (``Pseudonymizer.order_key``), then every other column that is written. Deterministic (the
    store's row order is not fixed), and it tells nothing about the ids or the dropped columns: in the
    store's order, a table file's rows came by user id, and their ranks matched pseudonyms to learners."""
    q = sql_ident
    kept = [c for c in columns if c not in drop]
    keys = [c for c in ROW_ORDER if c in kept and c not in ids]
    # md5 keyed by a secret prefix: its collisions do not matter for an order, and it costs a quarter of sha256
    parts = [q(c) for c in keys] + [f"md5_number(? || coalesce(CAST({q(c)} AS VARCHAR), ''))" for c in ids]
    parts += [q(c) for c in kept if c not in keys and c not in ids]
    return ", ".join(parts) or "1", [pz.order_key] * len(ids)


def public_table(name: str, table: pa.Table, k: int, read: Callable[[str], pa.Table] | None = None) -> pa.Table:
    """``table`` (model ``name``) as it may be published. Every public output goes through here.

    course_summary, general_report and course_breakdown need each other (``read(model)`` gives the
    other models' whole tables): they are suppressed together, so every output hides the same cells.
    Other models: their ``PUBLIC_SPECS`` rule."""
    if name in COURSE_TABLES:
        if read is None:
            raise ValueError(f"the public {name} is suppressed together with "
                             f"{', '.join(m for m in ('course_summary', 'course_breakdown') if m != name)}: "
                             "give read=")
        summary = read("course_summary") if name != "course_summary" else table
        breakdown = read("course_breakdown") if name != "course_breakdown" else table
        return public_course_tables(summary, breakdown, k, table if name == "general_report" else None)[name]
    return PUBLIC_SPECS[name](table, k)


class ExportError(Exception):
    pass


@dataclass
class ExportResult:
    name: str
    source: str
    path: Path
    rows: int
    columns: list[str]
    dropped: list[str] = field(default_factory=list)
    pseudonymised: list[str] = field(default_factory=list)
    suppressed_cells: int = 0
    key_id: str | None = None

    def one_line(self) -> str:
        parts = [f"exported {self.name}: {self.rows:,} rows, {len(self.columns)} columns to {self.path}"]
        if self.pseudonymised:
            parts.append(f"pseudonymised {', '.join(self.pseudonymised)} (key id {self.key_id})")
        if self.dropped:
            parts.append(f"dropped {', '.join(self.dropped)}")
        if self.suppressed_cells:
            parts.append(f"{self.suppressed_cells} cell(s) suppressed")
        return "; ".join(parts)


def _has_view(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_views() WHERE schema_name=? AND view_name=?",
                            [schema, name]).fetchone()[0]
                or con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name=? AND table_name=?",
                               [schema, name]).fetchone()[0])


def source_of(con: duckdb.DuckDBPyConnection, name: str) -> tuple[str, str]:
    """(SQL relation, kind) for an exportable name: a model, a geo table or an edX table."""
    if name in NOT_EXPORTABLE or name.startswith("events"):
        raise ExportError(f"{name} cannot be exported: {NOT_EXPORTABLE.get(name, NOT_EXPORTABLE['events'])}")
    if _has_view(con, "models", name):
        return f'models."{name}"', "model"
    if name in ("user_location", "user_location_summary") and _has_view(con, "main", name):
        return f'"{name}"', "model"
    if name in TABLES and _has_view(con, "main", name):
        return f'"{name}"', "table"
    if con.execute("SELECT count(*) FROM _edx_snapshots WHERE table_name=?", [name]).fetchone()[0]:
        raise ExportError(f"{name} cannot be exported: the schema registry does not describe this edX table "
                          "(kept as text; any of its columns may be personal data); add it to schemas.py first")
    known = sorted(r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE schema_name='models'")
                   .fetchall())
    hint = f"built models: {', '.join(known)}" if known else "no models are built yet (run `edx-engine build`)"
    raise ExportError(f"nothing called {name!r} to export; {hint}; edX tables: {', '.join(sorted(TABLES))}")


def columns_plan(name: str, kind: str, columns: list[str]) -> tuple[list[str], list[str]]:
    """(columns to drop, user-id columns to pseudonymise) for a table's columns."""
    drop = set(DERIVED_PERSONAL) | set(ALWAYS_DROP)
    ids = set(USER_ID_COLUMNS)
    if kind == "table":
        drop |= set(table_personal_columns(name)) | set(EXPORT_DROP.get(name, ()))
        ids |= set(TABLE_USER_ID.get(name, ()))
        # a column edX added after the registry was written (kept as text in the store) may be
        # personal (a phone number...): it is not exported until the registry describes it
        known = {c.name for c in TABLES[name].columns} | {c.name for c in ADDED_COLUMNS}
        drop |= {c for c in columns if c not in known}
    return [c for c in columns if c in drop], [c for c in columns if c in ids and c not in drop]


def anonymise_batch(batch: pa.RecordBatch | pa.Table, drop: list[str], ids: list[str],
                    pz: Pseudonymizer) -> pa.Table:
    t = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    t = t.drop_columns([c for c in drop if c in t.column_names])
    for c in ids:
        i = t.schema.get_field_index(c)
        t = t.set_column(i, pa.field(c, pa.string()), pz.users(t.column(c)))
    return t


class _CsvFile:
    """pyarrow's CSV writer on a file that may start with a byte-order mark; closes both."""

    def __init__(self, path: Path, schema: pa.Schema, bom: bool):
        self._sink = pa.OSFile(str(path), "wb")
        if bom:
            self._sink.write(b"\xef\xbb\xbf")
        self._writer = pacsv.CSVWriter(self._sink, csv_ready(schema.empty_table()).schema)

    def write_table(self, table: pa.Table) -> None:
        self._writer.write_table(csv_ready(table))  # timestamps as `report` writes them

    def close(self) -> None:
        self._writer.close()
        self._sink.close()


def _csv_writer(path: Path, schema: pa.Schema, bom: bool) -> _CsvFile:
    return _CsvFile(path, schema, bom)


def export_table(lake: Lake, name: str, path: str | Path, fmt: str | None = None, *,
                 pseudonymizer: Pseudonymizer | None = None, public: bool = False,
                 k: int = S.DEFAULT_K, bom: bool = True) -> ExportResult:
    """Write model/table ``name`` pseudonymised and/or suppressed to ``path`` (CSV starts with a
    UTF-8 byte-order mark unless ``bom`` is False, so that Excel reads accented names right)."""
    if pseudonymizer is None and not public:
        raise ExportError("an export is either --anonymised (pseudonymised research file) or --public "
                          "(suppressed aggregate); for internal, identified outputs use `edx-engine report`")
    if is_directory(path):  # -o DIR: NAME.FORMAT inside it, as `report` does
        fmt = (fmt or "csv").lower()
        path = output_file(path, f"{name}.{fmt}")
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".") or "csv").lower()
    if fmt not in ("csv", "parquet"):
        raise ExportError(f"unknown format {fmt!r} (csv or parquet)")
    if k < 1:
        raise ExportError("k must be at least 1")
    if not lake.catalog_path.exists():
        raise ExportError(f"no store at {lake.root} (run `edx-engine import` first)")
    # a pseudonymised export is sorted (private_order), which spills to disk on a big table: a DuckDB
    # instance of its own, whose temporary files go under the store (it holds these rows anyway), not in
    # DuckDB's default, `.tmp` of the working directory (beside the shared files, left there if killed)
    with lake.connect(read_only=True, fresh=not public) as con:
        if not public:
            spill = lake.root / "tmp" / "export"
            spill.mkdir(parents=True, exist_ok=True)
            con.execute(f"SET temp_directory = {sql_str(str(spill))}")
        rel, kind = source_of(con, name)
        cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()]
        drop, ids = columns_plan(name, kind, cols)
        if public and (kind == "table" or name in ROW_LEVEL_MODELS or name not in PUBLIC_SPECS):
            raise ExportError(f"{name} is not an aggregated table that can be published; --public works for: "
                              f"{', '.join(sorted(PUBLIC_SPECS))} (row-level files can only be shared --anonymised "
                              "under a data-use agreement)")
        if ids and pseudonymizer is None:
            raise ExportError(f"{name} has user ids ({', '.join(ids)}): add --anonymised (needs the "
                              "pseudonymisation secret)")
        rows = 0
        suppressed = 0
        out_cols: list[str] = []
        if public:
            reader = con.execute(f"SELECT * FROM {rel}").to_arrow_reader(65_536)
        else:
            order, params = private_order(cols, drop, ids, pseudonymizer)
            # only the written columns are read and sorted: the dropped ones (email, name ...) never
            # reach the sort or its temporary files
            kept = ", ".join(sql_ident(c) for c in cols if c not in drop) or "*"
            reader = con.execute(f"SELECT {kept} FROM {rel} ORDER BY {order}", params).to_arrow_reader(65_536)
        if public:
            table = reader.read_all()
            table = anonymise_batch(table, drop, ids, pseudonymizer) if pseudonymizer else table.drop_columns(drop)
            table = public_table(name, table, k,
                                 lambda m: con.execute(f'SELECT * FROM models."{m}"').to_arrow_table())
            table = sorted_rows(table)  # (the store's row order is not fixed: rows in the order reports use)
            suppressed = sum(len(s.split(";")) for s in table.column(S.SUPPRESSED_COLUMN).to_pylist() if s)
            batches = [table]
        else:
            batches = (anonymise_batch(b, drop, ids, pseudonymizer) for b in reader)

        def write(tmp: Path) -> None:
            nonlocal rows, out_cols
            writer = None
            try:
                for t in batches:
                    if writer is None:
                        out_cols = t.column_names
                        writer = (pq.ParquetWriter(tmp, t.schema, compression="zstd") if fmt == "parquet"
                                  else _csv_writer(tmp, t.schema, bom))
                    writer.write_table(t)
                    rows += t.num_rows
                if writer is None:  # empty: still write the header / schema
                    empty = anonymise_batch(reader.schema.empty_table(), drop, ids, pseudonymizer) \
                        if pseudonymizer else reader.schema.empty_table().drop_columns(drop)
                    out_cols = empty.column_names
                    writer = (pq.ParquetWriter(tmp, empty.schema) if fmt == "parquet"
                              else _csv_writer(tmp, empty.schema, bom))
            finally:
                if writer is not None:
                    writer.close()

        try:
            write_atomically(path, write)
        except OutputError as exc:
            raise ExportError(str(exc)) from None
    res = ExportResult(name, kind, path, rows, out_cols, drop, ids if pseudonymizer else [], suppressed,
                       pseudonymizer.key_id if pseudonymizer else None)
    meta = {"name": name, "source": kind, "rows": rows, "columns": out_cols, "dropped_columns": drop,
            "pseudonymised_columns": res.pseudonymised, "pseudonym": "HMAC-SHA256(secret, 'user:'+user_id), "
            "first 20 hex" if pseudonymizer else None, "pseudonym_key_id": res.key_id,
            "public": public, "k": k if public else None, "suppressed_cells": suppressed,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    try:
        write_atomically(path.with_name(path.name + ".meta.json"),
                         lambda tmp: tmp.write_text(json.dumps(meta, indent=1) + "\n", "utf-8"))
    except OutputError as exc:
        raise ExportError(str(exc)) from None
    return res


def scan_for_values(paths, values) -> list[tuple[str, str]]:
    """(file, value) for every value found in the bytes of every file (case-insensitive)."""
    found = []
    needles = [(v, v.lower().encode("utf-8")) for v in values if v]
    for p in paths:
        data = Path(p).read_bytes().lower()
        for v, b in needles:
            if b in data:
                found.append((str(p), v))
    return found
