"""Commands ``sync``, ``status``, ``skip`` and ``keys import``: the daily unattended download from edX's S3 buckets."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path
from typing import Any, Optional

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .. import config as cfg
from .common import ConfigOpt, DataDir, GnupgHome, PassFile, Interrupt, console, fail, load_settings, out, read_gpg

keys_app = typer.Typer(help="Manage the organisation's private GPG key.", no_args_is_help=True)

IGNORED_SHOWN = 10  # keys that are not edX's names: the first few are named, the rest counted


def _print_ignored(keys: list[str], org: str) -> None:
    for k in keys[:IGNORED_SHOWN]:
        console.print(Text.assemble(("ignored", "yellow"), f" {k}: not an edX name for {org}"), highlight=False)
    if len(keys) > IGNORED_SHOWN:
        console.print(f"[yellow]ignored[/] {len(keys) - IGNORED_SHOWN} more keys that are not edX names for {org}",
                      highlight=False)


# -- keys -----------------------------------------------------------------------------------

@keys_app.command("import")
def keys_import(
    key_file: Path = typer.Argument(..., help="The organisation's private key (ASCII-armoured or binary)."),
    data_dir: Optional[str] = DataDir, gnupghome: Optional[str] = GnupgHome,
    passphrase_file: Optional[str] = PassFile, config: Optional[str] = ConfigOpt,
) -> None:
    """Import the private key into a private keyring (default <data-dir>/gnupg, mode 0700, no passphrase cache)."""
    from ..fetch.keys import KeyError_, default_home, import_key

    settings = load_settings(data_dir, None, passphrase_file, config)
    home = Path(gnupghome) if gnupghome else default_home(settings.data_dir)
    try:
        fprs = import_key(key_file, home, read_gpg(settings).passphrase)
    except KeyError_ as exc:
        fail(str(exc))
        return
    out.print(f"private key imported into {home}: {', '.join(fprs)}", highlight=False)


# -- sync -----------------------------------------------------------------------------------

def sync(
    org: Optional[str] = typer.Option(None, "--org", help="Organisation as edX spells it, e.g. IDBx (env EDX_ENGINE_ORG, "
                                                           "config file: sync.org)."),
    packages_bucket: Optional[str] = typer.Option(None, "--packages-bucket",
                                                  help="Bucket of the weekly database packages (default course-data)."),
    events_bucket: Optional[str] = typer.Option(None, "--events-bucket",
                                                help="Bucket of the daily tracking logs (default edx-course-data)."),
    endpoint_url: Optional[str] = typer.Option(None, "--endpoint-url",
                                               help="S3-compatible endpoint (default: AWS, or boto3's AWS_ENDPOINT_URL)."),
    profile: Optional[str] = typer.Option(None, "--profile", help="AWS profile (default: boto3's credential chain)."),
    since: Optional[str] = typer.Option(None, "--since", help="Only objects whose name's date is on/after YYYY-MM-DD."),
    only: Optional[str] = typer.Option(None, "--only", help="events | packages (default both)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be downloaded and imported; change nothing."),
    keep_downloads: Optional[bool] = typer.Option(None, "--keep-downloads/--delete-downloads",
                                                  help="Keep the (still encrypted) downloaded files after import "
                                                       "(default: delete them)."),
    wait: bool = typer.Option(False, "--wait", help="Wait for a running sync to finish instead of exiting."),
    key_file: Optional[Path] = typer.Option(None, "--key-file",
                                            help="Import this private key into <data-dir>/gnupg first."),
    retries: Optional[int] = typer.Option(None, "--retries", help="Retries of a failing S3 request (default 4)."),
    retry_delay: Optional[float] = typer.Option(None, "--retry-delay",
                                                help="First backoff delay in seconds, doubled at each retry (default 1)."),
    data_dir: Optional[str] = DataDir, gnupghome: Optional[str] = GnupgHome,
    passphrase_file: Optional[str] = PassFile, config: Optional[str] = ConfigOpt,
) -> None:
    """Download every new or changed object from edX's S3 buckets, decrypt and import it (catches up missed days)."""
    from ..fetch.keys import KeyError_, default_home, import_key
    from ..fetch.s3 import FetchError, S3Error, S3Fetcher, S3Settings
    from rich.markup import escape

    from ..fetch.sync import SyncBusy, failure_line, sync_lock
    from ..pipeline.sync import Syncer
    from ..ledger import LedgerBusy
    from ..store.errors import StoreWriteError

    settings = load_settings(data_dir, None, passphrase_file, config)
    try:
        sc = cfg.sync_settings(settings, dict(
            org=org, packages_bucket=packages_bucket, events_bucket=events_bucket, endpoint_url=endpoint_url,
            profile=profile, since=since, only=only, keep_downloads=keep_downloads, key_file=key_file,
            retries=retries, retry_delay=retry_delay))
        conf = S3Settings(**sc.s3)
    except cfg.ConfigError as exc:
        fail(str(exc))
        return
    since, only, keep, key_file = sc.since, sc.only, sc.keep_downloads, sc.key_file

    if shutil.which("gpg") is None:
        fail("the gpg binary was not found (install gnupg)")
    passphrase = read_gpg(settings).passphrase  # read once; dropped from the environment
    home_opt = gnupghome
    if key_file is not None and not dry_run:
        home = Path(home_opt) if home_opt else default_home(settings.data_dir)
        try:
            import_key(key_file, home, passphrase)
        except KeyError_ as exc:
            fail(str(exc))
        home_opt = str(home)
    run_settings = settings.with_keyring(cfg.sync_keyring(settings, home_opt))

    try:
        fetcher = S3Fetcher(conf)
    except Exception as exc:  # botocore: bad profile, bad endpoint URL
        fail(f"cannot set up the S3 client: {exc}")
        return

    if dry_run:
        try:
            res = Syncer(run_settings, fetcher).dry_run(only, since)
        except (S3Error, FetchError, LedgerBusy) as exc:
            fail(str(exc), 1 if isinstance(exc, S3Error) else 2)
            return
        t = Table("action", "date", "size", "why")
        t.add_column("object", overflow="fold")
        for p in res.plan:
            t.add_row(*_plain(p.action, p.obj.date, f"{p.obj.size:,}", p.reason, f"s3://{p.obj.bucket}/{p.obj.key}"))
        if res.plan:
            out.print(t)
        _print_ignored(res.skipped, conf.org)
        out.print(res.one_line(), highlight=False)
        return

    # systemd stop / docker stop: the run is recorded as interrupted, as after Ctrl-C. The handler also
    # notes it (interrupts.note): DuckDB turns it into "Query interrupted", which a file's import must not
    # record as a failed file (helper-70: the object was marked failed and `run` went on to build)
    signal.signal(signal.SIGTERM, Interrupt.handler)
    progress = Progress(TextColumn("{task.description:<60.60}"), BarColumn(), TaskProgressColumn(),
                        TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal)
    log = (lambda note: progress.console.print(_styled(note), highlight=False, soft_wrap=True))
    try:
        with sync_lock(settings.data_dir, wait=wait):
            with progress:
                syncer = Syncer(run_settings, fetcher, keep_downloads=keep, log=log,
                                progress=progress if console.is_terminal else None)
                res = syncer.run(only, since, options={"org": conf.org, "only": only, "since": since,
                                                       "packages_bucket": conf.packages_bucket,
                                                       "events_bucket": conf.events_bucket,
                                                       "endpoint_url": conf.endpoint_url})
    except SyncBusy as exc:
        fail(str(exc))
        return
    except S3Error as exc:
        fail(str(exc))
        return
    except LedgerBusy as exc:
        fail(str(exc), 2)
        return
    except StoreWriteError as exc:  # the disk is full (a download, an import, the ledger): the run stops
        fail(str(exc))
        return
    except KeyboardInterrupt:
        console.print("interrupted; the next sync resumes where this one stopped", highlight=False)
        Interrupt.reported = True
        raise typer.Exit(130)
    _print_ignored(res.skipped, conf.org)
    # each failure was printed once, as it happened (fetch.sync.failure_line: under 200 characters)
    for url, why in res.pending:
        if url not in res.reported:  # the others were printed as they happened
            console.print(f"[yellow]pending[/]{escape(failure_line('pending', url, why)[7:])}", highlight=False,
                          soft_wrap=True)
    out.print(res.one_line(), highlight=False, markup=False, soft_wrap=True)
    if res.status != "ok":
        raise typer.Exit(1 if res.status == "failed" else 2)


