"""Privacy commands: scrub, export (anonymised / public), locate-users. Logic lives in
``edx_engine.privacy`` and ``edx_engine.geo``; see docs/privacy.md."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .common import DataDir, console, fail, load_settings, out, warn_stale
from ..store.errors import StoreBusy

SecretFile = typer.Option(None, "--secret-file",
                          help="File holding the pseudonymisation secret (default: env "
                               "EDX_ENGINE_PSEUDONYM_SECRET or EDX_ENGINE_PSEUDONYM_SECRET_FILE).")


def scrub(
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed; change nothing."),
    check: bool = typer.Option(False, "--check", help="Exit 3 if the store still holds personal data; change nothing."),
    locate: bool = typer.Option(True, help="Run locate-users first while tracking logs still hold IP addresses."),
    data_dir: Optional[str] = DataDir,
) -> None:
    """Remove personal data (names, e-mails, usernames, IPs, free text...) from the store, irreversibly."""
    from ..store.lake import Lake
    from ..privacy.scrub import ScrubError, scrub as run_scrub, status

    settings = load_settings(data_dir)
    lake = Lake(settings.data_dir)
    if check:
        try:
            s = status(lake)
        except ScrubError as exc:
            fail(str(exc))
            return
        if s["files"]:
            out.print(f"personal data left in {s['files']} file(s) not scrubbed yet ({s['values']:,} value(s) in "
                      "personal columns, plus any free text in event JSON and rejected lines); run `edx-engine scrub`",
                      highlight=False)
            raise typer.Exit(3)
        out.print("no personal data left in the store", highlight=False)
        _postgres_note(settings)
        return
    try:
        res = run_scrub(lake, dry_run=dry_run, locate=locate)
    except (ScrubError, StoreBusy) as exc:
        fail(str(exc))
        return
    rows = res.by_table()
    if rows:
        t = Table("kind", "table", "files", "rows", "columns set to NULL / JSON keys removed", "values",
                  title="would be removed" if dry_run else "removed")
        for kind, name, files, nrows, cols, values in rows:
            t.add_row(kind, name, str(files), f"{nrows:,}", ", ".join(cols), f"{values:,}")
        out.print(t)
    if res.located:
        out.print("IP-derived countries were computed first (locate-users) and are kept in user_location",
                  highlight=False)
    if res.backfilled_user_ids:
        out.print(f"{res.backfilled_user_ids:,} event(s) got their user_id from the username before it was removed",
                  highlight=False)
    out.print(res.one_line(), highlight=False)
    if not dry_run and rows:
        _postgres_note(settings)
        out.print("note: packages imported later bring personal data back; run `edx-engine scrub` after each import "
                  "or set `\\[privacy] scrub_on_import = true` in the config file", highlight=False)


def _postgres_note(settings) -> None:
    """A PostgreSQL store is configured (EDX_ENGINE_STORE, ``[models] store``): scrub does not reach its copies."""
    from ..models.params import ParamsError, mask_store, store_url

    try:
        url = store_url(settings.section("models"))
    except ParamsError:
        return
    if url:
        out.print(f"note: the copies in PostgreSQL ({mask_store(url)}) are not checked nor scrubbed here: the next "
                  "`edx-engine build --store ...`, with or without --model, copies the scrubbed tables again and "
                  "rebuilds every model the database holds over them",
                  highlight=False, markup=False, soft_wrap=True)


def export_cmd(
    name: str = typer.Argument(..., help="Model (masterfile, person_course, course_summary...) or edX table."),
    # a str, not a Path: Path drops the trailing "/" that makes `-o new-dir/` a directory to create
    output: str = typer.Option(..., "-o", "--output", help="File to write (.csv or .parquet), or a directory "
                                                 "(NAME.FORMAT inside it)."),
    anonymised: bool = typer.Option(False, "--anonymised", "--anonymized",
                                    help="Replace user ids by keyed pseudonyms and drop every personal column."),
    public: bool = typer.Option(False, "--public", help="Small-cell suppression, for publication (aggregates only)."),
    k: int = typer.Option(5, "--k", help="Smallest count that may be published with --public."),
    fmt: Optional[str] = typer.Option(None, "--format", help="csv or parquet (default: from the file name)."),
    secret_file: Optional[Path] = SecretFile,
    no_bom: bool = typer.Option(False, "--no-bom", help="CSV without the UTF-8 byte-order mark."),
    data_dir: Optional[str] = DataDir,
) -> None:
    """Write a shareable file: --anonymised (research export) and/or --public (suppressed aggregate).

    A report's name is accepted too (`export general --public` is `export general_report --public`)."""
    from ..store.lake import Lake
    from ..reports import model_name
    from ..privacy.export import ExportError, export_table
    from ..privacy.pseudonym import Pseudonymizer, SecretError, load_secret

    settings = load_settings(data_dir)
    if not anonymised and not public:
        fail("say what kind of shareable file: --anonymised (pseudonymised research export) and/or --public "
             "(small-cell suppressed aggregate); identified outputs are `edx-engine report`'s job")
    pz = None
    if anonymised:
        try:
            pz = Pseudonymizer(load_secret(secret_file, settings))
        except SecretError as exc:
            fail(str(exc))
            return
    name = model_name(name)
    lake = Lake(settings.data_dir)
    warn_stale(lake, [name])
    try:
        res = export_table(lake, name, output, fmt, pseudonymizer=pz, public=public, k=k, bom=not no_bom)
    except ExportError as exc:
        fail(str(exc))
        return
    out.print(res.one_line(), highlight=False)


def locate_users_cmd(data_dir: Optional[str] = DataDir) -> None:
    """Country of each learner: from the profile, else from their most frequent IP country (offline database)."""
    from ..store.lake import Lake
    from ..geo import GeoError, locate_users

    settings = load_settings(data_dir)
    try:
        res = locate_users(Lake(settings.data_dir))
    except (GeoError, StoreBusy) as exc:
        fail(str(exc))
        return
    t = Table("course", "learners", "from profile", "from IP", "not locatable")
    for r in res.summary.to_pylist():
        t.add_row(r["course_id"], str(r["learners"]), str(r["from_profile"]), str(r["from_ip"]),
                  str(r["not_locatable"]))
    out.print(t)
    out.print(res.one_line(), highlight=False)
    console.print(f"IP database licence: {res.ip_db.licence}", highlight=False)
