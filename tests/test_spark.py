"""One definition, DuckDB and Spark: every model built on DuckDB and on local Spark (Ibis' PySpark
backend) from the same synthetic store gives identical rows, column by column (issue 14).

Needs pyspark (the ``spark`` extra) and Java 17+; without them the module is skipped with the reason.
One local[2] Spark session (conftest.spark_local) serves every Spark test of a worker: starting one costs 10-40 s."""

from __future__ import annotations


import pytest

from edx_engine.models import MODELS, Params, build_duckdb, read_model

from incremental_support import day_after, month_of
from models_support import PARITY_PARAMS_AT, engine_rows, parity_entries, synthetic_store


@pytest.fixture
def spark(spark_local):
    return spark_local  # the worker's shared session (conftest): skipped with the reason without Java


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return synthetic_store(tmp_path_factory.mktemp("sparkparity"), learners=40, days=3)


def test_duckdb_and_spark_identical(spark, store):
    lake, manifest = store
    entries, params = parity_entries(manifest), Params(built_at=PARITY_PARAMS_AT)
    from edx_engine.models.spark import build_spark

    rd = build_duckdb(lake, entries, params)
    duck = {n: read_model(lake, n) for n in MODELS}
    rs = build_spark(lake, entries, params, force=True, spark=spark)
    assert [m.name for m in rd.models] == [m.name for m in rs.models] == list(MODELS)
    assert all(m.status == "built" for m in rs.models)
    nonempty = 0
    for name in MODELS:
        d, s = duck[name], read_model(lake, name)  # models.<name> now reads the Spark-built file
        assert d.schema.names == s.schema.names, name
        assert [str(f.type) for f in d.schema] == [str(f.type) for f in s.schema], name
        drows, srows = engine_rows(d), engine_rows(s)
        assert len(drows) == len(srows), name
        for a, b in zip(drows, srows):
            assert a == b, (name, a, b)
        nonempty += bool(drows)
    assert nonempty == len(MODELS)  # every model has data on the synthetic store
    with lake.connect(read_only=True) as con:
        paths = dict(con.execute("SELECT name, path FROM _edx_models").fetchall())
    assert all(p.endswith(".parquet") and (lake.root / p).is_file() for p in paths.values())
    # incremental on Spark too: nothing changed, nothing rebuilt
    again = build_spark(lake, entries, params, spark=spark)
    assert all(m.status == "unchanged" for m in again.models)
    # old model files were collected, only the referenced ones remain
    files = {str(p.relative_to(lake.root)) for p in (lake.lake_dir / "models").rglob("*") if p.is_file()}
    assert files == set(paths.values())


