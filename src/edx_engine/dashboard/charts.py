"""Vega-Lite specs for the dashboard's charts (plain JSON; the Vega runtime ships with vl-convert).

Each spec carries its rows as the named dataset ``table`` so the page, the data table and the CSV
show the same numbers, and tests can read a rendered chart's data back from the Vega view.
"""

from __future__ import annotations

import json

SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"  # an identifier only: never fetched
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
CONFIG = {
    "range": {"category": OKABE_ITO},
    "font": "system-ui, -apple-system, 'Segoe UI', Roboto, 'Liberation Sans', sans-serif",
    "axis": {"labelFontSize": 11, "titleFontSize": 12, "labelLimit": 220},
    "legend": {"labelLimit": 260, "orient": "bottom", "columns": 2},
    "title": {"fontSize": 14, "anchor": "start"},
    "view": {"stroke": None},
    "bar": {"color": OKABE_ITO[0]},
    "line": {"color": OKABE_ITO[0]},
}


def base(title: str, rows: list[dict], height: int = 260, **extra) -> dict:
    # the title is the page's <h2>; ``description`` keeps it with the spec (PNG/SVG exports, screen readers)
    return {"$schema": SCHEMA, "description": title, "width": "container", "height": height, "autosize": {"type": "fit-x"},
            "datasets": {"table": rows}, "data": {"name": "table"}, "config": CONFIG, **extra}


def value_axis(fmt: str) -> dict:
    """The value axis. An integer format (``,d``) must not label fractional ticks: with at most 2
    learners Vega ticked every 0.2 and wrote 0, 0, 0, 1, 1 ... ``tickMinStep`` alone still leaves
    halves below about 3, whose labels are then left blank."""
    if not fmt.endswith("d"):
        return {"format": fmt}
    return {"format": fmt, "tickMinStep": 1, "labelExpr": "datum.value % 1 ? '' : datum.label"}


def hbar(title: str, rows: list[dict], cat: str, val: str, cat_title: str, val_title: str, *,
         order: str | None = None, fmt: str = ",d", tooltip: list | None = None) -> dict:
    """Horizontal bars (categories read easily at phone width); ``order`` a field to sort by, else by value."""
    sort = {"field": order, "order": "ascending"} if order else "-x"
    s = base(title, rows, height=max(80, 22 * len(rows)))
    s.update({"mark": {"type": "bar", "tooltip": True},
              "encoding": {"y": {"field": cat, "type": "nominal", "title": cat_title, "sort": sort},
                           "x": {"field": val, "type": "quantitative", "title": val_title,
                                 "axis": value_axis(fmt)},
                           "tooltip": tooltip or [{"field": cat, "title": cat_title},
                                                  {"field": val, "title": val_title, "format": fmt}]}})
    return s


def vbar(title: str, rows: list[dict], cat: str, val: str, cat_title: str, val_title: str, fmt: str = ",d") -> dict:
    s = base(title, rows, height=220)
    s.update({"mark": {"type": "bar", "tooltip": True},
              "encoding": {"x": {"field": cat, "type": "ordinal", "title": cat_title, "sort": None},
                           "y": {"field": val, "type": "quantitative", "title": val_title, "axis": value_axis(fmt)},
                           "tooltip": [{"field": cat, "title": cat_title},
                                       {"field": val, "title": val_title, "format": fmt}]}})
    return s


SHORT_SPAN_DAYS = 120  # below this, a date axis ticks days or weeks, labelled by day, not by month


def date_axis(rows: list[dict], x: str) -> dict:
    """The date axis for the span of ``rows``: months over a long span; over a short one, ticks at
    whole days (up to a month) or weeks, labelled by day. Vega ticked a two-week weekly series every
    12 hours, labelled "%b %Y": "Sep 2026" fifteen times."""
    import datetime as dt

    axis = {"format": "%b %Y", "labelOverlap": True}
    days = sorted(str(r[x])[:10] for r in rows if r.get(x) is not None)
    try:
        span = (dt.date.fromisoformat(days[-1]) - dt.date.fromisoformat(days[0])).days if days else None
    except ValueError:
        span = None
    if span is not None and span < SHORT_SPAN_DAYS:
        axis.update(format="%d %b", tickCount={"interval": "day" if span <= 31 else "week", "step": 1})
    return axis


