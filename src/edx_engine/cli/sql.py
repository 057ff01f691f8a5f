"""Command ``sql``: one read-only query on the store, shown as a table, CSV or JSON."""

from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .common import DataDir, console, fail, load_settings, out, warn_stale


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
    from ..store.lake import Lake
    import duckdb

    from .. import sql_output

    if fmt not in sql_output.FORMATS:
        fail(f"unknown format {fmt!r} (use {', '.join(sql_output.FORMATS)})")
    if limit is not None and limit < 0:
        fail("--limit must be 0 or more")
    lake = Lake(load_settings(data_dir).data_dir)
    if not lake.catalog_path.exists():
        fail(f"no store at {lake.root} (run `edx-engine import` or `edx-engine demo` first)")
    _check_read_only_query(query)
    models = _models_named(query)
    if models:
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
    from .. import sql_output

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

    from .. import sql_output

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
