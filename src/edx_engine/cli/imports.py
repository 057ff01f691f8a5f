"""Commands ``import``, ``synthetic``, ``tables`` and ``demo``: getting data into the store."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from .. import config as cfg
from ..decrypt import DecryptError
from ..ingest.sources import SourceError
from ..store.errors import StoreBusy, StoreWriteError
from .common import ConfigOpt, DataDir, GnupgHome, PassFile, console, fail, load_settings, out


class _AmountColumn(ProgressColumn):
    """'12.3/45.6 MB' for tasks counted in bytes (``unit="B"``), '3/12' for tasks counted in files."""

    def render(self, task) -> Text:
        if task.fields.get("unit") == "B":
            total = f"{task.total / 1e6:,.1f}" if task.total else "?"
            return Text(f"{task.completed / 1e6:,.1f}/{total} MB", style="progress.download")
        total = f"{task.total:,.0f}" if task.total is not None else "?"
        return Text(f"{task.completed:,.0f}/{total}", style="progress.download")


def _passphrase_failure(message: str) -> bool:
    """A file's failure that is the run's wrong or missing passphrase (``label: cannot decrypt: reason``)."""
    from ..decrypt import is_passphrase_reason

    _, sep, reason = message.partition(": cannot decrypt: ")
    return bool(sep) and is_passphrase_reason(reason)


def run_import(settings: cfg.Settings, paths: list[Path], package_date: str | None = None, quiet: bool = False,
               scrub: bool = False, labels: dict[Path, str] | None = None, show_partial: bool = True,
               refused: list[str] | None = None, jobs: int | None = None, spark=None):
    """`ingest.run.import_paths` with a progress bar and messages on the console.

    ``show_partial``: print a line for each file with rejected lines (the demo says once instead).
    ``refused``: gets the lines of files refused unread (links leaving the package).
    ``jobs``, ``spark``: log files parsed in parallel (see ``pipeline.backfill``)."""
    from rich.markup import escape

    from ..ingest.run import import_paths

    with Progress(TextColumn("{task.description}"), BarColumn(), _AmountColumn(), TimeElapsedColumn(),
                  TextColumn("eta"), TimeRemainingColumn(), console=console,
                  disable=quiet or not console.is_terminal) as progress:
        def on_file(r) -> None:
            if r.status == "failed" and _passphrase_failure(r.message):
                return  # every encrypted file fails alike: said once, by the error line that ends the run
            if r.status == "failed":
                progress.console.print(f"[red]failed[/] {r.message}", highlight=False, soft_wrap=True)
            elif r.rejected and show_partial:
                progress.console.print(f"[yellow]partial[/] {r.label}: {r.message}", highlight=False, soft_wrap=True)
            if getattr(r, "warning", ""):  # an event file's replacement removed much of a day
                progress.console.print(f"[yellow]warning[/] {escape(r.warning)}", highlight=False, soft_wrap=True)

        def on_unknown(label: str) -> None:
            progress.console.print(f"[yellow]skipped[/] {label}: not a table or file of an edX package",
                                   highlight=False, soft_wrap=True)

        def on_refused(line: str) -> None:
            progress.console.print(f"[red]refused[/] {escape(line)}", highlight=False, soft_wrap=True)
            if refused is not None:
                refused.append(line)

        def on_warning(line: str) -> None:
            progress.console.print(f"[yellow]warning[/] {escape(line)}", highlight=False, soft_wrap=True)

        def on_wait(line: str) -> None:  # the catalog is open in another program: the import waits for it
            progress.console.print(escape(line), highlight=False, soft_wrap=True)

        return import_paths(settings, paths, package_date, scrub=scrub, progress=progress, on_file=on_file,
                            on_unknown=on_unknown, labels=labels, on_refused=on_refused, on_warning=on_warning,
                            on_wait=on_wait, jobs=jobs, spark=spark)


def import_cmd(
    paths: list[Path] = typer.Argument(..., help="Package zip(s), directories, single table files or event logs."),
    package_date: Optional[str] = typer.Option(None, help="Package date (YYYY-MM-DD) for loose files that do not say it."),
    data_dir: Optional[str] = DataDir, gnupghome: Optional[str] = GnupgHome,
    passphrase_file: Optional[str] = PassFile, config: Optional[str] = ConfigOpt,
    scrub: bool = typer.Option(False, "--scrub", help="Remove personal data right after the import "
                                                      "(see `edx-engine scrub`)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", min=1, help="Log files parsed at once, in worker processes "
                                                                  "(default: the number of cores)."),
    engine: str = typer.Option("duckdb", "--engine", help="duckdb (this machine, --jobs processes) or spark (one "
                                                          "Spark task per log file, one commit; see docs/scale.md)."),
    spark_master: str = typer.Option("local[*]", "--spark-master", help="With --engine spark: Spark master URL."),
    spark_remote: Optional[str] = typer.Option(None, "--spark-remote", help="With --engine spark: Spark Connect "
                                                                            "URL (sc://host:15002)."),
) -> None:
    """Import weekly database packages and daily tracking logs (.gpg files are decrypted with gpg)."""
    from ..store.lake import Lake

    if engine not in ("duckdb", "spark"):
        fail(f"unknown engine {engine!r} (use duckdb or spark)")
    if engine != "spark" and spark_remote:
        fail("--spark-remote needs --engine spark")
    settings = load_settings(data_dir, gnupghome, passphrase_file, config)
    refused: list[str] = []
    spark = None
    from ..pipeline.backfill import BackfillError, default_jobs

    try:
        if engine == "spark":
            from ..pipeline.backfill import spark_for_import

            spark = spark_for_import(spark_master, spark_remote)
        exports, events = run_import(settings, paths, package_date, scrub=scrub, refused=refused,
                                     jobs=jobs or default_jobs(), spark=spark)
    except (SourceError, DecryptError, StoreBusy, StoreWriteError, cfg.ConfigError, BackfillError) as exc:
        fail(str(exc))
        return
    finally:
        if spark is not None:
            spark.stop()
    partial = bool(refused)
    if refused:
        out.print(f"refused: {len(refused)} (named above), not read", highlight=False)
    if exports:
        by_status = {s: [f for f in exports.files if f.status == s] for s in ("loaded", "unchanged", "older",
                                                                          "set aside")}
        older = f", {len(by_status['older'])} older than the store" if by_status["older"] else ""
        aside = len(by_status["set aside"])
        older += f", {aside} {'copy' if aside == 1 else 'copies'} set aside" if aside else ""
        if exports.not_exported:
            older += f", {len(exports.not_exported)} not exported by edX"
        out.print(f"database files: {len(exports.files)} ({len(by_status['loaded'])} loaded, "
                  f"{len(by_status['unchanged'])} unchanged{older}, {len(exports.failed)} failed), "
                  f"rows: {exports.rows:,}, rejected lines: {exports.rejected:,}, {exports.seconds:.1f} s",
                  highlight=False)
        if by_status["older"]:
            out.print(f"note: {by_status['older'][0].message} (and the same for the other older files); "
                      "nothing of them was imported", highlight=False)
        extras: dict[tuple[str, str], list[str]] = {}  # (table, column) -> the files that have it
        renamed: dict[tuple[str, str], str] = {}  # (table, stored name) -> the file's name
        for f in exports.files:
            # a renamed column is an extra one of a known table; an unknown table's are named only if renamed
            for c in dict.fromkeys([*f.extra_columns, *f.renamed_columns]):
                extras.setdefault((f.table, c), []).append(f.label)
            renamed.update({(f.table, new): old for new, old in f.renamed_columns.items()})
        for (table, col), files in sorted(extras.items()):
            where = files[0] + (f" and {len(files) - 1} other file(s)" if len(files) > 1 else "")
            if (table, col) in renamed:
                old = renamed[(table, col)]
                why = ("the file's header has no name for it" if not old else
                       f"the file's column {old!r}, renamed: the store has a column of that name")
                out.print(f"note: column {table}.{col} kept as text ({why}; in {where})", highlight=False,
                          soft_wrap=True)
            else:
                out.print(f"note: unknown column {table}.{col} kept as text (in {where})", highlight=False,
                          soft_wrap=True)
        for table in exports.unknown_tables:
            out.print(f"note: unknown table {table} kept as text (view {table})", highlight=False)
        for f in exports.not_exported:
            out.print(f"note: {f.message}", highlight=False)
        for line in exports.notes:
            out.print(f"note: {line}", highlight=False, soft_wrap=True)
        for line in exports.warnings:
            out.print(f"[yellow]warning[/] {line}", highlight=False, soft_wrap=True)
        partial |= exports.partial
    if events:
        out.print(events.one_line(), highlight=False)
        partial |= events.partial
    files = (exports.files if exports else []) + (events.files if events else [])
    failed = (len(exports.failed) if exports else 0) + (len(events.failed) if events else 0)
    if files and failed == len(files):  # nothing usable: a failure, not a partial import
        fail(f"import failed: all {failed} files failed (see the messages above)")
    if partial:
        rejected = (exports.rejected if exports else 0) + (events.rejected if events else 0)
        where = f" and the `quarantine` view in {Lake(settings.data_dir).catalog_path}" if rejected else ""
        out.print(f"import was partial: see the messages above{where}", highlight=False)
        raise typer.Exit(2)


def synthetic(
    out_dir: Path = typer.Option(..., "--out", help="Directory to write the package and logs into."),
    org: str = typer.Option("IDBx", help="Organisation."),
    seed: int = typer.Option(0, help="Random seed (same seed, same files)."),
    courses: int = typer.Option(3, help="Number of courses."),
    learners: int = typer.Option(200, help="Learners in the organisation."),
    days: int = typer.Option(7, help="Days of tracking logs."),
    events_per_learner: int = typer.Option(40, help="Average events per active learner per course."),
    studentmodule_per_learner: int = typer.Option(15, help="Average studentmodule rows per active learner and course."),
    start: str = typer.Option("2026-10-01", help="First day of events (YYYY-MM-DD)."),
    encrypt_to: Optional[str] = typer.Option(None, help="GPG key to encrypt every file to (.gpg)."),
    gnupghome: Optional[str] = typer.Option(None, "--gnupghome", help="GPG keyring holding --encrypt-to's key "
                                                                     "(default: env GNUPGHOME)."),
    malformed: bool = typer.Option(True, help="Inject a small controlled fraction of malformed lines."),
    vintage: Optional[int] = typer.Option(None, help="Package layout of an era: 2016, 2020 or 2024 (site suffix, "
                                                      "header changes, .failed marker, unknown table, opt-in zip)."),
) -> None:
    """Write a realistic, deterministic synthetic edX delivery (package zip + daily logs)."""
    from ..synthetic import SyntheticConfig, generate

    t0 = time.perf_counter()
    try:
        conf = SyntheticConfig(org=org, seed=seed, courses=courses, learners=learners, days=days,
                               events_per_learner=events_per_learner, studentmodule_per_learner=studentmodule_per_learner,
                               start=dt.date.fromisoformat(start), encrypt_to=encrypt_to, gnupghome=gnupghome,
                               malformed=malformed, vintage=vintage)
    except ValueError as exc:
        fail(str(exc))
        return
    manifest = generate(out_dir, conf)
    out.print(f"wrote {len(manifest.files)} files to {out_dir} in {time.perf_counter() - t0:.1f} s", highlight=False)


def tables(data_dir: Optional[str] = DataDir) -> None:
    """List the store's tables with rows per course and package date."""
    from ..store.lake import Lake

    settings = load_settings(data_dir)
    lake = Lake(settings.data_dir)
    if not lake.catalog_path.exists():
        fail(f"no store at {settings.data_dir} (run `edx-engine import` first)")
    from ..store.status import table_summary

    rows = table_summary(lake)
    t = Table("table", "courses", "rows", "latest package", "rejected")
    for r in rows:
        t.add_row(r[0], str(r[1]), f"{r[2]:,}", r[3], str(r[4]))
    out.print(t)


