"""The original system's reports (and every model) as CSV, JSON or Parquet files.

Each report reads a model table from the store (DuckDB catalog or PostgreSQL), so a report
and the table behind it are always the same numbers.
"""

from __future__ import annotations

import datetime as dt
import io
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..store.lake import Lake
from ..outputs import OutputError, csv_ready, output_file, write_atomically
from ..models.build import read_model
from ..models.definitions import ALL

FORMATS = ("csv", "json", "parquet")
SUPPRESSED = "suppressed"  # privacy.suppress.SUPPRESSED_COLUMN


@dataclass(frozen=True)
class Report:
    name: str
    model: str
    doc: str


REPORTS: dict[str, Report] = {r.name: r for r in [
    Report("course", "course_summary", "per-course report: headline figures + breakdowns by gender, education, "
                                       "country, IP country, and per country (course_summary + course_breakdown)"),
    Report("general", "general_report", "one row per course: id, name, sme, dates, total, active, approved, "
                                        "certified, failed, male, female, other/unknown, countries, countries_ip"),
    Report("enrolment", "enrolment_report", "every enrolment: course name, id, registration date, gender, country"),
    Report("courses", "courses", "course list: registry merged with the packages, data coverage"),
    Report("active_users", "active_users", "active learners per course and combined ('(all)')"),
    Report("demographics", "demographics", "one row per learner: gender, year of birth, education, country"),
    Report("masterfile", "masterfile", "MASTERFILE: one row per learner per course"),
    Report("person_course", "person_course", "HarvardX/MITx person-course table (staff flagged)"),
    Report("course_summary", "course_summary", "course report headline figures only"),
    Report("course_breakdown", "course_breakdown", "course report breakdowns only (long form)"),
    Report("enrolment_daily", "enrolment_daily", "enrolments / activations / deactivations per day and mode"),
    Report("activity_daily", "activity_daily", "active learners per course and day"),
    Report("activity_weekly", "activity_weekly", "active learners per course and ISO week"),
    Report("video", "video_summary", "views and completion per video"),
    Report("problem", "problem_summary", "attempts and first-attempt correctness per problem"),
    Report("forum_weekly", "forum_weekly", "forum posts per course and week"),
    Report("learner_day", "learner_day", "events per learner, course and day (includes staff)"),
]}


class ReportError(Exception):
    pass


# One set of names: a report is also reachable by its model's name (`report general_report`), and
# `export` accepts a report's name (`export general`): see `report_name` and `model_name`.
def report_name(name: str) -> str | None:
    """The report called ``name`` or whose model is ``name`` (None if neither)."""
    if name in REPORTS:
        return name
    return next((r.name for r in REPORTS.values() if r.model == name), None)


def model_name(name: str) -> str:
    """The model behind report ``name`` (``name`` itself when it is not a report's name)."""
    r = REPORTS.get(name)
    return r.model if r and name != "course" else name


UTF8_BOM = b"\xef\xbb\xbf"  # lets Excel open a CSV with accented names as UTF-8


