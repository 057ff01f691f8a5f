"""The event views read the lake by one glob over its date folders (issue 15 §3): their definition does
not grow with the days received, a date filter still skips other days' files unopened, the catalog
(``_edx_event_parts``) still decides which parts count, and catalogs made by the earlier views (every
part listed by path) are re-created on open with the same rows and types."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from models_support import synthetic_store


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A small imported store (2 days, duplicates across deliveries): its data folder."""
    lake, _ = synthetic_store(tmp_path_factory.mktemp("viewsglob"), learners=20, days=2)
    return lake.root


@pytest.fixture
def store(made, tmp_path) -> Path:
    """A private copy of the store (tests below change it), its views re-pointed at the copy."""
    from edx_engine.lake import Lake

    data = tmp_path / "data"
    shutil.copytree(made, data)
    Lake(data).connect().close()
    return data


def _ro(data: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(data / "edx.duckdb"), read_only=True)


def _view_sql(con, name: str) -> str:
    return con.execute("SELECT sql FROM duckdb_views() WHERE view_name = ?", [name]).fetchone()[0]


def _expected_count(con, data: Path) -> int:
    """Rows of ``events``, independently of the views: the listed parts' rows, less the duplicates."""
    files = [str(data / p) for (p,) in con.execute("SELECT path FROM _edx_event_parts").fetchall()]
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return rows - con.execute("SELECT count(*) FROM _edx_event_dups").fetchone()[0]


def _old_event_views(con, base: str) -> None:
    """The views as the earlier code wrote them: every part by path, read by name (its copy)."""
    paths = [f"{base}/{p}" for (p,) in con.execute("SELECT path FROM _edx_event_parts ORDER BY path").fetchall()]
    lst = "[" + ", ".join(f"'{p}'" for p in paths) + "]"
    src = (f"(SELECT * REPLACE (\"date\" AS event_date) FROM read_parquet({lst}, hive_partitioning=true, "
           f"hive_types={{'date': DATE}}, union_by_name=true))")
    from edx_engine.store.views import EVENT_COLUMNS

    cols = ", ".join("CAST(e.event_id AS VARCHAR) AS event_id" if c == "event_id" else f"e.{c}" for c in EVENT_COLUMNS)
    on = "ON d.source_key = e.source_key AND d.line = e.line AND d.event_date = e.event_date"
    con.execute(f"CREATE OR REPLACE VIEW events_all AS SELECT {cols}, (d.line IS NOT NULL) AS duplicate "
                f"FROM {src} e LEFT JOIN _edx_event_dups d {on}")
    con.execute(f"CREATE OR REPLACE VIEW events AS SELECT {cols} FROM {src} e ANTI JOIN _edx_event_dups d {on}")
    con.execute("DELETE FROM _edx_meta WHERE key = 'event_views'")


def test_definition_is_a_glob_of_constant_size(store):
    with _ro(store) as con:
        parts = [p for (p,) in con.execute("SELECT path FROM _edx_event_parts").fetchall()]
        dups = con.execute("SELECT count(*) FROM _edx_event_dups").fetchone()[0]
        sql = {v: _view_sql(con, v) for v in ("events", "events_all")}
        n = con.execute("SELECT count(*) FROM events").fetchone()[0]
        assert n == _expected_count(con, store) and dups and len(parts) >= 2
    for text in sql.values():
        assert f"{store.resolve()}/lake/events/date=*/*.parquet" in text
        assert not any(p in text for p in parts)  # no part is named: the text does not grow with them


def test_parts_the_catalog_does_not_list_are_not_read(store):
    """A part written but not committed (or replaced and not yet collected) is in the glob: the
    views leave it out, and leave out nothing else."""
    with _ro(store) as con:
        before = con.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone()
        all_before = con.execute("SELECT count(*) FROM events_all").fetchone()[0]
        part = con.execute("SELECT path FROM _edx_event_parts ORDER BY rows DESC LIMIT 1").fetchone()[0]
    stray = store / Path(part).with_name("zz-uncommitted.parquet")
    shutil.copyfile(store / part, stray)
    with _ro(store) as con:
        assert con.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone() == before
        assert con.execute("SELECT count(*) FROM events_all").fetchone()[0] == all_before
        assert con.execute("SELECT count(*) FROM read_parquet(?)", [str(stray)]).fetchone()[0] > 0


