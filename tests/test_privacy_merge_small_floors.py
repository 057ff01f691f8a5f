"""merge_small: a reader knows every merged category is at least 1 (the course breakdowns list each value that
occurs, zeros are published), so in an "other" of n categories each is at most other - (n - 1). That must be k or
more, or the merged categories are proved to be under k (helper-60: the public dashboard's "Other education" = 6
pooled junior high school, primary-secondary and "other", each then at most 4 < 5, and every course's cells of
those values with them, through course <= programme)."""

from __future__ import annotations

import random

import pyarrow as pa

from edx_engine.privacy.suppress import merge_small


def _check(rows, k):
    t = pa.Table.from_pylist(rows)
    out = merge_small(t, "cat", "n", k).to_pylist()
    kept = {r["cat"] for r in out if r["cat"] != "other"}
    members = [r for r in rows if r["cat"] not in kept and r["n"] > 0]
    other = [r for r in out if r["cat"] == "other"]
    if not members:
        return
    (o,) = other
    if o["n"] is not None and len(kept) > 0:  # (everything merged: other is the group's total, known anyway)
        assert len(members) >= 2
        assert o["n"] - (len(members) - 1) >= k, (rows, out)


def test_each_merged_category_can_reach_k_with_the_others_at_one():
    # three merged categories adding up to 6: each <= 4 < 5 before
    rows = [{"cat": "m", "n": 61}, {"cat": "b", "n": 58}, {"cat": "jhs", "n": 3}, {"cat": "p_se", "n": 1},
            {"cat": "other", "n": 2}, {"cat": "a", "n": 9}]
    _check(rows, 5)
    out = {r["cat"]: r["n"] for r in merge_small(pa.Table.from_pylist(rows), "cat", "n", 5).to_pylist()}
    assert out["other"] - 3 >= 5 and "a" not in out  # the next smallest (9) joins the pool


def test_random_groups():
    rng = random.Random(60)
    for _ in range(500):
        k = rng.choice([3, 5, 10])
        rows = [{"cat": f"c{i}", "n": rng.choice([0, 1, 1, 2, 3, 4, 6, 9, 15, 40])} for i in range(rng.randint(1, 9))]
        _check(rows, k)
