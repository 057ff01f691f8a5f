"""The row order of a pseudonymised export tells nothing about the learners' user ids.

An `export <table> --anonymised` wrote the rows in the store's order, which for a table file is edX's:
by id, so by user id. Anyone holding the learners' ids (another file, an earlier identified export)
could sort them and match them to the rows by rank, undoing the pseudonyms. The rows now come by the
exports' key columns, then by a keyed hash of the ids: the same order for the same secret and store
(the store's own order is not fixed), another order for another secret."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from edx_engine.privacy.export import export_table
from edx_engine.privacy.pseudonym import Pseudonymizer

from models_support import parity_entries, synthetic_store

SECRET = "a-test-secret-of-enough-characters-0001"


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    from edx_engine.models import Params, build_duckdb

    lake, manifest = synthetic_store(tmp_path_factory.mktemp("order"), courses=2, learners=300, days=1,
                                     malformed=False)
    build_duckdb(lake, parity_entries(manifest), Params(include_staff=True))
    return lake


def rows(path) -> list[dict]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def spearman(xs: list[float], ys: list[float]) -> float:
    """Rank correlation, written out (no ties in these ranks)."""
    def ranks(v):
        order = sorted(range(len(v)), key=v.__getitem__)
        r = [0] * len(v)
        for i, j in enumerate(order):
            r[j] = i
        return r
    rx, ry, n = ranks(xs), ranks(ys), len(xs)
    return 1 - 6 * sum((a - b) ** 2 for a, b in zip(rx, ry)) / (n * (n * n - 1))


@pytest.mark.parametrize("table", ["auth_userprofile", "student_courseenrollment", "masterfile"])
def test_pseudonymised_rows_do_not_come_by_user_id(lake, tmp_path, table):
    pz = Pseudonymizer(SECRET)
    with lake.connect(read_only=True) as con:
        uids = [r[0] for r in con.execute("SELECT DISTINCT id FROM auth_user").fetchall()]
    back = {pz.user(u): u for u in uids}
    export_table(lake, table, tmp_path / "a.csv", pseudonymizer=pz)
    got = rows(tmp_path / "a.csv")
    courses = [r["course_id"] for r in got]
    assert courses == sorted(courses)  # the key columns first
    for course in set(courses):
        ids = [back[r["user_id"]] for r in got if r["course_id"] == course]
        assert len(ids) >= 100
        rho = spearman(list(range(len(ids))), ids)
        assert abs(rho) < 0.3, (course, rho)  # by user id: 1.0; a random order of 100+: |rho| ~ 0.1 or less

    # deterministic for a secret and a store, keyed: another secret gives another order
    export_table(lake, table, tmp_path / "b.csv", pseudonymizer=pz)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    other = Pseudonymizer(SECRET + "-other")
    export_table(lake, table, tmp_path / "c.csv", pseudonymizer=other)
    back_other = {other.user(u): u for u in uids}
    first = [back[r["user_id"]] for r in got][:50]
    assert [back_other[r["user_id"]] for r in rows(tmp_path / "c.csv")][:50] != first


def test_sort_reads_only_written_columns_and_spills_inside_the_store(lake, tmp_path, monkeypatch):
    """The sort of a pseudonymised export spills to disk on a big table. It did so in DuckDB's default
    ``.tmp`` of the working directory (wherever the export was run: beside the shared files), and it
    sorted every column, the dropped personal ones (email, name ...) and the real ids among them: rows
    of identified data written outside the store, left there if the export was killed."""
    from edx_engine.store.lake import Lake

    seen: list[tuple[str, str, str]] = []
    real = Lake.connect

    def connect(self, *a, **kw):
        con = real(self, *a, **kw)

        class Spy:
            def __getattr__(self, name):
                return getattr(con, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                con.close()

            def execute(self, sql, *args):
                if "ORDER BY" in sql:
                    tmp = con.execute("SELECT current_setting('temp_directory')").fetchone()[0]
                    seen.append((sql, tmp, con.execute("SELECT current_setting('memory_limit')").fetchone()[0]))
                return con.execute(sql, *args)
        return Spy()

    monkeypatch.setattr(Lake, "connect", connect)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    export_table(lake, "auth_user", tmp_path / "u.csv", pseudonymizer=Pseudonymizer(SECRET))
    (sql, tmp, _), = seen
    select = sql.split(" FROM ")[0]
    for personal in ("email", "username", "first_name", "last_name", "password"):
        assert f'"{personal}"' not in select and "*" not in select, select
    assert Path(tmp).resolve().is_relative_to(lake.root.resolve()), tmp
    assert not (elsewhere / ".tmp").exists()
