"""Commands of the dashboard stage: `dashboard` (build the static site) and `dashboard serve`."""

from __future__ import annotations

import functools
import shlex
from pathlib import Path
from typing import Optional

import typer

from .common import DataDir, console, fail, load_settings, out
from ..store.errors import StoreBusy

dashboard_app = typer.Typer(help="Build the monitoring dashboard (static site) or serve it on loopback.",
                            invoke_without_command=True, no_args_is_help=False)

OutOpt = typer.Option(None, "-o", "--output", help="Site directory (default <data-dir>/site).")


def _out_dir(settings, output: Optional[Path]) -> Path:
    return Path(output) if output else Path(settings.data_dir) / "site"


@dashboard_app.callback()
def dashboard(
    ctx: typer.Context,
    output: Optional[Path] = OutOpt,
    lang: str = typer.Option("es", "--lang", help="Language index.html opens in: es, en or pt (every page is "
                                                  "written in all three)."),
    public: bool = typer.Option(False, "--public", help="Build from small-cell-suppressed data (no count of "
                                                        "people under k), for publication."),
    k: int = typer.Option(5, "--k", help="With --public: smallest count of people that may be shown."),
    course: Optional[list[str]] = typer.Option(None, "--course", help="Only this course (repeat for several)."),
    title: Optional[str] = typer.Option(None, "--title", help="Site title (default: 'Course monitoring dashboard' "
                                                              "in each language)."),
    data_dir: Optional[str] = DataDir,
) -> None:
    """Write the static, offline dashboard site from the built models (run `edx-engine build` first)."""
    if ctx.invoked_subcommand is not None:
        return
    from ..dashboard import DashboardError, build_site
    from ..store.lake import Lake

    settings = load_settings(data_dir)
    try:
        res = build_site(Lake(settings.data_dir), _out_dir(settings, output), lang=lang, public=public, k=k,
                         courses=course or None, title=title)
    except (DashboardError, StoreBusy) as exc:
        fail(str(exc))
        return
    out.print(res.one_line(), highlight=False, soft_wrap=True)
    where = ("" if data_dir is None else f" --data-dir {shlex.quote(str(data_dir))}") + \
        ("" if output is None else f" -o {shlex.quote(str(output))}")
    out.print(f"look at it: edx-engine dashboard serve{where} "
              f"(or open {res.index(lang)} in a browser)", highlight=False, soft_wrap=True)


@functools.cache
def _read_only_handler() -> type:
    """The request handler, made on first use (http.server is loaded only by `dashboard serve`)."""
    import http.server

    class _ReadOnlyHandler(http.server.SimpleHTTPRequestHandler):
        """GET and HEAD only (SimpleHTTPRequestHandler has no write methods); quiet log."""

        def log_message(self, fmt, *args):  # noqa: D401 - one line per request on stderr
            console.print(f"{self.address_string()} {fmt % args}", highlight=False)

    return _ReadOnlyHandler


@dashboard_app.command("serve")
def serve(
    output: Optional[Path] = OutOpt,
    port: int = typer.Option(8050, "--port", help="Port."),
    bind: str = typer.Option("127.0.0.1", "--bind", help="Address to listen on (default loopback only)."),
    data_dir: Optional[str] = DataDir,
) -> None:
    """Serve the built site read-only for a quick look (production: any static web server)."""
    settings = load_settings(data_dir)
    root = _out_dir(settings, output)
    if not (root / "index.html").exists():
        fail(f"no dashboard in {root}: run `edx-engine dashboard` first")
    import http.server

    handler = functools.partial(_read_only_handler(), directory=str(root))
    try:
        httpd = http.server.ThreadingHTTPServer((bind, port), handler)
    except OSError as exc:
        fail(f"cannot listen on {bind}:{port}: {exc.strerror or exc}")
        return
    out.print(f"serving {root} on http://{bind}:{httpd.server_address[1]}/ (Ctrl-C to stop)", highlight=False)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
