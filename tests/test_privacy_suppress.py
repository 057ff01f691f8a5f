"""Small-cell suppression: no suppressed cell can be recomputed from the published cells and totals."""

from __future__ import annotations

import random

import pyarrow as pa

from edx_engine.privacy.suppress import (check_protected, determined, merge_small, protect, suppress,
                                         suppress_crosstab)


def test_single_small_cell_gets_a_complementary_suppression():
    t = pa.table({"course": ["a", "b"], "total": [60, 80], "male": [30, 40], "female": [27, 38],
                  "other": [3, 2]})
    out = suppress(t, ["total", "male", "female", "other"], 5, row_sums=[("total", ["male", "female", "other"])],
                   column_totals=False).to_pylist()
    for row in out:
        hidden = row["suppressed"].split(";")
        assert "other" in hidden and len(hidden) >= 2 and row["other"] is None
        # the reader cannot do total - male - female
        assert sum(row[c] is None for c in ("total", "male", "female", "other")) >= 2


def test_bridge_cells_are_found_by_linear_algebra():
    # a 2x2 table (cells 0..3) with its known margins (4..7)
    values = [1, 1, 1, 1]
    eqs = [[4, 0, 1], [5, 2, 3], [6, 0, 2], [7, 1, 3]]
    values += [2, 2, 2, 2]
    assert determined(values, eqs, {0, 1, 2, 3}) == []  # a cycle: nothing determined
    assert determined(values, eqs, {0, 1}) == [0, 1]  # columns c0, c1 each have one hidden cell


def test_random_crosstabs_are_protected():
    rng = random.Random(7)
    trials = 0
    while trials < 80:
        nr, nc = rng.randint(2, 7), rng.randint(2, 6)
        grid = [[rng.choice([0, 1, 2, 3, 4, 6, 9, 15, 40, rng.randint(0, 100)]) for _ in range(nc)] for _ in range(nr)]
        lines = [*grid, *zip(*grid)]
        if any(sum(line) - (sum(v > 0 for v in line) - 1) < 5 for line in lines):
            # a line whose published total is below k cannot be protected by any suppression, nor one whose
            # n non-zero parts are each at most total - (n - 1) < k (every hidden part is at least 1)
            continue
        trials += 1
        rows = [{"g": "x", "r": f"r{i}", "c": f"c{j}", "n": grid[i][j]} for i in range(nr) for j in range(nc)]
        out = suppress_crosstab(pa.Table.from_pylist(rows), "r", "c", "n", 5, by=["g"]).to_pylist()
        hidden = {i for i, row in enumerate(out) if row["n"] is None}
        values = [row["n"] for row in rows]
        eqs = []
        for key, n in (("r", nr), ("c", nc)):  # row totals and column totals are known to the reader
            for i in range(n):
                cells = [k for k, row in enumerate(rows) if row[key] == f"{key}{i}"]
                values.append(sum(rows[k]["n"] for k in cells))
                eqs.append([len(values) - 1] + cells)
        fixed = list(range(len(rows), len(values)))
        assert check_protected(values, eqs, hidden, 5, fixed) == [], (grid, sorted(hidden))


def test_protect_with_published_margins_in_the_table():
    # a 2x3 table with its margins as cells (row 'T' and column 'T'), as reports publish them
    grid = {("a", "x"): 10, ("a", "y"): 2, ("a", "z"): 20, ("b", "x"): 12, ("b", "y"): 9, ("b", "z"): 30}
    rows = [{"r": r, "c": c, "n": n} for (r, c), n in grid.items()]
    for r in "ab":
        rows.append({"r": r, "c": "T", "n": sum(n for (rr, _), n in grid.items() if rr == r)})
    for c in "xyz":
        rows.append({"r": "T", "c": c, "n": sum(n for (_, cc), n in grid.items() if cc == c)})
    rows.append({"r": "T", "c": "T", "n": sum(grid.values())})
    rows = [dict(row, g=1) for row in rows]
    out = suppress_crosstab(pa.Table.from_pylist(rows), "r", "c", "n", 5, by=["g"], total_label="T").to_pylist()
    hidden = {i for i, row in enumerate(out) if row["n"] is None}
    idx = {(row["r"], row["c"]): i for i, row in enumerate(rows)}
    eqs = [[idx[(r, "T")]] + [idx[(r, c)] for c in "xyz"] for r in "ab"]
    eqs += [[idx[("T", c)]] + [idx[(r, c)] for r in "ab"] for c in "xyz"]
    eqs += [[idx[("T", "T")]] + [idx[(r, "T")] for r in "ab"], [idx[("T", "T")]] + [idx[("T", c)] for c in "xyz"]]
    assert idx[("a", "y")] in hidden
    assert check_protected([row["n"] for row in rows], eqs, hidden, 5) == []


