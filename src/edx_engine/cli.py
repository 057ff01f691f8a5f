"""Command-line interface: parse options, call the library, show progress. No logic lives here."""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from . import config as cfg
from .decrypt import DecryptError
from .ingest.sources import SourceError
from .lake import Lake, StoreBusy, StoreWriteError

app = typer.Typer(help="edx-engine: edX research data packages -> analytics database, indicators, dashboards.",
                  rich_markup_mode=None,  # help text is plain text: "[courses]" stays as written
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console(stderr=True)
out = Console()

DataDir = typer.Option(None, "--data-dir", help="Data directory (env EDX_ENGINE_DATA_DIR, default ./edx-data).")
GnupgHome = typer.Option(None, "--gnupghome", help="GPG keyring directory (default: env GNUPGHOME).")
PassFile = typer.Option(None, "--passphrase-file",
                        help="File holding the GPG passphrase (default: env EDX_ENGINE_GPG_PASSPHRASE).")
ConfigOpt = typer.Option(None, "--config", help="TOML config file (default ./edx-engine.toml if present).")


def fail(message: str, code: int = 1) -> None:
    """One line (no traceback) and exit ``code``; the message is printed as written (no rich markup)."""
    console.print(Text.assemble(("error: ", "bold red"), message), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _settings(data_dir, gnupghome=None, passphrase_file=None, config=None) -> cfg.Settings:
    try:
        return cfg.resolve(data_dir, gnupghome, passphrase_file, config)
    except cfg.ConfigError as exc:
        fail(str(exc))
        raise  # unreachable


class _AmountColumn(ProgressColumn):
    """'12.3/45.6 MB' for tasks counted in bytes (``unit="B"``), '3/12' for tasks counted in files."""

    def render(self, task) -> Text:
        if task.fields.get("unit") == "B":
            total = f"{task.total / 1e6:,.1f}" if task.total else "?"
            return Text(f"{task.completed / 1e6:,.1f}/{total} MB", style="progress.download")
        total = f"{task.total:,.0f}" if task.total is not None else "?"
        return Text(f"{task.completed:,.0f}/{total}", style="progress.download")


def run_import(settings: cfg.Settings, paths: list[Path], package_date: str | None = None, quiet: bool = False,
               scrub: bool = False, labels: dict[Path, str] | None = None, show_partial: bool = True,
               refused: list[str] | None = None):
    """`ingest.run.import_paths` with a progress bar and messages on the console.

    ``show_partial``: print a line for each file with rejected lines (the demo says once instead).
    ``refused``: gets the lines of files refused unread (links leaving the package)."""
    from rich.markup import escape

    from .ingest.run import import_paths

    with Progress(TextColumn("{task.description}"), BarColumn(), _AmountColumn(), TimeElapsedColumn(),
                  TextColumn("eta"), TimeRemainingColumn(), console=console,
                  disable=quiet or not console.is_terminal) as progress:
        def on_file(r) -> None:
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
                            on_wait=on_wait)


@app.command("import")
def import_cmd(
    paths: list[Path] = typer.Argument(..., help="Package zip(s), directories, single table files or event logs."),
    package_date: Optional[str] = typer.Option(None, help="Package date (YYYY-MM-DD) for loose files that do not say it."),
    data_dir: Optional[str] = DataDir, gnupghome: Optional[str] = GnupgHome,
    passphrase_file: Optional[str] = PassFile, config: Optional[str] = ConfigOpt,
    scrub: bool = typer.Option(False, "--scrub", help="Remove personal data right after the import "
                                                      "(see `edx-engine scrub`)."),
) -> None:
    """Import weekly database packages and daily tracking logs (.gpg files are decrypted with gpg)."""
    settings = _settings(data_dir, gnupghome, passphrase_file, config)
    refused: list[str] = []
    try:
        exports, events = run_import(settings, paths, package_date, scrub=scrub, refused=refused)
    except (SourceError, DecryptError, StoreBusy, StoreWriteError, cfg.ConfigError) as exc:
        fail(str(exc))
        return
    partial = bool(refused)
    if refused:
        out.print(f"refused: {len(refused)} file(s), named above, not read", highlight=False)
    if exports:
        by_status = {s: [f for f in exports.files if f.status == s] for s in ("loaded", "unchanged", "older")}
        older = f", {len(by_status['older'])} older than the store" if by_status["older"] else ""
        if exports.not_exported:
            older += f", {len(exports.not_exported)} not exported by edX"
        out.print(f"database files: {len(exports.files)} ({len(by_status['loaded'])} loaded, "
                  f"{len(by_status['unchanged'])} unchanged{older}, {len(exports.failed)} failed), "
                  f"rows: {exports.rows:,}, rejected lines: {exports.rejected:,}, {exports.seconds:.1f} s",
                  highlight=False)
        if by_status["older"]:
            out.print(f"note: {by_status['older'][0].message} (and the same for the other older files); "
                      "nothing of them was imported", highlight=False)
        extras = sorted({(f.table, c) for f in exports.files for c in f.extra_columns})
        for table, col in extras:
            out.print(f"note: unknown column {table}.{col} kept as text", highlight=False)
        for table in exports.unknown_tables:
            out.print(f"note: unknown table {table} kept as text (view {table})", highlight=False)
        for f in exports.not_exported:
            out.print(f"note: {f.message}", highlight=False)
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


@app.command()
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
    gnupghome: Optional[str] = GnupgHome,
    malformed: bool = typer.Option(True, help="Inject a small controlled fraction of malformed lines."),
    vintage: Optional[int] = typer.Option(None, help="Package layout of an era: 2016, 2020 or 2024 (site suffix, "
                                                      "header changes, .failed marker, unknown table, opt-in zip)."),
) -> None:
    """Write a realistic, deterministic synthetic edX delivery (package zip + daily logs)."""
    from .synthetic import SyntheticConfig, generate

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


