"""The CLI is a thin skin: every command has --help; the demo runs end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
from typer.main import get_command

from cli_support import run_cli
from edx_engine.cli import app


def edx(*args: str, cwd: Path | None = None, env: dict | None = None, process: bool = False
        ) -> subprocess.CompletedProcess:
    """``edx-engine *args``: in this process (cli_support.run_cli), or with ``process`` as a real
    subprocess (the README's first command; a catalog held open by this process)."""
    if not process:
        return run_cli(list(args), cwd=cwd, env={**os.environ, **(env or {})})
    return subprocess.run([sys.executable, "-m", "edx_engine.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})})


def test_every_command_has_help():
    names = sorted(get_command(app).commands)
    assert {"import", "synthetic", "demo", "tables", "sql", "sync", "status", "build", "report", "scrub", "export",
            "locate-users", "courses"} <= set(names)
    # one interpreter runs the entry point for every command (a new one per command cost ~0.35 s each)
    r = subprocess.run([sys.executable, "-c", HELP_ALL, *names], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert sorted(got) == names
    for name, (code, text) in got.items():
        assert code == 0 and "Usage" in text and f"edx-engine {name}" in text, (name, code, text)


HELP_ALL = """
import contextlib, io, json, sys
from edx_engine.cli import app
out = {}
for name in sys.argv[1:]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            app([name, "--help"], prog_name="edx-engine")
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
    out[name] = [code, buf.getvalue()]
print(json.dumps(out))
"""


def test_demo_end_to_end(tmp_path):
    r = edx("demo", "--learners", "40", "--courses", "2", "--days", "2", cwd=tmp_path,
            env={"EDX_ENGINE_DATA_DIR": "", "COLUMNS": "300"}, process=True)
    assert r.returncode == 0, r.stderr
    # the synthetic bad lines are said to be on purpose once, first, with no per-file "partial" line
    text = r.stdout + r.stderr
    assert "partial" not in text and text.count("on purpose") == 1
    assert text.index("on purpose") < text.index("database files:")
    assert "duckdb" in r.stdout and "edx-data/edx.duckdb" in r.stdout
    with duckdb.connect(str(tmp_path / "edx-data" / "edx.duckdb"), read_only=True) as con:
        (courses,) = con.execute("SELECT count(DISTINCT course_id) FROM student_courseenrollment").fetchone()
        (n,) = con.execute("SELECT count(*) FROM auth_user").fetchone()
    assert courses == 2 and n > 0
    # `edx-engine sql` answers from the same store, read-only
    r = edx("sql", "SELECT count(*) AS users FROM auth_user", cwd=tmp_path)
    assert r.returncode == 0 and f"{n}" in r.stdout, r.stdout + r.stderr
    r = edx("sql", "SELECT no_such_column FROM auth_user", cwd=tmp_path)
    assert r.returncode == 1 and "no_such_column" in r.stderr and "Traceback" not in r.stderr
    # only queries: nothing is written anywhere, not even through COPY ... TO or ATTACH
    leak = tmp_path / "leak.csv"
    for stmt, kind in ((f"COPY (SELECT * FROM auth_user) TO '{leak}'", "COPY"),
                       (f"ATTACH '{tmp_path / 'other.duckdb'}' AS o", "ATTACH"), ("INSTALL httpfs", "LOAD"),
                       ("SET threads = 1", "SET"), ("SELECT 1; DELETE FROM auth_user", "2 given")):
        r = edx("sql", stmt, cwd=tmp_path)
        assert r.returncode == 1 and kind in r.stderr and "Traceback" not in r.stderr, (stmt, r.stderr)
    assert not leak.exists() and not (tmp_path / "other.duckdb").exists()
    assert edx("sql", "DESCRIBE auth_user", cwd=tmp_path).returncode == 0
    # running the demo again is fine (fresh package, same store: re-import is idempotent)
    assert edx("demo", "--learners", "40", "--courses", "2", "--days", "2", cwd=tmp_path).returncode == 0


def test_synthetic_command_writes_a_delivery(tmp_path):
    r = edx("synthetic", "--out", str(tmp_path / "p"), "--learners", "20", "--courses", "1", "--days", "1")
    assert r.returncode == 0, r.stderr
    assert list((tmp_path / "p" / "course-data").glob("IDBx-*.zip"))
    assert list((tmp_path / "p" / "edx-course-data" / "idbx" / "edx" / "events").rglob("*.log.gz"))


def test_catalog_open_elsewhere_is_a_one_line_error(tmp_path):
    pkg = tmp_path / "p"
    assert edx("synthetic", "--out", str(pkg), "--learners", "10", "--courses", "1", "--days", "1").returncode == 0
    data = tmp_path / "d"
    edx("import", str(pkg / "course-data"), "--data-dir", str(data))
    with duckdb.connect(str(data / "edx.duckdb")):  # e.g. an analyst's DuckDB client, holding the file lock
        for args in (["import", str(pkg / "course-data")], ["sql", "SELECT 1"], ["tables"]):
            r = edx(*args, "--data-dir", str(data), process=True)  # DuckDB's lock is per process
            assert r.returncode == 1, (args, r.stderr)
            assert "is open in another program" in r.stderr and "Traceback" not in r.stderr
