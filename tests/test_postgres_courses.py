"""person_course kept by course on PostgreSQL (issue 15 §1 and §4): the steps of test_incremental_courses
(a new day of one course, that day re-delivered with one event moved to another learner, a package
changing one enrolment of one course, a course's enrolments withdrawn, a profile change that touches
every course) and a registry change of one course's pass mark (only its ``courses`` row tells), built
into a real PostgreSQL server; steps of different courses share a build (a build costs about a second,
mostly fixed: loading DuckDB's postgres extension, compiling the models).

After each step: PostgreSQL's own record of the transaction that wrote each row (``xmin``) shows that
exactly the courses the step touched (known from the step, not from the build) were rewritten and the
others kept their rows; the bookkeeping counts the table's rows; and ``person_course`` equals the DuckDB
build of the same store row for row (test_incremental_courses holds the DuckDB build to a full build).
At the end a forced build recreates the table and gives the same rows.
"""

from __future__ import annotations

import duckdb
import psycopg

from edx_engine.lake import Lake
from edx_engine.models import Params, build_duckdb, build_postgres, read_model
from edx_engine.models.registry import CourseEntry

from conftest import new_pg_database
from incremental_support import import_into
from models_support import engine_rows
from test_incremental_courses import (BUILT_AT, _move_one_event, _one_course_log, delivery,  # noqa: F401
                                      gender_package, mode_package, withdraw)

PARAMS = Params(built_at=BUILT_AT)
NAMES = ["person_course"]  # and what it reads: learner_day, learner_month, course_day, course_month, courses
PC = "edx_models.person_course"


def _xmins(pg) -> dict[str, set[int]]:
    """Course -> the transactions that wrote its rows of person_course (none before the first build)."""
    if pg.execute("SELECT to_regclass(%s)", [PC]).fetchone()[0] is None:
        return {}
    return {c: set(x) for c, x in pg.execute(f"SELECT course_id, array_agg(DISTINCT xmin::text::bigint) FROM {PC} "
                                             f"GROUP BY 1").fetchall()}


def _now(pg) -> int:
    return pg.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0]


def _pg_model(url: str) -> list[dict]:
    return read_model(Lake("/nonexistent"), "person_course", store=url).to_pylist()


def _step(lake: Lake, pg, url: str, recomputed: set[str], entries: list[CourseEntry] | None = None) -> None:
    """Build on PostgreSQL: exactly the courses ``recomputed`` rewritten (new rows, or none), the others'
    rows untouched; the bookkeeping's counts are the table's; the rows equal DuckDB's. ``entries``: the
    course registry."""
    entries = entries or []
    before, since = _xmins(pg), _now(pg)
    built = {m.name: m for m in build_postgres(lake, url, entries, PARAMS, NAMES).models}
    assert built["person_course"].status == "built" and built["person_course"].days == len(recomputed)
    after = _xmins(pg)
    for c in set(before) | set(after):
        if c in recomputed:
            assert all(x >= since for x in after.get(c, ())), f"{c}: old rows kept"
        else:
            assert after.get(c) == before.get(c), f"{c}: rewritten"
    recorded = dict(pg.execute("SELECT part, rows FROM edx_models._edx_model_parts WHERE model = 'person_course' "
                               "AND part <> '#sources'").fetchall())
    assert {c: k for c, k in recorded.items() if k} == dict(
        pg.execute(f"SELECT course_id, count(*) FROM {PC} GROUP BY 1").fetchall())
    assert pg.execute("SELECT count(*) FROM edx_models._edx_model_parts WHERE model = 'person_course' "
                      "AND part = '#sources'").fetchone()[0] == 1
    build_duckdb(lake, entries, PARAMS, NAMES, threads=1)
    assert engine_rows(read_model(lake, "person_course", store=url)) == engine_rows(
        read_model(lake, "person_course")), "PostgreSQL differs from DuckDB"