@app.command()
def tables(data_dir: Optional[str] = DataDir) -> None:
    """List the store's tables with rows per course and package date."""
    settings = _settings(data_dir)
    lake = Lake(settings.data_dir)
    if not lake.catalog_path.exists():
        fail(f"no store at {settings.data_dir} (run `edx-engine import` first)")
    with lake.connect(read_only=True) as con:
        rows = con.execute("SELECT table_name, count(*) AS courses, sum(rows) AS rows, max(package_date), "
                           "sum(rejected) FROM _edx_snapshots GROUP BY 1 ORDER BY 1").fetchall()
    t = Table("table", "courses", "rows", "latest package", "rejected")
    for r in rows:
        t.add_row(r[0], str(r[1]), f"{r[2]:,}", r[3], str(r[4]))
    out.print(t)


@app.command()
def sql(
    query: str = typer.Argument(..., help="SQL to run on the catalog (read-only), e.g. \"SELECT * FROM events LIMIT 5\"."),
    data_dir: Optional[str] = DataDir,
    fmt: str = typer.Option("table", "--format", help="table, csv or json (csv and json: every row, full values)."),
    limit: Optional[int] = typer.Option(None, help="Rows at most (default: 50 for a table, all for csv/json)."),
    no_bom: bool = typer.Option(False, "--no-bom", help="CSV without the UTF-8 byte-order mark (Excel needs it "
                                                        "to show accented names)."),
) -> None:
    """Query the store with DuckDB SQL, read-only (no DuckDB CLI needed).

    Only the store's own files can be read: no other file, URL or extension."""
    import duckdb

    from . import sql_output

    if fmt not in sql_output.FORMATS:
        fail(f"unknown format {fmt!r} (use {', '.join(sql_output.FORMATS)})")
    if limit is not None and limit < 0:
        fail("--limit must be 0 or more")
    lake = Lake(_settings(data_dir).data_dir)
    if not lake.catalog_path.exists():
        fail(f"no store at {lake.root} (run `edx-engine import` or `edx-engine demo` first)")
    _check_read_only_query(query)
    models = _models_named(query)
    if models:
        from .cli_models import warn_stale

        warn_stale(lake, models)
    try:
        with lake.connect_sandboxed() as con:
            rel = con.sql(query)
            if rel is None:
                return
            if fmt == "table":
                _sql_table(rel, 50 if limit is None else limit)
            else:
                _sql_stream(rel, fmt, limit, bom=not no_bom)
    except duckdb.PermissionException as exc:
        fail(f"{str(exc).splitlines()[0]} (`edx-engine sql` reads only the store's own files)")
    except duckdb.CatalogException as exc:
        hint = " (models are computed by `edx-engine build`)" if models else ""
        fail(str(exc).splitlines()[0] + hint)
    except duckdb.Error as exc:
        fail(str(exc).splitlines()[0])


