"""`build --engine spark --spark-remote sc://…`: the models built through Spark Connect equal DuckDB's, row
for row (issue 14). The Connect server is the worker's shared local session (conftest.spark_local starts it
with Spark's SparkConnectPlugin on a loopback port), so the client side runs exactly as it would against a
cluster: a Connect session, no SparkContext, files named by path (here the server shares our filesystem;
on a cluster the lake must be on storage the cluster reads, docs/scale.md).

Needs pyspark with its Connect client (grpcio) and Java 17+; skipped with the reason otherwise."""

from __future__ import annotations

import datetime as dt

import pytest

from edx_engine.models import Params, build_duckdb, read_model
from edx_engine.models import definitions as D

from models_support import engine_rows, synthetic_store

pytest.importorskip("grpc", reason="the Spark Connect client (pyspark[connect]: grpcio) is not installed")

# courses reads course_month over course_day (events, with the duplicate anti-join), the snapshots and the
# course registry
ASKED = ["courses"]
BUILT = D.order(ASKED)  # courses and what it reads (course_day, course_month, course_package_counts)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return synthetic_store(tmp_path_factory.mktemp("sparkconnect"), learners=20, days=2)


def test_connect_session_is_a_client(spark_connect_url):
    """spark_session(remote=…) gives a Spark Connect session (no SparkContext on our side), with the
    session settings the build relies on set on the server side."""
    from edx_engine.models.spark import spark_session

    s = spark_session(remote=spark_connect_url)
    try:
        assert type(s).__module__ == "pyspark.sql.connect.session"
        assert s.conf.get("spark.sql.session.timeZone") == "UTC"
        assert s.sql("SELECT CAST(TIMESTAMP_NTZ'2026-01-02 03:04:05' AS STRING) AS t").toArrow().to_pylist() \
            == [{"t": "2026-01-02 03:04:05"}]
    finally:
        s.stop()


def test_cli_build_through_spark_connect(spark_local, spark_connect_url, store):
    """The CLI over Spark Connect builds the asked models (and what they read) with DuckDB's rows and
    types; the shared local session that serves Connect is still alive afterwards (the CLI stopped
    only its own Connect session)."""
    from typer.testing import CliRunner

    from edx_engine.cli import app

    lake, _ = store
    build_duckdb(lake, [], Params(built_at=dt.datetime(2026, 10, 9, 12)), names=ASKED)
    duck = {n: read_model(lake, n) for n in BUILT}
    r = CliRunner().invoke(app, ["build", "--data-dir", str(lake.root), "--engine", "spark", "--spark-remote",
                                 spark_connect_url, "--force"] + [a for n in ASKED for a in ("--model", n)])
    assert r.exit_code == 0, r.output
    assert f"spark {spark_connect_url}" in r.output and f"{len(BUILT)} built" in r.output, r.output
    for name in BUILT:
        d, s = duck[name], read_model(lake, name)  # models.<name> now reads the file built through Connect
        assert s.schema.names == d.schema.names, name
        assert [str(f.type) for f in s.schema] == [str(f.type) for f in d.schema], name
        assert engine_rows(s) == engine_rows(d), name
        assert d.num_rows > 0, name
    assert spark_local.sparkContext._jsc is not None
    assert spark_local.sql("SELECT 1 AS x").collect()[0].x == 1


def test_unreachable_connect_server_is_one_line(tmp_path, monkeypatch, store):
    """A Connect URL nobody answers at stops in CONNECT_TIMEOUT seconds with one line (the Connect
    client alone retries for many minutes). The port is one just closed."""
    from typer.testing import CliRunner

    from conftest import _free_port
    from edx_engine.cli import app
    from edx_engine.models import spark as S

    monkeypatch.setattr(S, "CONNECT_TIMEOUT", 1.0)
    url = f"sc://127.0.0.1:{_free_port()}"
    lake, _ = store
    r = CliRunner().invoke(app, ["build", "--data-dir", str(lake.root), "--engine", "spark", "--spark-remote", url])
    assert r.exit_code == 1, r.output
    assert r.output.strip().splitlines()[-1].endswith(f"no Spark Connect server answers at {url} (waited 1 s)")
