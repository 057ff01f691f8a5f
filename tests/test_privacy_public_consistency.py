"""Every ``--public`` output of the same facts hides the same cells, whatever the path (export, report
CSV/JSON, dashboard), the row order of the input or the process (string hashing); and all of them
together give back no hidden count below k (an attacker's linear algebra, written here on its own)."""

from __future__ import annotations

import csv
import json
import math
import os
import random
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from edx_engine.age import age_band
from edx_engine.lake import Lake
from edx_engine.models import Params, build_duckdb
from edx_engine.privacy import suppress as S
from edx_engine.privacy.export import export_table

from models_support import synthetic_store

K = 5
ALL = "(all)"
SRC = Path(__file__).resolve().parents[1] / "src"
GENERAL = {"total": "enrolled", "active": "active", "approved": "approved", "certified": "certified",
           "failed": "certificates_failed", "male": "male", "female": "female", "other_unknown": "other_unknown"}
SUMMARY_COUNTS = ("enrolled", "enrolled_active", "unenrolled", "active", "active_events", "explored",
                  "certificates_failed", "approved", "certified", "male", "female", "other_unknown")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    lake, _ = synthetic_store(tmp_path_factory.mktemp("pubcons"), seed=11, courses=3, learners=120, days=2)
    build_duckdb(lake, [], Params())
    return lake.root


def _table(data: Path, model: str) -> pa.Table:
    import duckdb

    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        return con.execute(f'SELECT * FROM models."{model}"').to_arrow_table()


