"""What the public dashboard says about its hidden counts is true of every one of them, in every language.

A chart hidden whole said "All counts in this chart are below 12 and hidden", and a chart over time
"Weeks whose count is hidden (below 12) are left out", also where complementary suppression hid counts
of 12 or more: in the store below (seed 11, 3 courses x 120 learners, k = 12) a course's certificate
chart is hidden whole because the summary hides its certificates_failed (13) to protect another course's
(11) through the programme total, with 76 learners without a certificate among the hidden counts; a
course's 54 women and 54 men are hidden; an enrolment week of 14. Such charts now say that each count
is below k *or* would help work out one that is. "Below k" alone is said only by charts whose rule can
hide nothing else (small categories merged), never because the values happen to be small: the wording
of a chart is the same on every course page, so it tells nothing about which hidden cell is small.
"""

from __future__ import annotations

import html
import random
import re
from pathlib import Path

import pyarrow as pa
import pytest

from edx_engine.dashboard import build_site
from edx_engine.dashboard.labels import LANGS
from edx_engine.models import Params, build_duckdb
from edx_engine.privacy import suppress as S

from models_support import synthetic_store
from test_dashboard import page_data

K = 12
SECTION = re.compile(r'<section class="item[^"]*" id="([^"]+)".*?<p class="caption">(.*?)</p>(.*?)</section>', re.S)
EMPTY = re.compile(r'<p class="empty">(.*?)</p>', re.S)
KEYS = ("text", "date", "link")  # column kinds that name a row (the others are numbers)
# what the pages said of every hidden count, true only where each is below k...
BELOW_ONLY = {"en": (f"are below {K} and hidden", f"(below {K})"),
              "es": (f"son menores que {K}", f"(menores que {K})"),
              "pt": (f"são menores que {K}", f"(menores que {K})")}
# ...and what they say where complementary suppression may have hidden counts of k or more
OR_WORK_OUT = {"en": f"or would help work out a count below {K}", "es": f"ayudaría a deducir una cifra menor que {K}",
               "pt": f"ajudaria a deduzir uma contagem menor que {K}"}


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    """(public site at k = 12, internal site) of the store of tests/test_privacy_public_consistency.py."""
    root = tmp_path_factory.mktemp("hidden_texts")
    lake, _ = synthetic_store(root, seed=11, courses=3, learners=120, days=2)
    build_duckdb(lake, [], Params())
    public = build_site(lake, root / "public", lang="en", public=True, k=K)
    internal = build_site(lake, root / "internal", lang="en")
    return public.out_dir, internal.out_dir


def _texts(page: Path) -> dict[str, tuple[str, str]]:
    """Each item of a page: (its caption, the message that replaces its chart or "")."""
    out = {}
    for iid, cap, rest in SECTION.findall(page.read_text("utf-8")):
        m = EMPTY.search(rest.split("<details", 1)[0])
        out[iid] = (html.unescape(re.sub("<[^>]+>", "", cap)), html.unescape(m.group(1)) if m else "")
    return out


def _hidden_values(pub: dict, internal: dict, whole: bool) -> list[int]:
    """The true values of an item's hidden counts: every count of the internal item when the whole chart
    is hidden (a count merged into a hidden "other" included), else those of the public rows shown as
    hidden, found in the internal item by the row's names (week, mode, title...)."""
    counts = [c for c, kind in internal["columns"] if kind in ("count", "volume")]
    if whole:
        return [r[c] for r in internal["rows"] for c in counts if r.get(c)]
    keys = [c for c, kind in internal["columns"] if kind in KEYS]
    if keys != [c for c, kind in pub["columns"] if kind in KEYS]:
        return []  # (the internal programme chart has months too: its rows are not the public ones)
    truth = {tuple(r[c] for c in keys): r for r in internal["rows"]}
    return [truth[tuple(r[c] for c in keys)][c] for r in pub["rows"] for c in counts
            if c in r and r[c] is None and tuple(r[c] for c in keys) in truth]


