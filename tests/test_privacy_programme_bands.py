"""The public programme demographics bound no course's hidden cell below k (helper-60, helper-61).

A course's learners are learners of the programme, so a course's age band is at most the programme's.
The programme bands were suppressed apart from the courses: at k = 10 a programme "unknown" band of
exactly 10 was published while a course hid its years "1900" (1 learner) and "unknown" (3), the two
years of its "unknown" band; each is at least 1, so each was at most 10 - 1 = 9 < k. The same held for
the programme's learners by country (the map): a programme Chile of 24 bounded a course's 19 hidden
years of birth of Chile, its Chile count hidden, at most 7 each (2 courses x 400 learners, k = 10).
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from edx_engine.age import age_band
from edx_engine.dashboard.data import ALL, Reader
from edx_engine.privacy import suppress as S

K = 10


def _con(years: dict[str, list]) -> duckdb.DuckDBPyConnection:
    """A store of the models the public demographics read: ``years`` = course -> the learners' years
    of birth (None: not stated; a pair: (year, country)); every learner is in one course, male, from
    Colombia unless the pair says otherwise."""
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.execute("CREATE SCHEMA models")
    con.execute("CREATE TABLE _edx_models (name VARCHAR, params VARCHAR)")
    rows, uid = [], 0
    for cid, ys in years.items():
        for y in ys:
            y, country = y if isinstance(y, tuple) else (y, "CO")
            rows.append({"course_id": cid, "user_id": uid, "gender": "m", "level_of_education": "b",
                         "country": country, "year_of_birth": y, "is_staff": False})
            uid += 1
    con.register("pc", pa.Table.from_pylist(rows, pa.schema([
        ("course_id", pa.string()), ("user_id", pa.int64()), ("gender", pa.string()),
        ("level_of_education", pa.string()), ("country", pa.string()), ("year_of_birth", pa.int64()),
        ("is_staff", pa.bool_())])))
    con.execute("CREATE TABLE models.person_course AS SELECT * FROM pc")
    con.execute("CREATE TABLE models.course_summary AS SELECT course_id, count(*) AS enrolled "
                "FROM pc GROUP BY 1 ORDER BY 1")
    con.execute("CREATE TABLE models.general_report AS SELECT DISTINCT course_id FROM pc ORDER BY 1")
    v = {"gender": "gender", "level_of_education": "level_of_education",
         "year_of_birth": "coalesce(CAST(year_of_birth AS VARCHAR), 'unknown')"}
    parts = [f"SELECT course_id, '{ALL}' AS country, 'country' AS dimension, country AS value, count(*) AS learners "
             f"FROM pc GROUP BY ALL"]
    for d, e in v.items():
        parts.append(f"SELECT course_id, '{ALL}', '{d}', {e}, count(*) FROM pc GROUP BY ALL")
        parts.append(f"SELECT course_id, country, '{d}', {e}, count(*) FROM pc GROUP BY ALL")
    con.execute("CREATE TABLE models.course_breakdown AS " + " UNION ALL ".join(parts))
    return con


def _most_a_reader_knows(public_bands: list[dict], learners: int) -> dict[str, int]:
    """A band's largest value to a reader: published, or the hidden bands' sum (the learner total,
    published by the headline, less the published bands) less one for each other hidden band."""
    hidden = [r for r in public_bands if r["learners"] is None]
    room = learners - sum(r["learners"] for r in public_bands if r["learners"] is not None) - (len(hidden) - 1)
    return {r["age_band"]: room if r["learners"] is None else r["learners"] for r in public_bands}


def _bounded_years(reader: Reader, learners: int) -> list[tuple]:
    """Hidden overall years of birth of a course that "course band <= programme band" holds below k:
    the band's largest value less its published years less one per other hidden year of the band."""
    most = _most_a_reader_knows(reader.learners_demographics()["age_band"].to_pylist(), learners)
    per: dict[tuple, list[dict]] = {}
    for r in reader.public_course()["course_breakdown"].to_pylist():
        if r["country"] == ALL and r["dimension"] == "year_of_birth":
            per.setdefault((r["course_id"], age_band(r["value"])), []).append(r)
    out = []
    for (cid, band), cells in per.items():
        hidden = [r for r in cells if r["learners"] is None]
        shown = sum(r["learners"] for r in cells if r["learners"] is not None)
        for r in hidden:
            top = most[band] - shown - (len(hidden) - 1)
            if top < K:
                out.append((cid, r["value"], top))
    return out


