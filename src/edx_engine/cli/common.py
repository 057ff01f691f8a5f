"""What every command module shares: the two consoles, `fail`, the common options, settings
resolution, the stale-model warning and the Ctrl-C bookkeeping. Only the CLI prints."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console
from rich.text import Text

from .. import config as cfg

console = Console(stderr=True)
out = Console()

DataDir = typer.Option(None, "--data-dir", help="Data directory (env EDX_ENGINE_DATA_DIR, default ./edx-data).")
GnupgHome = typer.Option(None, "--gnupghome", help="GPG keyring directory (default: env GNUPGHOME, else <data-dir>/gnupg if `keys import` made it).")
PassFile = typer.Option(None, "--passphrase-file",
                        help="File holding the GPG passphrase (default: env EDX_ENGINE_GPG_PASSPHRASE).")
ConfigOpt = typer.Option(None, "--config", help="TOML config file (default ./edx-engine.toml if present).")

INTERRUPTED = ("interrupted: the step in progress was not committed and the store is consistent; run the same command "
               "again (what was committed before is not imported twice)")


def fail(message: str, code: int = 1) -> None:
    """One line (no traceback) and exit ``code``; the message is printed as written (no rich markup)."""
    console.print(Text.assemble(("error: ", "bold red"), message), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def load_settings(data_dir: Optional[str], gnupghome: Optional[str] = None, passphrase_file: Optional[str] = None,
                  config: Optional[str] = None) -> cfg.Settings:
    """`config.resolve`, with a configuration error as one line and exit 1."""
    try:
        return cfg.resolve(data_dir, gnupghome, passphrase_file, config)
    except cfg.ConfigError as exc:
        fail(str(exc))
        raise  # unreachable


def read_gpg(settings: cfg.Settings) -> cfg.GpgSettings:
    """`config.Settings.gpg` (the passphrase read once, dropped from the environment) with an
    unreadable passphrase file as one line and exit 1: how every command gets the gpg settings."""
    try:
        return settings.gpg()
    except cfg.ConfigError as exc:
        fail(str(exc))
        raise  # unreachable


def warn_stale(lake, models: list[str] | None = None, store: str | None = None) -> None:
    """One line on stderr when the models a command reads (from the PostgreSQL ``store`` if given) are older
    than their data."""
    from ..models.build import stale_warning

    msg = stale_warning(lake, models, store)
    if msg:
        console.print(Text.assemble(("warning: ", "yellow"), msg), highlight=False, soft_wrap=True)


class Interrupt:
    """Ctrl-C (SIGINT) or a stop (SIGTERM) anywhere: remember it, so that whatever a library turns it
    into (DuckDB raises ``RuntimeError: Query interrupted``) ends as one line and exit 130, not a
    traceback, and no per-file handler takes it for a failed file."""

    seen = False
    reported = False  # a command that printed its own line about the interruption (sync) sets it

    @classmethod
    def handler(cls, signum, frame) -> None:
        from .. import interrupts

        cls.seen = True
        interrupts.note()  # for library code whose except clause got the interrupt as another error
        if _in_finalizer(frame):
            # Python would print "Exception ignored in ... Traceback ... KeyboardInterrupt" and drop
            # it (seen from ZipFile.__del__ at garbage collection): deliver it again just after
            _deliver_later()
            return
        raise KeyboardInterrupt

    @classmethod
    def unraisable(cls, unraisable) -> None:
        """``sys.unraisablehook``: a KeyboardInterrupt raised in a finalizer the handler did not
        recognise is not printed; it is delivered again so that it reaches the running command."""
        import sys

        if issubclass(unraisable.exc_type, KeyboardInterrupt):
            _deliver_later()
        else:
            sys.__unraisablehook__(unraisable)


def _in_finalizer(frame) -> bool:
    """Whether the code the signal interrupted runs inside a ``__del__`` or the unraisable hook."""
    hook = Interrupt.unraisable.__func__.__code__
    while frame is not None:
        if frame.f_code.co_name == "__del__" or frame.f_code is hook:
            return True
        frame = frame.f_back
    return False


def _deliver_later(delay: float = 0.01) -> None:
    """SIGINT again in ``delay`` seconds, from a timer thread: re-raising it at once would run the
    handler again inside the same finalizer (Python checks for signals after every call)."""
    import _thread
    import signal
    import threading

    timer = threading.Timer(delay, _thread.interrupt_main, (signal.SIGINT,))
    timer.daemon = True
    timer.start()
