"""The whole-history models read month rollups of the day models (issue 15): they must give what the
day models give directly. A synthetic store spanning two months and three ISO weeks is built; every
value the rollups feed is recomputed here in plain SQL from the day models (distinct counts over
days, earliest submission over days), the definitions the models had before the rollups.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from edx_engine.models import Params, build_duckdb
from models_support import synthetic_store

STAFF = "(SELECT id FROM auth_user WHERE is_staff)"  # one package, no course roles in the generator


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    lake, _ = synthetic_store(tmp_path_factory.mktemp("months"), courses=2, learners=60, days=12, seed=5,
                              start=dt.date(2026, 9, 24))
    build_duckdb(lake, [], Params(built_at=dt.datetime(2026, 11, 1)), threads=1)
    con = duckdb.connect(str(lake.catalog_path), read_only=True)
    yield con
    con.close()


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return sorted(con.execute(sql).fetchall(), key=repr)


def test_store_spans_months_and_learners_come_back(store):
    """The comparisons below mean something: learners, videos and problems active in both months."""
    assert store.execute("SELECT count(DISTINCT month) FROM models.learner_month").fetchone()[0] == 2
    for model, key in (("learner_month", "course_id, user_id"), ("video_month", "course_id, video_id, user_id"),
                       ("problem_month", "course_id, problem_id, user_id")):
        again = store.execute(f"SELECT count(*) FROM (SELECT {key} FROM models.{model} GROUP BY ALL "
                              f"HAVING count(*) > 1)").fetchone()[0]
        assert again > 0, model


def test_person_course_event_columns(store):
    naive = rows(store, """
        SELECT course_id, user_id, sum(nevents)::BIGINT, count(DISTINCT date) FILTER (WHERE nevents > 0),
               sum(nevents_all)::BIGINT, count(DISTINCT date), min(first_event), max(last_event),
               sum(nplay_video)::BIGINT, sum(nproblem_check_server)::BIGINT
        FROM models.learner_day GROUP BY 1, 2""")
    got = rows(store, """
        SELECT p.course_id, p.user_id, nevents, ndays_act, nevents_all, ndays_act_all, first_event, last_event,
               nplay_video, nproblem_check_server
        FROM models.person_course p SEMI JOIN models.learner_day d ON p.course_id = d.course_id
             AND p.user_id = d.user_id""")
    assert got and got == [r for r in naive if (r[0], r[1]) in {(g[0], g[1]) for g in got}]
    assert any(r[3] > 1 for r in got)  # learners active on several days


def test_activity_series(store):
    own = f"FROM models.learner_day WHERE nevents_own > 0 AND user_id NOT IN {STAFF}"
    assert rows(store, "SELECT course_id, date, active_learners, nevents FROM models.activity_daily") == rows(
        store, f"SELECT course_id, date, count(DISTINCT user_id), sum(nevents_own)::BIGINT {own} GROUP BY 1, 2")
    weekly = rows(store, "SELECT course_id, week, active_learners, nevents FROM models.activity_weekly")
    assert weekly == rows(store, f"SELECT course_id, date_trunc('week', date)::DATE, count(DISTINCT user_id), "
                                 f"sum(nevents_own)::BIGINT {own} GROUP BY 1, 2")
    assert len({w[1] for w in weekly}) >= 2


def test_video_summary(store):
    assert rows(store, "SELECT course_id, video_id, learners, viewers, plays, completers, nevents "
                       "FROM models.video_summary") == rows(store, f"""
        SELECT course_id, video_id, count(DISTINCT user_id),
               count(DISTINCT user_id) FILTER (WHERE plays > 0 OR completions > 0),
               sum(plays)::BIGINT, count(DISTINCT user_id) FILTER (WHERE completions > 0), sum(nevents)::BIGINT
        FROM models.video_day WHERE user_id NOT IN {STAFF} GROUP BY 1, 2""")
    # every completer is a viewer: the completion rate is a share (tests/test_models_video.py)
    assert store.execute("SELECT count(*) FROM models.video_summary WHERE NOT (completers <= viewers AND "
                         "viewers <= learners AND completion_rate BETWEEN 0 AND 1)").fetchone()[0] == 0


def test_problem_summary(store):
    assert rows(store, "SELECT course_id, problem_id, submissions, learners, learners_correct, first_attempt_correct "
                       "FROM models.problem_summary") == rows(store, f"""
        WITH d AS (SELECT * FROM models.problem_day WHERE user_id NOT IN {STAFF}),
        firsts AS (SELECT course_id, problem_id, user_id,
                          arg_min(first_success, (first_time, first_event_id)) AS s FROM d GROUP BY 1, 2, 3)
        SELECT d.course_id, d.problem_id, sum(submissions)::BIGINT, count(DISTINCT d.user_id),
               count(DISTINCT d.user_id) FILTER (WHERE ncorrect > 0),
               (SELECT count(*) FROM firsts f WHERE f.course_id = d.course_id AND f.problem_id = d.problem_id
                AND f.s = 'correct')
        FROM d GROUP BY 1, 2""")


def test_courses_and_enrolment_events(store):
    assert rows(store, "SELECT course_id, first_event_day, last_event_day, nevents FROM models.courses "
                       "WHERE nevents > 0") == rows(
        store, "SELECT course_id, min(date), max(date), sum(nevents)::BIGINT FROM models.course_day GROUP BY 1")
    got = rows(store, "SELECT course_id, date, mode, activations, deactivations FROM models.enrolment_daily "
                      "WHERE activations + deactivations > 0")
    assert got and got == rows(store, f"""
        SELECT course_id, enrol_date, mode, sum(activations)::BIGINT, sum(deactivations)::BIGINT
        FROM models.enrolment_day WHERE user_id NOT IN {STAFF} GROUP BY 1, 2, 3
        HAVING sum(activations) + sum(deactivations) > 0""")