def test_a_date_filter_does_not_open_other_days(store):
    """An unreadable file in another day's folder: a query on one day (= or BETWEEN) never opens
    it, a query over every day does (so the file would be noticed if the filter did not prune)."""
    with _ro(store) as con:
        day, n = con.execute("SELECT event_date, sum(rows) FROM _edx_event_parts GROUP BY 1 ORDER BY 1 LIMIT 1"
                             ).fetchone()
        dups = con.execute("SELECT count(*) FROM _edx_event_dups WHERE event_date = ?", [day]).fetchone()[0]
    bad = store / "lake" / "events" / "date=2001-01-01" / "corrupt.parquet"
    bad.parent.mkdir()
    bad.write_bytes(b"PAR1 this is not a parquet file PAR1")
    with _ro(store) as con:
        assert con.execute("SELECT count(*) FROM events WHERE event_date = ?", [day]).fetchone()[0] == n - dups
        assert con.execute("SELECT count(*) FROM events_video WHERE event_date BETWEEN ? AND ?",
                           [day, day]).fetchone()[0] >= 0
        plan = con.execute("EXPLAIN ANALYZE SELECT count(*) FROM events_all WHERE event_date = ?",
                           [day]).fetchall()[0][1]
        files = con.execute("SELECT count(*) FROM _edx_event_parts WHERE event_date = ?", [day]).fetchone()[0]
        assert f"Total Files Read: {files}" in plan
        with pytest.raises(duckdb.Error):
            con.execute("SELECT count(*) FROM events_all").fetchall()


def test_an_old_catalog_gets_the_glob_views_on_open_with_the_same_rows_and_types(store):
    from edx_engine.lake import Lake

    with duckdb.connect(str(store / "edx.duckdb")) as con:
        _old_event_views(con, str(store.resolve()))
        old = {v: (con.execute(f"DESCRIBE {v}").fetchall(), con.execute(f"SELECT * FROM {v} ORDER BY ALL").fetchall())
               for v in ("events", "events_all", "events_video")}
        assert "date=*" not in _view_sql(con, "events")
    with Lake(store).connect(read_only=True) as con:  # a reader's open re-creates them
        assert "date=*" in _view_sql(con, "events") and "date=*" in _view_sql(con, "events_all")
        new = {v: (con.execute(f"DESCRIBE {v}").fetchall(), con.execute(f"SELECT * FROM {v} ORDER BY ALL").fetchall())
               for v in old}
    assert new == old and old["events"][1]


def test_a_copy_reads_its_own_files(store, tmp_path):
    """The copy's views and schema file are the copy's; the original gone, the copy still reads."""
    from edx_engine.lake import Lake
    from edx_engine.store.views import anchor_path

    with _ro(store) as con:
        n = con.execute("SELECT count(*) FROM events").fetchone()[0]
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    shutil.rmtree(store)
    with Lake(copy).connect(read_only=True) as con:
        assert str(store) not in _view_sql(con, "events") and str(copy.resolve()) in _view_sql(con, "events")
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == n
    assert anchor_path(copy.resolve()).exists()


def test_parts_lacking_a_column_are_read_by_name(store):
    """A catalog of the earlier views whose part lacks a column the views read: its views read the
    glob by name (every footer, as before), that part's column is NULL, the others' are kept."""
    from edx_engine.lake import Lake

    with duckdb.connect(str(store / "edx.duckdb")) as con:
        part = con.execute("SELECT path FROM _edx_event_parts ORDER BY path LIMIT 1").fetchone()[0]
        want = con.execute("SELECT count(*) FILTER (WHERE org_id IS NOT NULL) FROM events_all e "
                           "WHERE source_file NOT IN (SELECT DISTINCT source_file FROM read_parquet(?))",
                           [str(store / part)]).fetchone()[0]
        f = store / part
        t = pq.read_table(f)
        pq.write_table(t.drop_columns(["org_id"]), f)
        _old_event_views(con, str(store.resolve()))
    with Lake(store).connect(read_only=True) as con:
        assert "union_by_name" in _view_sql(con, "events")
        assert con.execute("SELECT count(*) FILTER (WHERE org_id IS NOT NULL) FROM events_all").fetchone()[0] == want
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == _expected_count(con, store)


