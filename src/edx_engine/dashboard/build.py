"""Build the static dashboard site from the built models.

Layout of the site (every page self-contained apart from the shared files in ``static/``)::

    index.html                    -> <lang>/index.html
    static/vega.js                the Vega, Vega-Lite and vega-embed bundle (from vl-convert, written once)
    static/world.js, dashboard.js, style.css
    <lang>/index.html             programme overview          (lang = es, en, pt)
    <lang>/course/<slug>.html     one page per course
    <lang>/comparison.html, <lang>/health.html
    <lang>/data/<page>-<chart>.csv  the numbers of every chart

Nothing is fetched at view time: the pages work from a file share (file://) as well as from any
static web server.
"""

from __future__ import annotations

import calendar
import csv
import dataclasses
import functools
import hashlib
import os
import datetime as dt
import io
import json
import shutil
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence
from pathlib import Path

import jinja2
import markupsafe
from markupsafe import Markup

from .. import _hooks as testhooks
from ..store.errors import is_disk_full
from ..store.files import exchange, file_lock
from ..store.lake import Lake
from . import charts as C
from ..age import AGE_BANDS
from .data import ALL, MERGED_DEMOGRAPHICS, REQUIRED_MODELS, Course, Dataset, Reader, SiteData, health
from .labels import (D3_FORMAT, LANG_NAMES, LANGS, OTHER, country_name, country_numeric, d3_time_locale, fmt_date,
                     fmt_datetime, fmt_int, fmt_num, fmt_pct, label)
from .texts import t

STATIC = Path(__file__).parent / "static"
TEMPLATES = Path(__file__).parent / "templates"
NUMERIC = ("count", "volume", "number", "share", "decimal", "seconds")


class DashboardError(Exception):
    pass


@dataclass
class SiteResult:
    out_dir: Path
    pages: list[Path] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    largest_page: tuple[str, int] = ("", 0)
    seconds: float = 0.0
    public: bool = False
    reused: int = 0  # pages taken over unchanged from the site being replaced

    def index(self, lang: str = "es") -> Path:
        return self.out_dir / lang / "index.html"

    def one_line(self) -> str:
        kind = "public " if self.public else ""
        same = f", {self.reused} unchanged" if self.reused else ""
        return (f"{kind}dashboard: {len(self.pages)} pages{same}, {self.files} files, {self.bytes / 2**20:.1f} MB in "
                f"{self.out_dir} ({self.seconds:.1f} s); open {self.out_dir / 'index.html'}")


@dataclass
class Item:
    """A chart (``spec``) or a table, with its numbers (``rows``) for the data table and the CSV."""
    id: str
    title: str
    caption: str
    columns: list[tuple[str, str]]  # (field, kind)
    rows: list[dict]
    spec: dict | None = None
    csv: str = ""
    wide: bool = False
    sortable: bool = False
    hidden: bool | None = None  # whether some of its counts are hidden (None: read from ``rows``)
    # the text key saying that everything it would draw is hidden: "all_hidden" (each count below k or a
    # complement), "all_small" only where its suppression rule hides nothing else (texts.py)
    hidden_msg: str = "all_hidden"
    empty: str = ""  # the message that replaces a chart with no value to draw (``settle``)

    @property
    def period(self) -> str:
        """The caption's sentence on the period its chart shows by default (``chart_window``)."""
        return ((self.spec or {}).get("usermeta") or {}).get("period_notes", {}).get("recent", "")


# -- freshness --------------------------------------------------------------------------------------

def check_models(lake: Lake) -> list[str]:
    """Raise DashboardError (one line, with the command to run) if the models are missing or stale."""
    if not lake.catalog_path.exists():
        raise DashboardError(f"no store at {lake.root}: run `edx-engine import` and `edx-engine build` first")
    with lake.connect(read_only=True) as con:
        built = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE schema_name = 'models'")
                 .fetchall()}
    missing = [m for m in REQUIRED_MODELS if m not in built]
    if missing:
        raise DashboardError(f"the models are not built ({', '.join(missing[:4])}"
                             f"{' …' if len(missing) > 4 else ''} missing): run `edx-engine build` first")
    from ..models import build as B

    stale = B.stale_models(lake)
    if stale:
        raise DashboardError(f"the models are older than the data ({', '.join(stale[:4])}"
                             f"{' …' if len(stale) > 4 else ''}): run `edx-engine build` first")
    return stale


# -- gathering ----------------------------------------------------------------------------------------

def gather(lake: Lake, public: bool, k: int, courses: list[str] | None) -> SiteData:
    wanted = set(courses) if courses else None
    with lake.connect(read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        known = {r[0] for r in con.execute("SELECT course_id FROM models.courses").fetchall()}
        if wanted and wanted - known:
            raise DashboardError(f"unknown course(s): {', '.join(sorted(wanted - known))} "
                                 f"(courses: {', '.join(sorted(known)[:10])})")
        r = Reader(con, public, k, wanted)
        clist = r.course_list()
        summary = r.model("course_summary", "course_summary")
        general = r.model("general_report", "general_report")
        sd = SiteData(public, k, clist, r.headline(summary, general))
        built = con.execute("SELECT max(built_at) FROM _edx_models").fetchone()[0]
        sd.built_at = built
        weekly = r.enrolments_weekly()
        sd.enrol_last = r.enrolments_last_day()
        monthly = None if public else r.enrolments_monthly()
        active = r.model("activity_weekly", "activity_weekly")
        forum = r.model("forum_weekly", "forum_weekly")
        breakdown = r.breakdown()
        demo = r.learners_demographics()
        certs, grades, ages = r.cert_status(), r.grades(), r.age_bands()
        order = r.structure_order()
        videos, problems = r.videos(order), r.problems(order)
        median = r.median_days()
        sd.health = health(con, wanted, [])
    sd.overview = {"general": _ds("general", general), "weekly": _ds("weekly", weekly),
                   "active": _ds("active", active), **{k_: _ds(k_, v) for k_, v in demo.items()}}
    if monthly is not None:
        sd.overview["monthly"] = _ds("monthly", monthly)
    per = {c.course_id: {} for c in clist}
    for name, tab in (("summary", summary), ("weekly", weekly), ("active", active), ("forum", forum),
                      ("breakdown", breakdown), ("certs", certs), ("grades", grades), ("ages", ages),
                      ("videos", videos), ("problems", problems)):
        rows = tab.to_pylist() if tab.num_rows else []
        from .data import _iso  # dates as ISO strings
        for row in rows:
            if row.get("course_id") in per:
                per[row["course_id"]].setdefault(name, []).append({k_: _iso(v) for k_, v in row.items()})
    sd.per_course = per
    sd.comparison = Dataset("comparison", [], [dict(s, median_days=median.get(s["course_id"]))
                                               for s in per_summary(summary)])
    return sd


def _ds(name: str, tab) -> Dataset:
    from .data import _rows

    return Dataset(name, [], _rows(tab) if tab.num_rows else [])


def per_summary(summary) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "suppressed"} for r in summary.to_pylist()]


# -- pages -----------------------------------------------------------------------------------------

def _div(a, b):
    return None if a is None or not b else round(a / b, 6)


def _cname(c: Course, n: int = 48) -> str:
    return c.name if len(c.name) <= n else c.name[: n - 1] + "…"


def _next_week(d: dt.date) -> dt.date:
    """The week after ``d`` (``date.max`` past the last week a date can hold: a value dated 9999-12-31)."""
    return d + dt.timedelta(days=7) if d <= dt.date.max - dt.timedelta(days=7) else dt.date.max


