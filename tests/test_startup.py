"""CLI start-up stays light: `edx-engine --help` and the help of every command load none of the heavy
libraries (DuckDB, Arrow, NumPy, pandas, boto3, ibis), which only the commands that need them import.

Each check runs in a fresh interpreter (this test process has loaded them all long ago)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("duckdb", "pyarrow", "boto3", "botocore", "ibis", "numpy", "pandas", "pyspark")

PROBE = """
import json, sys
{body}
print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))))
"""


def _loaded(body: str) -> list[str]:
    """Heavy top-level packages loaded after running ``body`` in a fresh interpreter."""
    code = PROBE.format(body=body, heavy=HEAVY)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def _help(*args: str) -> str:
    """Code that runs the CLI's entry point with ``args`` (help output goes to /dev/null)."""
    return ("import contextlib, io, sys\n"
            f"sys.argv = ['edx-engine', *{list(args)!r}]\n"
            "from edx_engine.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    try:\n"
            "        main()\n"
            "    except SystemExit as exc:\n"
            "        assert exc.code in (0, None), exc.code\n"
            "assert 'Usage' in out.getvalue(), out.getvalue()\n")


def test_importing_the_cli_loads_no_heavy_library():
    assert _loaded("import edx_engine.cli") == []


@pytest.mark.parametrize("args", [("--help",), ("import", "--help"), ("sync", "--help"), ("build", "--help"),
                                  ("sql", "--help"), ("keys", "--help"), ("dashboard", "serve", "--help"),
                                  ("run", "--help")])
def test_help_loads_no_heavy_library(args):
    assert _loaded(_help(*args)) == []


def test_store_exceptions_are_light_and_keep_their_old_homes():
    assert _loaded("import edx_engine.store.errors, edx_engine.store") == []
    from edx_engine import lake, ledger, store
    from edx_engine.store import errors
    from edx_engine.store import lake as store_lake
    from edx_engine.store import ledger as store_ledger

    for name in ("StoreBusy", "StoreMoved", "CatalogBusy", "StoreWriteError"):
        assert getattr(lake, name) is getattr(store_lake, name) is getattr(store, name) is getattr(errors, name)
    assert ledger.LedgerBusy is store_ledger.LedgerBusy is store.LedgerBusy is errors.LedgerBusy
    assert issubclass(errors.CatalogBusy, errors.StoreBusy) and issubclass(errors.StoreMoved, errors.StoreBusy)
    assert store.Lake is store_lake.Lake and store.Ledger is store_ledger.Ledger


def test_opening_a_store_still_loads_duckdb():
    """The probe can see a heavy import (so the tests above can fail)."""
    assert "duckdb" in _loaded("from edx_engine.store import Lake")


def _command(*args: str) -> str:
    """Code that runs the CLI's entry point with ``args`` (output to /dev/null), which must succeed."""
    return ("import contextlib, io, sys\n"
            f"sys.argv = ['edx-engine', *{list(args)!r}]\n"
            "from edx_engine.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n"
            "        main()\n"
            "    except SystemExit as exc:\n"
            "        assert exc.code in (0, None), exc.code\n")


def _small_log(tmp_path) -> str:
    import gzip

    (tmp_path / "in").mkdir()
    log = tmp_path / "in" / "idbx-edx-events-2026-10-01.log.gz"
    log.write_bytes(gzip.compress(b'{"username": "a", "event_type": "problem_check", "time": '
                                  b'"2026-10-01T10:00:00+00:00", "context": {"course_id": "course-v1:X+Y+Z"}}\n'))
    return str(log)


def test_commands_that_bind_duckdb_parameters_do_not_load_pandas(tmp_path):
    """DuckDB 1.5 imports pandas and numpy on the first bound parameter (to compare it with pandas.NaT):
    the CLI hides pandas while a command runs (edx_engine.pandas_guard). An import of a small log and
    `status` bind parameters (import log, catalog, ledger) and load DuckDB, never pandas."""
    log = _small_log(tmp_path)
    data = str(tmp_path / "d")
    loaded = _loaded(_command("import", str(log), "--data-dir", data) + _command("status", "--data-dir", data))
    assert "duckdb" in loaded  # the commands did open the store
    assert "pandas" not in loaded, loaded  # (numpy is the events parser's own)
    # without the guard, the same parameter binding does load pandas (so the test above can fail)
    assert "pandas" in _loaded("import duckdb\nduckdb.connect().execute('SELECT ?', [1]).fetchall()")


def test_pandas_is_importable_again_after_an_in_process_command(tmp_path):
    """The guard lasts as long as the command: a program (or test) running the app in-process gets
    pandas back afterwards, and DuckDB with it."""
    data = str(tmp_path / "d")
    body = (_command("import", str(_small_log(tmp_path)), "--data-dir", data) + _command("tables", "--data-dir", data)
            + "import pandas, duckdb\n"
            + "assert duckdb.connect().execute('SELECT ?', [1]).fetchall() == [(1,)]\n")
    assert "pandas" in _loaded(body)