def test_a_published_programme_band_bounds_no_hidden_course_year_below_k():
    # course c1: years 1900 (1, an implausible year: band "unknown") and not stated (3), 26 born in 1990;
    # course c2: 6 not stated, 24 born in 1990. Programme "unknown" band: 1 + 3 + 6 = 10 = k.
    years = {"c1": [1900] + [None] * 3 + [1990] * 26, "c2": [None] * 6 + [1990] * 24}
    con = _con(years)
    r = Reader(con, True, K, None)
    pb = {x["age_band"]: x["learners"] for x in Reader(con, False, K, None).learners_demographics()["age_band"].to_pylist()}
    assert pb["unknown"] == K  # the case: a band of k, published by a suppression of its own
    hidden_years = {(x["course_id"], x["value"]) for x in r.public_course()["course_breakdown"].to_pylist()
                    if x["country"] == ALL and x["dimension"] == "year_of_birth" and x["learners"] is None}
    assert {("c1", "1900"), ("c1", "unknown")} <= hidden_years
    assert _bounded_years(r, 60) == []


def test_a_programme_band_with_room_for_every_course_stays_published():
    # the same courses with 20 more not-stated learners in c2: "unknown" = 30 leaves c1's hidden years room
    years = {"c1": [1900] + [None] * 3 + [1990] * 26, "c2": [None] * 26 + [1990] * 24}
    r = Reader(_con(years), True, K, None)
    bands = {x["age_band"]: x["learners"] for x in r.learners_demographics()["age_band"].to_pylist()}
    assert bands == {"30-39": 50, "unknown": 30}
    assert _bounded_years(r, 80) == []


def test_the_needed_value_counts_the_other_hidden_years_and_country_cells():
    """``suppress_programme_bands`` alone: a band is hidden when some course needs more than it."""
    bands = pa.table({"age_band": ["30-39", "unknown"], "learners": [50, 12]})
    bd = pa.Table.from_pylist([
        {"course_id": "c1", "country": ALL, "dimension": "year_of_birth", "value": "1900", "learners": None},
        {"course_id": "c1", "country": ALL, "dimension": "year_of_birth", "value": "unknown", "learners": None},
        {"course_id": "c1", "country": "CO", "dimension": "year_of_birth", "value": "unknown", "learners": None},
        {"course_id": "c1", "country": "MX", "dimension": "year_of_birth", "value": "unknown", "learners": None},
        {"course_id": "c1", "country": "PE", "dimension": "year_of_birth", "value": "unknown", "learners": None},
    ])
    # c1 needs k + 0 published + 1 other hidden year + 2 other hidden country cells = 13 > 12
    out = S.suppress_programme_bands(bands, bd, K, ALL, year=2026).to_pylist()
    assert [x["learners"] for x in out] == [None, None]
    # 13 is enough; and a course outside the programme's courses counts for nothing
    bands13 = pa.table({"age_band": ["30-39", "unknown"], "learners": [50, 13]})
    assert [x["learners"] for x in S.suppress_programme_bands(bands13, bd, K, ALL, year=2026).to_pylist()] == [50, 13]
    assert [x["learners"] for x in S.suppress_programme_bands(bands, bd, K, ALL, {"c2"}, 2026).to_pylist()] == [50, 12]


def _bounded_by_countries(reader: Reader) -> list[tuple]:
    """Hidden cells of a course's country whose count the course hides and the programme's map
    publishes: at most the programme's count less the country's published cells less one per other
    hidden cell of the same dimension; the map's "other" (merged countries): at most "other" less one
    per other merged country."""
    t = reader.learners_demographics()["country"].to_pylist()
    pub = {r["country"]: r["learners"] for r in t if r["country"] != S.OTHER}
    other = next((r["learners"] for r in t if r["country"] == S.OTHER), None)
    merged = [c for c in {r["country"] for r in reader.public_course()["course_breakdown"].to_pylist()
                          if r["dimension"] == "country"} if c not in pub]
    bd = reader.public_course()["course_breakdown"].to_pylist()
    out = []
    for cell in bd:
        if cell["country"] != ALL or cell["dimension"] != "country" or cell["learners"] is not None:
            continue
        cid, x = cell["course_id"], cell["value"]
        most = pub.get(x, (other or 0) - (len(merged) - 1))
        for d in {r["dimension"] for r in bd if r["course_id"] == cid and r["country"] == x}:
            cells = [r for r in bd if r["course_id"] == cid and r["country"] == x and r["dimension"] == d]
            hidden = [r for r in cells if r["learners"] is None]
            shown = sum(r["learners"] for r in cells if r["learners"] is not None)
            if hidden and most - shown - (len(hidden) - 1) < K:
                out.append((cid, x, d, most - shown - (len(hidden) - 1)))
    return out


