"""Command ``run``: the unattended daily job — sync, then build what changed, then the dashboard.

``run`` takes every option of ``sync`` (same names, same config keys) plus a few of its own, so
the deploy files call one command and a new ``sync`` option reaches ``run`` by construction.
"""

from __future__ import annotations

import functools
import inspect
import time
import typing

import typer

from .common import console, load_settings, out
from .sync import sync


# How long the build waits for another process writing to the store (a manual import, a backup holding
# the store's lock), as the sync waits for one before an import: then the night's build fails in one line.
STORE_WAIT = 600.0


def _build(settings, dashboard: bool) -> int:
    """Build the models that changed, then the dashboard; the exit code of this half."""
    from .. import interrupts
    from .models import _params, _registry, _store
    from ..lake import Lake, StoreBusy
    from ..models import BuildError, build_duckdb, build_postgres

    entries, _ = _registry(settings, None)
    params = _params(settings, None, None)
    url = _store(settings, None)
    lake = Lake(settings.data_dir)
    if not lake.catalog_path.exists():
        console.print("nothing imported yet: no models to build", highlight=False)
        return 0
    deadline, waiting = time.monotonic() + STORE_WAIT, False
    while True:
        try:
            res = (build_postgres(lake, url, entries, params) if url else build_duckdb(lake, entries, params))
            break
        except (BuildError, StoreBusy) as exc:
            # another writer (its lock), or a program holding the catalog: worth waiting for; a moved,
            # too new or long-held catalog (subclasses, already waited for) is not
            if type(exc) is not StoreBusy or time.monotonic() > deadline:
                console.print(f"build failed: {exc}", highlight=False, markup=False, soft_wrap=True)
                return 1
            if not waiting:
                console.print(f"{exc}: the build waits for it (up to {STORE_WAIT / 60:.0f} minutes)",
                              highlight=False, markup=False, soft_wrap=True)
                waiting = True
            interrupts.check()
            time.sleep(1.0)
    out.print(res.one_line(), highlight=False)
    if not dashboard:
        return 0
    if url:
        out.print("dashboard skipped: the models live in PostgreSQL (the dashboard reads the DuckDB catalog)",
                  highlight=False)
        return 0
    return _dashboard(settings, lake)


def _dashboard(settings, lake) -> int:
    try:
        from ..dashboard import DashboardError, build_site
    except ImportError:  # an installation without the dashboard
        return 0
    conf = settings.section("dashboard")
    if conf.get("enabled", True) is False:
        return 0
    out_dir = conf.get("output") or (settings.data_dir / "site")
    try:
        res = build_site(lake, out_dir, lang=conf.get("lang", "es"), public=bool(conf.get("public", False)),
                         k=int(conf.get("k", 5)), title=conf.get("title"))
    except DashboardError as exc:
        console.print(f"dashboard failed: {exc}", highlight=False, markup=False, soft_wrap=True)
        return 1
    out.print(res.one_line() if hasattr(res, "one_line") else f"dashboard written to {out_dir}", highlight=False)
    return 0


def _warn_low_disk(sync_options: dict) -> None:
    """One line on stderr when the store's file system has less free space than the next writes may need:
    an unattended job says so before the night the disk fills (`status` shows the sizes)."""
    from .. import config as cfg
    from ..store.status import disk_report, disk_warning

    try:
        settings = cfg.resolve(sync_options.get("data_dir"), None, None, sync_options.get("config"))
    except cfg.ConfigError:  # the sync said so already
        return
    if (warning := disk_warning(disk_report(settings.data_dir))) is not None:
        console.print(warning, highlight=False, markup=False, soft_wrap=True)


def run(build: bool = True, dashboard: bool = True, **sync_options) -> None:
    """Daily job: sync from S3, then build the models that changed, then the dashboard.

    Exit status: the worst of the steps (0 ok, 1 a step failed, 2 partial: some file was rejected).
    A sync that could not start (configuration, busy store) stops the run; a partial sync is
    still built, so the indicators always show what was imported."""
    from .. import interrupts

    code = 0
    try:
        sync(**sync_options)
    except typer.Exit as exc:
        code = exc.exit_code
    interrupts.check()  # stopped during the sync (whatever became of the signal): no build after it
    _warn_low_disk(sync_options)  # after the sync (the downloads are on the disk), before the build
    if code not in (0, 2) or sync_options.get("dry_run"):
        raise typer.Exit(code)
    if build:
        settings = load_settings(sync_options.get("data_dir"), None, sync_options.get("passphrase_file"),
                             sync_options.get("config"))
        step = _build(settings, dashboard)
        code = max(code, step) if step != 1 else 1
    raise typer.Exit(code)


_OWN = [
    inspect.Parameter("build", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                      default=typer.Option(True, "--build/--no-build", help="Build the models after the sync.")),
    inspect.Parameter("dashboard", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                      default=typer.Option(True, "--dashboard/--no-dashboard",
                                           help="Rebuild the dashboard after the models (config [dashboard]).")),
]


def command():
    """``run`` with sync's parameters followed by its own (typer reads ``__signature__``)."""
    hints = typing.get_type_hints(sync)
    sync_params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation))
                   for p in inspect.signature(sync).parameters.values()]

    @functools.wraps(run)
    def command(**kwargs) -> None:
        run(**kwargs)

    del command.__wrapped__
    command.__signature__ = inspect.Signature(sync_params + _OWN)
    command.__doc__ = run.__doc__
    return command