def check_course(data, course: str) -> None:
    """Raise ReportError when ``course`` has no row in the report (an unknown or mistyped course id)."""
    import difflib

    table = data[0] if isinstance(data, tuple) else data
    if "course_id" not in table.column_names:
        return
    ids = sorted({c for c in table.column("course_id").to_pylist() if c})
    if course in ids:
        return
    close = difflib.get_close_matches(course, ids, n=3, cutoff=0.4)
    hint = f"did you mean {', '.join(close)}?" if close else f"courses: {', '.join(ids[:10])}" + \
        (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
    raise ReportError(f"unknown course {course!r}: {hint if ids else 'the report has no course yet'}")


def unknown_report_message(name: str) -> str:
    lines = [f"unknown report {name!r}; available reports:"]
    lines += [f"  {r.name:<17} {r.doc}" for r in REPORTS.values()]
    return "\n".join(lines)


def course_report_rows(summary: pa.Table, breakdown: pa.Table) -> pa.Table:
    """Long form of the course report: indicators and breakdowns in one table.

    Public (suppressed) tables carry a ``suppressed`` column; it is kept, per row: for an indicator
    row it says whether that indicator is hidden."""
    public = SUPPRESSED in summary.column_names or SUPPRESSED in breakdown.column_names
    metrics = [c for c in summary.column_names if c not in ("course_id", "name", "sme", "start_date", "end_date",
                                                            "passing_grade", "passing_rule", "created_at", SUPPRESSED)]
    rows = []
    for s in summary.to_pylist():
        hidden = set((s.get(SUPPRESSED) or "").split(";")) - {""}
        for m in metrics:
            rows.append({"course_id": s["course_id"], "country": ALL, "dimension": "indicator", "value": m,
                         "learners": s[m], SUPPRESSED: m if m in hidden else None})
    rows += sorted(breakdown.to_pylist(), key=lambda r: (r["course_id"], r["country"] != ALL, r["country"],
                                                         r["dimension"], r["value"]))
    fields = [("course_id", pa.string()), ("country", pa.string()), ("dimension", pa.string()),
              ("value", pa.string()), ("learners", pa.int64())]
    if public:
        fields.append((SUPPRESSED, pa.string()))
    return pa.Table.from_pylist(rows, schema=pa.schema(fields))


def course_report_docs(summary: pa.Table, breakdown: pa.Table) -> list[dict]:
    """Nested course report: one document per course."""
    names = {"gender": "by_gender", "level_of_education": "by_education", "country": "by_country",
             "year_of_birth": "by_year_of_birth", "ip_country": "by_ip_country"}
    docs = {}
    for s in summary.to_pylist():
        d = dict(s)
        for n in names.values():
            d[n] = {}
        d["by_country_detail"] = {}
        docs[s["course_id"]] = d
    for r in sorted(breakdown.to_pylist(), key=lambda r: (r["country"], r["dimension"], r["value"])):
        d = docs.get(r["course_id"])
        if d is None:
            continue
        if r["country"] == ALL:
            d.setdefault(names.get(r["dimension"], "by_" + r["dimension"]), {})[r["value"]] = r["learners"]
        else:
            d["by_country_detail"].setdefault(r["country"], {}).setdefault(r["dimension"], {})[r["value"]] = \
                r["learners"]
    return list(docs.values())


def public_models(name: str) -> list[str]:
    """The models behind report ``name`` (the course report reads two)."""
    return ["course_summary", "course_breakdown"] if name == "course" else [REPORTS[name].model]


def public_reports() -> list[str]:
    """Reports that can be published with small-cell suppression (every model behind them has a rule)."""
    from ..privacy.export import PUBLIC_SPECS

    return [n for n in REPORTS if all(m in PUBLIC_SPECS for m in public_models(n))]


def check_public(name: str) -> None:
    """Raise ReportError unless report ``name`` may be published (``--public``)."""
    from ..privacy.export import PUBLIC_SPECS

    if name not in REPORTS:
        raise ReportError(unknown_report_message(name))
    refused = [m for m in public_models(name) if m not in PUBLIC_SPECS]
    if refused:
        m = refused[0]
        raise ReportError(
            f"report {name} cannot be --public: {m} is not an aggregated table with a small-cell suppression rule "
            f"(public reports: {', '.join(public_reports())}). Row-level data can only be shared pseudonymised, "
            f"under a data-use agreement: `edx-engine export {m} --anonymised -o FILE` (see docs/privacy.md)")


def make_public(name: str, data, k: int, lake: Lake | None = None, store: str | None = None):
    """Apply small-cell suppression with threshold ``k`` to ``produce``'s data (``privacy.export.public_table``).

    Counts with 0 < n < k - and the complementary cells that would give them back - become NULL;
    a ``suppressed`` column names the hidden cells of each row. course_summary, general_report and
    course_breakdown are suppressed together (they share facts), reading the others from ``lake``
    (and ``store``): every public output of them hides the same cells."""
    from ..privacy.export import COURSE_TABLES, public_course_tables, public_table

    check_public(name)
    if k < 1:
        raise ReportError("k must be at least 1")
    if isinstance(data, tuple):  # course report: (course_summary, course_breakdown)
        pub = public_course_tables(data[0], data[1], k)
        return tuple(_sorted(pub[m]) for m in public_models(name))
    model = public_models(name)[0]
    if model in COURSE_TABLES and lake is None:
        raise ReportError(f"the public {model} is suppressed with course_summary and course_breakdown: "
                          "make_public needs the store (lake=)")
    return _sorted(public_table(model, data, k, lambda m: read_model(lake, m, store)))


def _sorted(t: pa.Table) -> pa.Table:
    from ..privacy.export import sorted_rows  # (one row order for reports and exports)

    return sorted_rows(t)


def produce(lake: Lake, name: str, store: str | None = None, course: str | None = None) -> pa.Table | list[dict]:
    """The report's data: an Arrow table (or, for ``course`` in JSON, built by ``write``)."""
    name = report_name(name) or name
    if name not in REPORTS:
        raise ReportError(unknown_report_message(name))
    if name == "course":
        return (read_model(lake, "course_summary", store, course), read_model(lake, "course_breakdown", store, course))
    return _sorted(read_model(lake, REPORTS[name].model, store, course))


def with_labels(data, lang: str):
    """edX codes (gender, education, mode, certificate status, countries; also the ``value`` of a
    breakdown row by its ``dimension``) replaced by their labels in ``lang``: the dashboard's tables."""
    from ..dashboard.labels import LANGS, REPORT_COLUMNS, apply_labels, label

    if lang not in LANGS:
        raise ReportError(f"unknown language {lang!r} for --labels (use {', '.join(LANGS)})")
    if isinstance(data, tuple):
        return tuple(with_labels(d, lang) for d in data)
    t = apply_labels(data, lang)
    if {"dimension", "value"} <= set(t.column_names):
        pairs = zip(t.column("dimension").to_pylist(), t.column("value").to_pylist())
        values = [label(REPORT_COLUMNS[d], v, lang) if d in REPORT_COLUMNS else v for d, v in pairs]
        t = t.set_column(t.column_names.index("value"), "value", pa.array(values, pa.string()))
    return t


def only_course(data, course: str):
    """The rows of one course, from a report's data (a table, or the course report's pair)."""
    if isinstance(data, tuple):
        return tuple(only_course(d, course) for d in data)
    if "course_id" not in data.column_names:
        return data
    return data.filter(pc.equal(data.column("course_id"), course))


def as_written(data, fmt: str):
    """``produce``'s data as ``write`` writes it: the course report's (summary, breakdown) pair becomes
    its long form (CSV, Parquet: a row per indicator and per breakdown cell) or a document per course
    (JSON, a list); any other table is unchanged."""
    if isinstance(data, tuple):
        summary, breakdown = data
        return course_report_docs(summary, breakdown) if fmt == "json" else course_report_rows(summary, breakdown)
    return data


def written_count(data) -> str:
    """What ``as_written`` data holds, for the command's last line: 'N row(s)' (a table), 'N course
    document(s)' (the course report in JSON; its summary table has one row per course, but the CSV
    has hundreds of lines: saying '1 row(s)' for them was wrong)."""
    if isinstance(data, list):
        return f"{len(data):,} course document(s)"
    return f"{data.num_rows:,} row(s)"


def write(name: str, data, fmt: str, path: str | None, bom: bool = True) -> str:
    """Write ``data`` (from ``produce``) as ``fmt`` to ``path`` ('-' = stdout; a directory: ``NAME.FMT``
    inside it). Returns where it went.

    A CSV file starts with a UTF-8 byte-order mark unless ``bom`` is False (never on stdout, where
    another program, not Excel, reads it)."""
    if fmt not in FORMATS:
        raise ReportError(f"unknown format {fmt!r} (use {', '.join(FORMATS)})")
    if path is None:
        path = f"{name}.{fmt}"
    elif path != "-":
        path = str(output_file(path, f"{name}.{fmt}"))
    data = as_written(data, fmt)
    if fmt == "json":
        recs = data if isinstance(data, list) else data.to_pylist()
        payload = orjson.dumps(recs, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=_json_default) \
            + b"\n"
    elif fmt == "csv":
        buf = io.BytesIO()
        if bom and path != "-":
            buf.write(UTF8_BOM)
        pacsv.write_csv(csv_ready(data), buf)
        payload = buf.getvalue()
    else:
        if path == "-":
            raise ReportError("Parquet cannot go to stdout: give -o PATH")
        _write_file(Path(path), lambda tmp: pq.write_table(data, tmp, compression="zstd"))
        return str(path)
    if path == "-":
        sys.stdout.buffer.write(payload) if hasattr(sys.stdout, "buffer") else sys.stdout.write(payload.decode())
        sys.stdout.flush()
        return "stdout"
    _write_file(Path(path), lambda tmp: tmp.write_bytes(payload))
    return str(path)


def _write_file(path: Path, write) -> None:
    """Through ``<path>.tmp``, deleted on any error; an unwritable path is a one-line ReportError."""
    try:
        write_atomically(path, write)
    except OutputError as exc:
        raise ReportError(str(exc)) from None


def _json_default(v):
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    raise TypeError