def test_hidden_counts_are_never_said_to_be_below_k_where_some_are_not(sites):
    public, internal = sites
    seen_big: dict[str, set[str]] = {lang: set() for lang in LANGS}
    for lang in LANGS:
        for page in sorted((public / lang).rglob("*.html")):
            rel = page.relative_to(public)
            pub, ref = page_data(page)["items"], page_data(internal / rel)["items"]
            for iid, (caption, message) in _texts(page).items():
                whole = str(K) in message  # the chart is replaced by a message about its hidden counts
                values = _hidden_values(pub[iid], ref[iid], whole)
                big = [v for v in values if v >= K]
                if whole:
                    assert values, (rel, iid, message)  # (it says so where counts are hidden)
                if not big:
                    continue
                seen_big[lang].add(iid)
                for said in (message, caption):
                    assert not any(claim in said for claim in BELOW_ONLY[lang]), (rel, iid, said, big)
                if whole:
                    assert OR_WORK_OUT[lang] in message, (rel, iid, message)
                elif pub[iid]["spec"] and any(kind == "date" for _, kind in pub[iid]["columns"]):
                    assert OR_WORK_OUT[lang] in caption, (rel, iid, caption)  # why weeks are missing
        # the case of the brief: a course's certificate chart hidden whole for another course's sake
        assert {"certs", "gender", "enrol_mode", "countries"} <= seen_big[lang], seen_big[lang]


def test_the_words_of_a_chart_do_not_depend_on_its_values(sites):
    """One wording per chart for every course: the enrolment chart says the same where its hidden weeks
    are all small and where one of them is 14, so the text does not tell a reader which is which."""
    public, internal = sites
    for lang in LANGS:
        said: dict[str, set[str]] = {}
        big: dict[str, set[bool]] = {}
        for page in sorted((public / lang / "course").glob("*.html")):
            pub, ref = page_data(page)["items"], page_data(internal / page.relative_to(public))["items"]
            for iid, (_, message) in _texts(page).items():
                if message:
                    said.setdefault(iid, set()).add(message)
                    big.setdefault(iid, set()).add(any(v >= K for v in _hidden_values(pub[iid], ref[iid], True)))
        assert said and all(len(m) == 1 for m in said.values()), said
        assert big["enrol_mode"] == {True, False}, big  # both cases occur, with the same words


def test_a_merged_category_is_hidden_only_below_k():
    """What "All counts in this chart are below k" rests on (the programme's learners by country, gender
    and education): ``merge_small`` hides a group's "other" only when the whole group is below k, never
    a category of k or more, whatever the table."""
    rng = random.Random(7)
    for _ in range(300):
        k = rng.randint(2, 15)
        rows = [{"g": g, "c": f"c{i}", "n": rng.choice([0, 1, 2, 3, k - 1, k, k + 1, rng.randint(0, 40)])}
                for g in range(rng.randint(1, 3)) for i in range(rng.randint(1, 7))]
        out = S.merge_small(pa.Table.from_pylist(rows), "c", "n", k, by=["g"]).to_pylist()
        for r in out:
            if r["n"] is None:
                shown = {x["c"] for x in out if x["g"] == r["g"] and x["n"] is not None}
                merged = [x["n"] for x in rows if x["g"] == r["g"] and x["c"] not in shown]
                assert sum(merged) < k and max(merged) < k, (k, rows, out)


def test_an_empty_map_does_not_say_that_no_country_reaches_k():
    """The programme map is empty when every country went into "Other (small groups)"; it said "No
    country has 12 learners or more", but a country of 15 joins the others when they alone add up to
    less than 12 (``merge_small``)."""
    from edx_engine.dashboard.build import country_items, settle

    rows = [{"country": "MX", "learners": 15}, {"country": "PE", "learners": 3}, {"country": "unknown", "learners": 40}]
    rows = S.merge_small(pa.Table.from_pylist(rows), "country", "learners", K).to_pylist()
    assert {r["country"]: r["learners"] for r in rows} == {"unknown": 40, S.OTHER: 18}  # Mexico's 15 in "other"
    for lang, wrong, right in (("en", "No country has", "where needed the next smallest"),
                               ("es", "Ningún país tiene", "si hace falta los siguientes más pequeños"),
                               ("pt", "Nenhum país tem", "se preciso os seguintes menores")):
        (map_, _) = settle(country_items("", rows, lang, map_=True, merged=True), lang, True, K)
        assert map_.spec is None and str(K) in map_.empty and right in map_.empty, map_.empty
        assert wrong not in map_.empty, map_.empty