def test_a_schema_file_that_cannot_be_written_leaves_views_that_read_by_name(store):
    """(A full disk, a read-only store.) The commit is not harmed: the views read the glob by name."""
    from edx_engine.lake import Lake
    from edx_engine.store.views import ANCHOR_DIR

    shutil.rmtree(store / ANCHOR_DIR)
    (store / ANCHOR_DIR).write_text("a file where the folder should be")
    with duckdb.connect(str(store / "edx.duckdb")) as con:
        con.execute("DELETE FROM _edx_meta WHERE key = 'event_views'")
    with Lake(store).connect(read_only=True) as con:
        assert "union_by_name" in _view_sql(con, "events") and "date=*" in _view_sql(con, "events")
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == _expected_count(con, store)


def test_events_of_the_schema_files_date_are_kept(store):
    """A store whose time window is switched off may hold events of 1970-01-01 (a clock reset to
    zero): the views' schema file sits in that date's folder, and those events still count."""
    with duckdb.connect(str(store / "edx.duckdb")) as con:
        part = con.execute("SELECT path FROM _edx_event_parts ORDER BY path LIMIT 1").fetchone()[0]
        epoch = Path("lake/events/date=1970-01-01") / "epoch-0000-t.parquet"
        (store / epoch).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(store / part, store / epoch)
        rows = pq.ParquetFile(store / epoch).metadata.num_rows
        con.execute("INSERT INTO _edx_event_parts VALUES ('epoch', DATE '1970-01-01', ?, ?, NULL, NULL)",
                    [epoch.as_posix(), rows])
    with _ro(store) as con:
        assert con.execute("SELECT count(*) FROM events WHERE event_date = DATE '1970-01-01'").fetchone()[0] == rows > 0
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == _expected_count(con, store)


def test_a_store_without_its_schema_file_reads_again(store):
    """A backup of the catalog and lake/ only: the first open writes the schema file again (a read-only
    open reads through re-made views meanwhile)."""
    from edx_engine.lake import Lake
    from edx_engine.store.views import ANCHOR_DIR, anchor_path

    shutil.rmtree(store / ANCHOR_DIR)
    with Lake(store).connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == _expected_count(con, store)
    Lake(store).connect().close()
    assert anchor_path(store.resolve()).exists()
    with _ro(store) as con:
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == _expected_count(con, store)


def test_views_rewritten_by_another_version_are_made_again(store):
    """An older edx-engine writes the list-of-files views once (and knows nothing of the record): the
    next commit of this version makes the glob views again instead of trusting the record, which
    would hide every part the old views do not list."""
    from edx_engine.lake import Lake
    from edx_engine.store.views import event_views

    with duckdb.connect(str(store / "edx.duckdb")) as con:
        meta = con.execute("SELECT value FROM _edx_meta WHERE key = 'event_views'").fetchone()[0]
        last = con.execute("SELECT * FROM _edx_event_parts ORDER BY path DESC LIMIT 1").fetchone()
        con.execute("DELETE FROM _edx_event_parts WHERE path = ?", [last[2]])
        _old_event_views(con, str(store.resolve()))  # the old version's views: without that part
        con.execute("INSERT INTO _edx_meta VALUES ('event_views', ?)", [meta])  # the record as it was
    with Lake(store).transaction("commit a part") as con:  # this version commits the part again
        con.execute("INSERT INTO _edx_event_parts VALUES (?, ?, ?, ?, ?, ?)", list(last))
        event_views(con, str(store.resolve()))
    with _ro(store) as con:
        assert "date=*" in _view_sql(con, "events") and "date=*" in _view_sql(con, "events_all")
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == _expected_count(con, store)