def _next_month(d: dt.date) -> dt.date:
    """The first day of the month after ``d`` (``date.max`` after December 9999)."""
    return dt.date(d.year + d.month // 12, d.month % 12 + 1, 1) if (d.year, d.month) < (9999, 12) else dt.date.max


def zero_filled(rows: list[dict], key: str, step: Callable[[dt.date], dt.date],
                value: str = "enrollments", line: str = "course") -> list[dict]:
    """``rows`` (``line``, ``key`` an ISO date, ``value``) plus a row of 0 for every step between each
    line's first and last date that has none: a line chart joins the points it is given, so a week
    without enrolments must be a 0, not the line between its neighbours. (Absent already meant 0: a
    public site shows nothing more.)"""
    have: dict[str, set[str]] = {}
    for r in rows:
        have.setdefault(r[line], set()).add(r[key])
    out = list(rows)
    for name, dates in have.items():
        d, last = dt.date.fromisoformat(min(dates)), dt.date.fromisoformat(max(dates))
        while (d := step(d)) < last:
            if d.isoformat() not in dates:
                out.append({line: name, key: d.isoformat(), value: 0})
    return sorted(out, key=lambda r: (r[line], r[key]))


RECENT_MONTHS = 12  # a long history opens on its last 12 months...
LONG_MONTHS = 15  # ...when it spans more than this


def _months_before(d: dt.date, n: int) -> dt.date:
    """The same day ``n`` months before ``d`` (the month's last day where it has fewer days)."""
    y, m = divmod(d.year * 12 + d.month - 1 - n, 12)
    return dt.date(y, m + 1, min(d.day, calendar.monthrange(y, m + 1)[1]))


def _dates(rows: list[dict], key: str) -> list[dt.date]:
    return sorted(C.as_date(r[key]) for r in rows if r.get(key) not in (None, ALL))


def page_window(lang: str, *series: tuple[list[dict], str]) -> C.Window | None:
    """The period switch of a page whose charts over time (``series``: rows and their date field)
    span more than ``LONG_MONTHS``: their last ``RECENT_MONTHS``, ending at the latest date of the
    data (not today: a store not synced for a while still opens on its data); else None. One course
    from 2015 spread the programme's axis over 11 years, today's courses squeezed at its right edge."""
    days = sorted(d for rows, key in series for d in _dates(rows, key))
    if not days or days[0] >= _months_before(days[-1], LONG_MONTHS):
        return None
    return C.Window(_months_before(days[-1], RECENT_MONTHS), days[-1],
                    (t("window_recent", lang), t("window_all", lang)), t("window", lang))


def chart_window(page: C.Window | None, rows: list[dict], key: str, lang: str) -> C.Window | None:
    """``page``'s switch for a chart of ``rows`` (dates in ``key``), with the caption's sentence for
    each option; None for a chart without dates both before and inside the window (both options
    would show the same)."""
    days = _dates(rows, key)
    if page is None or not days or days[0] > page.since or days[-1] <= page.since:
        return None
    end = fmt_date(page.last, lang)
    return dataclasses.replace(page, notes={
        "recent": t("x_window_recent", lang, start=fmt_date(page.since + dt.timedelta(days=1), lang), end=end),
        "all": t("x_window_all", lang, first=fmt_date(days[0], lang), end=end)})


TOP_COURSES = 7  # courses drawn as their own line in a programme chart; the rest are one line (8 colours)


def line_names(courses: list[Course], reserved: Sequence[str] = ()) -> dict[str, str]:
    """Each course's label in the programme charts: its (shortened) name, made longer where two
    courses share it (re-runs of a course keep its name) or where it is a ``reserved`` label
    ("Other n courses"): with its run, then its code and run, then its whole id. Labels are
    unique: a chart draws one line per label."""
    def short(c: Course) -> str:
        return c.name  # whole: the CSV and Data tables carry it; the legend cuts it to its width

    def key(c: Course) -> str:
        return c.course_id.split(":", 1)[-1].replace("/", "+")

    ways = [lambda c: c.name, lambda c: f"{short(c)} ({key(c).rsplit('+', 1)[-1]})",
            lambda c: f"{short(c)} ({'+'.join(key(c).split('+')[-2:])})", lambda c: f"{short(c)} ({c.course_id})"]
    names: dict[str, str] = {}
    pending = list(courses)
    for way in ways:
        labels = {c.course_id: way(c) for c in pending}
        seen: dict[str, int] = {}
        for c in courses:
            label = names.get(c.course_id) or labels[c.course_id]
            seen[label] = seen.get(label, 0) + 1
        clash = [c for c in pending if seen[labels[c.course_id]] > 1 or labels[c.course_id] in reserved]
        for c in pending:
            if c not in clash or way is ways[-1]:
                names[c.course_id] = labels[c.course_id]
        pending = [c for c in clash if c.course_id not in names]
        if not pending:
            break
    return names


def top_lines(rows: list[dict], value: str, lines: Sequence[str], top: int = TOP_COURSES) -> list[str] | None:
    """The ``top`` of ``lines`` with the largest sums of ``value`` in ``rows``, largest first (ties
    by name; a line without rows counts 0), or None when all ``lines`` fit in one chart (``top`` + 1
    at most)."""
    if len(lines) <= top + 1:
        return None
    totals = dict.fromkeys(lines, 0)
    for r in rows:
        totals[r["course"]] = totals.get(r["course"], 0) + (r[value] or 0)
    return sorted(totals, key=lambda c: (-totals[c], c))[:top]


def carried_forward(rows: list[dict], key: str, value: str, step: Callable[[dt.date], dt.date]) -> list[dict]:
    """Cumulative ``rows`` with each line's last value repeated up to the last date of all lines: a
    course whose enrolments stopped still holds its total (in stacked bars, else the bars would fall;
    in lines, else a course without enrolments in the last 12 months left the chart and its legend)."""
    last: dict[str, dict] = {}
    for r in rows:
        if r["course"] not in last or r[key] > last[r["course"]][key]:
            last[r["course"]] = r
    end = max((r[key] for r in rows), default=None)
    out = list(rows)
    for name, r in last.items():
        d = dt.date.fromisoformat(r[key])
        while (d := step(d)).isoformat() <= end:
            out.append({"course": name, key: d.isoformat(), value: r[value]})
    return sorted(out, key=lambda r: (r["course"], r[key]))


def fold_others(rows: list[dict], key: str, value: str, keep: "set[str] | list[str] | None", other: str) -> list[dict]:
    """The kept courses' rows as they are and the others' summed per date into one line ``other``.

    Only the values given are summed: in a public site a hidden count (None) is left out, so the line
    is a function of what the site publishes anyway; a date whose every value is hidden has none."""
    if keep is None:
        return rows
    keep = set(keep)
    out, sums = [], {}
    for r in rows:
        if r["course"] in keep:
            out.append(r)
        else:
            have = sums.setdefault(r[key], None)
            if r[value] is not None:
                sums[r[key]] = (have or 0) + r[value]
    out += [{"course": other, key: d, value: v} for d, v in sums.items()]
    return sorted(out, key=lambda r: (r["course"], r[key]))


def overview_items(sd: SiteData, lang: str) -> list[Item]:
    # a large programme: the top courses and one line for the rest (200 lines make neither a chart
    # nor a page one can open: 11.6 MB at 200 courses and a year)
    n_other = len(sd.courses) - TOP_COURSES
    other = t("other_courses", lang, n=n_other)
    names = line_names(sd.courses, reserved=[other])
    ov = sd.overview
    items: list[Item] = []
    weekly = zero_filled([{"course": names.get(r["course_id"], r["course_id"]), "week": r["week"],
                           "enrollments": r["enrollments"]}
                          for r in ov["weekly"].rows if r["mode"] == ALL and r["week"] != ALL and r["course_id"] in names],
                         "week", _next_week)
    keep = top_lines(weekly, "enrollments", list(names.values()))
    folded = "" if keep is None else t("x_top_courses", lang, top=len(keep), n=n_other, other=other) + \
        (t("x_top_public", lang) if sd.public else "")
    # folded: stacked bars (the top courses from the bottom, the others on top): the bars' height is
    # the programme's, and the others' sum, larger than any one course, does not flatten their lines
    folded_chart = {} if keep is None else {"bars": True, "stack": True, "color_order": [*keep, other]}
    if keep is not None:  # (the others' line gets its zeros too)
        weekly = zero_filled(fold_others(weekly, "week", "enrollments", keep, other), "week", _next_week)
    wcols = [("course", "text"), ("week", "date"), ("enrollments", "count")]
    act = fold_others([{"course": names.get(r["course_id"], r["course_id"]), "week": r["week"],
                        "active_learners": r["active_learners"]} for r in ov["active"].rows if r["course_id"] in names],
                      "week", "active_learners", keep, other)
    page = page_window(lang, (weekly, "week"), (act, "week"))
    if "monthly" in ov:  # not in public sites: months and weeks together would give hidden weeks back
        monthly = zero_filled([{"course": names.get(r["course_id"], r["course_id"]), "month": r["month"],
                                "enrollments": r["enrollments"]} for r in ov["monthly"].rows if r["course_id"] in names],
                              "month", _next_month)
        if keep is not None:
            monthly = zero_filled(fold_others(monthly, "month", "enrollments", keep, other), "month", _next_month)
        rows = [dict(r, grain=t("week", lang), date=r["week"]) for r in weekly] + \
               [{"course": r["course"], "grain": t("month", lang), "date": r["month"], "enrollments": r["enrollments"]}
                for r in monthly]
        grain = {"name": "grain", "value": t("week", lang),
                 "bind": {"input": "radio", "options": [t("week", lang), t("month", lang)], "name": t("grain", lang) + " "}}
        spec = C.time_lines(t("c_enrol_time", lang), rows, "date", "enrollments", "course", t("date", lang),
                            t("enrollments", lang), t("course", lang), params=[grain],
                            transform=[{"filter": "datum.grain == grain"}],
                            window=chart_window(page, rows, "date", lang), **folded_chart)
        # the heading follows the switch (static/dashboard.js): "per month" when months are shown
        spec.setdefault("usermeta", {})["grain_titles"] = {t("week", lang): t("c_enrol_time", lang),
                                                           t("month", lang): t("c_enrol_month", lang)}
        items.append(Item("enrol_time", t("c_enrol_time", lang), t("x_enrol_time", lang) + folded
                          + partial_enrolments(sd, lang, months=True),
                          [("course", "text"), ("grain", "text"), ("date", "date"), ("enrollments", "count")],
                          [{k: r.get(k) for k in ("course", "grain", "date", "enrollments")} for r in rows], spec,
                          wide=True))
        cum, run = [], {}
        for r in sorted(weekly, key=lambda r: (r["course"], r["week"])):
            run[r["course"]] = run.get(r["course"], 0) + (r["enrollments"] or 0)
            cum.append({"course": r["course"], "week": r["week"], "cumulative": run[r["course"]]})
        # every course's total held to the last week: one whose enrolments stopped before the window
        # would otherwise leave the chart and its legend, and stacked bars would fall
        cum = carried_forward(cum, "week", "cumulative", _next_week)
        items.append(Item("enrol_cum", t("c_enrol_cum", lang), t("x_enrol_cum", lang) + folded,
                          [("course", "text"), ("week", "date"), ("cumulative", "count")], cum,
                          C.time_lines(t("c_enrol_cum", lang), cum, "week", "cumulative", "course", t("week", lang),
                                       t("cumulative", lang), t("course", lang),
                                       window=chart_window(page, cum, "week", lang), **folded_chart), wide=True))
    else:
        items.append(Item("enrol_time", t("c_enrol_time", lang), t("x_enrol_time", lang) + folded
                          + partial_enrolments(sd, lang, months=False), wcols, weekly,
                          C.time_lines(t("c_enrol_time", lang), weekly, "week", "enrollments", "course",
                                       t("week", lang), t("enrollments", lang), t("course", lang),
                                       window=chart_window(page, weekly, "week", lang), **folded_chart),
                          wide=True))
    items.append(Item("active_weekly", t("c_active_weekly", lang),
                      t("x_active_weekly", lang) + folded + (t("x_active_stacked", lang) if keep else "")
                      + partial_weeks(sd, lang),
                      [("course", "text"), ("week", "date"), ("active_learners", "count")], act,
                      C.time_lines(t("c_active_weekly", lang), act, "week", "active_learners", "course",
                                   t("week", lang), t("active_learners", lang), t("course", lang),
                                   window=chart_window(page, act, "week", lang), **folded_chart),
                      wide=True))
    by_id = {c.course_id: c for c in sd.courses}
    table = []
    for r in ov["general"].rows:
        c = by_id.get(r["course_id"])
        if c is None:
            continue
        table.append({"course_name": c.name, "course_id": r["course_id"], "sme": r.get("sme"),
                      "start_date": r.get("start_date"), "end_date": r.get("end_date"),
                      **{k: r.get(k) for k in ("total", "active", "approved", "certified", "failed", "male", "female",
                                               "other_unknown")},
                      "countries": r.get("countries"), "_href": f"course/{c.slug}.html"})
    items.append(Item("course_table", t("c_course_table", lang), t("x_course_table", lang),
                      [("course_name", "link"), ("course_id", "text"), ("sme", "text"), ("start_date", "date"),
                       ("end_date", "date"), ("total", "count"), ("active", "count"), ("approved", "count"),
                       ("certified", "count"), ("failed", "count"), ("male", "count"), ("female", "count"),
                       ("other_unknown", "count"), ("countries", "number")], table, wide=True, sortable=True))
    items += country_items("", ov["country"].rows, lang, map_=True, merged="country" in MERGED_DEMOGRAPHICS)
    # (internal sites merge nothing: their "other" education is edX's own code)
    items += demographic_items("", ov["gender"].rows, ov["level_of_education"].rows, ov["age_band"].rows, lang,
                               merged=MERGED_DEMOGRAPHICS if sd.public else ())
    return items


def country_items(prefix: str, rows: list[dict], lang: str, map_: bool, merged: bool = False) -> list[Item]:
    """The map (``map_``) and the top 20 countries; ``merged``: small countries were merged into "other"
    (``merge_small``), so a hidden count is below k (else it may be a complement: ``Item.hidden_msg``)."""
    rows = [{"country": country_name(r["country"], lang), "code": r["country"],
             "numeric": country_numeric(r["country"]) if r["country"] not in ("unknown", OTHER) else None,
             "learners": r["learners"]} for r in rows]
    # the 20 countries with the most learners, then "not stated" and "other (small groups)", which are
    # not countries: shown after them, never ranked among them
    shown = [r for r in rows if r["learners"] is not None]
    # (ties by code: the store's row order is not fixed, and the top 20 is the same in every language)
    top = sorted([r for r in shown if r["code"] not in ("unknown", OTHER)],
                 key=lambda r: (-r["learners"], r["code"]))[:20]
    top += sorted([r for r in shown if r["code"] in ("unknown", OTHER)], key=lambda r: r["code"] == OTHER)
    for i, r in enumerate(top):
        r["_order"] = i
    items = []
    if map_:
        mrows = [r for r in rows if r["numeric"] and r["learners"]]
        # public: countries under k are merged into "Other (small groups)" or hidden, never mapped
        merged = any(r["learners"] is None or (r["code"] == OTHER and r["learners"]) for r in rows)
        items.append(Item(prefix + "map", t("c_map", lang), t("x_map", lang),
                          [("country", "text"), ("learners", "count")], sorted(rows, key=lambda r: r["country"]),
                          C.choropleth(t("c_map", lang), mrows, "learners", t("learners", lang), "country"),
                          wide=True, hidden=merged or None, hidden_msg="map_hidden"))
    cid = "top_countries" if map_ else "countries"
    hidden = any(r["learners"] is None for r in rows)  # the top 20 hold only shown counts
    items.append(Item(prefix + cid, t("c_top_countries" if map_ else "c_country_course", lang),
                      t("x_top_countries" if map_ else "x_country_course", lang),
                      [("country", "text"), ("learners", "count")], top,
                      C.hbar(t("c_top_countries" if map_ else "c_country_course", lang), top, "country", "learners",
                             t("country", lang), t("learners", lang), order="_order", hidden=t("hidden", lang)),
                      hidden=hidden,
                      hidden_msg="all_small" if merged else "all_hidden"))
    return items


def _labelled(rows: list[dict], col: str, kind: str, lang: str, order: list[str] | None = None,
              merged: bool = False) -> list[dict]:
    out = [{col: label(kind, r[col], lang, merged), "learners": r["learners"], "_code": r[col]} for r in rows]
    if order:
        pos = {c: i for i, c in enumerate(order)}
        out.sort(key=lambda r: pos.get(r["_code"], len(pos)))
    for i, r in enumerate(out):
        r["_order"] = i
    return out


def demographic_items(prefix: str, gender: list, edu: list, ages: list, lang: str,
                      merged: Sequence[str] = ()) -> list[Item]:
    """Learners by gender, education and age band; ``merged``: those of these columns whose small
    categories were merged (``merge_small``: a hidden count is below k, ``Item.hidden_msg``)."""
    items = []
    for key, col, kind, rows, order in (("gender", "gender", "gender", gender, ["f", "m", "o", OTHER, "unknown"]),
                                        ("education", "level_of_education", "level_of_education", edu, None),
                                        ("age", "age_band", "age_band", ages, list(AGE_BANDS) + ["unknown"])):
        lr = _labelled(rows, col, kind, lang, order, merged=col in merged)
        data = [{col: r[col], "learners": r["learners"], "_order": r["_order"]} for r in lr]
        spec = C.hbar(t("c_" + key, lang), data, col, "learners", t(col, lang), t("learners", lang),
                      order="_order" if order else None, hidden=t("hidden", lang))
        items.append(Item(prefix + key, t("c_" + key, lang), t("x_" + key, lang), [(col, "text"), ("learners", "count")],
                          data, spec, hidden_msg="all_small" if col in merged else "all_hidden"))
    return items


def course_items(sd: SiteData, c: Course, lang: str) -> list[Item]:
    d = sd.per_course.get(c.course_id, {})
    items: list[Item] = []
    wk = [r for r in d.get("weekly", []) if r["week"] != ALL and r["mode"] != ALL]
    rows = zero_filled([{"week": r["week"], "mode": label("mode", r["mode"], lang), "enrollments": r["enrollments"]}
                        for r in wk], "week", _next_week, line="mode")
    rules = [{"date": x, "label": t(lbl, lang)} for x, lbl in ((c.start, "start_date"), (c.end, "end_date")) if x]
    act = [{"week": r["week"], "active_learners": r["active_learners"]} for r in d.get("active", [])]
    forum = [{"week": r["week"], "posts": r["posts"], "authors": r["authors"]} for r in d.get("forum", [])]
    page = page_window(lang, (rows, "week"), (act, "week"), (forum, "week"))  # a course open for years
    items.append(Item("enrol_mode", t("c_enrol_mode", lang), t("x_enrol_mode", lang),
                      [("week", "date"), ("mode", "text"), ("enrollments", "count")], rows,
                      C.time_lines(t("c_enrol_mode", lang), rows, "week", "enrollments", "mode", t("week", lang),
                                   t("enrollments", lang), t("mode", lang), bars=True, stack=True, rules=rules,
                                   window=chart_window(page, rows, "week", lang)),
                      wide=True))
    items.append(Item("active_weekly", t("c_active_weekly", lang), t("x_active_weekly", lang)
                      + partial_weeks(sd, lang, c.course_id),
                      [("week", "date"), ("active_learners", "count")], act,
                      C.time_lines(t("c_active_weekly", lang), act, "week", "active_learners", None, t("week", lang),
                                   t("active_learners", lang), window=chart_window(page, act, "week", lang)),
                      wide=True))
    s = (d.get("summary") or [{}])[0]
    funnel = [{"stage": t(k, lang), "learners": s.get(src), "_order": i}
              for i, (k, src) in enumerate((("total", "enrolled"), ("active", "active"), ("explored", "explored"),
                                            ("approved", "approved"), ("certified", "certified")))]
    items.append(Item("funnel", t("c_funnel", lang), t("x_funnel", lang), [("stage", "text"), ("learners", "count")],
                      funnel, C.hbar(t("c_funnel", lang), funnel, "stage", "learners", t("stage", lang),
                                     t("learners", lang), order="_order", hidden=t("hidden", lang))))
    certs = [{"cert_status": label("cert_status", r["cert_status"], lang), "learners": r["learners"]}
             for r in d.get("certs", [])]
    items.append(Item("certs", t("c_cert", lang), t("x_cert", lang), [("cert_status", "text"), ("learners", "count")],
                      certs, C.hbar(t("c_cert", lang), certs, "cert_status", "learners", t("cert_status", lang),
                                    t("learners", lang), hidden=t("hidden", lang))))
    grades = [{"grade_from": fmt_num(r["grade_from"], lang, 1), "learners": r["learners"]} for r in d.get("grades", [])]
    items.append(Item("grades", t("c_grades", lang), t("x_grades", lang), [("grade_from", "text"),
                                                                           ("learners", "count")], grades,
                      C.vbar(t("c_grades", lang), grades, "grade_from", "learners", t("grade_from", lang),
                             t("learners", lang), hidden=t("hidden", lang))))
    bd = d.get("breakdown", [])
    dims = {dim: [{dim: r["value"], "learners": r["learners"]} for r in bd if r["country"] == ALL
                  and r["dimension"] == dim] for dim in ("gender", "level_of_education", "country")}
    dims["level_of_education"].sort(key=lambda r: (-(r["learners"] or 0), str(r["level_of_education"])))
    ages = [{"age_band": r["age_band"], "learners": r["learners"]} for r in d.get("ages", [])]
    items += demographic_items("", dims["gender"], dims["level_of_education"], ages, lang)
    items += country_items("", dims["country"], lang, map_=False)
    items.append(country_detail(bd, lang))
    vids = [{"position": r["position"] + 1 if r["position"] < 1 << 29 else None, "title": r["title"],
             "viewers": r["viewers"], "plays": r["plays"], "completers": r["completers"],
             "completion": _div(r["completers"], r["viewers"])} for r in d.get("videos", [])]
    vchart = _numbered(vids)
    items.append(Item("videos", t("c_videos", lang), t("x_videos", lang),
                      [("position", "number"), ("title", "text"), ("viewers", "count"), ("plays", "volume"),
                       ("completers", "count"), ("completion", "share")], vids,
                      C.hbar(t("c_videos", lang), vchart, "label", "viewers", t("title", lang), t("viewers", lang),
                             order="_order", hidden=t("hidden", lang)), wide=True))
    probs = [{"position": r["position"] + 1 if r["position"] < 1 << 29 else None, "title": r["title"],
              "learners": r["learners"], "submissions": r["submissions"], "learners_correct": r["learners_correct"],
              "share_correct": _div(r["learners_correct"], r["learners"])} for r in d.get("problems", [])]
    pchart = _numbered(probs)
    items.append(Item("problems", t("c_problems", lang), t("x_problems", lang),
                      [("position", "number"), ("title", "text"), ("learners", "count"), ("submissions", "volume"),
                       ("learners_correct", "count"), ("share_correct", "share")], probs,
                      C.hbar(t("c_problems", lang), pchart, "label", "learners", t("title", lang), t("tried", lang),
                             order="_order", hidden=t("hidden", lang)), wide=True))
    items.append(Item("forum", t("c_forum", lang), t("x_forum", lang),
                      [("week", "date"), ("posts", "volume"), ("authors", "count")], forum,
                      C.time_lines(t("c_forum", lang), forum, "week", "posts", None, t("week", lang),
                                   t("posts", lang), bars=True, window=chart_window(page, forum, "week", lang)),
                      wide=True))
    return items


def _numbered(rows: list[dict]) -> list[dict]:
    """Videos or problems (in course order) numbered 1, 2, 3... in the table, its CSV and the chart's
    labels alike ("position" was the place among every block of the course: 1, 4, 6...); one whose
    place in the course is unknown has no number."""
    n = 0
    for r in rows:
        if r["position"] is not None:
            n += 1
            r["position"] = n
    return [dict(r, label=f"{r['position']}. {r['title']}" if r["position"] is not None else r["title"], _order=i)
            for i, r in enumerate(rows)]


def country_detail(bd: list[dict], lang: str) -> Item:
    """The original course report per country: learners, women, men, other / not stated."""
    total = {r["value"]: r["learners"] for r in bd if r["country"] == ALL and r["dimension"] == "country"}
    g: dict[str, dict[str, list]] = {}
    for r in bd:
        if r["country"] != ALL and r["dimension"] == "gender":
            key = r["value"] if r["value"] in ("f", "m") else "other_unknown"
            g.setdefault(r["country"], {}).setdefault(key, []).append(r["learners"])

    def add(vals):
        return None if vals is None or any(v is None for v in vals) else sum(vals)

    rows = []
    for code, n in sorted(total.items(), key=lambda x: (-(x[1] or 0), str(x[0]))):  # ties by code, as the top 20
        # no gender row at all: a country the public breakdown does not detail (under 2k learners),
        # so its women and men are hidden, not zero; with rows, a missing value is a true zero
        parts = g.get(code)
        split = {key: None if parts is None else add(parts.get(key, [0])) for key in ("f", "m", "other_unknown")}
        rows.append({"country": country_name(code, lang), "learners": n, "female": split["f"],
                     "male": split["m"], "other_unknown": split["other_unknown"]})
    return Item("country_detail", t("c_country_detail", lang), t("x_country_detail", lang),
                [("country", "text"), ("learners", "count"), ("female", "count"), ("male", "count"),
                 ("other_unknown", "count")], rows, None, wide=True, sortable=True)


def comparison_items(sd: SiteData, lang: str) -> list[Item]:
    names = {c.course_id: c for c in sd.courses}
    labels = line_names(sd.courses)  # re-runs sharing a name: one row each in the chart
    rows, long = [], []
    for s in sd.comparison.rows:
        c = names.get(s["course_id"])
        if c is None:
            continue
        year = (c.start or "")[:4] or "–"
        r = {"course_name": c.name, "sme": c.sme or "–", "year": year, "enrolled": s.get("enrolled"),
             "r_active": _div(s.get("active"), s.get("enrolled")), "r_passed": _div(s.get("approved"), s.get("active")),
             "r_certified": _div(s.get("certified"), s.get("enrolled")), "median_days": s.get("median_days"),
             "_href": f"course/{c.slug}.html"}
        rows.append(r)
        for m in ("r_active", "r_passed", "r_certified"):
            long.append({"course": labels[c.course_id], "indicator": t(m, lang), "rate": r[m], "sme": r["sme"],
                         "year": year})
    smes = sorted({r["sme"] for r in rows})
    years = sorted({r["year"] for r in rows})
    all_ = t("all", lang)
    # a course without a department is "–" in the table; the filter names it
    dept_labels = [all_] + [t("no_department", lang) if d == "–" else d for d in smes]
    params = [{"name": "dept", "value": all_, "bind": {"input": "select", "options": [all_] + smes,
                                                        "labels": dept_labels, "name": t("sme", lang) + " "}},
              {"name": "period", "value": all_, "bind": {"input": "select", "options": [all_] + years,
                                                          "name": t("period", lang) + " "}}]
    transform = [{"filter": f"(dept == '{all_}' || datum.sme == dept) && (period == '{all_}' || datum.year == period)"}]
    spec = C.dot_compare(t("c_compare", lang), long, "course", "rate", "indicator", t("course", lang),
                         t("rate", lang), t("indicator", lang), params, transform)
    return [Item("compare", t("c_compare", lang), t("x_compare", lang),
                 [("course", "text"), ("indicator", "text"), ("rate", "share"), ("sme", "text"), ("year", "text")],
                 long, spec, wide=True),
            Item("compare_table", t("c_compare_table", lang), t("x_compare_table", lang),
                 [("course_name", "link"), ("sme", "text"), ("year", "text"), ("enrolled", "count"),
                  ("r_active", "share"), ("r_passed", "share"), ("r_certified", "share"), ("median_days", "decimal")],
                 rows, wide=True, sortable=True)]


def health_items(sd: SiteData, lang: str) -> list[Item]:
    h = sd.health
    names = {c.course_id: c.name for c in sd.courses}
    sync = [{"what": t(r["what"], lang), "when": r["when"], "status": r["status"] or ""} for r in h["sync"].rows]
    # the course's name next to its id (the column headed "Course id" showed names)
    cd = [dict(r, course_name=names.get(r["course_id"], r["course_id"])) for r in h["course_days"].rows]
    cd_cols = [("course_name", "text"), *h["course_days"].columns]
    q = h["quarantine"].rows
    items = [Item("sync", t("c_sync", lang), t("x_sync", lang), h["sync"].columns, sync),
             Item("log_days", t("c_log_days", lang), t("x_log_days", lang), h["log_days"].columns, h["log_days"].rows),
             Item("course_days", t("c_course_days", lang), t("x_course_days", lang), cd_cols, cd,
                  wide=True, sortable=True),
             Item("quarantine", t("c_quarantine", lang), t("x_quarantine", lang), h["quarantine"].columns, q,
                  C.hbar(t("c_quarantine", lang), [dict(r, label=f"{r['kind']}: {r['reason']}") for r in q],
                         "label", "lines", t("reason", lang), t("lines", lang)) if q else None, wide=True),
             Item("models", t("c_models", lang), t("x_models", lang), h["models"].columns,
                  [dict(r, stale=t(r["stale"], lang)) for r in h["models"].rows], wide=True, sortable=True)]
    return items


# -- charts with nothing to draw --------------------------------------------------------------------------

LOG_ITEMS = ("active_weekly", "videos", "problems")  # charts made from the tracking logs only


def _value_field(spec: dict) -> str | None:
    """The field a chart draws as its quantity (bar length, line height, map colour)."""
    for enc in [spec.get("encoding")] + [layer.get("encoding") for layer in spec.get("layer", [])]:
        for ch in ("x", "y", "color"):
            e = (enc or {}).get(ch)
            if e and e.get("type") == "quantitative" and "field" in e:
                return e["field"]
    return None


def settle(items: list[Item], lang: str, public: bool, k: int, has_logs: bool = True) -> list[Item]:
    """Replace every chart without a value to draw by a message, and say where counts are left out.

    A chart whose values are all hidden, zero or absent drew bare axes (a lone "0" tick, a map legend
    reading "NaN", Vega's "Infinite extent" warnings): it becomes a sentence saying why it is empty:
    every count is hidden (public sites: ``Item.hidden_msg``, below k or a complement), no tracking logs
    have been received (charts made from them), or no data yet. A chart over time with some hidden weeks
    says in its caption that those weeks are left out, so its visible points (zeros among them) are not
    read as the course's total. What the texts say of hidden counts holds for every cell of the chart and
    depends on its suppression rule only: which hidden cell is small must not show."""
    for it in items:
        if it.spec is None:
            continue
        f = _value_field(it.spec)
        if f is None:
            continue
        drawn = it.spec.get("datasets", {}).get("table", [])
        hidden = it.hidden if it.hidden is not None else \
            public and any(f in r and r[f] is None for r in [*it.rows, *drawn])
        if not any(r.get(f) for r in drawn):
            it.empty = t(it.hidden_msg, lang, k=k) if hidden else \
                t("no_logs", lang) if not has_logs and it.id in LOG_ITEMS else t("no_data", lang)
            it.spec = None
        elif hidden and it.spec.get("encoding", it.spec.get("layer", [{}])[0].get("encoding", {})) \
                .get("x", {}).get("type") == "temporal":
            it.caption += t("x_hidden_weeks", lang, k=k)
        elif public and (n := sum(r.get(f) is None for r in drawn)):
            it.caption += t("x_hidden_bar" if n == 1 else "x_hidden_bars", lang, n=n, m=len(drawn))
    return items


def partial_weeks(sd: SiteData, lang: str, course_id: str | None = None) -> str:
    """The caption's note that the first and last weeks of tracking logs are partial (logs starting
    after a Monday or ending before a Sunday): a lower count there is not a collapse. For a course,
    only the first week, when it has events in it: the last week's note would change every course's
    page with every day of logs (a course without new events keeps its page, tests/test_dashboard_reuse.py)."""
    rows = _log_days(sd)
    if not rows or not rows[0].get("first_day"):
        return ""
    first, last = (dt.date.fromisoformat(str(rows[0][k])[:10]) for k in ("first_day", "last_day"))
    lo = first
    if course_id is not None:
        days = [r for r in sd.health["course_days"].rows if r["course_id"] == course_id]
        if not days:
            return ""
        lo = dt.date.fromisoformat(str(days[0]["first_day"])[:10])

    def monday(d: dt.date) -> dt.date:
        return d - dt.timedelta(days=d.weekday())

    parts = [t("partial_first", lang, d=fmt_date(first, lang))] if first.weekday() != 0 and \
        monday(lo) == monday(first) else []
    parts += [t("partial_last", lang, d=fmt_date(last, lang))] if last.weekday() != 6 and \
        course_id is None else []
    return t("x_partial", lang, weeks=t("and", lang).join(parts)) if parts else ""


def partial_enrolments(sd: SiteData, lang: str, months: bool) -> str:
    """The caption's note that the last week (and month, where the chart has months) of enrolments
    ends with the data, part way through: its lower count read as a collapse. A public site does
    not name the day (the day of the latest enrolment), and says it of the week in any case."""
    last = sd.enrol_last
    if last is None:
        return ""
    if sd.public:
        return t("x_partial_enrol_public", lang)
    week = last.weekday() != 6
    month = months and last != dt.date.max and (last + dt.timedelta(days=1)).day != 1
    if not (week or month):
        return ""
    what = "last_both_are" if week and month else "last_week_is" if week else "last_month_is"
    return t("x_partial_enrol", lang, what=t(what, lang), d=fmt_date(last, lang))


def _log_days(sd: SiteData) -> list[dict]:
    """The health page's row on the days of tracking logs received (none without logs)."""
    ds = sd.health.get("log_days")
    return ds.rows if ds else []


def _has_logs(sd: SiteData) -> bool:
    rows = _log_days(sd)
    return bool(rows and rows[0].get("days_received"))


# -- rendering ------------------------------------------------------------------------------------------

def cell(v, kind: str, lang: str, public: bool) -> str:
    if v is None or v == "":
        return t("hidden", lang) if public and kind == "count" else "–"
    if kind in ("count", "volume", "number"):
        return fmt_int(v, lang)
    if kind == "decimal":
        return fmt_num(v, lang, 1)
    if kind == "seconds":  # a model built in 0.37 s read "0"
        return fmt_num(v, lang, 2)
    if kind == "share":
        return fmt_pct(v, lang)
    if kind == "date":
        return fmt_date(v, lang) if v != ALL else "–"
    if kind == "datetime":
        return fmt_datetime(dt.datetime.fromisoformat(v) if isinstance(v, str) else v, lang)
    return str(v)


def table_body(item: Item, lang: str, public: bool, here: str) -> Markup:
    """The ``<tbody>`` rows of an item's data table: one ``<tr>`` line per row, each cell its formatted
    text (``cell``) with the raw value in ``data-v`` (what the sortable tables sort by).

    Written here rather than as a loop in the template: a programme page of 200 courses over a year
    has tables of tens of thousands of cells, and Jinja's per-cell work (loop objects, tests, an
    escape per expression) made rendering most of a dashboard build (18 of 30 s, profiled)."""
    kinds = [(col, kind, f'<td class="{_esc(kind)}" data-v="') for col, kind in item.columns]
    out = []
    for raw in item.rows:
        tds = []
        for col, kind, td in kinds:
            v = raw.get(col)
            text = _esc(cell(v, kind, lang, public))
            if kind == "link" and raw.get("_href"):
                text = f'<a href="{_esc(here)}{_esc(raw["_href"])}">{text}</a>'
            tds.append(f'{td}{"" if v is None else _esc(v)}">{text}</td>')
        out.append("<tr>" + "".join(tds) + "</tr>\n")
    return Markup("".join(out))


# markupsafe.escape's replacements, by str.translate: the same text for the plain values of the data
# tables (str, int, float, bool), without a Markup object per call
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "'": "&#39;"})


