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