def _models_named(query: str) -> list[str]:
    """Model names a query reads (``models.x`` or ``models."x"``)."""
    import re

    return sorted(set(re.findall(r'\bmodels\s*\.\s*"?([A-Za-z_][A-Za-z0-9_]*)', query, flags=re.IGNORECASE)))


def _sql_table(rel, limit: int) -> None:
    """A rich table of at most ``limit`` rows; long values are folded, never cut short."""
    from . import sql_output

    rows = [r for batch in sql_output.rows(rel, limit + 1) for r in batch]
    cells = [[Text(sql_output.text(v, "NULL")) for v in row] for row in rows[:limit]]
    t = Table()
    for c in rel.columns:
        t.add_column(Text(c), overflow="fold")
    for row in cells:
        t.add_row(*row)
    if out.is_terminal:
        out.print(t)
    else:  # a pipe or a file: as wide as the widest values, so that nothing is folded either
        widths = [max([len(c)] + [len(r[i].plain) for r in cells]) for i, c in enumerate(rel.columns)]
        Console(width=max(80, sum(widths) + 3 * len(widths) + 1)).print(t)
    if len(rows) > limit:
        console.print(f"(first {limit} rows; --limit N for more, or --format csv for all)", highlight=False)


def _sql_stream(rel, fmt: str, limit: int | None, bom: bool) -> None:
    """Every row (or ``limit``) as CSV or JSON on stdout, UTF-8 whatever the locale."""
    import io
    import os

    from . import sql_output

    stream = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
    try:
        if fmt == "csv":
            sql_output.write_csv(stream, rel.columns, sql_output.rows(rel, limit), bom)
        else:
            sql_output.write_json(stream, rel.columns, sql_output.rows(rel, limit))
        stream.flush()
    except BrokenPipeError:  # `... | head`: the reader has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        stream.detach()


READ_ONLY_STATEMENTS = ("SELECT", "EXPLAIN")  # SELECT covers DESCRIBE, SHOW, SUMMARIZE, FROM ...
_EXPLAIN = r"\s*EXPLAIN\s+(?:ANALY[SZ]E\s+)?(?:\([^)]*\)\s*)?"


def _check_read_only_query(query: str) -> None:
    """One query statement only. The catalog is opened read-only and sandboxed, but COPY ... TO,
    ATTACH, INSTALL/LOAD or SET would still try to write files or change settings, and
    EXPLAIN ANALYZE runs the statement it explains."""
    import re

    import duckdb

    try:
        stmts = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        fail(str(exc).splitlines()[0])
        return
    if len(stmts) != 1:
        fail(f"`sql` runs exactly one statement ({len(stmts)} given)")
    kind = stmts[0].type.name
    if kind == "EXPLAIN":
        m = re.match(_EXPLAIN, stmts[0].query, re.I)
        inner = duckdb.extract_statements(stmts[0].query[m.end():]) if m else []
        kind = "EXPLAIN" if len(inner) == 1 and inner[0].type.name == "SELECT" else "EXPLAIN of " + (
            inner[0].type.name if len(inner) == 1 else "something else than a query")
    if kind not in READ_ONLY_STATEMENTS:
        fail(f"`sql` only runs queries (SELECT, DESCRIBE, SHOW, EXPLAIN ...), not {kind}; "
             "use DuckDB itself to write files")