def _esc(v) -> str:
    """``str(markupsafe.escape(v))`` for a value that is not markup already."""
    if hasattr(v, "__html__"):
        return str(markupsafe.escape(v))
    return (v if isinstance(v, str) else str(v)).translate(_ESCAPES)


UTF8_BOM = "\ufeff"


def csv_text(item: Item, lang: str) -> str:
    """The CSV a page offers for download: for people opening it in a spreadsheet, so it starts with
    a UTF-8 byte-order mark (Excel reads a file without one in the system's code page and mangles
    accented course names: "Introducción" became "IntroducciÃ³n")."""
    buf = io.StringIO()
    buf.write(UTF8_BOM)
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([t(c, lang) for c, _ in item.columns])
    for r in item.rows:
        w.writerow(["" if r.get(c) is None else r.get(c) for c, _ in item.columns])
    return buf.getvalue()


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    return env


def _json_for_script(obj) -> str:
    """JSON safe inside <script>: no '</' sequence can close the element."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str).replace("</", "<\\/")


def headline_cards(h: dict, lang: str, public: bool) -> list[dict]:
    cards = []
    for key in ("courses", "enrolments", "learners", "active_learners", "certificates", "pass_rate",
                "certification_rate"):
        v = h.get(key)
        kind = "share" if key.endswith("rate") else "number" if key == "courses" else "count"
        cards.append({"key": key, "label": t("h_" + key, lang), "value": v, "kind": kind,
                      "text": cell(v, kind, lang, public)})
    return cards


def course_cards(sd: SiteData, c: Course, lang: str) -> list[dict]:
    s = (sd.per_course.get(c.course_id, {}).get("summary") or [{}])[0]
    vals = {"enrolments": s.get("enrolled"), "active_learners": s.get("active"), "certificates": s.get("certified"),
            "pass_rate": _div(s.get("approved"), s.get("active")),
            "certification_rate": _div(s.get("certified"), s.get("enrolled"))}
    kinds = {k: "share" if k.endswith("rate") else "count" for k in vals}
    return [{"key": k, "label": t("h_" + k, lang), "value": v, "kind": kinds[k],
             "text": cell(v, kinds[k], lang, sd.public)} for k, v in vals.items()]


@functools.lru_cache(maxsize=1)
def _vega_bundle() -> str:
    import vl_convert

    return vl_convert.javascript_bundle()  # ~5 s (starts vl-convert's JS engine): done once per process


def write_static(out: Path, previous: Path | None = None) -> None:
    """The shared files: the Vega bundle from the installed vl-convert (reused from the previous
    build when vl-convert is the same version), the map, script and style."""
    import vl_convert

    st = out / "static"
    st.mkdir(parents=True, exist_ok=True)
    version = getattr(vl_convert, "__version__", "?")
    old = previous / "static" if previous else None
    if old and (old / "vega.version").is_file() and (old / "vega.version").read_text() == version \
            and (old / "vega.js").is_file():
        shutil.copyfile(old / "vega.js", st / "vega.js")
    else:
        (st / "vega.js").write_text(_vega_bundle(), "utf-8")
    (st / "vega.version").write_text(version)
    world = (STATIC / "countries-110m.json").read_text("utf-8")
    (st / "world.js").write_text("window.EDX_WORLD=" + world + ";\n", "utf-8")
    for name in ("dashboard.js", "style.css", "countries-110m.LICENSE"):
        shutil.copyfile(STATIC / name, st / name)


def build_site(lake: Lake, out_dir: Path | str, lang: str = "es", public: bool = False, k: int = 5,
               courses: list[str] | None = None, title: str | None = None) -> SiteResult:
    """Write the dashboard for ``lake``'s built models to ``out_dir`` (pages in every language,
    ``lang`` the one ``index.html`` opens). Raises DashboardError with one line when it cannot."""
    if lang not in LANGS:
        raise DashboardError(f"unknown language {lang!r} (use {', '.join(LANGS)})")
    if public and k < 1:
        raise DashboardError("k must be at least 1")
    t0 = time.perf_counter()
    lake = lake if isinstance(lake, Lake) else Lake(lake)
    stale = check_models(lake)  # (no models, or a store this version cannot read: said before a folder is made)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        # one rendering of a site at a time (the nightly `run` and a person's `dashboard` share .building);
        # the one that waited reads the models after the other has published: the newest data wins
        with file_lock(out / LOCK, wait=True):
            try:
                return _build_site(lake, out, lang, public, k, courses, title, stale, t0)
            except BaseException as exc:
                if is_disk_full(exc):
                    shutil.rmtree(out / ".building", ignore_errors=True)  # the space back at once
                raise
    except OSError as exc:
        # a page, a CSV, a copied static file on a full disk: was a traceback, with the half-made site
        # left in .building (until the next build). The pages are made aside and published last, by
        # renames that need no space: the site readers see is the previous one
        if not is_disk_full(exc):
            raise
        # (not exc.filename: a copy that fails names its source, the installed static file)
        raise DashboardError(f"could not write the dashboard: no space left on device (writing the new site in "
                             f"{out}); the published site is unchanged; free some space and run again") from None


def _build_site(lake: Lake, out: Path, lang: str, public: bool, k: int, courses: list[str] | None,
                title: str | None, stale: list[str], t0: float) -> SiteResult:
    sd = gather(lake, public, k, courses)
    sd.stale = stale
    tmp = out / ".building"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    write_static(tmp, out)
    env = _env()
    res = SiteResult(out, public=public)
    reuse = _Reuse(out, tmp, sd)
    for lg in LANGS:
        pages = [("index", "overview", t("overview", lg), overview_items(sd, lg), headline_cards(sd.headline, lg, public),
                  None)]
        pages += [(f"course/{c.slug}", "course", c.name, course_items(sd, c, lg), course_cards(sd, c, lg), c)
                  for c in sd.courses]
        pages += [("comparison", "comparison", t("comparison", lg), comparison_items(sd, lg), [], None),
                  ("health", "health", t("health", lg), health_items(sd, lg), [], None)]
        for path, kind, heading, items, cards, course in pages:
            settle(items, lg, public, k, _has_logs(sd))
            _render(env, tmp, lg, path, kind, heading, items, cards, course, sd, title, res, reuse)
    reuse.save()
    (tmp / "index.html").write_text(env.get_template("redirect.html.j2").render(target=f"{lang}/index.html", lang=lang), "utf-8")
    testhooks.pause("dashboard-publish")
    _publish(tmp, out)
    res.pages = [out / p.relative_to(tmp) for p in res.pages]
    res.reused = reuse.reused
    files = [f for f in out.rglob("*") if f.is_file() and f.name not in (MANIFEST, LOCK)]
    res.files, res.bytes = len(files), sum(f.stat().st_size for f in files)
    res.seconds = time.perf_counter() - t0
    return res


def _publish(tmp: Path, out: Path) -> None:
    """Put the new site's folders and files in place of the old ones, each in one step (the shared
    files first, the entry page last), then delete the old ones: a reader, or a crash, finds every
    folder whole, old or new, never missing (it used to delete the old site, then move the new in)."""
    order = {"static": 0, "index.html": 2}
    for p in sorted(tmp.iterdir(), key=lambda p: (order.get(p.name, 1), p.name)):
        dst = out / p.name
        if not (dst.exists() or dst.is_symlink()):
            p.rename(dst)
        elif not exchange(p, dst):  # (no RENAME_EXCHANGE: gone for an instant)
            dst.rename(tmp / f".old-{p.name}")
            p.rename(dst)
    shutil.rmtree(tmp)  # what was replaced


def _render(env, root: Path, lang: str, path: str, kind: str, heading: str, items: list[Item], cards: list[dict],
            course: Course | None, sd: SiteData, title: str | None, res: SiteResult, reuse: "_Reuse") -> None:
    depth = path.count("/") + 1
    up = "../" * depth
    here = "../" * (depth - 1)
    data_dir = root / lang / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    stem = path.replace("/", "-")
    for it in items:
        it.csv = f"{here}data/{stem}-{it.id}.csv"
    csvs = [f"{stem}-{it.id}.csv" for it in items]
    page_data = {"lang": lang, "public": sd.public, "k": sd.k if sd.public else None,
                 "formatLocale": D3_FORMAT[lang], "timeFormatLocale": d3_time_locale(lang),
                 "items": {it.id: {"columns": it.columns, "rows": it.rows, "spec": it.spec} for it in items},
                 "headline": {c["key"]: c["value"] for c in cards},
                 "headline_kinds": {c["key"]: c["kind"] for c in cards}}
    page_json = _json_for_script(page_data)
    f = root / lang / f"{path}.html"
    f.parent.mkdir(parents=True, exist_ok=True)
    key = _page_key(page_json, lang, path, kind, heading, items, cards, course, sd, title, reuse.nav)
    if not reuse.take(lang, path, key, csvs):
        for it, name in zip(items, csvs):
            (data_dir / name).write_text(csv_text(it, lang), "utf-8")
        bodies = {it.id: table_body(it, lang, sd.public, here) for it in items}
        html = env.get_template("page.html.j2").render(
            lang=lang, langs=[(lg, LANG_NAMES[lg]) for lg in LANGS], kind=kind, heading=heading, items=items,
            cards=cards, bodies=bodies, t=lambda key, **kw: t(key, lang, **kw), up=up, here=here, path=path,
            site_title=title or t("site_title", lang), courses=sd.courses, course=course, public=sd.public, k=sd.k,
            built=_built(sd.built_at, lang), page_json=page_json,
            dates=(cell(course.start, "date", lang, False), cell(course.end, "date", lang, False)) if course else None)
        f.write_text(html, "utf-8")
    size = sum(st[0] for st in reuse.record(lang, path, key, csvs).values())  # the page's HTML and CSV files
    if size > res.largest_page[1]:
        res.largest_page = (f"{lang}/{path}.html", size)
    res.pages.append(f)


# -- pages unchanged since the last build ------------------------------------------------------------

MANIFEST = ".pages.json"  # in the site's folder: what each page was made from (digests only)
LOCK = ".lock"  # in the site's folder: held by the rendering under way


def _built(at: dt.datetime | None, lang: str) -> str:
    """The models' build time as every page's footer shows it."""
    return fmt_datetime(at, lang) if at else "–"


@functools.lru_cache(maxsize=1)
def _code_key() -> str:
    """Digest of the dashboard's code, templates and texts: a page made by other code is made again."""
    h = hashlib.sha256()
    for f in sorted(Path(__file__).parent.rglob("*")):
        if f.is_file() and f.suffix in (".py", ".j2", ".js", ".css", ".json"):
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def _page_key(page_json: str, lang: str, path: str, kind: str, heading: str, items: list[Item], cards: list[dict],
              course: Course | None, sd: SiteData, title: str | None, nav: str) -> str:
    """Digest of everything a page and its CSV files are made from, except the models' build time in
    its footer (``_Reuse`` writes that): its data (``page_json``: every item's columns, rows and chart,
    the headline), texts, the course list of its navigation (``nav``, as text), the site's options and
    the code."""
    rest = json.dumps([_code_key(), lang, path, kind, heading, title, sd.public, sd.k,
                       [(it.id, it.title, it.caption, it.period, it.csv, it.wide, it.sortable, it.empty)
                        for it in items], cards,
                       _course_fields(course) if course else None], default=str, ensure_ascii=False)
    return hashlib.sha256(f"{rest}\n{nav}\n{page_json}".encode()).hexdigest()


