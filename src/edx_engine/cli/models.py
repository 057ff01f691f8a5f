"""Commands of the models stage: `courses`, `build`, `report`."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from .common import ConfigOpt, DataDir, console, fail, load_settings, out, warn_stale
from ..store.errors import StoreBusy

RegistryOpt = typer.Option(None, "--registry", help="Course registry (TOML or CSV; default ./courses.toml, "
                                                     "else [courses] of the config file).")
StoreOpt = typer.Option(None, "--store", help="PostgreSQL store URL (postgresql://user@host:port/db, or libpq keywords); env "
                                               "EDX_ENGINE_STORE; default: the DuckDB catalog.")


def _registry(settings, registry: Optional[str]):
    from ..models import RegistryError, load_registry

    try:
        return load_registry(registry, settings.file)
    except RegistryError as exc:
        fail(str(exc))
        raise


def _params(settings, passing_grade: Optional[float], include_staff: Optional[bool],
            passing_rule: Optional[str] = None):
    """`models.params.params_from` on the [models] section; a bad value as one line."""
    from ..models.params import ParamsError, params_from

    try:
        return params_from(settings.section("models"), passing_grade, include_staff, passing_rule)
    except ParamsError as exc:
        fail(str(exc))
        raise


def _empty(data) -> bool:
    return (data[0] if isinstance(data, tuple) else data).num_rows == 0


def _store(settings, store: Optional[str]) -> Optional[str]:
    """`models.params.store_url`: the PostgreSQL URL or None; a bad URL as one line."""
    from ..models.params import ParamsError, store_url

    try:
        return store_url(settings.section("models"), store)
    except ParamsError as exc:
        fail(str(exc))
        raise


def courses(
    data_dir: Optional[str] = DataDir, registry: Optional[str] = RegistryOpt, config: Optional[str] = ConfigOpt,
    include_staff: Optional[bool] = typer.Option(None, "--include-staff/--exclude-staff",
                                                 help="Count staff among the learners (default: exclude)."),
) -> None:
    """List courses: registry metadata merged with the packages, and data coverage."""
    from ..store.lake import Lake
    from ..models import BuildError
    from ..models.build import evaluate

    settings = load_settings(data_dir, config=config)
    entries, source = _registry(settings, registry)
    try:
        t = evaluate(Lake(settings.data_dir), entries, _params(settings, None, include_staff), "courses")
    except BuildError as exc:
        fail(str(exc))
        return
    rows = t.to_pylist()
    tab = Table("course", "name", "sme", "start", "end", "registry", "tables", "events", "learners",
                title=f"{len(rows)} courses (registry: {source})")
    missing = []
    for r in rows:
        tables = [x for x in (r["tables"] or "").split(",") if x]
        ev = f"{r['first_event_day']} .. {r['last_event_day']}" if r["first_event_day"] else "none"
        reg = "yes" if r["in_registry"] else "[yellow]not in registry[/]"
        if not r["in_registry"]:
            missing.append(r["course_id"])
        tab.add_row(r["course_id"], r["name"] or "", r["sme"] or "", str(r["start_date"] or ""),
                    str(r["end_date"] or ""), reg, str(len(tables)), ev, f"{r['learners']:,}")
    out.print(tab)
    if missing:
        out.print(f"{len(missing)} course(s) not in registry: {', '.join(missing)}", highlight=False, soft_wrap=True)


def build(
    data_dir: Optional[str] = DataDir, store: Optional[str] = StoreOpt, registry: Optional[str] = RegistryOpt,
    config: Optional[str] = ConfigOpt,
    passing_grade: Optional[float] = typer.Option(None, "--passing-grade",
                                                  help="Pass mark for courses whose package and registry give "
                                                       "none (0.65)."),
    passing_rule: Optional[str] = typer.Option(None, "--passing-rule",
                                               help="'>=' (grade at or above the mark: edX, the default) or '>' "
                                                    "(above it: the original IDBx reports); registry: passing_rule."),
    include_staff: Optional[bool] = typer.Option(None, "--include-staff/--exclude-staff",
                                                 help="Count staff in the indicators (default: exclude)."),
    model: Optional[list[str]] = typer.Option(None, "--model", help="Build only this model (and what it needs)."),
    force: bool = typer.Option(False, "--full", "--force",
                               help="Recompute every model, and every date of the models kept by date, even if "
                                    "nothing changed (--force: the same)."),
    take_over: bool = typer.Option(False, "--take-over", help="With --store: replace the models another data "
                                                                 "directory built in that database (refused "
                                                                 "otherwise); everything is rebuilt."),
    engine: str = typer.Option("duckdb", "--engine", help="duckdb (this machine) or spark (Ibis' PySpark backend; "
                                                          "needs the spark extra, see docs/scale.md)."),
    spark_master: str = typer.Option("local[*]", "--spark-master", help="With --engine spark: Spark master URL "
                                                                        "(local[*], yarn, spark://host:7077)."),
    spark_remote: Optional[str] = typer.Option(None, "--spark-remote", help="With --engine spark: Spark Connect "
                                                                             "URL (sc://host:15002); no local Java."),
    spark_output: Optional[str] = typer.Option(None, "--output", help="With --engine spark: write the models "
                                                                      "under this URL (s3a://…, hdfs://…) "
                                                                      "instead of the lake; the catalog is not "
                                                                      "updated."),
) -> None:
    """(Re)compute the indicator models; only models whose inputs or parameters changed are rebuilt, and
    models kept by date (learner_day and the other *_day models) recompute only the dates whose events changed."""
    from ..store.lake import Lake
    from ..models import MODELS, BuildError, build_duckdb, build_postgres

    settings = load_settings(data_dir, config=config)
    entries, _ = _registry(settings, registry)
    params = _params(settings, passing_grade, include_staff, passing_rule)
    for m in model or []:
        if m not in MODELS:
            fail(f"unknown model {m!r}; models: {', '.join(MODELS)}")
    url = _store(settings, store)
    if engine not in ("duckdb", "spark"):
        fail(f"unknown engine {engine!r} (use duckdb or spark)")
    if engine == "spark" and url:
        fail("--engine spark writes to the lake; it cannot be combined with --store")
    if take_over and not url:
        fail("--take-over needs --store (a PostgreSQL database)")
    if engine != "spark" and (spark_remote or spark_output):
        fail("--spark-remote and --output need --engine spark")
    lake = Lake(settings.data_dir)

    def on_model(r):
        if r.status == "built":
            from ..models.definitions import MODELS

            grain = MODELS[r.name].grain if r.name in MODELS else "day"
            days = f"  ({r.days:,} {grain}(s) recomputed)" if r.days is not None else ""
            console.print(f"  {r.name:<18} {r.rows:>12,} rows {r.seconds:7.2f} s{days}", highlight=False)

    try:
        if url:
            res = build_postgres(lake, url, entries, params, model or None, force, on_model, take_over)
        elif engine == "spark":
            from ..models.spark import build_spark

            res = build_spark(lake, entries, params, model or None, force, on_model, master=spark_master,
                              remote=spark_remote, output=spark_output)
        else:
            res = build_duckdb(lake, entries, params, model or None, force, on_model)
    except (BuildError, StoreBusy) as exc:
        fail(str(exc))
        return
    out.print(res.one_line(), highlight=False)


def report(
    name: str = typer.Argument(..., help="Report name (run with a wrong name to list them)."),
    course: Optional[str] = typer.Option(None, "--course", help="Only this course id."),
    fmt: str = typer.Option("csv", "--format", help="csv, json or parquet."),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Output file ('-' = stdout; default "
                                                                      "./NAME.FORMAT; a directory: NAME.FORMAT "
                                                                      "inside it)."),
    public: bool = typer.Option(False, "--public", help="Small-cell suppression for publication (aggregated "
                                                        "reports only; see docs/privacy.md)."),
    k: int = typer.Option(5, "--k", help="With --public: smallest count that may be published."),
    no_bom: bool = typer.Option(False, "--no-bom", help="CSV without the UTF-8 byte-order mark (Excel needs it "
                                                        "to show accented names; stdout never gets one)."),
    labels: Optional[str] = typer.Option(None, "--labels", help="Show edX codes (gender, education, mode, "
                                                                 "certificate status, country) as labels in es, en "
                                                                 "or pt, as the dashboard does."),
    data_dir: Optional[str] = DataDir, store: Optional[str] = StoreOpt, config: Optional[str] = ConfigOpt,
) -> None:
    """Write a report (general, course, enrolment, courses, active_users, demographics, masterfile, ...).

    A model's name is accepted too (`report general_report` is `report general`)."""
    from ..store.lake import Lake
    from ..models import BuildError
    from ..reports import FORMATS, ReportError, as_written, check_course, check_public, make_public, only_course, \
        produce, public_models, report_name, unknown_report_message, with_labels, write, written_count

    if report_name(name) is None:
        fail(unknown_report_message(name))
    name = report_name(name)
    if fmt not in FORMATS:
        fail(f"unknown format {fmt!r} (use {', '.join(FORMATS)})")
    if public:
        try:
            check_public(name)
        except ReportError as exc:
            fail(str(exc))
        if k < 1:
            fail("--k must be at least 1")
    settings = load_settings(data_dir, config=config)
    lake = Lake(settings.data_dir)
    warn_stale(lake, public_models(name), _store(settings, store))
    try:
        # public: suppress the whole table, then keep the course. Suppressing the course's rows
        # alone would hide other complementary cells, and both files together could be subtracted.
        data = produce(lake, name, _store(settings, store), None if public else course)
        if course and _empty(data):  # say why, with the close matches, rather than write an empty file
            check_course(produce(lake, name, _store(settings, store), None), course)
        if public:
            data = make_public(name, data, k, lake, _store(settings, store))
            if course:
                data = only_course(data, course)
        if labels:
            data = with_labels(data, labels)
        data = as_written(data, fmt)
        where = write(name, data, fmt, output, bom=not no_bom)
    except (BuildError, ReportError, OSError) as exc:
        fail(str(exc))
        return
    if where != "stdout":
        console.print(f"{name}: {written_count(data)} -> {where}", highlight=False)
