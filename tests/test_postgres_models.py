"""One definition, two engines: every model built on DuckDB and on a real PostgreSQL server from the
same synthetic package gives identical results (issue 4, point 5)."""

from __future__ import annotations

import pytest

from edx_engine.models import MODELS, Params, build_duckdb, build_postgres, read_model

from incremental_support import day_after, day_state, month_of
from models_support import PARITY_PARAMS_AT, engine_rows, parity_entries, synthetic_store


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
    # a partitioned model whose parameters changed is recomputed whole
    assert next(m.days for m in rp3.models if m.name == "activity_daily") == len(day_state(lake))
    a = {r["course_id"]: r["approved"] for r in read_model(lake, "course_summary", store=pg_url).to_pylist()}
    b = {r["course_id"]: r["approved"] for r in read_model(lake, "course_summary").to_pylist()}
    assert sum(a.values()) <= sum(b.values())


def _rewritten(pg, table: str, column: str, since: int) -> tuple[set[str], int]:
    """(partitions of ``table`` having rows written by a transaction from ``since`` on, rows of the
    other partitions so written): PostgreSQL's own record of what a build rewrote (``xmin``)."""
    parts = {r[0] for r in pg.execute(f"SELECT DISTINCT to_char({column}, 'YYYY-MM-DD') FROM {table} "
                                      f"WHERE xmin::text::bigint >= %s", [since]).fetchall()}
    return parts, pg.execute(f"SELECT count(*) FROM {table} WHERE xmin::text::bigint >= %s AND NOT "
                             f"to_char({column}, 'YYYY-MM-DD') = ANY(%s)", [since, sorted(parts)]).fetchone()[0]


def test_day_after_on_postgresql(synthetic, pg_url, tmp_path):
    """Issue 15 on PostgreSQL: a new day and a re-delivered day recompute only the partitions of the
    dates they changed (and their months, weeks), in place, and the models then equal a full build
    (PostgreSQL --full, and DuckDB) row for row; only the changed dates' events are copied."""
    import psycopg

    lake, manifest = synthetic
    entries, params = parity_entries(manifest), Params(built_at=PARITY_PARAMS_AT)
    build_postgres(lake, pg_url, entries, params)
    changed = day_after(lake, lake.root.parent / "pkg", tmp_path)
    assert len(changed) < len(day_state(lake))
    with psycopg.connect(pg_url, autocommit=True) as pg:
        since = pg.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0]
        events_before = pg.execute("SELECT count(*) FROM edx_raw.events WHERE NOT to_char(event_date, "
                                   "'YYYY-MM-DD') = ANY(%s)", [sorted(changed)]).fetchone()[0]
        built = {m.name: m for m in build_postgres(lake, pg_url, entries, params).models}
        months = {month_of(d) for d in changed}
        for name, column, parts in [("learner_day", "date", changed), ("video_day", "date", changed),
                                    ("learner_month", "month", months), ("video_summary_month", "month", months)]:
            assert built[name].days == len(parts), name
            assert _rewritten(pg, f"edx_models.{name}", column, since) == (parts, 0), name
        recorded = {r[0] for r in pg.execute("SELECT part FROM edx_models._edx_model_parts "
                                             "WHERE model = 'learner_day'").fetchall()}
        assert recorded == set(day_state(lake))
        # the events of the other dates were not copied again
        assert _rewritten(pg, "edx_raw.events", "event_date", since) == (changed, 0)
        assert pg.execute("SELECT count(*) FROM edx_raw.events WHERE NOT to_char(event_date, 'YYYY-MM-DD') "
                          "= ANY(%s)", [sorted(changed)]).fetchone()[0] == events_before
    incremental = {n: engine_rows(read_model(lake, n, store=pg_url)) for n in MODELS}
    build_duckdb(lake, entries, params)
    for n in MODELS:
        assert incremental[n] == engine_rows(read_model(lake, n)), n
    full = build_postgres(lake, pg_url, entries, params, force=True)
    assert full.models[0].days == len(day_state(lake))
    for n in MODELS:
        assert incremental[n] == engine_rows(read_model(lake, n, store=pg_url)), n


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


def test_cli_build_and_report_on_postgresql_in_a_fresh_process(synthetic, pg_url, tmp_path):
    """As a user runs it: a fresh `edx-engine` process, where the CLI hides pandas (pandas_guard). ibis's
    PostgreSQL backend imports pandas when it connects, so `build --store` failed there; in the test
    process above pandas is already imported and the guard does nothing."""
    import subprocess
    import sys

    lake, _ = synthetic
    cmd = [sys.executable, "-m", "edx_engine"]
    r = subprocess.run([*cmd, "build", "--data-dir", str(lake.root), "--store", pg_url, "--force"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp_path / "general.csv"
    r = subprocess.run([*cmd, "report", "general", "--data-dir", str(lake.root), "--store", pg_url, "-o", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(out.read_text().splitlines()) == 4


def test_include_staff_builds_on_postgresql(tmp_path, pg_server):
    """`build --include-staff --store postgresql://` stopped at video_summary_month with ibis' "Ambiguous
    field reference": without the staff filter, the model's own rows and the history it reads its first
    months from were one relation, joined with itself. The models are those of DuckDB."""
    from conftest import new_pg_database

    lake, manifest = synthetic_store(tmp_path, courses=1, learners=40, days=2, malformed=False)
    url = new_pg_database(pg_server)
    entries, params = parity_entries(manifest), Params(built_at=PARITY_PARAMS_AT, include_staff=True)
    build_duckdb(lake, entries, params)
    build_postgres(lake, url, entries, params)
    for name in ("video_summary_month", "problem_summary_month", "enrolment_daily"):
        assert engine_rows(read_model(lake, name)) == engine_rows(read_model(lake, name, store=url)), name
