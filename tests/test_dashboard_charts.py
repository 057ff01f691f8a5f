"""The dashboard's chart specs, checked on the specs and on Vega's own rendering (vl-convert, no browser)."""

from __future__ import annotations

import datetime as dt
import re

import vl_convert

from edx_engine.dashboard import charts as C


def svg(spec: dict, width: int = 600) -> str:
    spec = dict(spec, width=width)
    return vl_convert.vegalite_to_svg(spec)


def test_a_line_whose_published_weeks_are_each_between_hidden_ones_draws_them():
    """Public programme overview: a course whose every published week sat between hidden weeks drew
    nothing (a line without point markers draws nothing for a lone value; markers were only drawn up
    to 80 rows). A line with gaps now has its markers, however many rows."""
    start = dt.date(2024, 1, 1)
    weeks = [str(start + dt.timedelta(weeks=i)) for i in range(100)]
    lone = [{"week": w, "n": None if i % 2 else 7} for i, w in enumerate(weeks)]
    spec = C.time_lines("t", lone, "week", "n", None, "Week", "Enrolments")
    assert spec["mark"]["point"]
    assert len(re.findall(r'<path[^>]*d="M[^"]*"', svg(spec))) >= 50  # each published week is drawn
    full = [{"week": w, "n": 7 + i % 3} for i, w in enumerate(weeks)]
    assert C.time_lines("t", full, "week", "n", None, "W", "N")["mark"]["point"] is False  # no gap: a plain line


def texts(svg_text: str) -> list[str]:
    return [x for x in re.findall(r"<text[^>]*>([^<]*)</text>", svg_text) if x]


def test_hidden_bars_keep_their_category_marked_hidden_and_show_no_number():
    """Public grade bands jumped from 0.2 to 0.5 (Vega dropped the hidden bands from the axis) and a
    hidden gender was an empty row, read as a 0. Every category stays, in its order, a hidden one
    marked "hidden" (no bar, no number); the caption says how many bars are hidden."""
    from edx_engine.dashboard.build import Item, settle

    grades = [{"g": f"0.{i}", "n": None if i in (3, 4) else (0 if i == 5 else 10 + i)} for i in range(10)]
    spec = C.vbar("t", grades, "g", "n", "Grade", "Learners", hidden="hidden")
    drawn = texts(svg(spec))
    assert [x for x in drawn if re.fullmatch(r"0\.\d", x)] == [f"0.{i}" for i in range(10)]  # in order, none dropped
    assert drawn.count("hidden") == 2
    assert spec["datasets"]["table"] == grades  # the hidden values stay None: nothing else is drawn of them
    gender = [{"gender": "Female", "n": 140}, {"gender": "Other", "n": None}, {"gender": "Male", "n": 130}]
    for order in (None, "_o"):
        rows = [dict(r, _o=i) for i, r in enumerate(gender)]
        drawn = texts(svg(C.hbar("t", rows, "gender", "n", "Gender", "Learners", order=order, hidden="oculto")))
        assert drawn.count("oculto") == 1 and {"Female", "Other", "Male"} <= set(drawn)
    plain = C.hbar("t", gender, "gender", "n", "Gender", "Learners")  # no word given: bars only
    assert "layer" not in plain and "oculto" not in texts(svg(plain))
    for lang, words in (("en", "2 of the 10 bars are hidden"), ("es", "2 de las 10 barras están ocultas"),
                        ("pt", "2 das 10 barras estão ocultas")):
        it = Item("grades", "t", "Cap.", [("g", "text"), ("n", "count")], grades,
                  C.vbar("t", grades, "g", "n", "G", "N", hidden="x"))
        assert words in settle([it], lang, True, 5)[0].caption
    one = [dict(r, n=r["n"] if r["g"] != "0.4" else 3) for r in grades]
    it = Item("grades", "t", "Cap.", [], one, C.vbar("t", one, "g", "n", "G", "N", hidden="x"))
    assert settle([it], "en", True, 5)[0].caption == "Cap. One of the 10 bars is hidden (marked \u201chidden\u201d)."
    it = Item("grades", "t", "Cap.", [], one, C.vbar("t", one, "g", "n", "G", "N"))
    assert settle([it], "en", False, 5)[0].caption == "Cap."  # internal sites hide nothing


