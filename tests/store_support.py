"""A small complete store (one course, one day of tracking logs, models built) for the store tests.

Built once per test process with the real CLI, then copied by the tests that move or sandbox it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import duckdb

from cli_support import run_cli

_BUILT: dict[str, Path] = {}


def edx(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """``edx-engine *args`` from ``cwd``, run in this process (cli_support.run_cli)."""
    return run_cli(list(args), cwd=cwd, env={**os.environ, "EDX_ENGINE_DATA_DIR": "", **(env or {})})


def small_store(base: Path) -> Path:
    """``base/store``: synthetic package + one log day imported (with quarantined lines), models built."""
    if "store" in _BUILT:
        return _BUILT["store"]
    pkg, store = base / "pkg", base / "store"
    r = edx("synthetic", "--out", str(pkg), "--learners", "20", "--courses", "1", "--days", "1", "--seed", "3")
    assert r.returncode == 0, r.stderr
    r = edx("import", str(pkg / "course-data"), str(pkg / "edx-course-data"), "--data-dir", str(store))
    assert r.returncode in (0, 2), r.stderr  # 2: the synthetic malformed lines went to quarantine
    r = edx("build", "--data-dir", str(store))
    assert r.returncode == 0, r.stderr
    _BUILT["store"] = store
    return store


def views(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every view of the catalog, qualified (``main.auth_user``, ``models.person_course`` ...)."""
    return [f"{s}.{v}" for s, v in con.execute(
        "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1, 2").fetchall()]


def view_counts(catalog: Path) -> dict[str, int]:
    """Rows of every view, read with plain DuckDB (what any DuckDB client sees)."""
    with duckdb.connect(str(catalog), read_only=True) as con:
        return {v: con.execute(f"SELECT count(*) FROM {v}").fetchone()[0] for v in views(con)}


def view_sql(catalog: Path) -> str:
    with duckdb.connect(str(catalog), read_only=True) as con:
        return "\n".join(r[0] for r in con.execute("SELECT sql FROM duckdb_views() WHERE NOT internal").fetchall())


def file_counts(store: Path) -> dict[str, int]:
    """Rows the views should show, summed from the Parquet footers of the files the bookkeeping
    names, relative to ``store`` (a second computation that does not use the views)."""
    import pyarrow.parquet as pq

    def rows(paths) -> int:
        return sum(pq.ParquetFile(store / p).metadata.num_rows for p in paths)

    with duckdb.connect(str(store / "edx.duckdb"), read_only=True) as con:
        def q(sql: str) -> list:
            return con.execute(sql).fetchall()

        out = {f"main.{t}": rows(ps) for t, ps in q("SELECT table_name, list(path) FROM _edx_snapshots GROUP BY 1")}
        out["main.quarantine"] = rows(p for (p,) in q("SELECT path FROM _edx_quarantine_files"))
        out.update({f"models.{n}": rows([p]) for n, p in q("SELECT name, path FROM _edx_models")})
        # models kept by date: the files of their partitions (``_edx_models.path`` is a zero-row schema file)
        if q("SELECT count(*) FROM duckdb_tables() WHERE table_name = '_edx_model_parts'")[0][0]:
            out.update({f"models.{n}": rows(ps or []) for n, ps in q(
                "SELECT model, list(path) FILTER (WHERE path IS NOT NULL) FROM _edx_model_parts GROUP BY 1")})
        out["main.events_all"] = rows(p for (p,) in q("SELECT path FROM _edx_event_parts"))
        out["main.events"] = out["main.events_all"] - q("SELECT count(*) FROM _edx_event_dups")[0][0]
    return out