def demo_summary(settings: cfg.Settings, seconds: float) -> None:
    """The demo's closing tables: what the store holds, the general report, queries to try."""
    from ..store.lake import Lake
    from ..models import read_model
    from ..reports.summary import store_summary

    lake = Lake(settings.data_dir)
    s = store_summary(lake)
    t = Table("table", "rows", title=f"{s.courses} courses, {s.learners} learners, {s.events:,} events")
    for name, n in s.rows_per_table:
        t.add_row(name, f"{n:,}")
    out.print(t)
    general = read_model(lake, "general_report").to_pylist()
    if general:
        cols = [c for c in ("course_id", "total", "active", "approved", "certified", "failed", "countries")
                if c in general[0]]
        g = Table(*cols, title="general report (edx-engine report general)")
        for row in general:
            g.add_row(*("" if row[c] is None else str(row[c]) for c in cols))
        out.print(g)
    db = lake.catalog_path
    out.print(f"demo finished in {seconds:.1f} s. Query it with `edx-engine sql \"...\"` or any DuckDB client "
              f"(`duckdb {db}`):\n"
              f"  SELECT course_id, count(*) FROM student_courseenrollment GROUP BY 1;\n"
              f"  SELECT gender, count(*) FROM auth_userprofile GROUP BY 1 ORDER BY 2 DESC;\n"
              f"  SELECT event_type, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC LIMIT 10;\n"
              f"  SELECT * FROM models.person_course LIMIT 5;\n"
              f"  SELECT * FROM quarantine;   -- rejected lines, with file and line number\n"
              f"or write a report: edx-engine report course --format json -o course.json", highlight=False)