def test_protect_flags_what_it_cannot_protect():
    # total (known from elsewhere) = one single part: no suppression can hide it
    p = protect([3, 3], [[0, 1]], 5, fixed=[0])
    assert p.unprotectable == [1]


def test_merge_small_into_other():
    t = pa.table({"course": ["a"] * 5 + ["b"] * 2,
                  "country": ["CO", "MX", "PE", "AR", "BR", "CO", "MX"],
                  "learners": [40, 12, 3, 1, 7, 2, 1]})
    out = merge_small(t, "country", "learners", 5, by=["course"]).to_pylist()
    a = {r["country"]: r["learners"] for r in out if r["course"] == "a"}
    assert a == {"CO": 40, "MX": 12, "other": 11}  # PE 3 + AR 1 < 5, so BR 7 joins them
    b = [r for r in out if r["course"] == "b"]
    assert b == [{"course": "b", "country": "other", "learners": None, "suppressed": "learners"}]
    assert sum(a.values()) == 63  # totals still add up
    for r in out:
        assert r["learners"] is None or r["learners"] >= 5


def test_a_bridge_between_two_cycles_is_determined_although_every_line_hides_two_cells():
    # 4x4 grid, cell (i, j) = 4*i + j; row totals 16..19, column totals 20..23 (all known)
    eqs = [[16 + i] + [4 * i + j for j in range(4)] for i in range(4)]
    eqs += [[20 + j] + [4 * i + j for i in range(4)] for j in range(4)]
    values = [7] * 16 + [28] * 8
    cycle1 = {0, 1, 4, 5}  # rows 0,1 x cols 0,1
    cycle2 = {10, 11, 14, 15}  # rows 2,3 x cols 2,3
    bridge = 2  # (row 0, col 2)
    hidden = cycle1 | cycle2 | {bridge}
    for e in eqs:  # every line has 0 or >= 2 hidden cells...
        assert sum(c in hidden for c in e) != 1
    assert determined(values, eqs, hidden) == [bridge]  # ...yet the bridge is recovered
    p = protect([1 if c == bridge else 7 for c in range(16)] + [28] * 8, eqs, 5, fixed=range(16, 24))
    assert determined([1 if c == bridge else 7 for c in range(16)] + [28] * 8, eqs, p.hidden) == []


def test_course_summary_hides_unenrolled_pair_so_it_cannot_be_subtracted():
    import pyarrow as pa

    from edx_engine.privacy.export import _course_summary

    # two courses: with one, the programme totals (known to readers) are that course's own counts, and no
    # suppression can protect anything (hiding a count that a published total repeats is pointless)
    t = pa.table({"course_id": ["c1", "c2"], "enrolled": [100, 200], "enrolled_active": [98, 150],
                  "unenrolled": [2, 50], "male": [50, 90], "female": [45, 100], "other_unknown": [5, 10]})
    row, _ = _course_summary(t, 5).to_pylist()
    assert row["unenrolled"] is None  # below k
    # enrolled = enrolled_active + unenrolled: if enrolled and enrolled_active were both published,
    # unenrolled = 100 - 98 would be recoverable
    assert row["enrolled"] is None or row["enrolled_active"] is None


def _breakdown(rows: list[tuple]) -> pa.Table:
    return pa.table({k: [r[i] for r in rows] for i, k in enumerate(("course_id", "country", "dimension", "value",
                                                                      "learners"))})


