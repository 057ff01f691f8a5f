"""Vega-Lite specs for the dashboard's charts (plain JSON; the Vega runtime ships with vl-convert).

Each spec carries its rows as the named dataset ``table`` so the page, the data table and the CSV
show the same numbers, and tests can read a rendered chart's data back from the Vega view.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"  # an identifier only: never fetched
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
CONFIG = {
    "range": {"category": OKABE_ITO},
    "font": "system-ui, -apple-system, 'Segoe UI', Roboto, 'Liberation Sans', sans-serif",
    "axis": {"labelFontSize": 11, "titleFontSize": 12, "labelLimit": 220},
    # below the chart, one column on a phone; labels cut to the width with an ellipsis (the full name
    # is in the tooltip and the Data table): with 2 columns of 260 px a phone showed half the series
    "legend": {"orient": "bottom", "columns": {"expr": "width < 560 ? 1 : 2"},
               "labelLimit": {"expr": "width < 560 ? max(80, width - 40) : min(400, width / 2 - 40)"}},
    "title": {"fontSize": 14, "anchor": "start"},
    "view": {"stroke": None},
    "bar": {"color": OKABE_ITO[0]},
    "line": {"color": OKABE_ITO[0]},
}


# re-laid out on every update: a switch (weeks to months) that widens the value labels (1,000) left the
# axis title where the narrower labels had put it, cut off at the left
AUTOSIZE = {"type": "fit-x", "resize": True}


def base(title: str, rows: list[dict], height: int = 260, **extra) -> dict:
    # the title is the page's <h2>; ``description`` keeps it with the spec (PNG/SVG exports, screen readers)
    return {"$schema": SCHEMA, "description": title, "width": "container", "height": height, "autosize": AUTOSIZE,
            "datasets": {"table": rows}, "data": {"name": "table"}, "config": CONFIG, **extra}


LABEL_GAP = 8  # px: labels closer than this count as overlapping (Vega's own test allows touching ones)


def value_axis(fmt: str) -> dict:
    """The value axis. Its labels keep ``LABEL_GAP`` pixels apart: with Vega's default (overlap = their
    boxes intersect) "150" and "160" were drawn 0.4 px apart, read as "150160"; ``labelOverlap``
    then drops every other label until they fit. An integer format (``,d``) must not label
    fractional ticks: with at most 2 learners Vega ticked every 0.2 and wrote 0, 0, 0, 1, 1 ...
    ``tickMinStep`` alone still leaves halves below about 3, whose labels are then left blank."""
    axis = {"format": fmt, "labelOverlap": True, "labelSeparation": LABEL_GAP}
    if not fmt.endswith("d"):
        return axis
    return {**axis, "tickMinStep": 1, "labelExpr": "datum.value % 1 ? '' : datum.label"}


def hbar(title: str, rows: list[dict], cat: str, val: str, cat_title: str, val_title: str, *,
         order: str | None = None, fmt: str = ",d", tooltip: list | None = None, hidden: str = "") -> dict:
    """Horizontal bars (categories read easily at phone width); ``order`` a field to sort by, else by
    value (hidden values last). ``hidden``: the word written in place of a hidden (None) value's bar.
    The category axis has no title: the chart's heading names it ("Learners by gender"), and on a
    chart of a few bars with long labels the rotated title was drawn over them (it stays in the tooltip)."""
    if order is None:  # the bars' own order as a field, shared by the "hidden" labels' layer
        rank = sorted(range(len(rows)), key=lambda i: (rows[i].get(val) is None, -(rows[i].get(val) or 0)))
        rows = [dict(rows[i], _rank=n) for n, i in enumerate(rank)]
        order = "_rank"
    s = base(title, rows, height=max(80, 22 * len(rows)))
    cat_enc = {"field": cat, "type": "nominal", "title": None, "sort": {"field": order, "op": "min", "order": "ascending"}}
    bars = {"mark": {"type": "bar", "tooltip": True},
            "encoding": {"y": cat_enc,
                         "x": {"field": val, "type": "quantitative", "title": val_title, "axis": value_axis(fmt)},
                         "tooltip": tooltip or [{"field": cat, "title": cat_title},
                                                {"field": val, "title": val_title, "format": fmt}]}}
    return _with_hidden(s, bars, rows, cat_enc, val, cat_title, val_title, hidden, horizontal=True)


def vbar(title: str, rows: list[dict], cat: str, val: str, cat_title: str, val_title: str, fmt: str = ",d", *,
         hidden: str = "") -> dict:
    """Vertical bars in the order of ``rows`` (grade bands); ``hidden`` as for ``hbar``."""
    s = base(title, rows, height=220)
    # the categories' order given whole: with "sort": None, the layer of "hidden" labels put its bands last
    cat_enc = {"field": cat, "type": "ordinal", "title": cat_title, "sort": list(dict.fromkeys(r[cat] for r in rows))}
    bars = {"mark": {"type": "bar", "tooltip": True},
            "encoding": {"x": cat_enc,
                         "y": {"field": val, "type": "quantitative", "title": val_title, "axis": value_axis(fmt)},
                         "tooltip": [{"field": cat, "title": cat_title},
                                     {"field": val, "title": val_title, "format": fmt}]}}
    return _with_hidden(s, bars, rows, cat_enc, val, cat_title, val_title, hidden, horizontal=False)


HIDDEN_INK = "#6b6b6b"  # the "hidden" labels: grey (4.9:1 on white), never a bar's colour


def _with_hidden(s: dict, bars: dict, rows: list[dict], cat_enc: dict, val: str, cat_title: str, val_title: str,
                 hidden: str, horizontal: bool) -> dict:
    """``s`` drawing ``bars``, and where some values are hidden (None, public sites) a second layer
    writing ``hidden`` at the foot of each of their categories. Without it, Vega dropped a hidden
    category from the axis (grade bands jumped from 0.2 to 0.5) or left an empty row that read as a 0.
    The label carries no number and no length: nothing of the hidden value is drawn."""
    if not hidden or not any(r.get(val) is None for r in rows):
        s.update(bars)
        return s
    pos, cat_ch = ("x", "y") if horizontal else ("y", "x")
    label = {"transform": [{"filter": f"!isValid(datum[{json.dumps(val)}])"},
                           {"calculate": json.dumps(hidden), "as": "_hidden"}],
             "mark": {"type": "text", "color": HIDDEN_INK, "fontStyle": "italic", "tooltip": True,
                      **({"align": "left", "baseline": "middle", "dx": 4} if horizontal else
                         {"align": "left", "baseline": "middle", "angle": 270, "dx": 4})},
             "encoding": {cat_ch: cat_enc, pos: {"datum": 0, "type": "quantitative"},
                          "text": {"field": "_hidden"},
                          "tooltip": [{"field": cat_enc["field"], "title": cat_title},
                                      {"field": "_hidden", "title": val_title}]}}
    s["layer"] = [bars, label]
    return s


SHORT_SPAN_DAYS = 120  # below this, a date axis ticks weeks, labelled by day, not by month
MAX_TICKS = 10  # an axis writes at most this many dates (fewer where they would overlap)


def _ms(d) -> int:
    import calendar

    return calendar.timegm(d.timetuple()) * 1000


def as_date(v) -> dt.date:
    """An ISO date or date-time (string or not) as its date."""
    return dt.date.fromisoformat(str(v)[:10])


@dataclass(frozen=True)
class Window:
    """A chart's period switch (Vega parameter ``period``): ``"recent"``, the default, shows the dates
    after ``since`` up to ``last`` (the data's latest date, not today's); ``"all"`` every date.
    ``labels``: the two options' texts; ``name``: the switch's; ``notes``: the caption's sentence for
    each option (static/dashboard.js swaps it when the switch moves)."""
    since: dt.date
    last: dt.date
    labels: tuple[str, str]
    name: str
    notes: dict = field(default_factory=dict)

    def param(self) -> dict:
        return {"name": "period", "value": "recent",
                "bind": {"input": "radio", "options": ["recent", "all"], "labels": list(self.labels),
                         "name": self.name + " "}}

    def filter(self, x: str) -> dict:
        """Rows (and markers) inside the window, or all of them when "all" is chosen."""
        t = f"time(datum[{json.dumps(x)}])"
        return {"filter": f"period == 'all' || ({t} > {_ms(self.since)} && {t} <= {_ms(self.last)})"}

    def scale(self, first: dt.date, last: dt.date) -> dict:
        """The x scale's domain: the window's 12 months, the same in every chart of the page, or
        ``first`` to ``last`` (the chart's own extent)."""
        return {"type": "utc", "domain": {"expr": f"period == 'all' ? [{_ms(first)}, {_ms(last)}] : "
                                                  f"[{_ms(self.since)}, {_ms(self.last)}]"}}


def date_ticks(first: dt.date, last: dt.date) -> tuple[str, list[int]]:
    """The date format and tick values (ms) for an axis from ``first`` to ``last``. Over a short span:
    at week starts (Mondays), every n weeks, labelled by day; over a long one: at the first of the
    month, every n months, labelled "%b %Y"."""
    if (last - first).days < SHORT_SPAN_DAYS:
        monday = first - dt.timedelta(days=first.weekday())
        weeks = (last - monday).days // 7 + 1
        step = -(-weeks // MAX_TICKS)
        return "%d %b", [_ms(monday + dt.timedelta(weeks=i)) for i in range(0, weeks, step)]
    lo, hi = first.year * 12 + first.month - 1, last.year * 12 + last.month - 1  # months since year 0
    step = next((n for n in (1, 2, 3, 6, 12, 24, 60, 120) if (hi - lo) // n + 1 <= MAX_TICKS), 240)
    return "%b %Y", [_ms(dt.date(m // 12, m % 12 + 1, 1)) for m in range(-(-lo // step) * step, hi + 1, step)]


def date_axis(rows: list[dict], x: str, window: Window | None = None) -> dict:
    """The date axis for the span of ``rows`` (weekly series: weeks start on Mondays), with its ticks
    given explicitly (``date_ticks``); with a ``window``, the ticks of the option shown. Vega's own
    ticks fell on Sundays (d3's weeks), ticked every day when two weekly points were 8 days apart,
    and labelled half-months "Apr 2026, Apr 2026"."""
    axis = {"format": "%b %Y", "labelOverlap": True, "labelSeparation": LABEL_GAP}
    try:
        days = sorted({as_date(r[x]) for r in rows if r.get(x) is not None})
    except ValueError:
        return axis
    if not days:
        return axis
    fmt, ticks = date_ticks(days[0], days[-1])
    if window is None:
        return {**axis, "format": fmt, "values": ticks}
    # a window is 12 months and the whole span longer: both are labelled by month ("%b %Y")
    recent = date_ticks(window.since, window.last)[1]
    return {**axis, "format": fmt, "values": {"expr": f"period == 'all' ? {json.dumps(ticks)} : {json.dumps(recent)}"}}


# a tooltip's date, day first in every language (the page's time locale names the month): Vega's
# default "%b %d, %Y" read "oct 06, 2025" in Spanish
TOOLTIP_DATE = "%d %b %Y"


def has_gaps(rows: list[dict], y: str) -> bool:
    """Whether a line of ``rows`` breaks somewhere (a hidden value, None, in a public site). A line
    draws nothing for a value alone between two gaps, so such a line needs its point markers: a
    course whose published weeks were each surrounded by hidden ones was not drawn at all."""
    return any(r.get(y) is None for r in rows)


def time_lines(title: str, rows: list[dict], x: str, y: str, color: str | None, x_title: str, y_title: str,
               color_title: str = "", *, bars: bool = False, stack: bool = False, params: list | None = None,
               transform: list | None = None, rules: list[dict] | None = None,
               color_order: list[str] | None = None, window: Window | None = None) -> dict:
    """Lines (or stacked bars) over time; ``rules`` = [{"date": ..., "label": ...}] vertical markers;
    ``color_order``: the legend's (and the stack's) order of the ``color`` values; ``window``: the
    period switch (the last 12 months by default, or all)."""
    scale = {"type": "utc"}
    if window:
        dates = [as_date(r[x]) for r in rows if r.get(x) is not None] + [as_date(r["date"]) for r in rules or []]
        scale = window.scale(min(dates), max(dates))
        params = [*(params or []), window.param()]
        transform = [*(transform or []), window.filter(x)]
    enc = {"x": {"field": x, "type": "temporal", "title": x_title, "scale": scale,
                 "axis": date_axis(rows, x, window)},
           "y": {"field": y, "type": "quantitative", "title": y_title, "axis": value_axis(",d"),
                 **({"stack": "zero"} if stack else {})},
           "tooltip": [{"field": x, "type": "temporal", "title": x_title, "timeUnit": "utcyearmonthdate",
                        "format": TOOLTIP_DATE},
                       {"field": y, "type": "quantitative", "title": y_title, "format": ",d"}]}
    if color:
        enc["color"] = {"field": color, "type": "nominal", "title": color_title,
                        # a label cut to the width keeps its whole text as its tooltip
                        "legend": {"encode": {"labels": {"interactive": True,
                                                          "update": {"tooltip": {"signal": "datum.value"}}}}},
                        **({"sort": color_order} if color_order else {})}
        if color_order and stack:  # the first of color_order at the bottom of each bar
            transform = [*(transform or []),
                         {"calculate": f"indexof({json.dumps(color_order)}, datum[{json.dumps(color)}])",
                          "as": "_stack"}]
            enc["order"] = {"field": "_stack", "type": "quantitative", "sort": "ascending"}
        enc["tooltip"].insert(0, {"field": color, "title": color_title})
    layer = {"mark": {"type": "bar", "tooltip": True} if bars else
             {"type": "line", "point": len(rows) <= 80 or has_gaps(rows, y), "tooltip": True},
             "encoding": enc}
    if transform:
        layer["transform"] = transform
    # at the top: the markers' layers filter with the period switch too (a layer's own is not theirs)
    s = base(title, rows, height=260, **({"params": params} if params else {}))
    if window and window.notes:
        s["usermeta"] = {"period_notes": window.notes}
    if not rules:
        s.update(layer)
        return s
    inside = {"transform": [window.filter("date")]} if window else {}  # markers outside the window: none
    rule = {"data": {"values": rules}, **inside,
            "mark": {"type": "rule", "strokeDash": [4, 4], "color": "#444"},
            "encoding": {"x": {"field": "date", "type": "temporal", "scale": {"type": "utc"}},
                         "tooltip": [{"field": "label"}]}}
    text = {"data": {"values": rules}, **inside,
            "mark": {"type": "text", "align": "left", "dx": 3, "dy": -4, "baseline": "top", "color": "#444"},
            "encoding": {"x": {"field": "date", "type": "temporal", "scale": {"type": "utc"}},
                         "y": {"value": 0}, "text": {"field": "label"}}}
    s["layer"] = [layer, rule, text]
    return s


def choropleth(title: str, rows: list[dict], value: str, value_title: str, name_field: str) -> dict:
    """World map from the shipped TopoJSON (``@world`` is replaced by the page script with the
    map object of ``static/world.js``: file:// pages cannot fetch JSON)."""
    s = {"$schema": SCHEMA, "description": title, "width": "container", "height": 300, "autosize": AUTOSIZE,
         "datasets": {"table": rows}, "config": CONFIG,
         "projection": {"type": "equalEarth"},
         "layer": [
             {"data": {"values": "@world", "format": {"type": "topojson", "feature": "countries"}},
              "mark": {"type": "geoshape", "fill": "#e8e8e8", "stroke": "white", "strokeWidth": 0.5}},
             {"data": {"values": "@world", "format": {"type": "topojson", "feature": "countries"}},
              "transform": [{"lookup": "id", "from": {"data": {"name": "table"}, "key": "numeric",
                                                      "fields": [value, name_field]}},
                            {"filter": f"isValid(datum['{value}'])"}],
              "mark": {"type": "geoshape", "stroke": "white", "strokeWidth": 0.5, "tooltip": True},
              "encoding": {"color": {"field": value, "type": "quantitative", "title": value_title,
                                     "scale": {"scheme": "blues"}},
                           "tooltip": [{"field": name_field, "title": " "},
                                       {"field": value, "type": "quantitative", "title": value_title,
                                        "format": ",d"}]}},
         ]}
    return s


def dot_compare(title: str, rows: list[dict], cat: str, val: str, metric: str, cat_title: str, val_title: str,
                metric_title: str, params: list, transform: list) -> dict:
    s = base(title, rows, height=max(120, 28 * len({r[cat] for r in rows})))
    s.update({"params": params, "transform": transform,
              "mark": {"type": "point", "filled": True, "size": 90, "tooltip": True},
              "encoding": {"y": {"field": cat, "type": "nominal", "title": None,
                                 # course names take less of a phone's width, leaving the dots room
                                 "axis": {"labelLimit": {"expr": "containerSize()[0] < 560 ? 130 : 220"}}},
                           "x": {"field": val, "type": "quantitative", "title": val_title,
                                 "axis": value_axis("%"), "scale": {"domain": [0, 1]}},
                           # the legend in one column, its height fixed: with the page's two-column rule
                           # (by plot width) the box kept the height of one layout and cut off the other's rows
                           "color": {"field": metric, "type": "nominal", "title": metric_title,
                                     "legend": {"columns": 1, "labelLimit": 300}},
                           "shape": {"field": metric, "type": "nominal", "title": metric_title},
                           "tooltip": [{"field": cat, "title": cat_title}, {"field": metric, "title": metric_title},
                                       {"field": val, "title": val_title, "format": ".1%"}]}})
    return s