def test_a_store_path_with_a_backslash_lists_its_parts(store, tmp_path):
    """A backslash is an escape in a DuckDB glob: such a store's views list the parts by path."""
    from edx_engine.lake import Lake

    odd = tmp_path / "a\\b" / "data"
    shutil.copytree(store, odd)
    with Lake(odd).connect() as con:
        assert "date=*" not in _view_sql(con, "events")
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == _expected_count(con, odd) > 0


def test_a_store_under_a_date_folder_keeps_each_events_date(store, tmp_path):
    """A dated backup (…/date=2020-01-01/store): hive partitioning would read that folder's date, the
    first of the path, as every event's; the views use each part's own dates instead."""
    from edx_engine.lake import Lake

    with _ro(store) as con:
        want = con.execute("SELECT event_date, count(*) FROM events GROUP BY 1 ORDER BY 1").fetchall()
    dated = tmp_path / "date=2020-01-01" / "data"
    shutil.copytree(store, dated)
    with Lake(dated).connect() as con:
        assert con.execute("SELECT event_date, count(*) FROM events GROUP BY 1 ORDER BY 1").fetchall() == want
        assert len(want) >= 2
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == _expected_count(con, dated)


def _days_rows(con, data: Path, name: str, days: list[str]):
    """Rows of ``event_days_sql``'s SELECT on ``days`` (filtered as the builder filters it), and its text."""
    from edx_engine.store.views import event_days_sql

    sql = event_days_sql(con, str(data.resolve()), name, days)
    if sql is None:
        return None, None
    cond = " OR ".join(f"event_date = DATE '{d}'" for d in days)
    return con.execute(f"SELECT * FROM ({sql}) WHERE {cond} ORDER BY ALL").fetchall(), sql


def test_one_days_reads_are_the_views_rows_of_that_day_and_name_only_its_parts(store):
    """``event_days_sql`` (what a build of a few dates reads): for ``events`` and every family view, the
    same rows as the view filtered on those dates (duplicates left out, an uncommitted part in the same
    folder left out), naming only those dates' parts; a corrupt file in another day's folder is never
    opened (the glob would list it)."""
    from edx_engine.store.views import FAMILIES

    with _ro(store) as con:
        days = [str(d) for (d,) in con.execute("SELECT DISTINCT event_date FROM _edx_event_parts ORDER BY 1").fetchall()]
        part = con.execute("SELECT path FROM _edx_event_parts WHERE event_date = ? ORDER BY rows DESC LIMIT 1",
                           [days[0]]).fetchone()[0]
        assert con.execute("SELECT count(*) FROM _edx_event_dups WHERE event_date = ?", [days[0]]).fetchone()[0]
    shutil.copyfile(store / part, store / Path(part).with_name("zz-uncommitted.parquet"))
    bad = store / "lake" / "events" / "date=2001-01-01" / "corrupt.parquet"
    bad.parent.mkdir()
    bad.write_bytes(b"PAR1 this is not a parquet file PAR1")
    with _ro(store) as con:
        for name in ("events", *FAMILIES):
            for want in ([days[0]], days[:2]):
                cond = " OR ".join(f"event_date = DATE '{d}'" for d in want)
                expected = con.execute(f"SELECT * FROM {name} WHERE {cond} ORDER BY ALL").fetchall()
                got, sql = _days_rows(con, store, name, want)
                assert got == expected, (name, want)
                assert "date=*" not in sql and "zz-uncommitted" not in sql
                listed = {p for (p,) in con.execute("SELECT path FROM _edx_event_parts").fetchall()}
                named = {p for p in listed if p in sql}
                assert named == {p for p in listed if any(f"date={d}/" in p for d in want)}
            assert expected or name != "events"
        # a date with no part: no row (the schema file alone)
        assert _days_rows(con, store, "events", ["1999-01-01"])[0] == []