def _cli(data: Path, args: list[str], seed: str) -> None:
    """The command in its own process: another PYTHONHASHSEED orders Python's sets of strings differently."""
    env = dict(os.environ, PYTHONPATH=str(SRC), PYTHONHASHSEED=seed, EDX_ENGINE_DATA_DIR=str(data))
    r = subprocess.run([sys.executable, "-m", "edx_engine", *args], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


def _csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def _num(v):
    return None if v in ("", None) else int(v)


def _bd_facts(rows) -> dict[tuple, int | None]:
    return {("b", r["course_id"], r["country"], r["dimension"], r["value"]): _num(r["learners"]) for r in rows}


def _summary_facts(rows, names=None) -> dict[tuple, int | None]:
    names = names or {c: c for c in SUMMARY_COUNTS}
    return {("s", r["course_id"], s): _num(r[c]) for r in rows for c, s in names.items() if c in r}


def _outputs(data: Path, tmp: Path) -> dict[str, dict[tuple, int | None]]:
    """Every public output of the course facts, each as {fact: published value or None (hidden)}."""
    from edx_engine.dashboard.build import country_detail, gather

    out: dict[str, dict] = {}
    lake = Lake(data)
    for name in ("course_breakdown", "course_summary", "general_report"):
        export_table(lake, name, tmp / f"exp_{name}.csv", public=True, k=K)
    out["export course_breakdown"] = _bd_facts(_csv(tmp / "exp_course_breakdown.csv"))
    out["export course_summary"] = _summary_facts(_csv(tmp / "exp_course_summary.csv"))
    out["export general_report"] = _summary_facts(_csv(tmp / "exp_general_report.csv"), GENERAL)
    # the CLI in other processes (other string hashing)
    for seed, fmt in (("1", "csv"), ("2", "json")):
        _cli(data, ["report", "course_breakdown", "--public", "--format", fmt, "-o", str(tmp / f"rb.{fmt}")], seed)
        _cli(data, ["report", "course", "--public", "--format", fmt, "-o", str(tmp / f"rc.{fmt}")], seed)
    out["report course_breakdown csv"] = _bd_facts(_csv(tmp / "rb.csv"))
    out["report course_breakdown json"] = _bd_facts(json.loads((tmp / "rb.json").read_text()))
    rows = _csv(tmp / "rc.csv")
    out["report course csv"] = {**_bd_facts(r for r in rows if r["dimension"] != "indicator"),
                                **{("s", r["course_id"], r["value"]): _num(r["learners"]) for r in rows
                                   if r["dimension"] == "indicator" and r["value"] in SUMMARY_COUNTS}}
    facts = {}
    names = {"by_gender": "gender", "by_education": "level_of_education", "by_country": "country",
             "by_year_of_birth": "year_of_birth", "by_ip_country": "ip_country"}
    for d in json.loads((tmp / "rc.json").read_text()):
        cid = d["course_id"]
        facts.update({("s", cid, c): d[c] for c in SUMMARY_COUNTS})
        for key, dim in names.items():
            facts.update({("b", cid, ALL, dim, v): n for v, n in d.get(key, {}).items()})
        for country, dims in d["by_country_detail"].items():
            facts.update({("b", cid, country, dim, v): n for dim, vs in dims.items() for v, n in vs.items()})
    out["report course json"] = facts
    sd = gather(lake, True, K, None)
    dash: dict[tuple, int | None] = {}
    sums: list[tuple[list[tuple], int]] = []  # published sums of facts (the country detail's columns)
    for cid, d in sd.per_course.items():
        dash.update(_summary_facts(d.get("summary", [])))
        dash.update(_bd_facts(d.get("breakdown", [])))
        dash.update({("a", cid, r["age_band"]): r["learners"] for r in d.get("ages", [])})
        detail = country_detail(d.get("breakdown", []), "en").rows
        codes = {r["value"] for r in d.get("breakdown", []) if r["country"] == ALL and r["dimension"] == "country"}
        from edx_engine.dashboard.labels import country_name

        by_name = {country_name(c, "en"): c for c in codes}
        for r in detail:
            c = by_name[r["country"]]
            for col, test in (("female", lambda v: v == "f"), ("male", lambda v: v == "m"),
                              ("other_unknown", lambda v: v not in ("f", "m"))):
                if r[col] is not None:
                    parts = [("b", cid, c, "gender", x["value"]) for x in d["breakdown"]
                             if x["country"] == c and x["dimension"] == "gender" and test(x["value"])]
                    sums.append((parts, r[col]))
    out["dashboard"] = dash
    out["_sums"] = sums  # type: ignore[assignment]
    return out


@pytest.fixture(scope="module")
def outputs(store, tmp_path_factory):
    return _outputs(store, tmp_path_factory.mktemp("outs"))


def test_every_public_path_hides_the_same_cells(outputs):
    """export, report (CSV and JSON, other processes), the course report and the dashboard: a fact that
    two outputs both show is hidden in both or in neither, with the same value."""
    seen: dict[tuple, dict[str, int | None]] = defaultdict(dict)
    for name, facts in outputs.items():
        if name.startswith("_"):
            continue
        for f, v in facts.items():
            seen[f][name] = v
    differ = {f: by for f, by in seen.items() if len(set(by.values())) > 1}
    assert not differ, list(differ.items())[:5]
    hidden = {f for f, by in seen.items() if None in by.values()}
    assert any(f[0] == "b" for f in hidden) and any(f[0] == "a" for f in hidden)


def _shuffled(t: pa.Table, seed: int) -> pa.Table:
    order = list(range(t.num_rows))
    random.Random(seed).shuffle(order)
    return t.take(pa.array(order, pa.int64()))


def _rows(t: pa.Table) -> list[tuple]:
    return sorted((tuple(r.values()) for r in t.to_pylist()), key=repr)


def test_suppression_depends_on_the_content_not_the_row_order(store):
    """The same table in another row order (DuckDB vs PostgreSQL, full vs incremental build) hides the
    same cells: several permutations of real and random tables."""
    breakdown, summary = _table(store, "course_breakdown"), _table(store, "course_summary")
    plain = S.suppress_course_breakdown(breakdown, K)
    for seed in (1, 2, 3):
        assert _rows(S.suppress_course_breakdown(_shuffled(breakdown, seed), K)) == _rows(plain)
    # the output keeps the input's order (without the rows of countries under k)
    sh = _shuffled(breakdown, 5)
    keys = [tuple(r[c] for c in ("course_id", "country", "dimension", "value")) for r in sh.to_pylist()]
    out = [tuple(r[c] for c in ("course_id", "country", "dimension", "value"))
           for r in S.suppress_course_breakdown(sh, K).to_pylist()]
    assert out == [x for x in keys if x in set(out)]
    rng = random.Random(4)
    rows = [{"course_id": f"c{c}", "week": f"w{w}", "mode": m, "n": rng.choice([0, 1, 2, 3, 6, 9, 20])}
            for c in range(3) for w in range(6) for m in ("audit", "verified", "honor")]
    t = pa.Table.from_pylist(rows)
    ref_x = _rows(S.suppress_crosstab(t, "week", "mode", "n", K, by=["course_id"]))
    ref_s = _rows(S.suppress(t, ["n"], K, by=["course_id"]))
    for seed in (1, 2, 3, 4):
        assert _rows(S.suppress_crosstab(_shuffled(t, seed), "week", "mode", "n", K, by=["course_id"])) == ref_x
        assert _rows(S.suppress(_shuffled(t, seed), ["n"], K, by=["course_id"])) == ref_s


def test_course_tables_suppressed_together_depend_on_the_content_only(store):
    breakdown, summary = _table(store, "course_breakdown"), _table(store, "course_summary")
    ref = S.suppress_course_tables(summary, breakdown, K)
    for seed in (1, 2, 3):
        got = S.suppress_course_tables(_shuffled(summary, seed), _shuffled(breakdown, seed + 10), K)
        assert [_rows(x) for x in got] == [_rows(x) for x in ref]


def _attack_system(store: Path, outputs) -> tuple[dict, list, dict, list]:
    """What an attacker knows: (true facts, relations, published facts, unknown facts). Every number any
    public output shows (cells, totals, the dashboard's sums) is an equation over the true cells, with
    the relations every reader knows (margins, the course total, the summary's row sums and column
    totals, bands = sums of years)."""
    breakdown = _table(store, "course_breakdown").to_pylist()
    summary = _table(store, "course_summary").to_pylist()
    true: dict[tuple, int] = {}
    for r in breakdown:
        true[("b", r["course_id"], r["country"], r["dimension"], r["value"])] = r["learners"]
    for r in summary:
        for c in SUMMARY_COUNTS:
            true[("s", r["course_id"], c)] = r[c]
    relations: list[tuple[dict[tuple, int], int]] = []  # ({fact: coefficient}, constant)

    def rel(total, parts):
        d: dict[tuple, int] = defaultdict(int)
        d[total] += 1
        for p in parts:
            d[p] -= 1
        relations.append((d, 0))

    by_course = defaultdict(list)
    for r in breakdown:
        by_course[r["course_id"]].append(r)
    for cid, rows in by_course.items():
        key = {(r["country"], r["dimension"], r["value"]) for r in rows}
        tot = ("s", cid, "enrolled")
        assert true[tot] == sum(r["learners"] for r in rows if r["country"] == ALL and r["dimension"] == "country")
        for dim in {r["dimension"] for r in rows}:
            rel(tot, [("b", cid, ALL, dim, v) for (c, d, v) in key if c == ALL and d == dim])
            if dim == "country":
                continue
            for (c, d, v) in key:
                if c == ALL and d == dim:
                    rel(("b", cid, ALL, dim, v), [("b", cid, x, d, v) for (x, dd, vv) in key
                                                  if x != ALL and dd == d and vv == v])
            for c in {r["country"] for r in rows if r["country"] != ALL}:
                if (ALL, "country", c) in key:
                    rel(("b", cid, ALL, "country", c), [("b", cid, c, dim, v) for (x, d, v) in key
                                                         if x == c and d == dim])
        for band in {age_band(v) for (c, d, v) in key if c == ALL and d == "year_of_birth"}:
            parts = [("b", cid, ALL, "year_of_birth", v) for (c, d, v) in key
                     if c == ALL and d == "year_of_birth" and age_band(v) == band]
            true[("a", cid, band)] = sum(true[p] for p in parts)
            rel(("a", cid, band), parts)
        genders = [(v, ("b", cid, ALL, "gender", v)) for (c, d, v) in key if c == ALL and d == "gender"]
        rel(("s", cid, "male"), [f for v, f in genders if v == "m"])
        rel(("s", cid, "female"), [f for v, f in genders if v == "f"])
        rel(("s", cid, "other_unknown"), [f for v, f in genders if v not in ("m", "f")])
        rel(tot, [("s", cid, c) for c in ("male", "female", "other_unknown")])
        rel(tot, [("s", cid, c) for c in ("enrolled_active", "unenrolled")])
    for c in SUMMARY_COUNTS:  # programme totals: published (dashboard headline) or assumed known
        relations.append(({("s", r["course_id"], c): 1 for r in summary}, sum(r[c] for r in summary)))
    published: dict[tuple, int] = {}
    for name, facts in outputs.items():
        if not name.startswith("_"):
            published.update({f: v for f, v in facts.items() if v is not None})
    for parts, value in outputs["_sums"]:
        relations.append(({p: 1 for p in parts}, value))
    for f, v in published.items():
        assert true[f] == v, f
    unknown = sorted((f for f in true if f not in published), key=repr)
    return true, relations, published, unknown


def test_all_public_outputs_together_determine_no_small_hidden_cell(store, outputs):
    """The attacker's linear algebra: a hidden cell is recovered exactly when its unit vector lies in
    the row space of the published equations over the unpublished cells."""
    true, relations, published, unknown = _attack_system(store, outputs)
    col = {f: j for j, f in enumerate(unknown)}
    a = np.array([[0.0] * len(unknown)] + [[float(d.get(f, 0)) for f in unknown] for d, _ in relations])
    # e_j is in the row space  <=>  every null-space vector is 0 at j
    _, s, vt = np.linalg.svd(a, full_matrices=True)
    rank = int((s > 1e-8 * s.max()).sum())
    null = vt[rank:]
    recovered = [f for f in unknown if 0 < true[f] < K and np.abs(null[:, col[f]]).max() < 1e-8]
    assert any(0 < true[f] < K for f in unknown)
    assert recovered == [], recovered[:10]


def _shown_rows(outputs) -> set[tuple]:
    """Facts that some output shows as a row (with its count hidden or not): a reader knows they are >= 1."""
    return {f for name, facts in outputs.items() if not name.startswith("_") for f in facts}


def test_all_public_outputs_together_bound_no_small_hidden_cell_below_k(store, outputs):
    """The attacker's linear programmes (HiGHS, written here apart from the library's check):
    besides the equations, a reader knows that a hidden count shown as a row is at least 1 (zeros are
    published; a breakdown row exists only for a count of at least 1) and that no count is negative.
    For every hidden cell under k, the largest value consistent with everything published must be k or
    more: otherwise the reader learns it is small (and at the bounds, pins it). Before the bounds
    check, lower bounds added up across equations (a course's small education categories, each present
    in several countries) did exactly that."""
    import highspy

    true, relations, published, unknown = _attack_system(store, outputs)
    shown = _shown_rows(outputs)
    col = {f: j for j, f in enumerate(unknown)}
    small = [f for f in unknown if 0 < true[f] < K]
    assert small
    # one programme over every unknown (no pieces, no witnesses: the library's shortcuts are not trusted
    # here), maximised once per hidden small cell
    h = highspy.Highs()
    h.silent()
    # the truth satisfies what the attacker assumes (a hidden row's count is >= 1, except a true 0)
    x = [h.addVariable(lb=min(1, true[g]) if g in shown else 0) for g in unknown]
    for d, c in relations:
        if any(g in col for g in d):
            known = sum(v * published[g] for g, v in d.items() if g not in col)
            h.addConstr(sum(v * x[col[g]] for g, v in d.items() if g in col) == c - known)
    bounded = {}
    for f in small:
        h.maximize(x[col[f]])
        status = h.getModelStatus()
        assert status in (highspy.HighsModelStatus.kOptimal, highspy.HighsModelStatus.kUnbounded), status
        if status == highspy.HighsModelStatus.kOptimal and h.getInfo().objective_function_value < K - 1e-6:
            bounded[f] = round(h.getInfo().objective_function_value, 3)
    assert bounded == {}, list(bounded.items())[:10]


def test_coupled_pieces_give_the_same_answer_as_one_system():
    """``determined(..., coupling=...)`` solves the pieces apart and joins them through the few
    coupling equations (programme totals); on random systems it finds exactly the cells that one
    SVD of the whole system finds (written here: unit vector in the row space)."""
    from edx_engine.privacy.suppress import determined

    rng = random.Random(1)
    for _ in range(200):
        eqs, ncell = [], 0
        for _g in range(rng.randint(1, 5)):
            cells = list(range(ncell, ncell + rng.randint(2, 8)))
            ncell += len(cells)
            eqs += [rng.sample(cells, rng.randint(2, len(cells))) for _ in range(rng.randint(1, 5))]
        coupling = []
        for _ in range(rng.randint(0, 3)):
            coupling.append(len(eqs))
            eqs.append([ncell] + rng.sample(range(ncell), min(ncell, rng.randint(2, 6))))
            ncell += 1
        hidden = sorted(c for c in range(ncell) if rng.random() < 0.6)
        a = np.array([[0.0] * len(hidden)] + [[(1.0 if e[0] == c else -1.0) if c in e else 0.0 for c in hidden]
                                              for e in eqs])
        rank = np.linalg.matrix_rank(a)
        whole = [c for j, c in enumerate(hidden)
                 if np.linalg.matrix_rank(np.vstack([a, np.eye(len(hidden))[j]])) == rank]
        assert determined([1] * ncell, eqs, set(hidden), {}, coupling) == whole


def test_the_certificate_and_grade_charts_never_show_what_the_summary_hides(store):
    """The public course page's certificate-status chart shows downloadable and notpassing, which are the
    summary's certified and certificates_failed; its grade bins add up to approved. At k = 12 the joint
    suppression hides one course's certificates_failed (13) to protect another's (11) through the
    programme total, and the chart showed the 13, giving the 11 back. A course whose summary hides any
    of these counts now has its chart hidden whole; elsewhere the chart agrees with the summary."""
    from edx_engine.dashboard.build import gather

    k = 12
    sd = gather(Lake(store), True, k, None)
    hides_certs = hides_approved = 0
    for cid, d in sd.per_course.items():
        (s,) = d["summary"]
        certs = {r["cert_status"]: r["learners"] for r in d["certs"]}
        if s["certified"] is None or s["certificates_failed"] is None:
            hides_certs += 1
            assert set(certs.values()) == {None}, (cid, certs)
        else:
            assert certs.get("downloadable") in (s["certified"], None) and \
                certs.get("notpassing") in (s["certificates_failed"], None), (cid, certs, s)
            shown = [v for v in certs.values() if v is not None]
            assert all(v == 0 or v >= k for v in shown), certs
        if s["approved"] is None:
            hides_approved += 1
            assert {r["learners"] for r in d["grades"]} == {None}, (cid, d["grades"])
    assert hides_certs >= 1  # the case above happens in this store


def test_grade_bins_from_an_aligned_passing_grade_are_protected_as_a_known_sum(monkeypatch):
    """With a passing grade of 0.6 the bins 0.6-0.9 add up to the course's approved learners, which the
    summary publishes: one small bin among them hidden alone (its complement taken below 0.6) came
    back as approved minus the other three. The bins are now protected knowing both sums."""
    import duckdb

    from edx_engine.dashboard.data import Reader

    con = duckdb.connect()
    con.execute("CREATE TABLE _edx_models (name VARCHAR, params VARCHAR)")
    con.execute("INSERT INTO _edx_models VALUES ('person_course', 'passing_grade=0.6')")
    con.execute("CREATE SCHEMA models")
    counts = {0.05: 30, 0.15: 25, 0.25: 20, 0.35: 9, 0.45: 12, 0.55: 40, 0.65: 3, 0.75: 20, 0.85: 15, 0.95: 30}
    _grades_store(con, {"c": (counts, 0.6, ">=")})
    # (the summary of this hand-made store hides nothing: its approved is the published sum)
    monkeypatch.setattr(Reader, "_summary_hides", lambda self, *columns: set(), raising=False)
    t = Reader(con, True, 5, None).grades().to_pylist()
    shown = {round(r["grade_from"], 1): r["learners"] for r in t}
    approved = sum(c for g, c in counts.items() if g >= 0.6)
    total = sum(counts.values())
    assert shown[0.6] is None  # the small bin (3)
    for known, bins in ((approved, [0.6, 0.7, 0.8, 0.9]), (total, sorted(shown))):
        hidden = [b for b in bins if shown[b] is None]
        assert len(hidden) != 1, (bins, shown)  # no hidden bin is the known sum minus the shown ones
        if hidden:
            assert known - sum(shown[b] for b in bins if shown[b] is not None) >= 5


def _grades_store(con, courses: dict) -> None:
    """models.person_course of hand-made grades: course -> ({grade: learners}, passing grade, rule)."""
    con.execute("CREATE TABLE IF NOT EXISTS models.person_course (course_id VARCHAR, user_id INT, grade DOUBLE, "
                "passing_grade DOUBLE, passing_rule VARCHAR, passed BOOLEAN, is_staff BOOLEAN)")
    rows = [(cid, n * 1000 + i, g, pg, rule, g > pg if rule == ">" else g >= pg, False)
            for cid, (counts, pg, rule) in courses.items()
            for n, (g, c) in enumerate(counts.items()) for i in range(c)]
    con.executemany("INSERT INTO models.person_course VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def _grade_attack(shown: list, true: list, s: int, approved: int, k: int) -> list[str]:
    """Hidden grade bins (and the two unpublished parts of bin ``s``, the one holding the passing grade)
    that a reader can prove to be under k, from the bins shown, their total, ``approved`` and floors of
    1: an integer search over the three sums that the relations involve (the bins above ``s``, bin
    ``s``, the bins below), independent of the library's linear programmes. Every learner above bin s
    passed, none below it did: approved = (passing learners of bin s) + (the bins above)."""
    total = sum(true)
    hidden = [i for i, v in enumerate(shown) if v is None]
    rest = total - sum(v for v in shown if v is not None)
    above = [i for i in hidden if i > s]
    below = [i for i in hidden if i < s]
    cap = approved - sum(v for i, v in enumerate(shown) if v is not None and i > s)  # = hi + hidden above
    best: dict[str, int] = {}

    # a hidden bin holds someone when zeros are published (the chart shows some bins); one the chart hides
    # whole may be 0 (the floor an attacker knows to be right; the library's model too)
    floor = {i: 1 if true[i] > 0 and len(hidden) < len(shown) else 0 for i in hidden}

    def room(group: list, g: int) -> int | None:  # the largest member of ``group`` summing to g, given floors
        lows = sum(floor[i] for i in group)
        if g < lows or (not group and g):
            return None
        return max((g - lows + floor[i] for i in group), default=0)

    for a in range(rest + 1):
        for c in ([shown[s]] if shown[s] is not None else range(floor[s], rest + 1)):
            b = rest - a - (0 if shown[s] is not None else c)
            hi = cap - a
            if not 0 <= hi <= c or b < 0:
                continue
            parts = (room(above, a), room(below, b))
            if None in parts:
                continue
            for i in above:
                best[f"bin {i}"] = max(best.get(f"bin {i}", 0), parts[0])
            for i in below:
                best[f"bin {i}"] = max(best.get(f"bin {i}", 0), parts[1])
            if shown[s] is None:
                best[f"bin {s}"] = max(best.get(f"bin {s}", 0), c)
            best["passing part"] = max(best.get("passing part", 0), hi)
            best["failing part"] = max(best.get("failing part", 0), c - hi)
    hi_true = approved - sum(true[s + 1:])
    truth = {f"bin {i}": true[i] for i in hidden} | {"passing part": hi_true, "failing part": true[s] - hi_true}
    return [f"{name} = {truth[name]}, at most {m}" for name, m in best.items() if 0 < truth[name] < k and m < k]


@pytest.mark.parametrize("seed", range(12))
def test_grade_bins_around_a_passing_grade_between_bin_edges_are_not_bounded_under_k(monkeypatch, seed):
    """A passing grade that is not a bin edge (0.65): every learner in the bins from 0.7 up passed, so
    those bins add up to at most the summary's approved. helper-61 bounded hidden bins of 2 and 3 at 4
    (approved 5, k = 5) that way; only an aligned passing grade was modelled. An independent integer
    search over random courses (passing grades on and off the edges, both rules) finds no hidden bin,
    and neither part of the bin holding the passing grade, provably under k."""
    import random

    import duckdb

    from edx_engine.dashboard.data import Reader

    rng = random.Random(seed)
    k = 5
    courses = {}
    for c in range(6):
        counts = {round(0.05 + i / 10, 2): rng.choice([0, 1, 2, 3, 4, 6, 9, 15, 30]) for i in range(10)}
        pg, rule = rng.choice([(0.65, ">="), (0.55, ">="), (0.75, ">="), (0.6, ">"), (0.62, ">="), (0.0, ">")])
        # grades placed on both sides of the passing grade inside its bin
        s = int(pg * 10 + 1e-9)
        mid = round(0.05 + s / 10, 2)
        n_mid = counts.pop(mid)
        split = rng.randint(0, n_mid)
        courses[f"c{c}"] = ({**counts, round(s / 10 + 0.001, 3): split, round(pg + 0.001, 3): n_mid - split}, pg, rule)
    courses["helper61"] = ({0.05: 20, 0.15: 12, 0.25: 9, 0.35: 7, 0.45: 8, 0.55: 6, 0.61: 4, 0.66: 0,
                            0.75: 2, 0.85: 3, 0.95: 0}, 0.65, ">=")
    # helper-62: a passing grade of 0 with the rule '>' (bin 0 mixed; it was left unmodelled)
    courses["zero"] = ({0.0: 20, 0.35: 2, 0.55: 3}, 0.0, ">")
    # and a grade that floats across the 0.9 edge: 0.3 + 0.6 < 0.9 fails, yet lands in bin 0.9
    courses["float"] = ({0.15: 30, 0.55: 25, 0.3 + 0.6: 2, 0.95: 8, 0.85: 2}, 0.9, ">=")
    con = duckdb.connect()
    con.execute("CREATE TABLE _edx_models (name VARCHAR, params VARCHAR)")
    con.execute("CREATE SCHEMA models")
    _grades_store(con, courses)
    approved_of = {cid: sum(n for g, n in counts.items() if (g > pg if rule == ">" else g >= pg))
                   for cid, (counts, pg, rule) in courses.items()}
    # the summary hides a small approved (and then the chart, whole); here nothing else
    small = {cid for cid, a in approved_of.items() if 0 < a < k}
    monkeypatch.setattr(Reader, "_summary_hides", lambda self, *columns: small, raising=False)
    t = Reader(con, True, k, None).grades().to_pylist()
    leaks = []
    for cid, (counts, pg, rule) in courses.items():
        true = [0] * 10
        for g, n in counts.items():
            true[min(math.floor(g * 10), 9)] += n  # as the chart's floor(grade * 10)
        shown = [r["learners"] for r in sorted((r for r in t if r["course_id"] == cid), key=lambda r: r["grade_from"])]
        assert [v for v in shown if v is not None] == [true[i] for i, v in enumerate(shown) if v is not None]
        if cid in small:
            assert set(shown) == {None}
            continue
        approved = approved_of[cid]
        mixed = int(pg * 10 + 1e-9) if cid != "float" else 9  # the bin whose learners did not all pass alike
        leaks += [f"{cid}: {x}" for x in _grade_attack(shown, true, mixed, approved, k)]
    assert not leaks, leaks


def test_a_published_total_never_pins_hidden_cells_that_are_at_least_one(store, tmp_path):
    """A hidden count is never 0 (zeros are published, a breakdown row exists only for a count >= 1),
    so a reader knows each hidden part of a published total is at least 1: n hidden year-of-birth rows
    of a country of n learners are n ones (an outside test recovered 161 cells at k=5 that way). For
    every published total of the public breakdown, each hidden part can still be k or more."""
    from edx_engine.privacy.suppress import protect

    assert 0 in protect([5, 1, 1, 1, 1, 1], [[0, 1, 2, 3, 4, 5]], k=5).hidden  # the total goes too
    export_table(Lake(store), "course_breakdown", tmp_path / "b.csv", public=True, k=K)
    rows = _csv(tmp_path / "b.csv")
    totals = {(r["course_id"], r["value"]): _num(r["learners"]) for r in rows
              if r["country"] == ALL and r["dimension"] == "country"}
    groups: dict[tuple, list] = defaultdict(list)
    for r in rows:
        if r["country"] != ALL:
            groups[(r["course_id"], r["country"], r["dimension"])].append(_num(r["learners"]))
    checked = 0
    for (cid, country, dim), values in groups.items():
        total = totals.get((cid, country))
        hidden = [v for v in values if v is None]
        if total is None or not hidden:
            continue
        checked += 1
        rest = total - sum(v for v in values if v is not None)
        assert len(hidden) >= 2 and rest - (len(hidden) - 1) >= K, (cid, country, dim, total, values)
    assert checked > 0


def test_a_public_report_on_standard_output_is_only_the_report(store):
    """The linear-programme solver prints a banner on file descriptor 1 when it is created (C stdio): a
    public report written to standard output would start with it. The report is all that is printed."""
    env = dict(os.environ, PYTHONPATH=str(SRC), EDX_ENGINE_DATA_DIR=str(store))
    r = subprocess.run([sys.executable, "-m", "edx_engine", "report", "course_breakdown", "--public", "-o", "-"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == '"course_id","country","dimension","value","learners","suppressed"', lines[:3]
    assert "HiGHS" not in r.stdout and len(lines) > 10


def test_the_course_tables_have_no_suppression_of_their_own():
    """``PUBLIC_SPECS`` lists every publishable model; the course tables' entries refuse to run alone (a
    library caller would get a suppression that other outputs contradict) and name the way that works."""
    from edx_engine.privacy.export import PUBLIC_SPECS, public_table

    t = pa.table({"course_id": ["c"], "enrolled": [10]})
    for name in ("course_summary", "general_report", "course_breakdown"):
        with pytest.raises(ValueError, match="public_table"):
            PUBLIC_SPECS[name](t, 5)
        with pytest.raises(ValueError, match="read="):
            public_table(name, t, 5)
