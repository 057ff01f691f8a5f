"""``event_id`` is stored as text (the canonical lowercase 8-4-4-4-12 UUID form), not with Parquet's UUID
logical type, which Spark cannot read (issue 14 §3: no engine-specific Parquet features). Parts written
the old way (UUID) keep working: the views, the duplicate bookkeeping and Spark read both kinds as the
same text."""

from __future__ import annotations

import os
import re
import uuid

import pytest

from models_support import synthetic_store

CANONICAL = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def test_uuid_text_is_the_canonical_form():
    """Against Python's own uuid module, on ids that exercise every hex digit and both ends."""
    from edx_engine.ingest.events_parse import uuid_text

    ids = [bytes(16), b"\xff" * 16, bytes(range(16)), os.urandom(16), os.urandom(16)]
    assert uuid_text(b"".join(ids), len(ids)).to_pylist() == [str(uuid.UUID(bytes=b)) for b in ids]
    assert uuid_text(b"", 0).to_pylist() == []


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A small synthetic store (with duplicates across deliveries); ``before``: its events_all and
    duplicate bookkeeping as imported (every part text)."""
    lake, _ = synthetic_store(tmp_path_factory.mktemp("eventidtext"), learners=20, days=2)
    with lake.connect(read_only=True) as con:
        before = (con.execute("SELECT * FROM events_all ORDER BY source_file, line").fetchall(),
                  con.execute("SELECT event_date, source_key, line, CAST(event_id AS VARCHAR) FROM _edx_event_dups "
                              "ORDER BY ALL").fetchall())
        parts = [r[0] for r in con.execute("SELECT path FROM _edx_event_parts ORDER BY path").fetchall()]
        kinds = con.execute("SELECT DISTINCT type, logical_type FROM parquet_schema(?) WHERE name = 'event_id'",
                            [[str(lake.root / p) for p in parts]]).fetchall()
    return lake, parts, before, kinds


def _old_way(lake, parts: list[str]) -> list[str]:
    """Rewrite every other part as the importer wrote it before: event_id with the UUID logical type."""
    import duckdb

    old = parts[::2]
    con = duckdb.connect()
    for p in old:
        f = lake.root / p
        con.execute(f"COPY (SELECT * REPLACE (CAST(event_id AS UUID) AS event_id) FROM "
                    f"read_parquet('{f}', hive_partitioning=false)) TO '{f}.old' (FORMAT parquet)")
        os.replace(f"{f}.old", f)
    assert {r[0] for r in con.execute("SELECT DISTINCT type FROM parquet_schema(?) WHERE name = 'event_id'",
                                      [[str(lake.root / p) for p in old]]).fetchall()} == {"FIXED_LEN_BYTE_ARRAY"}
    con.close()
    return old


def test_new_parts_hold_text(store):
    lake, parts, (rows, dups), kinds = store
    assert len(parts) >= 2 and dups  # mixed parts below, and duplicates to recompute
    assert [k[0] for k in kinds] == ["BYTE_ARRAY"] and "UUID" not in str(kinds)
    with lake.connect(read_only=True) as con:
        ids = [r[0] for r in con.execute("SELECT event_id FROM events").fetchall()]
        assert con.execute("SELECT DISTINCT typeof(event_id) FROM events_all").fetchall() == [("VARCHAR",)]
    assert ids and all(CANONICAL.match(i) for i in ids)


@pytest.fixture(scope="module")
def mixed(store):
    """The store with every other part rewritten the old way (UUID), views and duplicates recomputed."""
    from edx_engine.store import catalog

    lake, parts, before, _ = store
    old = _old_way(lake, parts)
    with lake.connect() as con:
        dates = [str(d) for (d,) in con.execute("SELECT DISTINCT event_date FROM _edx_event_parts").fetchall()]
        con.execute("BEGIN TRANSACTION")
        catalog.replace_event_dups(con, dates, str(lake.root.resolve()))
        lake.refresh_views(con)
        con.execute("COMMIT")
    return lake, old, before


def test_old_uuid_parts_read_as_the_same_text(mixed):
    lake, old, (rows, dups) = mixed
    with lake.connect(read_only=True) as con:
        assert con.execute("SELECT DISTINCT typeof(event_id) FROM events").fetchall() == [("VARCHAR",)]
        assert con.execute("SELECT * FROM events_all ORDER BY source_file, line").fetchall() == rows
        assert con.execute("SELECT event_date, source_key, line, CAST(event_id AS VARCHAR) FROM _edx_event_dups "
                           "ORDER BY ALL").fetchall() == dups


def test_spark_reads_old_and_new_parts(spark_local, mixed):
    """Spark's events input over mixed parts equals DuckDB's, row for row (old parts through _uuid_text)."""
    from edx_engine.models.inputs import input_sql
    from edx_engine.models.spark import register_inputs
    from models_support import engine_rows

    lake, _, _ = mixed
    with lake.connect(read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        sqls = register_inputs(spark_local, con, lake.root)
        duck = con.execute(input_sql(con, "events")).to_arrow_table()
    got = spark_local.sql(sqls["events"]).toArrow()
    assert got.schema.names == duck.schema.names
    assert duck.num_rows > 0 and engine_rows(got) == engine_rows(duck)