def test_course_breakdown_publishes_no_rows_for_a_country_of_few_learners():
    """One learner from DE: the rows that exist for DE would tell their gender and year of birth."""
    from edx_engine.privacy.suppress import suppress_course_breakdown

    rows = [("c", "(all)", "country", "CO", 12), ("c", "(all)", "country", "DE", 1),
            ("c", "(all)", "gender", "f", 7), ("c", "(all)", "gender", "m", 6),
            ("c", "(all)", "year_of_birth", "1966", 1), ("c", "(all)", "year_of_birth", "1990", 12),
            ("c", "CO", "gender", "f", 7), ("c", "CO", "gender", "m", 5), ("c", "CO", "year_of_birth", "1990", 12),
            ("c", "DE", "gender", "m", 1), ("c", "DE", "year_of_birth", "1966", 1)]
    out = suppress_course_breakdown(_breakdown(rows), k=5).to_pylist()
    assert not [r for r in out if r["country"] == "DE"]
    de = [r for r in out if r["value"] == "DE"]
    assert len(de) == 1 and de[0]["learners"] is None  # the country is listed, its count hidden
    co = {(r["dimension"], r["value"]): r["learners"] for r in out if r["country"] == "CO"}
    assert set(co) == {("gender", "f"), ("gender", "m"), ("year_of_birth", "1990")}  # 12 learners: published
    # the hidden DE cells still count in the equations: CO's m (5) cannot stay next to (all) m (6)
    allm = [r["learners"] for r in out if r["country"] == "(all)" and r["value"] == "m"][0]
    assert allm is None or co[("gender", "m")] is None


def test_counts_that_bound_a_hidden_count_of_people_are_hidden_too():
    """1 post in a week means 1 author: posts are hidden wherever authors are, with complements."""
    t = pa.table({"course_id": ["c"] * 4, "week": ["w1", "w2", "w3", "w4"], "authors": [1, 8, 9, 7],
                  "posts": [1, 20, 15, 3]})
    out = suppress(t, ["authors"], 5, by=["course_id"], linked={"authors": ["posts"]}).to_pylist()
    assert out[0]["authors"] is None and out[0]["posts"] is None
    # column totals are known: a second posts cell and a second authors cell hide with them
    assert sum(r["posts"] is None for r in out) >= 2 and sum(r["authors"] is None for r in out) >= 2
    # 3 posts by 7 authors is not a small count of people: nothing forces it hidden by itself
    t2 = pa.table({"course_id": ["c"] * 2, "week": ["w1", "w2"], "authors": [7, 8], "posts": [3, 20]})
    assert suppress(t2, ["authors"], 5, by=["course_id"], linked={"authors": ["posts"]}).column("posts").to_pylist() \
        == [3, 20]


def _determined_whole(values, equations, hidden):
    """The former implementation, kept as the reference: one SVD of the whole system, null space from
    the full V (what `determined` now computes piece by piece, from the row space)."""
    import numpy as np

    unknown = sorted(hidden)
    if not unknown:
        return []
    col = {c: j for j, c in enumerate(unknown)}
    rows = []
    for e in equations:
        if not any(c in col for c in e):
            continue
        r = np.zeros(len(unknown))
        for pos, c in enumerate(e):
            if c in col:
                r[col[c]] += 1.0 if pos == 0 else -1.0
        rows.append(r)
    if not rows:
        return []
    _, s, vt = np.linalg.svd(np.array(rows), full_matrices=True)
    rank = int((s > 1e-9 * max(1.0, s.max())).sum()) if s.size else 0
    null = vt[rank:]
    if null.shape[0] == 0:
        return list(unknown)
    norms = np.sqrt((null ** 2).sum(axis=0))
    return [unknown[j] for j in range(len(unknown)) if norms[j] < 1e-9]


def test_determined_piece_by_piece_equals_the_whole_system_solved_at_once():
    """Random systems made of independent pieces (crosstabs with margins, chains, cells in no
    equation, equations over published cells only): the same cells as the one-SVD reference."""
    rng = random.Random(15)
    for trial in range(300):
        eqs, n = [], 0
        for _ in range(rng.randint(1, 6)):  # independent pieces
            kind = rng.choice(["tab", "chain", "lone"])
            if kind == "tab":
                nr, nc = rng.randint(1, 4), rng.randint(1, 4)
                cell = [[n + i * nc + j for j in range(nc)] for i in range(nr)]
                n += nr * nc
                rows_t, cols_t = list(range(n, n + nr)), list(range(n + nr, n + nr + nc))
                n += nr + nc
                eqs += [[rows_t[i]] + cell[i] for i in range(nr)] + \
                       [[cols_t[j]] + [cell[i][j] for i in range(nr)] for j in range(nc)]
                if rng.random() < 0.5:
                    eqs.append([n] + rows_t)
                    n += 1
            elif kind == "chain":
                m = rng.randint(2, 6)
                eqs += [[n + i, n + i + 1] for i in range(m - 1)]
                n += m
            else:
                n += 1
        hidden = {c for c in range(n) if rng.random() < 0.45}
        values = [rng.randint(0, 30) for _ in range(n)]
        assert determined(values, eqs, hidden) == _determined_whole(values, eqs, hidden), trial


