"""Command-line interface: options → settings → one library call → print. No logic lives here.

One module per command group: imports (import, synthetic, tables, demo), sql, sync (sync, status,
keys), models (courses, build, report), privacy (scrub, export, locate-users), run, dashboard.
`COMMANDS` below is the one list of what `app` offers, in the order `--help` shows it; shared
options and helpers are in `common`. A new command: a function in its group's module, a line here."""

from __future__ import annotations

import sys

import typer
from rich.text import Text

from .. import pandas_guard
from ..store.errors import StoreBusy, StoreWriteError, disk_full_cause, is_disk_full
from . import dashboard, imports, models, privacy, run, sql, sync
from .common import INTERRUPTED, Interrupt, console, fail, out
from .imports import run_import

__all__ = ["app", "main", "run_import", "console", "out", "fail"]

app = typer.Typer(help="edx-engine: edX research data packages -> analytics database, indicators, dashboards.",
                  rich_markup_mode=None,  # help text is plain text: "[courses]" stays as written
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
COMMANDS = (
    ("import", imports.import_cmd), ("synthetic", imports.synthetic), ("tables", imports.tables),
    ("sql", sql.sql), ("demo", imports.demo),
    ("sync", sync.sync), ("status", sync.status), ("skip", sync.skip),
    ("courses", models.courses), ("build", models.build), ("report", models.report),
    ("scrub", privacy.scrub), ("export", privacy.export_cmd), ("locate-users", privacy.locate_users_cmd),
    ("run", run.command()),
)
GROUPS = (("keys", sync.keys_app), ("dashboard", dashboard.dashboard_app))



@app.callback()
def _every_command(ctx: typer.Context) -> None:
    # pandas stays hidden while a command runs (see edx_engine.pandas_guard: DuckDB would import it
    # for nothing); allowed again when the command ends, for callers that run the app in-process
    if not pandas_guard.is_hidden():
        pandas_guard.hide()
        ctx.call_on_close(pandas_guard.allow)


for _name, _function in COMMANDS:
    app.command(_name)(_function)
for _name, _group in GROUPS:
    app.add_typer(_group, name=_name)


def main() -> None:
    """Console entry point: the app, with one line (no traceback) for a busy store or an interruption."""
    import signal

    from .. import interrupts

    interrupts.reset()
    Interrupt.seen = Interrupt.reported = False  # an earlier command of this process (in-process callers)
    signal.signal(signal.SIGINT, Interrupt.handler)
    signal.signal(signal.SIGTERM, Interrupt.handler)  # systemd stop, docker stop: as Ctrl-C (exit 130)
    sys.unraisablehook = Interrupt.unraisable
    try:
        app()
    except StoreBusy as exc:
        console.print(Text.assemble(("error: ", "bold red"), str(exc)), highlight=False, soft_wrap=True)
        sys.exit(1)
    except BaseException as exc:
        if not Interrupt.seen and isinstance(exc, Exception) and (isinstance(exc, StoreWriteError)
                                                                  or is_disk_full(exc)):
            # a full disk where no command catches it (the stages say it in their own words first): one
            # line, not a traceback
            console.print(Text.assemble(("error: ", "bold red"), _disk_line(exc)), highlight=False, soft_wrap=True)
            sys.exit(1)
        if not Interrupt.seen and not isinstance(exc, KeyboardInterrupt):
            raise
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            raise  # a command that ended on its own after the signal (`dashboard serve` stops so): exit 0
        if not Interrupt.reported:
            console.print(INTERRUPTED, highlight=False, soft_wrap=True)
        sys.exit(130)
    finally:
        sys.unraisablehook = sys.__unraisablehook__
        interrupts.reset()  # the command is over: library code run later in this process may commit again


def _disk_line(exc: BaseException) -> str:
    if isinstance(exc, StoreWriteError):
        return str(exc)
    return disk_full_cause(exc) + "; free some space and run again"
