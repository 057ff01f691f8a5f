"""The programme page of a programme with more courses than a chart can show (dashboard.build.fold_others).

A chart with one line per course stops being readable past the palette's 8 colours, and at 200 courses
and a year the programme page weighed 11.6 MB. The programme charts therefore draw the 7 courses with
the most enrolments and one line for the others, summed. Checked here on a 10-course store (real
importer, real model build) against sums computed with SQL of their own, in the internal and the
public site, and in Chromium.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from edx_engine import config
from edx_engine.cli import run_import
from edx_engine.dashboard import build_site
from edx_engine.dashboard.build import TOP_COURSES, fold_others, gather, line_names, overview_items
from edx_engine.dashboard.data import ALL, Course
from edx_engine.lake import Lake
from edx_engine.models import Params, build_duckdb
from edx_engine.synthetic import SyntheticConfig, generate
from test_dashboard import ARGS, CHROMIUM, K, Visit, page_data, small_counts

COURSES = 10


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("programme")
    generate(root / "pkg", SyntheticConfig(seed=11, courses=COURSES, learners=150, days=3))
    data = root / "store"
    run_import(config.resolve(data_dir=str(data)), [root / "pkg"], quiet=True)
    build_duckdb(Lake(data), [], Params())
    return data


def _sql(store, q: str) -> list[tuple]:
    with duckdb.connect(str(store / "edx.duckdb"), read_only=True) as con:
        return con.execute(q).fetchall()


def _expected(store) -> tuple[list[str], list[str], dict, dict]:
    """(kept course ids, folded course ids, weekly enrolments per (course, week), weekly actives per
    (course, week)), all from the models with SQL of their own."""
    totals = _sql(store, "SELECT e.course_id, c.name, sum(e.enrollments) FROM models.enrolment_daily e "
                         "JOIN models.courses c USING (course_id) WHERE e.date IS NOT NULL GROUP BY ALL")
    ranked = [cid for cid, _, _ in sorted(totals, key=lambda r: (-r[2], r[1]))]
    weekly = {(c, str(w)): n for c, w, n in _sql(
        store, "SELECT course_id, date_trunc('week', date)::DATE, sum(enrollments) FROM models.enrolment_daily "
               "WHERE date IS NOT NULL GROUP BY ALL")}
    active = {(c, str(w)): n for c, w, n in _sql(
        store, "SELECT course_id, week::DATE, active_learners FROM models.activity_weekly")}
    return ranked[:TOP_COURSES], ranked[TOP_COURSES:], weekly, active


def test_programme_charts_draw_the_top_courses_and_sum_the_others(store):
    keep, folded, weekly, active = _expected(store)
    assert len(keep) == TOP_COURSES and len(folded) == COURSES - TOP_COURSES
    sd = gather(Lake(store), False, K, None)
    names = line_names(sd.courses)
    other = f"Other {len(folded)} courses"
    items = {i.id: i for i in overview_items(sd, "en")}

    enrol = [r for r in items["enrol_time"].rows if r["grain"] == "Week"]
    assert {r["course"] for r in enrol} == {names[c] for c in keep} | {other}
    got = {r["date"]: r["enrollments"] for r in enrol if r["course"] == other}
    want: dict[str, int] = {}
    for (c, w), n in weekly.items():
        if c in folded:
            want[w] = want.get(w, 0) + n
    assert {w: n for w, n in got.items() if n} == {w: n for w, n in want.items() if n}
    # a kept course keeps its own numbers
    first = keep[0]
    assert {r["date"]: r["enrollments"] for r in enrol if r["course"] == names[first] and r["enrollments"]} == \
        {w: n for (c, w), n in weekly.items() if c == first and n}
    # the others' line has a point for every week from its first to its last (0 where nobody enrolled)
    dates = sorted(dt.date.fromisoformat(d) for d in got)
    assert all((b - a).days == 7 for a, b in zip(dates, dates[1:]))

    cum = [r for r in items["enrol_cum"].rows if r["course"] == other]
    assert cum[-1]["cumulative"] == sum(want.values())

    act = {r["week"]: r["active_learners"] for r in items["active_weekly"].rows if r["course"] == other}
    want_act: dict[str, int] = {}
    for (c, w), n in active.items():
        if c in folded:
            want_act[w] = want_act.get(w, 0) + n
    assert act == want_act and act
    assert {r["course"] for r in items["active_weekly"].rows} <= {names[c] for c in keep} | {other}
    # the caption says so; the course table still lists every course
    assert "The 7 courses with the most enrolments" in items["enrol_time"].caption
    assert len(items["course_table"].rows) == COURSES


def test_the_public_programme_sums_only_what_it_publishes(store, tmp_path):
    """In a public site the others' line is the sum of the counts the site shows (a hidden count is
    left out): it gives nothing away that the course pages do not, and no small count appears."""
    sd = gather(Lake(store), True, K, None)
    names = line_names(sd.courses)
    items = {i.id: i for i in overview_items(sd, "en")}
    shown = {(r["course_id"], r["week"]): r["enrollments"] for r in sd.overview["weekly"].rows
             if r["mode"] == ALL and r["week"] != ALL}
    # ranked by what the public site shows, never by the hidden counts
    visible: dict[str, int] = {}
    for (c, _), n in shown.items():
        visible[c] = visible.get(c, 0) + (n or 0)
    ranked = sorted(visible, key=lambda c: (-visible[c], names[c]))
    keep, folded = ranked[:TOP_COURSES], ranked[TOP_COURSES:]
    other = f"Other {COURSES - TOP_COURSES} courses"
    assert {r["course"] for r in items["enrol_time"].rows} == {names[c] for c in keep} | {other}
    assert any(n is None for (c, _), n in shown.items() if c in folded)  # the case this test is about
    want: dict[str, int | None] = {}
    for (c, w), n in shown.items():
        if c in folded:
            want.setdefault(w, None)
            if n is not None:
                want[w] = (want[w] or 0) + n
    got = {r["week"]: r["enrollments"] for r in items["enrol_time"].rows if r["course"] == other}
    assert {w: n for w, n in got.items() if n} == {w: n for w, n in want.items() if n}
    assert "Hidden counts are not included" in items["enrol_time"].caption
    site = build_site(Lake(store), tmp_path / "public", lang="en", public=True, k=K)
    assert not small_counts(site.out_dir, K)
    assert {names[c] for c in keep} <= {r["course"] for r in page_data(site.out_dir / "en" / "index.html")
                                        ["items"]["enrol_time"]["rows"]}


def test_labels_stay_unique_and_the_fold_counts_every_course():
    """helper-34's cases: the same name and run under two codes, a course named like the others'
    line, courses without enrolment rows, a kept course whose enrolments stopped early."""
    from edx_engine.dashboard.build import _next_week, carried_forward, top_lines

    same = [Course(f"course-v1:IDBx+{code}+2016_T1", code, "Gestión de proyectos", None, None, None)
            for code in ("GP1x", "GP1-EN")]
    odd = Course("course-v1:IDBx+OTH+1", "o", "Other 3 courses", None, None, None)
    names = line_names([*same, odd], reserved=["Other 3 courses"])
    assert len(set(names.values())) == 3 and "Other 3 courses" not in names.values()
    assert names[same[1].course_id].endswith("(GP1-EN+2016_T1)")
    lines = [f"c{i}" for i in range(10)]
    rows = [{"course": f"c{i}", "n": 10 + i} for i in range(8)]  # c8 and c9: no rows at all
    assert top_lines(rows, "n", lines) == [f"c{i}" for i in range(7, 0, -1)]
    assert top_lines(rows, "n", lines[:8]) is None
    cum = [{"course": "a", "week": "2026-01-05", "c": 5}, {"course": "a", "week": "2026-01-12", "c": 9},
           {"course": "b", "week": "2026-01-05", "c": 1}, {"course": "b", "week": "2026-01-26", "c": 4}]
    out = carried_forward(cum, "week", "c", _next_week)
    heights: dict[str, int] = {}
    for r in out:
        heights[r["week"]] = heights.get(r["week"], 0) + r["c"]
    assert [r for r in out if r["course"] == "a"][-1] == {"course": "a", "week": "2026-01-26", "c": 9}
    assert heights["2026-01-26"] == 13  # the last bar is the programme's total


def test_line_names_keep_re_runs_apart_and_fold_keeps_hidden_out():
    courses = [Course("course-v1:IDBx+GP1x+2015_T1", "a", "Gestión de proyectos", None, None, None),
               Course("course-v1:IDBx+GP1x+2016_T1", "b", "Gestión de proyectos", None, None, None),
               Course("IDBx/CS1/2014", "c", "Ciudades", None, None, None)]
    names = line_names(courses)
    assert len(set(names.values())) == 3
    assert names["course-v1:IDBx+GP1x+2016_T1"].endswith("(2016_T1)") and names["IDBx/CS1/2014"] == "Ciudades"
    rows = [{"course": "A", "week": "2026-01-05", "n": 3}, {"course": "B", "week": "2026-01-05", "n": None},
            {"course": "C", "week": "2026-01-05", "n": 4}, {"course": "B", "week": "2026-01-12", "n": None}]
    out = fold_others(rows, "week", "n", {"A"}, "rest")
    assert [r for r in out if r["course"] == "rest"] == [{"course": "rest", "week": "2026-01-05", "n": 4},
                                                        {"course": "rest", "week": "2026-01-12", "n": None}]
    assert fold_others(rows, "week", "n", None, "rest") is rows


def test_the_folded_programme_page_renders(store, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("Debian Chromium (/usr/bin/chromium) is not installed: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    site = build_site(Lake(store), tmp_path / "site", lang="en")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        v = Visit(b, site.out_dir)
        page = v.open("en/index.html")
        # the weekly chart's rendered data holds the kept courses and the others' line
        series = page.evaluate("[...new Set(EDX.views['enrol_time'].data('table').map(d => d.course))]")
        # the stack: the largest course at the bottom of each bar, the others on top
        rects = page.evaluate("""() => { const out = [];
            (function walk(n) { if (!n) return;
              if (n.marktype === 'rect' && n.items) for (const it of n.items)
                if (it.datum && it.datum.course !== undefined) out.push([it.datum.course, it.datum.week, it.y + it.height]);
              if (n.items) for (const i of n.items) walk(i); })(EDX.views['enrol_cum'].scenegraph().root);
            return out; }""")
        order = page.evaluate("EDX.views['enrol_cum'].scale('color').domain()")
        v.close()
        b.close()
    assert not v.errors and not v.outside
    assert len(series) == TOP_COURSES + 1 and any(s.startswith("Other ") for s in series), series
    last = max(w for _, w, _ in rects)
    bottom_up = [c for c, _, _ in sorted((r for r in rects if r[1] == last), key=lambda r: -r[2])]
    assert bottom_up == order and order[-1].startswith("Other ")


@pytest.mark.parametrize("certified,approved,shown", [(3, 12, 0.4), (12, 3, None), (0, 0, 0.0), (12, 12, 0.4)])
def test_the_public_pass_rate_follows_the_passed_count_not_the_certificates(certified, approved, shown):
    """Pass rate is passed / active: the public programme card hides it when the passed total is a
    small count, as the course pages do, and not because the certificates total is (it showed "–"
    where every course page showed a rate)."""
    from edx_engine.dashboard.data import Reader

    con = duckdb.connect()
    con.execute("CREATE SCHEMA models")
    con.execute("CREATE TABLE _edx_models (name VARCHAR, params VARCHAR)")
    con.execute("CREATE TABLE models.course_summary AS SELECT 'c1' AS course_id, 40 AS enrolled, 30 AS active, "
                f"{approved} AS approved, {certified} AS certified")
    con.execute("CREATE TABLE models.person_course AS SELECT 'c1' AS course_id, i AS user_id, i < 30 AS viewed, "
                "i AS nevents, FALSE AS is_staff FROM range(40) t(i)")
    h = Reader(con, True, 5, None).headline(None, None)
    assert h["pass_rate"] == shown
    assert h["certificates"] == (None if 0 < certified < 5 else certified)
    assert h["certification_rate"] == (None if 0 < certified < 5 else round(certified / 40, 6))