def test_a_large_breakdown_is_suppressed_course_by_course_in_bounded_time():
    """200 courses' breakdowns (about 10,000 hidden cells) were one system: 340 s, 4 GB. Pieces now;
    each course's result equals suppressing that course alone."""
    from edx_engine.privacy.suppress import suppress_course_breakdown

    rng = random.Random(3)
    rows = []
    for c in range(60):
        cid = f"course-v1:X+C{c}+1"
        for country in ("(all)", "BR", "CO", "MX", "PE"):
            for dim, vals in (("gender", ["m", "f", "o"]), ("level_of_education", ["b", "m", "p", "hs"])):
                for v in vals:
                    rows.append((cid, country, dim, v, rng.choice([0, 1, 2, 3, 6, 12, 40])))
        for country in ("BR", "CO", "MX", "PE"):
            rows.append((cid, "(all)", "country", country, rng.choice([2, 8, 30, 90])))
    table = pa.table({k: [r[i] for r in rows] for i, k in enumerate(
        ("course_id", "country", "dimension", "value", "learners"))})
    whole = suppress_course_breakdown(table).to_pylist()
    one = suppress_course_breakdown(table.filter(pa.compute.equal(table["course_id"], "course-v1:X+C7+1"))).to_pylist()
    assert [r for r in whole if r["course_id"] == "course-v1:X+C7+1"] == one
    assert any(r["learners"] is None for r in one)


# -- bounds: a hidden count is at least 1, and those floors add up across equations -------------------

# A course of 100 (published) with education values A = 2, B = 4, C = 94 and four countries of 25
# (published): B occurs once in each country, A twice in the first. The single-equation rules pass
# (A + B = 6 leaves A room for 5 with B at 1), but B is the sum of four hidden country cells, each at
# least 1: B >= 4, so A <= 2, whatever else is hidden.
HAND_VALUES = [100, 2, 4, 94, 25, 25, 25, 25, 1, 1, 1, 1, 2, 22, 24, 24, 24]
HAND_EQS = [[0, 1, 2, 3], [1, 12], [2, 8, 9, 10, 11], [3, 13, 14, 15, 16], [4, 8, 12, 13], [5, 9, 14],
            [6, 10, 15], [7, 11, 16], [0, 4, 5, 6, 7]]


def _propagated_upper_bounds(values, eqs, hidden, floor):
    """A second, naive attacker: interval propagation over integers until nothing changes. Every bound
    it finds is valid, so a protected pattern must leave each hidden small cell an upper bound >= k."""
    lo = {c: (floor[c] if c in hidden else values[c]) for e in eqs for c in e}
    hi = {c: (10 ** 9 if c in hidden else values[c]) for e in eqs for c in e}
    changed = True
    while changed:
        changed = False
        for e in eqs:
            t, parts = e[0], e[1:]
            slo, shi = sum(lo[p] for p in parts), sum(hi[p] for p in parts)
            if slo > lo[t] or shi < hi[t]:
                lo[t], hi[t] = max(lo[t], slo), min(hi[t], shi)
                changed = True
            for p in parts:
                nlo, nhi = lo[t] - (shi - hi[p]), hi[t] - (slo - lo[p])
                if nlo > lo[p] or nhi < hi[p]:
                    lo[p], hi[p] = max(lo[p], nlo), min(hi[p], nhi)
                    changed = True
    return hi


def test_floors_added_up_across_equations_are_accounted_for():
    floor = {c: 1 for c in range(len(HAND_VALUES))}
    old = protect(HAND_VALUES, HAND_EQS, 5, fixed=[0], bounds=False).hidden
    assert any("proved to be under 5" in p for p in check_protected(HAND_VALUES, HAND_EQS, old, 5, [0]))
    assert _propagated_upper_bounds(HAND_VALUES, HAND_EQS, old, floor)[1] == 2  # A: at most 2
    new = protect(HAND_VALUES, HAND_EQS, 5, fixed=[0]).hidden
    assert check_protected(HAND_VALUES, HAND_EQS, new, 5, [0]) == []
    hi = _propagated_upper_bounds(HAND_VALUES, HAND_EQS, new, floor)
    assert all(hi[c] >= 5 for c in new if 0 < HAND_VALUES[c] < 5), hi