def test_category_bars_have_no_axis_title_over_their_labels():
    """A course's videos chart of 4 bars with long titles drew its rotated "Title" over the labels; the
    heading already names the categories, so the axis has no title (the tooltip keeps it)."""
    rows = [{"label": f"{i}. Video: a rather long title about evaluation {i}", "n": 10 * i} for i in range(1, 5)]
    spec = C.hbar("Videos in course order", rows, "label", "n", "Title", "Viewers", hidden="hidden")
    assert spec["encoding"]["y"]["title"] is None
    assert spec["encoding"]["tooltip"][0]["title"] == "Title"
    assert "Title" not in texts(svg(spec)) and "Viewers" in texts(svg(spec))


def test_merged_education_is_named_like_gender_in_three_languages():
    """The public overview's education "other" holds edX's "other" and the small groups merged into it,
    but was labelled "Other education"; gender said "Other or small groups". Internal sites merge
    nothing: there it is edX's own "other" education."""
    from edx_engine.dashboard.build import demographic_items
    from edx_engine.dashboard.data import MERGED_DEMOGRAPHICS

    edu = [{"level_of_education": "b", "learners": 40}, {"level_of_education": "other", "learners": 12}]
    gender = [{"gender": "other", "learners": 9}]
    for lang, merged, own in (("es", "Otro o grupos pequeños", "Otra formación"),
                              ("en", "Other or small groups", "Other education"),
                              ("pt", "Outro ou grupos pequenos", "Outra formação")):
        items = {i.id: i for i in demographic_items("", gender, edu, [], lang, merged=MERGED_DEMOGRAPHICS)}
        assert [r["level_of_education"] for r in items["education"].rows][1] == merged
        assert items["gender"].rows[0]["gender"] == merged
        items = {i.id: i for i in demographic_items("", gender, edu, [], lang)}
        assert [r["level_of_education"] for r in items["education"].rows][1] == own


def overview_of(weekly: dict[str, list[tuple[str, int]]], public: bool = False, last: dt.date | None = None) -> dict:
    """The programme overview's items (by id) of a site whose courses have these weekly enrolments."""
    from edx_engine.dashboard.build import overview_items
    from edx_engine.dashboard.data import ALL, Course, Dataset, SiteData

    courses = [Course(c, c, f"Course {c}", None, None, None) for c in weekly]
    rows = [{"course_id": c, "week": w, "mode": ALL, "enrollments": n} for c, ws in weekly.items() for w, n in ws]
    months = {}
    for r in rows:
        key = (r["course_id"], r["week"][:8] + "01")
        months[key] = months.get(key, 0) + r["enrollments"]
    sd = SiteData(public, 5, courses, {}, enrol_last=last)
    sd.overview = {"weekly": Dataset("weekly", [], rows), "active": Dataset("active", [], []),
                   "general": Dataset("general", [], []),
                   **{d: Dataset(d, [], []) for d in ("country", "gender", "level_of_education", "age_band")}}
    if not public:
        sd.overview["monthly"] = Dataset("monthly", [], [{"course_id": c, "month": m, "enrollments": n}
                                                         for (c, m), n in months.items()])
    return {i.id: i for i in overview_items(sd, "en")}


def test_a_course_whose_enrolments_stopped_keeps_its_total_to_the_last_week():
    """A course with no enrolments in the last 12 months left the cumulative chart and its legend (its
    rows all fell before the window), though its line is said to keep its true total."""
    old = [("2024-01-01", 30), ("2024-01-08", 12)]
    new = [(str(dt.date(2025, 3, 3) + dt.timedelta(weeks=i)), 5) for i in range(40)]
    items = overview_of({"old": old, "new": new})
    cum = items["enrol_cum"].rows
    last = max(r["week"] for r in cum)
    assert {r["course"]: r["cumulative"] for r in cum if r["week"] == last} == {"Course old": 42, "Course new": 200}
    window = items["enrol_cum"].spec["params"][0]["value"] == "recent"
    assert window and any(r["course"] == "Course old" and r["week"] > "2025-06-01" for r in cum)


def test_the_last_partial_week_and_month_of_enrolments_are_named():
    """The enrolment charts' last week and month end with the data (a Wednesday): their lower counts
    looked like a collapse. The caption says so, as the weekly-active chart does for its logs; a
    public site does not name the day (that of the latest enrolment)."""
    weeks = {"a": [(str(dt.date(2026, 6, 1) + dt.timedelta(weeks=i)), 9) for i in range(19)]}
    for last, words in ((dt.date(2026, 10, 7), "The last week and month are partial (the data end on 07 Oct 2026)"),
                        (dt.date(2026, 10, 4), "The last month is partial (the data end on 04 Oct 2026)"),
                        (dt.date(2026, 9, 30), "The last week is partial (the data end on 30 Sep 2026)")):
        items = overview_of(weeks, last=last)
        assert words in items["enrol_time"].caption and "not a drop" in items["enrol_time"].caption
    assert "partial" not in overview_of(weeks, last=dt.date(2026, 5, 31))["enrol_time"].caption
    pub = overview_of(weeks, public=True, last=dt.date(2026, 10, 7))["enrol_time"].caption
    assert "The last week may be partial" in pub and "Oct" not in pub