def _course_fields(c: Course) -> list:
    return [getattr(c, f.name) for f in dataclasses.fields(c)]


class _Reuse:
    """The pages of the site being replaced whose digest is unchanged, taken over instead of made again.

    Why: the daily job rebuilds the dashboard after every build, and on most days most courses had
    no new data; making a course page (its tables, chart data and CSV files, in three languages) is
    most of a dashboard build (200 courses: 600 course pages, 5 of 12 CPU-s). A page is reused only
    when the digest recorded for it (``MANIFEST``) is the one this build computes and its files are
    still the very files this code wrote (size, modification time and inode as recorded: a file
    rewritten by another version of edx-engine, edited in place or deleted since means the page is
    made). Its CSV files are then hard-linked (copied where a link fails, or where the old file's
    owner or permissions are not what a new file would get) and its HTML copied with the footer's
    build time replaced, so the site is byte for byte the one a full rendering would write
    (tests/test_dashboard_reuse.py)."""

    def __init__(self, out: Path, tmp: Path, sd: SiteData):
        self.out, self.tmp, self.sd = out, tmp, sd
        # the course list every page's navigation shows, as text once per build (not once per page)
        self.nav = json.dumps([_course_fields(c) for c in sd.courses], default=str)
        self.pages: dict[str, list] = {}  # page -> [digest, {file: [size, mtime_ns, inode]}] (this build)
        self.reused = 0
        self.old: dict[str, list] = {}
        self.old_built: dt.datetime | None = None
        try:
            m = json.loads((out / MANIFEST).read_text("utf-8"))
            if m.get("code") == _code_key():
                built = m.get("built_at")
                self.old_built = dt.datetime.fromisoformat(built) if built else None
                self.old = {p: [str(v[0]), dict(v[1])] for p, v in m["pages"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
            self.old = {}  # no site yet, or not one this code made: every page is made
        probe = tmp / ".probe"  # what a file written now gets: mode (umask), owner, group
        probe.write_bytes(b"")
        st = probe.stat()
        self.new_file = (st.st_mode & 0o7777, st.st_uid, st.st_gid)
        probe.unlink()

    def _footer(self, built: dt.datetime | None, lang: str) -> str:
        return str(markupsafe.escape(t("built", lang, when=_built(built, lang))))

    def _unchanged(self, files: dict) -> bool:
        """Whether every recorded file of the old site is still the one recorded."""
        for rel, want in files.items():
            try:
                st = os.stat(self.out / rel)
            except OSError:
                return False
            if [st.st_size, st.st_mtime_ns, st.st_ino] != list(want):
                return False
        return True

    def take(self, lang: str, path: str, key: str, csvs: list[str]) -> bool:
        """Whether page ``path`` of ``lang`` and its CSV files were taken over from the old site."""
        old = self.old.get(f"{lang}/{path}")
        if old is None or old[0] != key:
            return False
        names = {f"{lang}/{path}.html", *(f"{lang}/data/{n}" for n in csvs)}
        if set(old[1]) != names or not self._unchanged(old[1]):
            return False
        try:
            html = (self.out / lang / f"{path}.html").read_text("utf-8")
            i = html.rfind("<footer><p>")  # the template's own footer: data in a page is escaped, never a tag
            j = html.find("</p></footer>", i)
            old_text, new_text = self._footer(self.old_built, lang), self._footer(self.sd.built_at, lang)
            if i < 0 or j < 0 or not html.startswith(old_text, i + len("<footer><p>")):
                return False
            html = html[:i] + "<footer><p>" + new_text + html[i + len("<footer><p>") + len(old_text):]
            for name in csvs:
                src, dst = self.out / lang / "data" / name, self.tmp / lang / "data" / name
                st = src.stat()
                try:
                    if (st.st_mode & 0o7777, st.st_uid, st.st_gid) != self.new_file:
                        raise OSError("not as a new file would be")
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)
            (self.tmp / lang / f"{path}.html").write_text(html, "utf-8")
        except (OSError, UnicodeDecodeError):
            return False  # a file of the old site is unreadable: the page is made (it overwrites what was linked)
        self.reused += 1
        return True

    def record(self, lang: str, path: str, key: str, csvs: list[str]) -> dict[str, list[int]]:
        """Page ``path`` of ``lang``, as written into the new site: its digest and its files' identity
        ([size, mtime_ns, inode] by file, returned too)."""
        files = {}
        for rel in (f"{lang}/{path}.html", *(f"{lang}/data/{n}" for n in csvs)):
            st = os.stat(self.tmp / rel)
            files[rel] = [st.st_size, st.st_mtime_ns, st.st_ino]
        self.pages[f"{lang}/{path}"] = [key, files]
        return files

    def save(self) -> None:
        built = self.sd.built_at.isoformat() if self.sd.built_at else None
        (self.tmp / MANIFEST).write_text(json.dumps({"code": _code_key(), "built_at": built, "pages": self.pages}),
                                         "utf-8")