def test_inputs_identical(spark, store):
    """The catalog's views as Spark reads them (bookkeeping files, duplicates removed, family filters,
    JSON fields, subject_id, UUID ids as text) equal DuckDB's ``input_sql``, row for row."""
    from edx_engine.models.inputs import INPUTS, input_sql
    from edx_engine.models.spark import register_inputs

    lake, _ = store
    with lake.connect(read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        sqls = register_inputs(spark, con, lake.root)
        duck = {n: con.execute(input_sql(con, n)).to_arrow_table() for n in INPUTS if n != "course_info"}
    assert set(sqls) == set(duck)
    for name, d in duck.items():
        s = spark.sql(sqls[name]).toArrow()
        assert s.schema.names == d.schema.names, name
        assert engine_rows(s) == engine_rows(d), name
    assert duck["events"].num_rows > 0 and duck["events_problem"].num_rows > 0


def test_schemas_from_the_footers_are_what_spark_infers(spark, store, tmp_path):
    """``_merged_schema`` (the inputs' schemas read from the Parquet footers, no Spark job) equals what
    Spark's ``mergeSchema`` infers for every table of the store, and for files whose columns differ;
    where it cannot tell (a type outside the importers' few, a type that differs between files) it
    gives None and Spark infers."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    from edx_engine.models.spark import _merged_schema

    lake, _ = store

    def inferred(files: list[str]) -> dict[str, str]:
        df = spark.read.option("mergeSchema", "true").parquet(*files)
        return {f.name: f.dataType.simpleString() for f in df.schema.fields}

    with lake.connect(read_only=True) as con:
        by_table: dict[str, list[str]] = {}
        for t, p in con.execute("SELECT table_name, path FROM _edx_snapshots").fetchall():
            by_table.setdefault(t, []).append(str(lake.root / p))
    assert len(by_table) >= 6
    for t, files in by_table.items():
        assert _merged_schema(files) == inferred(files), t

    def write(name: str, **cols) -> str:
        path = str(tmp_path / f"{name}.parquet")
        pq.write_table(pa.table(cols), path)
        return path

    a = write("a", id=pa.array([1], pa.int64()), at=pa.array([dt.datetime(2026, 1, 1)], pa.timestamp("us")))
    b = write("b", id=pa.array([2], pa.int64()), day=pa.array([dt.date(2026, 1, 2)]), ok=pa.array([True]),
              x=pa.array([0.5]), utc=pa.array([dt.datetime(2026, 1, 1)], pa.timestamp("us", tz="UTC")),
              n=pa.array([1], pa.int32()), s=pa.array(["x"]))
    assert _merged_schema([a, b]) == inferred([a, b])
    assert _merged_schema([a, write("c", id=pa.array(["3"]))]) is None  # id: bigint here, string there
    assert _merged_schema([write("d", small=pa.array([1], pa.int8()))]) is None  # not an importer's type
    assert _merged_schema([a, write("e", ID=pa.array([4], pa.int64()))]) is None  # Spark ignores case


def test_output_elsewhere_leaves_catalog(spark, store, tmp_path):
    """--output: models (and the models they read) as directories of parts there; catalog untouched."""
    from edx_engine.models.spark import build_spark

    lake, _ = store
    with lake.connect(read_only=True) as con:
        before = con.execute("SELECT name, path, fingerprint FROM _edx_models ORDER BY name").fetchall()
    expected = engine_rows(read_model(lake, "activity_daily"))
    out = tmp_path / "models-out"
    res = build_spark(lake, [], Params(), names=["activity_daily"], spark=spark, output=str(out))
    assert [m.name for m in res.models] == ["learner_day", "activity_daily"]
    (d,) = list((out / "activity_daily").iterdir())
    assert engine_rows(spark.read.parquet(str(d)).toArrow()) == expected
    with lake.connect(read_only=True) as con:
        assert con.execute("SELECT name, path, fingerprint FROM _edx_models ORDER BY name").fetchall() == before
    # a Spark failure is one line naming the model, not a Java stack trace
    from edx_engine.models.build import BuildError
    from edx_engine.models.spark import _write_model

    with pytest.raises(BuildError, match=r"^model broken failed on Spark: .*no_such_view"):
        _write_model(spark, "SELECT * FROM no_such_view", "broken", tmp_path, None)


def test_strip_whitespace_set_on_spark(spark):
    """Ibis renders strip()'s whitespace set with \\v and \\f escapes Spark does not know (it trimmed the
    letters v and f); spark_sql fixes the literal. Hand-made values, expected results by hand."""
    import ibis

    from edx_engine.models.definitions import clean
    from edx_engine.models.spark import spark_sql

    ib = ibis.pyspark.connect(spark)
    vals = ["verified", " f\t", "\x0bvf\x0c", "  ", None, "\nBR\r"]
    spark.createDataFrame([(v,) for v in vals], "v STRING").createOrReplaceTempView("_strip_case")
    t = ib.table("_strip_case")
    got = [r[0] for r in spark.sql(spark_sql(ib, t.select(c=clean(t.v)))).collect()]
    assert got == ["verified", "f", "vf", "unknown", "unknown", "BR"]


def _parts(lake, model: str) -> dict[str, set]:
    """Partition -> its files, as ``_edx_model_parts`` records them."""
    with lake.connect(read_only=True) as con:
        rows = con.execute("SELECT part, path FROM _edx_model_parts WHERE model = ?", [model]).fetchall()
    out: dict[str, set] = {}
    for part, path in rows:
        out.setdefault(part, set()).add(path)
    return out


def test_day_after_on_spark_and_alternating(spark, store, tmp_path):
    """Issue 15 on Spark: after a new and a re-delivered day, a Spark build recomputes only the changed
    dates (and their weeks, months; a cumulative model its month) and keeps the other partitions'
    files; the result equals a full DuckDB build row for row, and a DuckDB build after the Spark build
    (and a Spark build after that) finds nothing to recompute. Models over days, weeks and months,
    and a cumulative one (runs after the tests reading the store as the parity test left it)."""
    from edx_engine.models.spark import build_spark

    lake, manifest = store
    entries, params = parity_entries(manifest), Params(built_at=PARITY_PARAMS_AT)
    names = ["activity_weekly", "video_summary"]
    build_spark(lake, entries, params, names, spark=spark)
    before = _parts(lake, "learner_day")
    changed = day_after(lake, lake.root.parent / "pkg", tmp_path)
    assert changed < set(before) | changed
    res = build_spark(lake, entries, params, names, spark=spark)
    built = {m.name: m for m in res.models}
    months = {month_of(d) for d in changed}
    weeks = {_monday(d) for d in changed}
    assert (built["learner_day"].days, built["video_day"].days) == (len(changed), len(changed))
    assert (built["video_month"].days, built["video_summary_month"].days) == (len(months), len(months))
    assert built["activity_weekly"].days == len(weeks) and built["video_summary"].status == "built"
    after = _parts(lake, "learner_day")
    assert {d for d in after if after[d] != before.get(d)} == changed  # the other dates kept their files
    by_spark = {n: engine_rows(read_model(lake, n)) for n in built}
    again = build_duckdb(lake, entries, params, names)
    assert all(m.status == "unchanged" for m in again.models)
    full = build_duckdb(lake, entries, params, names, force=True)
    assert full.models[0].days == len(after)
    for n in built:
        assert engine_rows(read_model(lake, n)) == by_spark[n], n
    assert all(m.status == "unchanged" for m in build_spark(lake, entries, params, names, spark=spark).models)


def _monday(day: str) -> str:
    import datetime as dt

    d = dt.date.fromisoformat(day)
    return (d - dt.timedelta(days=d.weekday())).isoformat()


@pytest.mark.last
def test_cli_build_engine_spark(spark, store):
    """`build --engine spark` is a thin call: it rebuilds the asked model on Spark and says so; bad
    combinations are one line. (Runs last, marked so: the CLI stops the session it got, the shared one.)"""
    from typer.testing import CliRunner

    from edx_engine.cli import app

    from edx_engine.models.build import evaluate

    lake, manifest = store
    before = evaluate(lake, [], Params(), "courses")  # on DuckDB, not stored
    r = CliRunner().invoke(app, ["build", "--data-dir", str(lake.root), "--engine", "spark", "--spark-master",
                                 "local[2]", "--model", "courses", "--force"])
    assert r.exit_code == 0, r.output
    # courses and the models it reads (course_day, its month rollup course_month, course_package_counts)
    assert "spark local[2]" in r.output and "4 built" in r.output and "course_month" in r.output, r.output
    assert "course_package_counts" in r.output and "course(s) recomputed" in r.output, r.output
    assert engine_rows(read_model(lake, "courses")) == engine_rows(before)
    r = CliRunner().invoke(app, ["build", "--data-dir", str(lake.root), "--engine", "spark", "--store",
                                 "postgresql://x@127.0.0.1:1/db"])
    assert r.exit_code == 1 and "cannot be combined with --store" in r.output
    r = CliRunner().invoke(app, ["build", "--data-dir", str(lake.root), "--engine", "flink"])
    assert r.exit_code == 1 and "unknown engine 'flink'" in r.output