def test_small_things_redirect_language_department_filter_and_tooltip_dates(tmp_path):
    """The root index.html said lang="en" when it sent readers to es/; the comparison's Department
    filter offered "–" for courses without one; tooltips wrote Spanish dates "oct 06, 2025"."""
    from edx_engine.dashboard.build import _env, comparison_items
    from edx_engine.dashboard.data import Course, Dataset, SiteData

    html = _env().get_template("redirect.html.j2").render(target="es/index.html", lang="es")
    assert '<html lang="es">' in html
    courses = [Course("a", "a", "A", "Economics", "2026-01-01", None), Course("b", "b", "B", None, None, None)]
    sd = SiteData(False, 5, courses, {})
    sd.comparison = Dataset("comparison", [], [{"course_id": c.course_id, "enrolled": 10, "active": 5,
                                                "approved": 2, "certified": 1} for c in courses])
    for lang, none in (("es", "Sin departamento"), ("en", "No department"), ("pt", "Sem departamento")):
        bind = comparison_items(sd, lang)[0].spec["params"][0]["bind"]
        assert dict(zip(bind["options"], bind["labels"]))["–"] == none and "Economics" in bind["labels"]
    spec = C.time_lines("t", [{"week": "2025-10-06", "n": 3}], "week", "n", None, "Semana", "N")
    assert spec["encoding"]["tooltip"][0]["format"] == "%d %b %Y"
    assert C.dot_compare("t", [], "c", "v", "m", "C", "V", "M", [], [])["encoding"]["tooltip"][2]["format"] == ".1%"


def test_countries_with_as_many_learners_come_in_one_order_whatever_the_rows_order():
    """The top 20 countries and the per-country table do not depend on the order the model's rows come in
    (the store's row order is not fixed): two renderings of the same store showed Guatemala or Honduras as
    the 20th country of a course, 3 learners each, and listed the countries of one count in another order."""
    from edx_engine.dashboard.build import ALL, country_detail, country_items

    codes = ["AR", "BO", "BR", "CL", "CO", "CR", "DO", "EC", "ES", "FR", "GT", "HN", "MX", "NI", "PA", "PE", "PY",
             "SV", "US", "UY", "VE", "DE", "IT", "PT", "CA"]
    rows = [{"country": c, "learners": 10 if i < 15 else 3} for i, c in enumerate(codes)]  # 5 of 10 tied go
    shown = [[r["code"] for r in country_items("", order, "en", map_=False)[0].rows] for order in (rows, rows[::-1])]
    assert len(shown[0]) == 20 and shown[0] == shown[1]
    bd = [{"country": ALL, "dimension": "country", "value": r["country"], "learners": r["learners"]} for r in rows]
    bd += [{"country": r["country"], "dimension": "gender", "value": "f", "learners": 1} for r in rows]
    tables = [[r["country"] for r in country_detail(order, "en").rows] for order in (bd, bd[::-1])]
    assert len(tables[0]) == 25 and tables[0] == tables[1]


def test_models_come_to_the_pages_in_one_order_whatever_the_store_order():
    """The course table, the weekly active learners and the breakdowns were drawn in the models' row order,
    which the store does not fix (helper-72: two builds of one store listed courses and weeks in another
    order). The reader now gives them in the exports' order."""
    import duckdb

    from edx_engine.dashboard.data import Reader

    rows = [(c, w, n) for c in ("course-v1:IDBx+B+1", "course-v1:IDBx+A+1", "IDBx/C/1")
            for w, n in (("2026-10-12", 9), ("2026-10-05", 7))]
    got = []
    for order in (rows, rows[::-1]):
        con = duckdb.connect()
        con.execute("CREATE SCHEMA models")
        con.execute("CREATE TABLE _edx_models (name VARCHAR, params VARCHAR)")
        con.execute("CREATE TABLE models.activity_weekly (course_id VARCHAR, week VARCHAR, active_learners BIGINT)")
        con.executemany("INSERT INTO models.activity_weekly VALUES (?, ?, ?)", order)
        got.append(Reader(con, public=False, k=5, courses=None).model("activity_weekly").to_pylist())
    assert got[0] == got[1]
    assert [(r["course_id"], r["week"]) for r in got[0]] == sorted((c, w) for c, w, _ in rows)