def test_unseen_cells_have_no_floor():
    """A row left out of the output (``unseen``) may be 0 for all a reader knows: no floor of 1 for it.
    Three hidden parts of a published 7 (each >= 1 would leave each at most 5); unseen, the check does
    not count them: it hides nothing more than the equation rules do."""
    values, eqs = [7, 2, 2, 3], [[0, 1, 2, 3]]
    floor1 = {0: 1, 1: 1, 2: 1, 3: 1}
    floor0 = {0: 1, 1: 0, 2: 0, 3: 0}
    from edx_engine.privacy.suppress import bounded_below_k

    assert bounded_below_k(values, eqs, {1, 2, 3}, 6, floor1, [1, 2, 3]) == {1: [0], 2: [0], 3: [0]}
    assert bounded_below_k(values, eqs, {1, 2, 3}, 6, floor0, [1, 2, 3]) == {}


def test_random_breakdowns_leave_no_small_cell_provably_small():
    """Course x country x value breakdowns (the shape of course_breakdown): after protect(), neither the
    library's own check nor the naive propagation attacker above proves a hidden small cell under k.
    Without the bounds check the attacker succeeds in some of them (the test can fail)."""
    rng = random.Random(5)
    caught_without = 0
    for _ in range(40):
        ncountry, nvalue = rng.randint(2, 6), rng.randint(2, 6)
        grid = [[rng.choice([0, 1, 1, 2, 3, 5, 8, 20, rng.randint(0, 60)]) for _ in range(nvalue)]
                for _ in range(ncountry)]
        values = [v for row in grid for v in row]
        cell = lambda i, j: i * nvalue + j  # noqa: E731
        eqs = []
        country_tot = [len(values) + i for i in range(ncountry)]
        values += [sum(row) for row in grid]
        value_tot = [len(values) + j for j in range(nvalue)]
        values += [sum(col) for col in zip(*grid)]
        grand = len(values)
        values.append(sum(map(sum, grid)))
        eqs += [[country_tot[i]] + [cell(i, j) for j in range(nvalue)] for i in range(ncountry)]
        eqs += [[value_tot[j]] + [cell(i, j) for i in range(ncountry)] for j in range(nvalue)]
        eqs += [[grand] + country_tot, [grand] + value_tot]
        floor = {c: 1 if v > 0 else 0 for c, v in enumerate(values)}
        old = protect(values, eqs, 5, fixed=[grand], bounds=False)
        hi = _propagated_upper_bounds(values, eqs, old.hidden, floor)
        caught_without += any(hi[c] < 5 for c in old.hidden if 0 < values[c] < 5 and c not in old.unprotectable)
        new = protect(values, eqs, 5, fixed=[grand])
        hi = _propagated_upper_bounds(values, eqs, new.hidden, floor)
        assert all(hi[c] >= 5 for c in new.hidden if 0 < values[c] < 5 and c not in new.unprotectable), grid
        assert not [p for p in check_protected(values, eqs, new.hidden, 5, [grand]) if "proved" in p], grid
    assert caught_without > 0


# -- enrolments: the export's days and the dashboard's weeks -------------------------------------------