def test_a_published_programme_country_bounds_no_hidden_course_cell_below_k():
    # c1: 12 learners from Chile, each born in another year (12 hidden years of Chile; the course hides
    # its Chile count too, or the years would add up to it), 30 from Colombia; c2: 30 from Colombia.
    # Programme: Chile 12 >= k, published on the map by merge_small alone: each year of Chile <= 12 - 11.
    years = {"c1": [(1960 + i, "CL") for i in range(12)] + [1990] * 30, "c2": [1990] * 30}
    con = _con(years)
    private = {x["country"]: x["learners"] for x in
               Reader(con, False, K, None).learners_demographics()["country"].to_pylist()}
    assert private == {"CO": 60, "CL": 12}
    r = Reader(con, True, K, None)
    assert any(x["country"] == ALL and x["dimension"] == "country" and x["value"] == "CL" and x["learners"] is None
               for x in r.public_course()["course_breakdown"].to_pylist())
    assert _bounded_by_countries(r) == []


def test_merge_small_leaves_each_merged_category_its_need_above_the_others_floors():
    t = pa.table({"country": ["CO", "CL", "AR", "PE"], "learners": [60, 12, 6, 5]})
    # without needs: CL (12 >= k) is published, AR + PE = 11 merged (11 - 1 >= k)
    assert {x["country"]: x["learners"] for x in S.merge_small(t, "country", "learners", K).to_pylist()} == \
        {"CO": 60, "CL": 12, S.OTHER: 11}
    # CL needs 21: merged; AR is known to be at least 4 (a course shows 4 hidden cells of it), so PE is at
    # most 23 - 4 - 12 = 7 < k: the pool takes CO too
    out = S.merge_small(t, "country", "learners", K, need={"CL": 21}, floors={"AR": 4, "CL": 12})
    assert {x["country"]: x["learners"] for x in out.to_pylist()} == {S.OTHER: 83}
    # with AR's floor at 1, CL merged with AR and PE: 23 - 1 - 1 = 21 >= 21 and 23 - 12 - 1 = 10 >= k
    out = S.merge_small(t, "country", "learners", K, need={"CL": 21}, floors={"CL": 12})
    assert {x["country"]: x["learners"] for x in out.to_pylist()} == {"CO": 60, S.OTHER: 23}


def test_programme_needs_from_the_public_breakdown():
    bd = pa.Table.from_pylist([
        {"course_id": "c1", "country": ALL, "dimension": "country", "value": "CL", "learners": None},
        {"course_id": "c1", "country": ALL, "dimension": "country", "value": "CO", "learners": 30},
        {"course_id": "c1", "country": "CL", "dimension": "year_of_birth", "value": "1960", "learners": None},
        {"course_id": "c1", "country": "CL", "dimension": "year_of_birth", "value": "1961", "learners": None},
        {"course_id": "c1", "country": "CL", "dimension": "year_of_birth", "value": "1962", "learners": 11},
        {"course_id": "c1", "country": "CL", "dimension": "gender", "value": "m", "learners": None},
        {"course_id": "c1", "country": "CL", "dimension": "gender", "value": "f", "learners": None},
        {"course_id": "c1", "country": ALL, "dimension": "gender", "value": "f", "learners": None},
        {"course_id": "c1", "country": "CO", "dimension": "gender", "value": "f", "learners": 12},
    ])
    need, floors = S.programme_needs(bd, "country", K, ALL)
    assert need == {"CL": K + 11 + 1} and floors == {"CL": 13, "CO": 30}
    need, floors = S.programme_needs(bd, "gender", K, ALL)
    assert need == {"f": K + 12 + 1 - 1} and floors == {"f": 13}
    assert S.programme_needs(bd, "country", K, ALL, {"c2"}) == ({}, {})
