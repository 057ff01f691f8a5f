"""Build the indicator models on Apache Spark (Ibis' PySpark backend) over the same lake.

The definitions (``definitions.py``) run unchanged; only the inputs are prepared here. Spark
reads the very Parquet files the DuckDB catalog's views point at (``_edx_snapshots``,
``_edx_event_parts`` minus ``_edx_event_dups``, ``_edx_geo``), read from the catalog with a
read-only connection, so both engines compute on the same snapshot. The view logic that
``store/views.py`` and ``inputs.py`` express in DuckDB SQL (family filters, JSON fields,
``subject_id``, the enrolment course fallback, typed casts) is translated to Spark SQL here.

Results are written as Parquet into the lake as ``build_duckdb`` writes them, with the same
bookkeeping and the same plan (``_SparkRun`` extends the DuckDB build's ``_DuckRun``, Spark only
computes): a model kept whole is one file (``lake/models/<name>/<name>-<id>.parquet``, Spark's part
files merged on the driver); a partitioned model (``partition`` in definitions.py) recomputes only its
changed partitions, in one Spark job whose output DuckDB splits into one file per partition
(``lake/model_parts/<name>/``, listed in ``_edx_model_parts``). So a Spark build after a Spark or a
DuckDB build recomputes only what changed, and the two engines alternate on one store. Everything is
recorded in ``_edx_models`` and exposed as ``models.<name>`` views, so ``report``, ``export`` and the
dashboard do not care which engine built them. With ``output`` (``s3a://…``, ``hdfs://…``, a shared
mount) each model is a directory of part files there, computed whole, and the catalog is not touched
(DuckDB cannot open those URLs as the views need them).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import duckdb
import ibis
import pyarrow.parquet as pq

from ..store import catalog, views
from ..store.lake import Lake
from .. import pandas_guard
from . import definitions as D
from . import incremental as inc
from .build import (BuildError, BuildResult, ModelResult, PartPlan, _DuckRun, _PeakRSS, confirmed_inputs,
                    partition_tables, record_models)
from .inputs import INPUTS, SUBJECT_EVENTS, input_sql
from .registry import CourseEntry, course_info

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# DuckDB type (inputs.py / views.EVENT_COLUMNS) -> Spark SQL type
_SPARK_TYPES = {"BIGINT": "BIGINT", "DOUBLE": "DOUBLE", "BOOLEAN": "BOOLEAN", "VARCHAR": "STRING",
                "TIMESTAMP": "TIMESTAMP_NTZ", "DATE": "DATE", "JSON": "STRING"}
QUIET_CONF = {
    "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC", "spark.sql.shuffle.partitions": "4",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.parquet.compression.codec": "zstd",
}
CONNECT_TIMEOUT = 20.0  # seconds to wait for a Spark Connect server to answer (_reachable)
_EVENT_KEYS = ("source_key", "line")  # part columns the duplicate anti-join needs


def spark_session(master: str = "local[2]", remote: str | None = None,
                  conf: dict[str, str] | None = None) -> "SparkSession":
    """A Spark session: Spark Connect when ``remote`` (``sc://host:15002``, no local JVM), else ``master``."""
    pandas_guard.allow()  # PySpark converts through pandas (createDataFrame, Arrow batches)
    try:
        from pyspark.sql import SparkSession
    except ModuleNotFoundError:
        raise BuildError("--engine spark needs the Spark extra: pip install 'edx-engine[spark]'") from None
    b = SparkSession.builder
    if remote:
        import importlib.util

        if importlib.util.find_spec("grpc") is None:
            raise BuildError("Spark Connect (--spark-remote) needs its client libraries: "
                             "pip install 'pyspark[connect]' (grpcio, grpcio-status, googleapis-common-protos)")
        return _connect_session(remote, conf)
    else:
        if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
            raise BuildError("local Spark needs Java 17+ (apt-get install openjdk-17-jre-headless), "
                             "or use --spark-remote sc://host:15002")
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        b = b.master(master)
        # no spark-warehouse/ in the current directory: the build creates no tables, only temp views
        warehouse = Path(tempfile.gettempdir()) / "edx-engine-spark-warehouse"
        for k, v in {**QUIET_CONF, "spark.sql.warehouse.dir": str(warehouse),
                     "spark.driver.bindAddress": os.environ["SPARK_LOCAL_IP"],
                     "spark.driver.host": os.environ["SPARK_LOCAL_IP"]}.items():
            b = b.config(k, v)
    for k, v in (conf or {}).items():
        b = b.config(k, v)
    s = b.getOrCreate()
    s.sparkContext.setLogLevel("ERROR")
    for k in ("spark.sql.session.timeZone", "spark.sql.parquet.outputTimestampType"):
        s.conf.set(k, QUIET_CONF[k])
    return s


def _connect_session(remote: str, conf: dict[str, str] | None) -> "SparkSession":
    """A new Spark Connect session. Built with the Connect client's own builder: the generic builder
    refuses a remote session in a process that also runs a local one (tests, a notebook), and a new
    session rather than the process' default one, since ``build_spark`` stops what it started.
    Only session settings (``spark.sql.*``) can be set from a client; the rest is the server's."""
    from pyspark.errors import PySparkException
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    try:
        _reachable(remote)
        s = ConnectSession.builder.remote(remote).create()
        for k, v in {**{k: v for k, v in QUIET_CONF.items() if k.startswith("spark.sql.")}, **(conf or {})}.items():
            s.conf.set(k, v)
    except PySparkException as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BuildError(f"cannot use the Spark Connect server {remote}: {first}") from None
    return s


def _reachable(remote: str) -> None:
    """Fail in ``timeout`` seconds when nothing answers at ``remote``: the Connect client itself retries
    with backoff for many minutes, a silent hang for a mistyped host or port."""
    import grpc
    from pyspark.sql.connect.client import DefaultChannelBuilder

    timeout = CONNECT_TIMEOUT
    channel = DefaultChannelBuilder(remote).toChannel()
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise BuildError(f"no Spark Connect server answers at {remote} (waited {timeout:.0f} s)") from None
    finally:
        channel.close()


# --- inputs: the catalog's views, in Spark SQL ----------------------------------------------------------------

def _json(expr: str) -> str:
    """DuckDB ``(event->'a'->>'b')`` -> Spark ``get_json_object(event, '$.a.b')``."""
    def sub(m: re.Match) -> str:
        path = [k for k in re.findall(r"'([^']+)'", m.group(1))] + [m.group(2)]
        return f"get_json_object(event, '$.{'.'.join(path)}')"
    return re.sub(r"\(event((?:->'[^']+')*)->>'([^']+)'\)", sub, expr)


def _uuid_text(col: str) -> str:
    """16 UUID bytes -> the canonical text DuckDB's CAST(uuid AS VARCHAR) gives."""
    h = f"lower(hex({col}))"
    return (f"concat_ws('-', substr({h}, 1, 8), substr({h}, 9, 4), substr({h}, 13, 4), substr({h}, 17, 4), "
            f"substr({h}, 21, 12))")


def _empty_sql(spec: dict[str, str]) -> str:
    return "SELECT " + ", ".join(f"CAST(NULL AS {_SPARK_TYPES[t]}) AS `{c}`" for c, t in spec.items()) + " WHERE false"


def _typed_sql(view: str, have: dict[str, str], spec: dict[str, str]) -> str:
    """SELECT the INPUTS columns of a Spark view typed as ``spec`` (inputs.input_sql for Spark)."""
    cols = []
    for c, t in spec.items():
        st = _SPARK_TYPES[t]
        if c not in have:
            cols.append(f"CAST(NULL AS {st}) AS `{c}`")
        elif have[c] == "timestamp" and st == "TIMESTAMP_NTZ":
            cols.append(f"CAST(`{c}` AS TIMESTAMP_NTZ) AS `{c}`")  # UTC wall time (session zone is UTC)
        elif have[c] == st.lower():
            cols.append(f"`{c}`")
        else:
            cols.append(f"TRY_CAST(`{c}` AS {st}) AS `{c}`")
    return f"SELECT {', '.join(cols)} FROM {view}"


def _register_files(spark: "SparkSession", view: str, files: list[str]) -> dict[str, str] | None:
    if not files:
        return None
    known = _merged_schema(files)
    if known is not None:  # the schema Spark would infer, given: no schema-merging job
        ddl = ", ".join(f"`{c}` {t}" for c, t in known.items())
        spark.read.schema(ddl).parquet(*files).createOrReplaceTempView(view)
        return known
    df = spark.read.option("mergeSchema", "true").parquet(*files)
    df.createOrReplaceTempView(view)
    return {f.name: f.dataType.simpleString() for f in df.schema.fields}


def _spark_type(t) -> str | None:
    """The Spark type Spark infers for a Parquet column pyarrow reads as ``t`` (None: not one of these)."""
    import pyarrow as pa

    if pa.types.is_timestamp(t):  # isAdjustedToUTC=false (no zone) is TIMESTAMP_NTZ since Spark 3.4
        return "timestamp" if t.tz is not None else "timestamp_ntz"
    return {pa.int64(): "bigint", pa.int32(): "int", pa.float64(): "double", pa.bool_(): "boolean",
            pa.string(): "string", pa.date32(): "date"}.get(t)


def _merged_schema(files: list[str]) -> dict[str, str] | None:
    """Column -> Spark type over ``files`` (the union of their columns, in order of appearance), from
    the Parquet footers: what ``mergeSchema`` infers, without the Spark job it runs for it (~0.1 s a
    table, 1.2 s for a build's inputs, 3.7 s on a cold JVM). None when a type is not among the few the
    importers write, or a column's type differs between files: Spark then infers (and says why)."""
    import pyarrow.parquet as pq

    out: dict[str, str] = {}
    for f in files:
        for field in pq.read_schema(f):
            t = _spark_type(field.type)
            if t is None or out.setdefault(field.name, t) != t:
                return None
    lower = {c.lower() for c in out}
    return out if len(lower) == len(out) else None


def _read_parts(spark: "SparkSession", con: duckdb.DuckDBPyConnection, parts: list[str]) -> "DataFrame":
    """The event parts as one DataFrame, ``event_id`` as text. Parts written before event_id became text
    hold it with Parquet's UUID logical type, which Spark cannot read (PARQUET_TYPE_ILLEGAL) unless asked
    for its 16 bytes: those (found from the footers) are read so and formatted by ``_uuid_text``."""
    old = {f for (f,) in con.execute("SELECT DISTINCT file_name FROM parquet_schema(?) WHERE name = 'event_id' "
                                     "AND type = 'FIXED_LEN_BYTE_ARRAY'", [parts]).fetchall()}
    cols = [c for c in views.EVENT_COLUMNS if c not in _EVENT_KEYS] + list(_EVENT_KEYS)
    types = {**{c: _SPARK_TYPES[t] for c, t in views.EVENT_COLUMNS.items()}, "source_key": "STRING"}

    def read(files: list[str], id_type: str) -> "DataFrame":
        schema = ", ".join(f"`{c}` {id_type if c == 'event_id' else types[c]}" for c in cols)
        return spark.read.schema(schema).parquet(*files)

    new = [p for p in parts if p not in old]
    dfs = [read(new, "STRING")] if new else []
    if old:
        dfs.append(read(sorted(old), "BINARY").selectExpr(
            *[f"{_uuid_text('event_id')} AS event_id" if c == "event_id" else f"`{c}`" for c in cols]))
    return dfs[0] if len(dfs) == 1 else dfs[0].unionByName(dfs[1])


def _event_sql(spec: dict[str, str], family: str | None) -> str:
    """An event input over ``_edx_events`` (parts minus duplicates): family filter, JSON fields,
    ``subject_id`` and the enrolment course fallback, as the DuckDB views and inputs.py define them."""
    extra = dict(views.FAMILIES[family][1]) if family else {}
    like = " OR ".join(f"event_type LIKE '{p}'" for p in SUBJECT_EVENTS)
    cols = []
    for c, t in spec.items():
        st = _SPARK_TYPES[t]
        if c == "subject_id":
            e = f"CASE WHEN ({like}) THEN TRY_CAST(get_json_object(event, '$.user_id') AS BIGINT) END"
        elif c == "course_id":
            e = ("CASE WHEN (course_id IS NULL OR course_id = '') AND event_type LIKE 'edx.course.enrollment.%' "
                 "THEN nullif(get_json_object(event, '$.course_id'), '') ELSE course_id END")
        elif c == "context_course_id":
            e = "course_id"  # the course the context named (inputs.input_sql)
        elif c in extra:
            e = f"TRY_CAST({_json(extra[c])} AS {st})"
        elif c in views.EVENT_COLUMNS:
            e = f"`{c}`"
        else:
            e = f"CAST(NULL AS {st})"
        cols.append(f"{e} AS `{c}`")
    where = f" WHERE {_json(views.FAMILIES[family][0])}" if family else ""
    return f"SELECT {', '.join(cols)} FROM _edx_events{where}"


def register_inputs(spark: "SparkSession", con: duckdb.DuckDBPyConnection, root: Path) -> dict[str, str]:
    """Spark SQL for every input except ``course_info``: name -> SELECT over registered temp views."""
    base = str(root.resolve())
    out: dict[str, str] = {}
    # edX tables: the current snapshot files
    snaps: dict[str, list[str]] = {}
    for t, p in con.execute("SELECT table_name, path FROM _edx_snapshots ORDER BY table_name, course_id").fetchall():
        snaps.setdefault(t, []).append(f"{base}/{p}")
    geo = dict(catalog.named_paths(con, "_edx_geo"))
    for name, spec in INPUTS.items():
        if name == "course_info" or name.startswith("events"):
            continue
        files = [str((root / geo[name]).resolve())] if name in geo else snaps.get(name, [])
        have = _register_files(spark, f"_edx_src_{name}", files)
        out[name] = _empty_sql(spec) if have is None else _typed_sql(f"_edx_src_{name}", have, spec)
    # tracking logs: parts minus the duplicates (views.event_views)
    parts = [f"{base}/{p}" for (p,) in con.execute("SELECT path FROM _edx_event_parts ORDER BY path").fetchall()] \
        if catalog.exists(con, "_edx_event_parts") else []
    if not parts:
        for name, spec in INPUTS.items():
            if name.startswith("events"):
                out[name] = _empty_sql(spec)
        return out
    _read_parts(spark, con, parts).createOrReplaceTempView("_edx_event_parts")
    dups = con.execute("SELECT event_date, source_key, line FROM _edx_event_dups").to_arrow_table() \
        if catalog.exists(con, "_edx_event_dups") else None
    if dups is not None and dups.num_rows:
        spark.createDataFrame(dups.to_pandas(), "event_date DATE, source_key STRING, line BIGINT") \
            .createOrReplaceTempView("_edx_event_dups")
        spark.sql("SELECT e.* FROM _edx_event_parts e LEFT ANTI JOIN _edx_event_dups d ON d.source_key = "
                  "e.source_key AND d.line = e.line AND d.event_date = e.event_date") \
            .createOrReplaceTempView("_edx_events")
    else:
        spark.table("_edx_event_parts").createOrReplaceTempView("_edx_events")
    for name, spec in INPUTS.items():
        if name.startswith("events"):
            out[name] = _event_sql(spec, None if name == "events" else name)
    return out


def _register_arrow(spark: "SparkSession", view: str, table, spec: dict[str, str]) -> None:
    """A small Arrow table (the course registry) as a Spark temp view with the INPUTS types."""
    schema = ", ".join(f"`{c}` {_SPARK_TYPES[t]}" for c, t in spec.items())
    spark.createDataFrame(table.select(list(spec)).to_pylist() or [], schema).createOrReplaceTempView(view)


def stage_inputs(spark: "SparkSession", con: duckdb.DuckDBPyConnection, tmp: Path) -> dict[str, str]:
    """Every input through the DuckDB catalog (``inputs.input_sql``) into Parquet under ``tmp``, read by Spark.

    For catalogs whose views are not over the lake's bookkeeping (benchmark stores, hand-made
    fixtures): DuckDB reads everything once on this machine, so it does not scale out."""
    out: dict[str, str] = {}
    tmp.mkdir(parents=True, exist_ok=True)
    for name, spec in INPUTS.items():
        if name == "course_info":
            continue
        f = tmp / f"{name}.parquet"
        con.execute(f"COPY ({input_sql(con, name)}) TO {catalog.sql_str(str(f))} (FORMAT parquet)")
        have = _register_files(spark, f"_edx_src_{name}", [str(f)])
        out[name] = _typed_sql(f"_edx_src_{name}", have, spec)
    return out


# --- compiling ---------------------------------------------------------------------------------------------

# Ibis 12 / sqlglot render strip()'s whitespace set for Spark as '\\t\\n\\r\\v\\f', and Spark's string
# literals know no \\v or \\f escape (they read as the letters v and f: 'verified' -> 'erified').
# docs/decisions.md "Spark: per-engine fallbacks".
_BAD_TRIM = "' \\t\\n\\r\\v\\f'"
_GOOD_TRIM = "' \\t\\n\\r\\u000B\\u000C'"


def spark_sql(ib, expr) -> str:
    """Spark SQL of an Ibis expression, with the whitespace set of strip() fixed."""
    return ib.compile(expr).replace(_BAD_TRIM, _GOOD_TRIM)


def _utc_wall_time(df: "DataFrame") -> "DataFrame":
    """TIMESTAMP (session-zone) columns as TIMESTAMP_NTZ in UTC, the type every model column has on DuckDB
    (a timestamp literal, e.g. ``created_at``, is a zoned TIMESTAMP on Spark)."""
    from pyspark.sql.types import TimestampType

    # SQL text, not pyspark.sql.functions: those pick classic or Connect columns from the process' mode,
    # and a Connect client may run next to a local session (or have no JVM at all)
    return df.selectExpr(*[f"CAST(`{f.name}` AS TIMESTAMP_NTZ) AS `{f.name}`"
                           if isinstance(f.dataType, TimestampType) else f"`{f.name}`"
                           for f in df.schema.fields])


# --- writing ---------------------------------------------------------------------------------------------------

def _write_model(session: "SparkSession", sql: str, name: str, models_dir: Path,
                 output: str | None) -> tuple[int, str]:
    """Run one model's SQL and write it (one file in the lake, or a part directory under ``output``);
    returns (rows, where). A Spark failure becomes one BuildError line naming the model."""
    stem = f"{name}-{uuid.uuid4().hex[:12]}"
    with _spark_errors(name):
        df = _utc_wall_time(session.sql(sql))
        if output:
            target = f"{output.rstrip('/')}/{name}/{stem}"
            df.write.mode("error").parquet(target)
            return session.read.parquet(target).count(), target
        d = models_dir / name
        d.mkdir(parents=True, exist_ok=True)
        tmpdir = d / f".{stem}.spark"
        df.write.mode("overwrite").parquet(str(tmpdir))
        path = d / f"{stem}.parquet"
        return _merge_parts(tmpdir, path), str(path)


@contextlib.contextmanager
def _spark_errors(name: str):
    """A Spark failure as one BuildError line naming the model, not a Java stack trace."""
    from pyspark.errors import PySparkException

    try:
        yield
    except PySparkException as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BuildError(f"model {name} failed on Spark: {first}") from None


def _merge_parts(d: Path, path: Path) -> int:
    """Spark's part files of one model -> one Parquet file (streamed by row group); returns rows."""
    parts = sorted(p for p in d.iterdir() if p.suffix == ".parquet" and not p.name.startswith((".", "_")))
    tmp = path.with_name(path.name + ".tmp")
    schema = pq.read_schema(parts[0])
    rows = 0
    with pq.ParquetWriter(tmp, schema, compression="zstd") as w:
        for p in parts:
            f = pq.ParquetFile(p)
            for i in range(f.num_row_groups):
                rg = f.read_row_group(i)
                rows += rg.num_rows
                w.write_table(rg.cast(schema))
    os.replace(tmp, path)
    shutil.rmtree(d, ignore_errors=True)
    return rows


class _SparkRun(_DuckRun):
    """A Spark build into the lake: the DuckDB build's plan and bookkeeping (its model files, its
    partitions in ``_edx_model_parts``), each model computed by Spark. A partitioned model's changed
    partitions are computed in one Spark job, then split into one file per partition on the driver by
    DuckDB (``incremental.write_parts``, as the DuckDB build writes them)."""

    def __init__(self, lake: Lake, con: duckdb.DuckDBPyConnection, params: D.Params, force: bool,
                 session: "SparkSession", sqls: dict[str, str], entries: list[CourseEntry]):
        super().__init__(lake, con, params, force)
        self.session, self.sqls, self.entries = session, sqls, entries
        self.sib = ibis.pyspark.connect(session)
        self._views = 0

    def spark_table(self, name: str, parts: list[str] | None = None):
        """Input or model ``name`` on Spark (only the partitions ``parts`` when given: the event dates of
        an event input, the files of those partitions of a partitioned model)."""
        if name == "course_info" and name not in self.sqls:
            _register_arrow(self.session, "_edx_src_course_info", self.course_info(self.entries),
                            INPUTS["course_info"])
            self.sqls[name] = _typed_sql("_edx_src_course_info", {c: _SPARK_TYPES[t].lower() for c, t in
                                                                  INPUTS[name].items()}, INPUTS[name])
        if name in INPUTS:
            sql = self.sqls[name]
            return self.sib.sql(sql if parts is None else f"SELECT * FROM ({sql}) WHERE {inc.day_filter(parts)}")
        view = f"_edx_model_{name}_{self._views}"
        self._views += 1
        self.session.read.parquet(*self._model_files(name, parts)).createOrReplaceTempView(view)
        return self.sib.table(view)

    def write_whole(self, n: str) -> tuple[Path, int]:
        expr = D.MODELS[n].build(D.Tables(self.spark_table), self.params)
        rows, where = _write_model(self.session, spark_sql(self.sib, expr), n, self.lake.lake_dir / "models", None)
        return Path(where), rows

    def write_partitions(self, n: str, plan: PartPlan, schema: str | None) -> tuple[dict, Path]:
        m = D.MODELS[n]

        out_dir = self.lake.lake_dir / "model_parts" / n
        tmp = out_dir / f".spark-{uuid.uuid4().hex[:12]}"
        with _spark_errors(n):
            expr = m.build(D.Tables(partition_tables(self.spark_table, plan), upto=True), self.params)
            _utc_wall_time(self.session.sql(spark_sql(self.sib, expr))).write.mode("overwrite").parquet(str(tmp))
        try:
            src = f"SELECT * FROM read_parquet({catalog.sql_str(f'{tmp}/*.parquet')})"
            written = inc.write_parts(self.con, src, m.partition, n, self.lake.root, out_dir) if plan.todo else {}
            return written, self._schema_file(n, src, schema)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


    def write_courses(self, n: str, plan: PartPlan, schema: str | None) -> tuple[dict, Path]:
        """Compute the courses ``plan.todo`` of a course-partitioned model (its per-course inputs and models
        limited to them), split per course as ``write_partitions`` splits per date."""
        m = D.MODELS[n]
        scope = set(m.course_inputs) | set(m.deps)

        def get(name: str):
            t = self.spark_table(name)
            return t.filter(t.course_id.isin(plan.courses)) if plan.courses is not None and name in scope else t

        out_dir = self.lake.lake_dir / "model_parts" / n
        tmp = out_dir / f".spark-{uuid.uuid4().hex[:12]}"
        with _spark_errors(n):
            expr = m.build(D.Tables(get), self.params)
            if plan.courses is not None:
                expr = expr.filter(expr.course_id.isin(plan.courses))
            _utc_wall_time(self.session.sql(spark_sql(self.sib, expr))).write.mode("overwrite").parquet(str(tmp))
        try:
            src = f"SELECT * FROM read_parquet({catalog.sql_str(f'{tmp}/*.parquet')})"
            written = inc.write_parts(self.con, src, m.partition, n, self.lake.root, out_dir,
                                     hashed=True) if plan.todo else {}
            return written, self._schema_file(n, src, schema)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def build_spark(lake: Lake, entries: list[CourseEntry], params: D.Params, names: list[str] | None = None,
                force: bool = False, on_model: Callable[[ModelResult], None] | None = None,
                master: str = "local[2]", remote: str | None = None, output: str | None = None,
                spark: "SparkSession | None" = None, staged: bool = False) -> BuildResult:
    """Every (changed) model on Spark; see the module docstring. ``spark``: reuse a session (tests);
    ``staged``: inputs through DuckDB (``stage_inputs``) for catalogs not built by the importers."""
    if not lake.catalog_path.exists():
        raise BuildError(f"no store at {lake.root} (run `edx-engine import` first)")
    t0 = time.perf_counter()
    session = spark or spark_session(master, remote)
    res = BuildResult(store=f"spark {remote or master}" + (f" -> {output}" if output else ""))
    todo = D.order(names)
    with lake.writer():
        with lake.connect(read_only=True, fresh=True) as con:
            con.execute("SET TimeZone = 'UTC'")
            c0 = time.perf_counter()
            staging = lake.root / "tmp" / "spark-inputs"
            sqls = stage_inputs(session, con, staging) if staged else register_inputs(session, con, lake.root)
            res.copy_seconds = time.perf_counter() - c0
            if output:
                _build_elsewhere(session, con, sqls, entries, params, todo, output, res, on_model)
            else:
                run = _SparkRun(lake, con, params, force, session, sqls, entries)
                for n in todo:
                    r = run.build_partitioned(n) if D.MODELS[n].partition else run.build_whole(n, entries)
                    res.models.append(r)
                    if on_model:
                        on_model(r)
                confirmed = confirmed_inputs(con, res.models, run.in_fp)
        if not output and (run.new_paths or confirmed):
            record_models(lake, run.new_paths, params, run.in_fp, run.parts, confirmed=confirmed)
        lake.collect_garbage()
    if staged:
        shutil.rmtree(lake.root / "tmp" / "spark-inputs", ignore_errors=True)
    if spark is None:
        session.stop()
    res.seconds = time.perf_counter() - t0
    return res


def _build_elsewhere(session: "SparkSession", con: duckdb.DuckDBPyConnection, sqls: dict[str, str],
                     entries: list[CourseEntry], params: D.Params, todo: list[str], output: str, res: BuildResult,
                     on_model: Callable[[ModelResult], None] | None) -> None:
    """``output``: every model (and the models it reads) whole, as a directory of part files there; the
    catalog is not touched."""
    ib = ibis.pyspark.connect(session)
    _register_arrow(session, "_edx_src_course_info", course_info(con, entries), INPUTS["course_info"])
    sqls["course_info"] = _typed_sql("_edx_src_course_info", {c: _SPARK_TYPES[t].lower() for c, t in
                                                              INPUTS["course_info"].items()}, INPUTS["course_info"])
    current: dict[str, str] = {}

    def get(name: str):
        if name in INPUTS:
            return ib.sql(sqls[name])
        session.read.parquet(current[name]).createOrReplaceTempView(f"_edx_model_{name}")
        return ib.table(f"_edx_model_{name}")

    for n in todo:
        s0 = time.perf_counter()
        with _PeakRSS() as mem:
            expr = D.MODELS[n].build(D.Tables(get), params)
            rows, current[n] = _write_model(session, spark_sql(ib, expr), n, Path(), output)
        r = ModelResult(n, "built", rows, time.perf_counter() - s0, mem.peak / 2**20)
        res.models.append(r)
        if on_model:
            on_model(r)