def _enrolment_attack(daily: list[dict], day_out: list[dict], week_out: list[dict], k: int) -> list[tuple]:
    """Hidden counts under k that the published days and weeks prove to be under k (or pin): one linear
    programme per cell over every unknown (days and weeks), with a week = the sum of its days, the
    week and mode totals, and hidden counts >= 1."""
    import datetime as dt

    import highspy

    true: dict[tuple, int] = {}
    for r in daily:
        true[("d", r["date"], r["mode"])] = r["enrollments"]
    weeks: dict[tuple, list[tuple]] = {}
    for r in daily:
        w = (r["date"] - dt.timedelta(days=r["date"].weekday())).isoformat()
        weeks.setdefault(("w", w, r["mode"]), []).append(("d", r["date"], r["mode"]))
    rel: list[tuple[tuple, list[tuple]]] = [(t, parts) for t, parts in weeks.items()]
    for w in {t[1] for t in weeks}:
        rel.append((("w", w, "(all)"), [t for t in weeks if t[1] == w]))
    for m in {t[2] for t in weeks}:
        rel.append((("w", "(all)", m), [t for t in weeks if t[2] == m]))
    rel.append((("w", "(all)", "(all)"), [("w", "(all)", m) for m in {t[2] for t in weeks}]))
    for t, parts in rel:
        true[t] = sum(true[p] for p in parts)
    shown = {("d", r["date"], r["mode"]): r["enrollments"] for r in day_out}
    shown.update({("w", r["week"], r["mode"]): r["enrollments"] for r in week_out})
    unknown = [f for f in true if shown.get(f) is None]
    col = {f: j for j, f in enumerate(unknown)}
    h = highspy.Highs()
    h.silent()
    listed = {("d", r["date"], r["mode"]) for r in day_out} | {("w", r["week"], r["mode"]) for r in week_out}
    # a count shown as a row (hidden or not) is >= 1 unless 0; a row left out may be 0 for all a reader knows
    x = [h.addVariable(lb=min(1, true[f]) if f in listed else 0) for f in unknown]

    def constrain(coef: dict[tuple, int], const: int) -> None:
        if any(f in col for f in coef):
            known = sum(v * shown[f] for f, v in coef.items() if f not in col)
            h.addConstr(sum(v * x[col[f]] for f, v in coef.items() if f in col) == const - known)

    for t, parts in rel:
        constrain({t: 1, **{p: -1 for p in parts}}, 0)
    found = []
    for f in unknown:
        if 0 < true[f] < k:
            h.maximize(x[col[f]])
            if h.getModelStatus() == highspy.HighsModelStatus.kOptimal and \
                    h.getInfo().objective_function_value < k - 1e-6:
                found.append(f)
    return found


def test_the_export_days_and_the_dashboard_weeks_together_prove_no_small_count():
    """helper-60: the daily export and the dashboard's weekly enrolments were suppressed apart; a week
    of 14 shown beside 11 hidden days of it bounded each at 4. Now the days of a hidden week are not
    published and the days of a shown week are protected knowing its count: attacked together, no
    hidden count under k is proved under k. The two suppressed apart fail the same attack."""
    import datetime as dt

    from edx_engine.privacy.suppress import suppress_enrolments

    rng = random.Random(8)
    caught_apart = 0
    for trial in range(6):
        start = dt.date(2026, 4, 6)
        daily = [{"course_id": "c", "date": start + dt.timedelta(days=i), "mode": m,
                  "enrollments": rng.choice([0, 0, 1, 1, 2, 3, 6, 9] if m == "audit" else [0, 0, 0, 1, 2])}
                 for i in range(rng.randint(10, 24)) for m in ("audit", "verified")]
        table = pa.Table.from_pylist(daily)
        day_out, week_out = (t.to_pylist() for t in suppress_enrolments(table, 5))
        hidden_weeks = {(r["week"], r["mode"]) for r in week_out if r["enrollments"] is None}
        dropped = [r for r in daily if ((r["date"] - dt.timedelta(days=r["date"].weekday())).isoformat(), r["mode"])
                   in hidden_weeks]
        # in order, without the days of hidden weeks (and of weeks whose days nothing protects)
        kept = [(r["date"], r["mode"]) for r in day_out]
        assert kept == [(r["date"], r["mode"]) for r in daily if (r["date"], r["mode"]) in set(kept)]
        assert not set(kept) & {(r["date"], r["mode"]) for r in dropped}
        assert any(r["enrollments"] is not None for r in week_out)  # the dashboard still shows weeks
        assert _enrolment_attack(daily, day_out, week_out, 5) == [], trial
        # apart, as before: the daily crosstab on its own, the weekly crosstab on its own
        apart_days = suppress_crosstab(table, "date", "mode", "enrollments", 5, by=["course_id"]).to_pylist()
        weekly: dict[tuple, int] = {}
        for r in daily:
            w = (r["date"] - dt.timedelta(days=r["date"].weekday())).isoformat()
            for key in ((w, r["mode"]), (w, "(all)"), ("(all)", r["mode"]), ("(all)", "(all)")):
                weekly[key] = weekly.get(key, 0) + r["enrollments"]
        wt = pa.Table.from_pylist([{"course_id": "c", "week": w, "mode": m, "enrollments": n}
                                   for (w, m), n in sorted(weekly.items())])
        apart_weeks = suppress_crosstab(wt, "week", "mode", "enrollments", 5, by=["course_id"],
                                        total_label="(all)").to_pylist()
        caught_apart += bool(_enrolment_attack(daily, apart_days, apart_weeks, 5))
    assert caught_apart > 0