def test_one_days_reads_fall_back_to_the_view_where_it_cannot_narrow(store):
    """Views that list their parts (an old catalog), or a date that is not one (events without a
    date): None, and the build reads the view as before."""
    from edx_engine.store.views import event_days_sql

    with duckdb.connect(str(store / "edx.duckdb")) as con:
        day = str(con.execute("SELECT min(event_date) FROM _edx_event_parts").fetchone()[0])
        base = str(store.resolve())
        assert event_days_sql(con, base, "events", [day]) is not None
        assert event_days_sql(con, base, "events", [""]) is None  # the partition of events without a date
        assert event_days_sql(con, base, "auth_user", [day]) is None
        assert event_days_sql(con, base + "-elsewhere", "events", [day]) is None  # not what the views read
        _old_event_views(con, base)
        assert event_days_sql(con, base, "events", [day]) is None


def test_one_days_reads_of_a_damaged_or_hand_made_catalog_are_the_views_rows(store):
    """A part listed twice, a listed part gone from the disk, a part name holding glob characters, and
    an analyst's own ``events`` table in place of the view: the rows are the view's, or None (the build
    reads the view); a build never writes the schema file."""
    from edx_engine.store.views import anchor_path, event_days_sql

    base = str(store.resolve())
    with duckdb.connect(str(store / "edx.duckdb")) as con:
        day = str(con.execute("SELECT min(event_date) FROM _edx_event_parts").fetchone()[0])
        parts = [p for (p,) in con.execute("SELECT path FROM _edx_event_parts WHERE event_date = ? ORDER BY path",
                                           [day]).fetchall()]
        view = con.execute(f"SELECT * FROM events WHERE event_date = DATE '{day}' ORDER BY ALL").fetchall()
        con.execute("INSERT INTO _edx_event_parts SELECT * FROM _edx_event_parts WHERE path = ?", [parts[0]])
        assert _days_rows(con, store, "events", [day])[0] == view  # listed twice, read once
        (store / parts[-1]).rename(store / (parts[-1] + ".gone"))
        view = con.execute(f"SELECT * FROM events WHERE event_date = DATE '{day}' ORDER BY ALL").fetchall()
        assert _days_rows(con, store, "events", [day])[0] == view  # gone: no error, no rows of it, as the view
        (store / (parts[-1] + ".gone")).rename(store / parts[-1])
        odd = parts[0].replace(".parquet", "[1].parquet")
        shutil.copyfile(store / parts[0], store / odd)
        con.execute("UPDATE _edx_event_parts SET path = ? WHERE path = ?", [odd, parts[0]])
        assert event_days_sql(con, base, "events", [day]) is None  # a name a glob would read as a pattern
        con.execute("UPDATE _edx_event_parts SET path = ? WHERE path = ?", [parts[0], odd])
        rows = con.execute("SELECT * FROM events").fetchall()
        con.execute("CREATE OR REPLACE TABLE my_events AS SELECT * FROM events")
        con.execute("DROP VIEW events")
        con.execute("ALTER TABLE my_events RENAME TO events")  # an analyst's own table, no commit since
        assert len(rows) and event_days_sql(con, base, "events", [day]) is None
    anchor = anchor_path(base)
    anchor.unlink()
    with duckdb.connect(str(store / "edx.duckdb")) as con:
        assert event_days_sql(con, base, "events", [day]) is None and not anchor.exists()


def test_a_store_whose_path_holds_a_quote_builds(store, tmp_path):
    """The build's spill folder is set with the path quoted (it failed with a parser error before)."""
    from edx_engine.lake import Lake
    from edx_engine.models import Params, build_duckdb

    odd = tmp_path / "it's a store"
    shutil.copytree(store, odd)
    res = build_duckdb(Lake(odd), [], Params(), names=["learner_day"])
    with Lake(odd).connect(read_only=True) as con:
        n = con.execute("SELECT count(*) FROM models.learner_day").fetchone()[0]
    assert [m.status for m in res.models if m.name == "learner_day"] == ["built"] and n > 0