def time_lines(title: str, rows: list[dict], x: str, y: str, color: str | None, x_title: str, y_title: str,
               color_title: str = "", *, bars: bool = False, stack: bool = False, params: list | None = None,
               transform: list | None = None, rules: list[dict] | None = None,
               color_order: list[str] | None = None) -> dict:
    """Lines (or stacked bars) over time; ``rules`` = [{"date": ..., "label": ...}] vertical markers;
    ``color_order``: the legend's (and the stack's) order of the ``color`` values."""
    enc = {"x": {"field": x, "type": "temporal", "title": x_title, "scale": {"type": "utc"},
                 "axis": date_axis(rows, x)},
           "y": {"field": y, "type": "quantitative", "title": y_title, "axis": value_axis(",d"),
                 **({"stack": "zero"} if stack else {})},
           "tooltip": [{"field": x, "type": "temporal", "title": x_title, "timeUnit": "utcyearmonthdate"},
                       {"field": y, "type": "quantitative", "title": y_title, "format": ",d"}]}
    if color:
        enc["color"] = {"field": color, "type": "nominal", "title": color_title,
                        **({"sort": color_order} if color_order else {})}
        if color_order and stack:  # the first of color_order at the bottom of each bar
            transform = [*(transform or []),
                         {"calculate": f"indexof({json.dumps(color_order)}, datum[{json.dumps(color)}])",
                          "as": "_stack"}]
            enc["order"] = {"field": "_stack", "type": "quantitative", "sort": "ascending"}
        enc["tooltip"].insert(0, {"field": color, "title": color_title})
    layer = {"mark": {"type": "bar", "tooltip": True} if bars else
             {"type": "line", "point": len(rows) <= 80, "tooltip": True},
             "encoding": enc}
    if params:
        layer["params"] = params
    if transform:
        layer["transform"] = transform
    s = base(title, rows, height=260)
    if not rules:
        s.update(layer)
        return s
    rule = {"data": {"values": rules},
            "mark": {"type": "rule", "strokeDash": [4, 4], "color": "#444"},
            "encoding": {"x": {"field": "date", "type": "temporal", "scale": {"type": "utc"}},
                         "tooltip": [{"field": "label"}]}}
    text = {"data": {"values": rules},
            "mark": {"type": "text", "align": "left", "dx": 3, "dy": -4, "baseline": "top", "color": "#444"},
            "encoding": {"x": {"field": "date", "type": "temporal", "scale": {"type": "utc"}},
                         "y": {"value": 0}, "text": {"field": "label"}}}
    s["layer"] = [layer, rule, text]
    return s


def choropleth(title: str, rows: list[dict], value: str, value_title: str, name_field: str) -> dict:
    """World map from the shipped TopoJSON (``@world`` is replaced by the page script with the
    map object of ``static/world.js``: file:// pages cannot fetch JSON)."""
    s = {"$schema": SCHEMA, "description": title, "width": "container", "height": 300, "autosize": {"type": "fit-x"},
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
              "encoding": {"y": {"field": cat, "type": "nominal", "title": None},
                           "x": {"field": val, "type": "quantitative", "title": val_title,
                                 "axis": {"format": "%"}, "scale": {"domain": [0, 1]}},
                           "color": {"field": metric, "type": "nominal", "title": metric_title},
                           "shape": {"field": metric, "type": "nominal", "title": metric_title},
                           "tooltip": [{"field": cat, "title": cat_title}, {"field": metric, "title": metric_title},
                                       {"field": val, "title": val_title, "format": ".1%"}]}})
    return s
