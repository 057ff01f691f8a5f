"""One definition, two engines: every model built on DuckDB and on a real PostgreSQL server from the
same synthetic package gives identical results (issue 4, point 5)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from edx_engine.models import MODELS, Params, build_duckdb, build_postgres, read_model

from models_support import PARITY_PARAMS_AT, engine_rows, parity_entries, synthetic_store

PGBIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_pg(*cmd: str) -> None:
    pre = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(pre + list(cmd), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def pg_url():
    if not (PGBIN / "initdb").exists() or not (PGBIN / "pg_ctl").exists():
        pytest.skip(f"PostgreSQL server binaries not found in {PGBIN} (apt-get install postgresql)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as user postgres")
    d = tempfile.mkdtemp(prefix="edx-pgtest-")
    os.chmod(d, 0o755)
    if os.geteuid() == 0:
        shutil.chown(d, "postgres", "postgres")
    port = _free_port()
    _as_pg(str(PGBIN / "initdb"), "-D", f"{d}/data", "-A", "trust", "-U", "postgres", "-E", "UTF8",
           "--locale=C.UTF-8")
    _as_pg(str(PGBIN / "pg_ctl"), "-D", f"{d}/data", "-l", f"{d}/log", "-w", "-o",
           f"-p {port} -k {d} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        _as_pg(str(PGBIN / "pg_ctl"), "-D", f"{d}/data", "-m", "immediate", "-w", "stop")
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return synthetic_store(tmp_path_factory.mktemp("pgparity"))


def test_duckdb_and_postgresql_identical(synthetic, pg_url):
    lake, manifest = synthetic
    entries, params = parity_entries(manifest), Params(built_at=PARITY_PARAMS_AT)
    rd = build_duckdb(lake, entries, params)
    rp = build_postgres(lake, pg_url, entries, params)
    assert [m.name for m in rd.models] == [m.name for m in rp.models] == list(MODELS)
    nonempty = 0
    for name in MODELS:
        d = read_model(lake, name)
        p = read_model(lake, name, store=pg_url)
        drows, prows = engine_rows(d), engine_rows(p)
        assert d.column_names == p.column_names, name
        assert len(drows) == len(prows), name
        for a, b in zip(drows, prows):
            assert a == b, (name, a, b)
        nonempty += bool(drows)
    assert nonempty == len(MODELS)  # every model has data on the synthetic package
    # incremental: nothing changed, nothing rebuilt or copied
    rp2 = build_postgres(lake, pg_url, entries, params)
    assert all(m.status == "unchanged" for m in rp2.models)
    # a parameter change rebuilds what depends on it, on PostgreSQL too
    rp3 = build_postgres(lake, pg_url, entries, Params(passing_grade=0.9, built_at=params.built_at))
    built = {m.name for m in rp3.models if m.status == "built"}
    assert "course_summary" in built and "learner_day" not in built
    a = {r["course_id"]: r["approved"] for r in read_model(lake, "course_summary", store=pg_url).to_pylist()}
    b = {r["course_id"]: r["approved"] for r in read_model(lake, "course_summary").to_pylist()}
    assert sum(a.values()) <= sum(b.values())


def test_cli_build_and_report_on_postgresql(synthetic, pg_url, tmp_path):
    from typer.testing import CliRunner

    from edx_engine.cli import app

    lake, _ = synthetic
    r = CliRunner().invoke(app, ["build", "--data-dir", str(lake.root), "--store", pg_url, "--force"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "general.csv"
    r = CliRunner().invoke(app, ["report", "general", "--data-dir", str(lake.root), "--store", pg_url,
                                 "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert len(out.read_text().splitlines()) == 4
    r = CliRunner().invoke(app, ["build", "--data-dir", str(lake.root), "--store",
                                 "postgresql://postgres@127.0.0.1:1/none"])
    assert r.exit_code == 1 and "cannot connect" in r.output