def demo_summary(settings: cfg.Settings, seconds: float) -> None:
    from .models import read_model

    lake = Lake(settings.data_dir)
    with lake.connect(read_only=True) as con:
        courses, learners = con.execute("SELECT count(DISTINCT course_id), count(DISTINCT user_id) "
                                        "FROM student_courseenrollment").fetchone()
        counts = con.execute("SELECT table_name, sum(rows) FROM _edx_snapshots GROUP BY 1 ORDER BY 1").fetchall()
        nevents = con.execute("SELECT count(*) FROM events").fetchone()[0]
    t = Table("table", "rows", title=f"{courses} courses, {learners} learners, {nevents:,} events")
    for name, n in counts:
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


@app.command()
def demo(
    data_dir: Optional[str] = DataDir,
    package_dir: Path = typer.Option(Path("demo-package"), help="Where to write the synthetic package."),
    learners: int = typer.Option(300, help="Learners in the demo organisation."),
    courses: int = typer.Option(3, help="Courses in the demo organisation."),
    days: int = typer.Option(7, help="Days of tracking logs."),
) -> None:
    """Generate a small realistic package, import it and show what the store holds."""
    from .synthetic import SyntheticConfig, generate

    settings = _settings(data_dir)
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
    from .models import Params, build_duckdb, load_registry

    build = build_duckdb(Lake(settings.data_dir), load_registry(None, settings.file)[0], Params())
    out.print(build.one_line(), highlight=False)
    demo_summary(settings, time.perf_counter() - t0)
    from .dashboard import DashboardError, build_site

    try:
        site = build_site(Lake(settings.data_dir), settings.data_dir / "site", lang="en")
    except DashboardError as exc:
        fail(str(exc))
        return
    out.print(f"dashboard: open {site.out_dir.resolve() / 'index.html'} in a browser, or run "
              f"`edx-engine dashboard serve --data-dir {settings.data_dir}` and open http://127.0.0.1:8050",
              highlight=False, soft_wrap=True)


# Commands of the later stages live in their own modules and register themselves on `app`.
# (Not when this file runs as __main__: the block at the end imports the real module, which does it.)
for _module in (("cli_sync", "cli_models", "cli_privacy", "cli_run", "cli_dashboard")
                if __name__ != "__main__" else ()):
    try:
        __import__(f"{__package__}.{_module}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"{__package__}.{_module}":
            raise


INTERRUPTED = ("interrupted: the step in progress was not committed and the store is consistent; run the same command "
               "again (what was committed before is not imported twice)")


class _Interrupt:
    """Ctrl-C (SIGINT) anywhere: remember it, so that whatever a library turns it into (DuckDB raises
    ``RuntimeError: Query interrupted``) ends as one line and exit 130, not a traceback."""

    seen = False
    reported = False  # a command that printed its own line about the interruption (sync) sets it

    @classmethod
    def handler(cls, signum, frame) -> None:
        cls.seen = True
        raise KeyboardInterrupt


def main() -> None:
    """Console entry point: the app, with one line (no traceback) for a busy store or an interruption."""
    import signal

    signal.signal(signal.SIGINT, _Interrupt.handler)
    try:
        app()
    except StoreBusy as exc:
        console.print(Text.assemble(("error: ", "bold red"), str(exc)), highlight=False, soft_wrap=True)
        sys.exit(1)
    except BaseException as exc:
        if not _Interrupt.seen and not isinstance(exc, KeyboardInterrupt):
            raise
        if not _Interrupt.reported:
            console.print(INTERRUPTED, highlight=False, soft_wrap=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    # Run the app of the imported module: the command modules registered themselves on it.
    from edx_engine.cli import main as _main

    _main()