def demo(
    data_dir: Optional[str] = DataDir,
    package_dir: Path = typer.Option(Path("demo-package"), help="Where to write the synthetic package."),
    learners: int = typer.Option(300, help="Learners in the demo organisation."),
    courses: int = typer.Option(3, help="Courses in the demo organisation."),
    days: int = typer.Option(7, help="Days of tracking logs."),
) -> None:
    """Generate a small realistic package, import it and show what the store holds."""
    from ..store.lake import Lake
    from ..synthetic import SyntheticConfig, generate

    settings = load_settings(data_dir)
    t0 = time.perf_counter()
    if package_dir.exists():
        shutil.rmtree(package_dir)
    generate(package_dir, SyntheticConfig(courses=courses, learners=learners, days=days))
    out.print("The synthetic delivery contains a few malformed lines on purpose: they are rejected, kept in the "
              "`quarantine` view, and the rest is imported.", highlight=False)
    try:
        exports, events = run_import(settings, [package_dir], show_partial=False)
    except (SourceError, DecryptError, StoreBusy) as exc:
        fail(str(exc))
        return
    if exports:
        out.print(f"database files: {len(exports.files)}, rows: {exports.rows:,}, rejected lines: "
                  f"{exports.rejected:,}", highlight=False)
    if events:
        out.print(events.one_line(), highlight=False)
    from ..models import Params, build_duckdb, load_registry

    build = build_duckdb(Lake(settings.data_dir), load_registry(None, settings.file)[0], Params())
    out.print(build.one_line(), highlight=False)
    demo_summary(settings, time.perf_counter() - t0)
    from ..dashboard import DashboardError, build_site

    try:
        site = build_site(Lake(settings.data_dir), settings.data_dir / "site", lang="en")
    except DashboardError as exc:
        fail(str(exc))
        return
    out.print(f"dashboard: open {site.out_dir.resolve() / 'index.html'} in a browser, or run "
              f"`edx-engine dashboard serve --data-dir {settings.data_dir}` and open http://127.0.0.1:8050",
              highlight=False, soft_wrap=True)