def _styled(note) -> "Text":
    """A sync's `SyncNote` for the terminal: a failure's first word in red, the rest as written."""
    from rich.text import Text

    if note.level in ("failure", "warning") and note.word and note.text.startswith(note.word):
        return Text.assemble((note.word, "red" if note.level == "failure" else "yellow"), note.text[len(note.word):])
    return Text(note.text)


# -- status ---------------------------------------------------------------------------------

def status(
    data_dir: Optional[str] = DataDir, config: Optional[str] = ConfigOpt,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show the sync ledger: last sync, pending, failed and skipped files (with reasons), data coverage per course,
    the store's size and the free space beside it (a warning when the next night may not fit)."""
    from ..fetch.sync import lock_holder
    from ..ledger import LedgerBusy
    from ..store.status import collect_status

    settings = load_settings(data_dir, None, None, config)
    try:
        rep = collect_status(Path(settings.data_dir), lock_holder(Path(settings.data_dir)))
    except LedgerBusy as exc:
        fail(f"{exc}; try again in a moment")
        return
    if as_json:
        out.print_json(json.dumps(rep, default=str))
        return
    if rep["running_pid"]:
        out.print(f"a sync is running now (pid {rep['running_pid']})", highlight=False)
    for imp in rep.get("imports", []):
        out.print(f"import {imp['at']:%Y-%m-%d %H:%M} UTC: {imp['files']} file(s) ({imp['loaded']} loaded, "
                  f"{imp['failed']} failed), {imp['rows']:,} rows, {imp['rejected']:,} rejected line(s)",
                  highlight=False)
    last = rep["last_sync"]
    if last is None:
        out.print(f"no sync has run on {settings.data_dir} yet (run `edx-engine sync --org ORG`)", highlight=False)
        _print_coverage(rep)
        _print_disk(rep)
        return
    out.print(f"last sync: {last['started_at']:%Y-%m-%d %H:%M:%S} UTC, {last['status']}"
              + (f" — {last['summary']}" if last["summary"] else ""), highlight=False, markup=False, soft_wrap=True)
    ok = rep["last_ok_sync"]
    if ok and ok["run_id"] != last["run_id"]:
        out.print(f"last complete sync: {ok['started_at']:%Y-%m-%d %H:%M:%S} UTC", highlight=False)
    out.print("ledger: " + (", ".join(f"{k} {n}" for k, n in rep["states"].items()) or "empty"), highlight=False)
    ef = rep["event_files"]
    if ef["imported"]:
        out.print(f"event logs: {ef['imported']} days imported, {ef['first_day']} to {ef['last_day']}"
                  + (f"; missing days: {', '.join(ef['missing_days'])}" if ef["missing_days"] else ""),
                  highlight=False)
    if rep["pending"]:
        t = Table(title=f"{len(rep['pending'])} file(s) pending")
        t.add_column("pending", overflow="fold")
        t.add_column("state")
        t.add_column("attempts")
        t.add_column("last error", overflow="fold")
        for p in rep["pending"]:
            t.add_row(*_plain(p["url"], p["state"], str(p["attempts"]), p["error"]))
        out.print(t)
    if rep["failed"]:
        t = Table(title=f"{len(rep['failed'])} file(s) failed")
        t.add_column("failed", overflow="fold")
        t.add_column("attempts")
        t.add_column("reason", overflow="fold")
        for p in rep["failed"]:
            t.add_row(*_plain(p["url"], str(p["attempts"]), p["error"]))
        out.print(t)
    if rep["skipped"]:
        t = Table(title=f"{len(rep['skipped'])} file(s) skipped (`edx-engine skip`; syncs leave them alone until "
                        "edX replaces them)")
        t.add_column("skipped", overflow="fold")
        t.add_column("by")
        t.add_column("since")
        t.add_column("reason", overflow="fold")
        t.add_column("last error", overflow="fold")
        for p in rep["skipped"]:
            t.add_row(*_plain(p["url"], p["by"], f"{p['at']:%Y-%m-%d %H:%M} UTC" if p["at"] else "",
                              p["reason"], p["error"]))
        out.print(t)
    _print_coverage(rep)
    _print_disk(rep)


def _print_disk(rep: dict[str, Any]) -> None:
    """The store's size by part and the free space beside it; a warning when the next night may not fit."""
    from ..store.status import disk_warning, human_bytes

    disk = rep.get("disk")
    if not disk:
        return
    parts = ", ".join(f"{k} {human_bytes(v)}" for k, v in disk["parts"].items() if v)
    out.print(f"disk: store {human_bytes(disk['store_bytes'])}" + (f" ({parts})" if parts else "")
              + f"; {human_bytes(disk['free_bytes'])} free on its file system", highlight=False)
    if (warning := disk_warning(disk)) is not None:
        console.print(warning, highlight=False, markup=False, soft_wrap=True)


# -- skip -----------------------------------------------------------------------------------

def skip(
    url: str = typer.Argument(..., metavar="S3_URL",
                              help="The object, as a sync or `status` names it: s3://BUCKET/KEY."),
    reason: Optional[str] = typer.Option(None, "--reason", help="Why it is skipped (shown by `status`)."),
    undo: bool = typer.Option(False, "--undo", help="Give the object back the state it had: the next sync retries it."),
    wait: bool = typer.Option(False, "--wait", help="Wait for a running sync to finish instead of exiting."),
    data_dir: Optional[str] = DataDir, config: Optional[str] = ConfigOpt,
) -> None:
    """Set aside an object that can never be imported (state skipped): syncs leave it alone until edX replaces it."""
    from ..fetch.sync import SyncBusy, sync_lock
    from ..ledger import LedgerBusy
    from ..store.ledger import NO_LEDGER, Ledger, SkipError, describe_skip

    settings = load_settings(data_dir, None, None, config)
    bucket, _, key = url.removeprefix("s3://").partition("/")
    if not url.startswith("s3://") or not bucket or not key:
        fail(f"not an S3 address: {url!r} (expected s3://BUCKET/KEY, as a sync or `edx-engine status` prints it)")
    ledger = Ledger(settings.data_dir)
    if not ledger.path.exists():  # before the sync lock, which would make the directory
        fail(NO_LEDGER.format(settings.data_dir))
    try:
        # a running sync holds the ledger's entries in memory and would overwrite the skip: wait for it or stop
        with sync_lock(settings.data_dir, wait=wait):
            if undo:
                e, back = ledger.unskip(bucket, key)
            else:
                e = ledger.skip(bucket, key, reason)
    except (SkipError, SyncBusy, LedgerBusy) as exc:
        fail(str(exc))
        return
    if undo:
        out.print(f"{url} is no longer skipped (was {describe_skip(e)}); back to {back}: "
                  "the next sync retries it", highlight=False, markup=False, soft_wrap=True)
        return
    msg = f"skipped {url} (was {e.state}): syncs leave it alone until edX replaces it; `--undo` to retry it"
    if e.local_path and (Path(settings.data_dir) / e.local_path).exists():
        msg += f"; its download is kept at {Path(settings.data_dir) / e.local_path}"
    out.print(msg, highlight=False, markup=False, soft_wrap=True)


def _plain(*values: str | None) -> list[Text]:
    """Table cells shown as written: S3 keys, errors and an operator's skip reason may hold "[...]",
    which rich would take for markup (a "[/x]" made `status` fail with a traceback)."""
    return [Text(v or "") for v in values]


def _print_coverage(rep: dict[str, Any]) -> None:
    cov: dict[str, dict] = {}
    for p in rep["packages"]:
        cov.setdefault(p["course_id"], {})["latest_package"] = p["latest_package"]
    for e in rep["events"]:
        cov.setdefault(e["course_id"], {}).update(first_day=e["first_day"], last_day=e["last_day"])
    if cov:
        t = Table("course", "first event day", "last event day", "latest package", title="coverage per course")
        for cid in sorted(cov):
            c = cov[cid]
            t.add_row(cid, c.get("first_day", "-"), c.get("last_day", "-"), c.get("latest_package", "-"))
        out.print(t)