def test_person_course_by_course_on_postgresql(delivery, pg_url, tmp_path):  # noqa: F811
    package, logs = delivery
    lake = Lake(tmp_path / "store")
    import_into(lake, package, logs[0], logs[1])
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        courses = [r[0] for r in con.execute("SELECT DISTINCT course_id FROM student_courseenrollment "
                                             "ORDER BY 1").fetchall()]
    assert len(courses) == 3
    a, b, c = courses
    with psycopg.connect(pg_url, autocommit=True) as pg:
        _step(lake, pg, pg_url, set(courses))
        assert {r["course_id"] for r in _pg_model(pg_url)} == set(courses)

        # a new day whose events are all of course a, and course c's enrolments withdrawn (its learners
        # leave person_course): a and c recomputed, b untouched
        day = _one_course_log(logs[2], a, [b, c], tmp_path / "logs" / logs[2].name)
        import_into(lake, day)
        withdraw(lake, c)
        _step(lake, pg, pg_url, {a, c})
        assert c not in {r["course_id"] for r in _pg_model(pg_url)}

        # nothing new: nothing rewritten
        before = _xmins(pg)
        built = {m.name: m for m in build_postgres(lake, pg_url, [], PARAMS, NAMES).models}
        assert built["person_course"].status == "unchanged" and _xmins(pg) == before

        # that day re-delivered with one event given to another learner (only learner_month's digests tell),
        # and a newer package with one changed enrolment of course b (only its snapshot tells)
        _move_one_event(day)
        pkg, changed = mode_package(lake, tmp_path, b)
        import_into(lake, day, pkg)
        _step(lake, pg, pg_url, {a, b})
        assert (b, changed[1], changed[5]) in {(r["course_id"], r["user_id"], r["mode"]) for r in _pg_model(pg_url)}

        # the registry gives course b another pass mark: only b's courses row tells
        entries = [CourseEntry(b, passing_grade=0.05)]
        _step(lake, pg, pg_url, {b}, entries)

        # a profile change of a learner of b and a: auth_userprofile spans every course, all are recomputed
        pkg, learner, new = gender_package(lake, tmp_path, b, a)
        import_into(lake, pkg)
        _step(lake, pg, pg_url, {a, b, c}, entries)
        rows = _pg_model(pg_url)
        assert {(r["course_id"], r["gender"]) for r in rows if r["user_id"] == learner} >= {(a, new), (b, new)}

        # a forced build recreates the table (every row rewritten) and gives the same rows
        since = _now(pg)
        forced = {m.name: m for m in build_postgres(lake, pg_url, entries, PARAMS, NAMES, force=True).models}
        assert forced["person_course"].days == 3
        assert all(min(x) >= since for x in _xmins(pg).values())
        assert engine_rows(read_model(lake, "person_course", store=pg_url)) == engine_rows(
            read_model(lake, "person_course"))


def test_changed_definitions_recreate_the_tables(delivery, pg_server, tmp_path, monkeypatch):  # noqa: F811
    """A new engine version whose definitions give person_course (kept by course) and learner_day (kept by
    date) one more column: every partition is recomputed (the context changed, no forced build) and the
    tables get the new column, as DuckDB writes a new schema file (an insert into the old table failed:
    column does not exist)."""
    import dataclasses

    import ibis

    from edx_engine.models import build as B
    from edx_engine.models import definitions as D

    url = new_pg_database(pg_server)  # a store of its own: the other test's tables stay out of it
    package, logs = delivery
    lake = Lake(tmp_path / "store")
    import_into(lake, package, logs[0])
    build_postgres(lake, url, [], PARAMS, NAMES)

    monkeypatch.setattr(B, "_code_version", lambda: "a-newer-engine")
    for n in ("person_course", "learner_day"):
        m = D.MODELS[n]
        monkeypatch.setitem(D.MODELS, n, dataclasses.replace(
            m, build=lambda t, p, f=m.build: f(t, p).mutate(review_extra=ibis.literal(7, "int64"))))
    built = {m.name: m for m in build_postgres(lake, url, [], PARAMS, NAMES).models}
    assert built["person_course"].status == built["learner_day"].status == "built"
    with psycopg.connect(url, autocommit=True) as pg:
        for n in ("person_course", "learner_day"):
            total, extra = pg.execute(f"SELECT count(*), count(*) FILTER (WHERE review_extra = 7) "
                                      f"FROM edx_models.{n}").fetchone()
            assert total > 0 and extra == total, n
            assert built[n].rows == total
