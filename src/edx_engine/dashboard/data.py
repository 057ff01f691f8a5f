"""The dashboard's numbers: aggregates read from the built models, suppressed for public sites.

Everything the site shows is a ``Dataset``: named columns with a *kind* (``count`` = people, checked
against the small-cell threshold; ``volume`` = plays, posts, events, lines; ``share``; ``date``;
code families such as ``gender`` that get labels) and plain rows. No dataset holds a learner-level
row. With ``public=True`` every people count goes through the same small-cell suppression as
``report --public`` (``privacy.export.PUBLIC_SPECS`` where a model has a rule, ``privacy.suppress``
for the dashboard's own aggregates), always on the whole programme before a course is selected.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from ..age import age_band_sql
from ..store.lake import Lake
from ..privacy import suppress as S
from ..privacy.export import COURSE_TABLES, PUBLIC_SPECS, public_course_tables, sorted_rows

ALL = "(all)"
# The programme's learners by these are published with small categories merged (``merge_small``): a
# hidden count there is a whole group below k, never a complement of k or more (the texts say so)
MERGED_DEMOGRAPHICS = ("country", "gender", "level_of_education")
REQUIRED_MODELS = ("courses", "person_course", "course_summary", "course_breakdown", "general_report",
                   "active_users", "enrolment_daily", "activity_weekly", "video_summary", "problem_summary",
                   "forum_weekly", "activity_daily")


@dataclass
class Dataset:
    name: str
    columns: list[tuple[str, str]]  # (column, kind)
    rows: list[dict]

    def kinds(self) -> dict[str, str]:
        return dict(self.columns)


@dataclass
class Course:
    course_id: str
    slug: str
    name: str
    sme: str | None
    start: str | None
    end: str | None


@dataclass
class SiteData:
    public: bool
    k: int
    courses: list[Course]
    headline: dict[str, float | int | None]
    overview: dict[str, Dataset] = field(default_factory=dict)
    per_course: dict[str, dict[str, Dataset]] = field(default_factory=dict)
    comparison: Dataset | None = None
    health: dict[str, Dataset] = field(default_factory=dict)
    built_at: dt.datetime | None = None
    enrol_last: dt.date | None = None  # the enrolment data's last day (the last week or month may be partial)
    stale: list[str] = field(default_factory=list)


def slugify(course_id: str) -> str:
    """A file name for a course page (course ids hold '/', '+' and ':')."""
    import hashlib

    base = re.sub(r"[^A-Za-z0-9]+", "-", course_id).strip("-")[:60] or "course"
    return f"{base}-{hashlib.sha1(course_id.encode()).hexdigest()[:6]}"


def _iso(v):
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()[:10] if isinstance(v, dt.date) and not isinstance(v, dt.datetime) else v.isoformat()
    return v


def _rows(t: pa.Table, cols: list[str] | None = None) -> list[dict]:
    cols = cols or [c for c in t.column_names if c != S.SUPPRESSED_COLUMN]
    data = {c: t.column(c).to_pylist() for c in cols}
    return [{c: _iso(data[c][i]) for c in cols} for i in range(t.num_rows)]


def _arrow(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pa.Table:
    return con.execute(sql, params or []).to_arrow_table()


def _only(t: pa.Table, courses: set[str] | None) -> pa.Table:
    if courses is None or "course_id" not in t.column_names:
        return t
    keep = pa.array([c in courses for c in t.column("course_id").to_pylist()])
    return t.filter(keep)


def _hide_courses(t: pa.Table, column: str, courses: set[str]) -> pa.Table:
    """``t`` with ``column`` NULL (hidden) on every row of ``courses``."""
    if not courses:
        return t
    import pyarrow.compute as pc

    mask = pc.is_in(t.column("course_id"), pa.array(sorted(courses), t.schema.field("course_id").type))
    hidden = pc.if_else(mask, pa.scalar(None, t.schema.field(column).type), t.column(column))
    return t.set_column(t.schema.get_field_index(column), column, hidden)


def _share(a, b):
    return None if a is None or b in (None, 0) else round(a / b, 6)


def _hide_small(v, k: int, public: bool):
    """A people count that suppression does not cover (a programme total): hidden if 0 < v < k."""
    return None if public and v is not None and 0 < v < k else v


class Reader:
    """Reads and aggregates the models of one store (read-only connection)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, public: bool, k: int, courses: set[str] | None):
        self.con, self.public, self.k, self.courses = con, public, k, courses
        params = con.execute("SELECT params FROM _edx_models WHERE name = 'person_course'").fetchone()
        include_staff = bool(params and "include_staff=True" in (params[0] or ""))
        self.learner_filter = "TRUE" if include_staff else "NOT is_staff"
        self._public_course: dict[str, pa.Table] | None = None

    def breakdown(self) -> pa.Table:
        """``course_breakdown``; public: suppressed in one system with course_summary and the course age
        bands (``public_course``)."""
        return self.model("course_breakdown", "course_breakdown")

    def public_course(self) -> dict[str, pa.Table]:
        """The public course_summary, general_report, course_breakdown and age bands: ONE suppression
        (``privacy.export.public_course_tables``), the one ``export``/``report --public`` publish, so
        the funnel, the cards, the age chart, the country detail and the reports hide the same cells."""
        if self._public_course is None:
            read = {m: _arrow(self.con, f'SELECT * FROM models."{m}"') for m in
                    ("course_summary", "course_breakdown", "general_report")}
            self._public_course = public_course_tables(read["course_summary"], read["course_breakdown"], self.k,
                                                       read["general_report"])
        return self._public_course

    def model(self, name: str, spec: str | None = None) -> pa.Table:
        """A model, suppressed with its public rule on public sites (whole table, then courses), in the
        exports' row order: the store's is not fixed, and two renderings of one store must be the same."""
        if self.public and spec in COURSE_TABLES:
            return sorted_rows(_only(self.public_course()[spec], self.courses))
        t = _arrow(self.con, f'SELECT * FROM models."{name}"')
        if self.public and spec:
            t = PUBLIC_SPECS[spec](t, self.k)
        return sorted_rows(_only(t, self.courses))

    def course_filter(self, col: str = "course_id") -> str:
        if self.courses is None:
            return "TRUE"
        return f"{col} IN (" + ", ".join("'" + c.replace("'", "''") + "'" for c in sorted(self.courses)) + ")"

    # -- programme ------------------------------------------------------------------------------
    def course_list(self) -> list[Course]:
        t = _only(_arrow(self.con, "SELECT course_id, name, sme, start_date, end_date FROM models.courses "
                                   "ORDER BY course_id"), self.courses)
        return [Course(r["course_id"], slugify(r["course_id"]), r["name"] or r["course_id"], r["sme"],
                       _iso(r["start_date"]), _iso(r["end_date"])) for r in t.to_pylist()]

    def headline(self, summary: pa.Table, general: pa.Table) -> dict:
        raw = _only(_arrow(self.con, "SELECT * FROM models.course_summary ORDER BY course_id"), self.courses)
        tot = {c: sum(v or 0 for v in raw.column(c).to_pylist()) for c in ("enrolled", "active", "approved",
                                                                              "certified")}
        distinct = _arrow(self.con, f"""
            SELECT '{ALL}' AS course_id, count(DISTINCT user_id) AS enrolled,
                   count(DISTINCT user_id) FILTER (WHERE viewed) AS active,
                   count(DISTINCT user_id) FILTER (WHERE nevents > 0) AS active_events
            FROM models.person_course WHERE {self.learner_filter} AND {self.course_filter()}""")
        if self.public:
            distinct = PUBLIC_SPECS["active_users"](distinct, self.k)
        d = distinct.to_pylist()[0]
        h = {"courses": raw.num_rows,
             # column totals of course_summary: published as known totals by its suppression rule
             "enrolments": _hide_small(tot["enrolled"], self.k, self.public),
             "learners": _hide_small(d["enrolled"], self.k, self.public),
             "active_learners": _hide_small(d["active"], self.k, self.public),
             "certificates": _hide_small(tot["certified"], self.k, self.public)}
        # each rate is hidden with its own small count (as on the course pages)
        h["pass_rate"] = _share(tot["approved"], tot["active"]) \
            if _hide_small(tot["approved"], self.k, self.public) is not None else None
        h["certification_rate"] = _share(tot["certified"], tot["enrolled"]) if h["certificates"] is not None \
            else None
        return h

    def enrolments_weekly(self) -> pa.Table:
        """(course_id, week, mode, enrollments) with mode '(all)' totals; public: suppressed together
        with the days of ``export enrolment_daily --public`` (a week is the sum of its days), with the
        weekly and per-mode totals as cells of the same system."""
        if self.public:
            daily = _arrow(self.con, "SELECT course_id, date, mode, enrollments FROM models.enrolment_daily")
            return _only(S.suppress_enrolments(daily, self.k, ALL)[1], self.courses)
        t = _arrow(self.con, f"""
            WITH w AS (SELECT course_id, strftime(date_trunc('week', date), '%Y-%m-%d') AS week, mode,
                              CAST(sum(enrollments) AS BIGINT) AS enrollments
                       FROM models.enrolment_daily WHERE date IS NOT NULL GROUP BY ALL)
            SELECT course_id, week, mode, enrollments FROM w
            UNION ALL SELECT course_id, week, '{ALL}', CAST(sum(enrollments) AS BIGINT) FROM w GROUP BY ALL
            UNION ALL SELECT course_id, '{ALL}', mode, CAST(sum(enrollments) AS BIGINT) FROM w GROUP BY ALL
            UNION ALL SELECT course_id, '{ALL}', '{ALL}', CAST(sum(enrollments) AS BIGINT) FROM w GROUP BY ALL
            ORDER BY course_id, week, mode""")
        return _only(t, self.courses)

    def enrolments_last_day(self) -> dt.date | None:
        """The last day of the enrolment data (its weeks and months end there, maybe part way through)."""
        return self.con.execute("SELECT max(date) FROM models.enrolment_daily WHERE date IS NOT NULL AND "
                                + self.course_filter()).fetchone()[0]

    def enrolments_monthly(self) -> pa.Table:
        return _only(_arrow(self.con, """
            SELECT course_id, strftime(date_trunc('month', date), '%Y-%m-%d') AS month,
                   CAST(sum(enrollments) AS BIGINT) AS enrollments
            FROM models.enrolment_daily WHERE date IS NOT NULL GROUP BY ALL ORDER BY ALL"""), self.courses)

    def learners_demographics(self) -> dict[str, pa.Table]:
        """Distinct learners by country, gender, education and age band (programme-wide)."""
        base = f"""WITH u AS (SELECT user_id, any_value(gender) AS gender, any_value(level_of_education) AS edu,
                   any_value(country) AS country, any_value(year_of_birth) AS yob
                   FROM models.person_course WHERE {self.learner_filter} AND {self.course_filter()} GROUP BY 1)"""
        out = {}
        for dim in MERGED_DEMOGRAPHICS:
            expr = {"level_of_education": "edu"}.get(dim, dim)
            t = _arrow(self.con, f"{base} SELECT {expr} AS {dim}, count(*) AS learners FROM u GROUP BY 1 "
                                 f"ORDER BY 2 DESC, 1")
            if self.public:  # knowing what the course breakdown hides: a course's count is at most the programme's
                need, floors = S.programme_needs(self.public_course()["course_breakdown"], dim, self.k, ALL,
                                                 self.courses)
                t = S.merge_small(t, dim, "learners", self.k, need=need, floors=floors)
            out[dim] = t
        t = _arrow(self.con, f"{base} SELECT {age_band_sql('yob')} AS age_band, count(*) AS learners FROM u "
                             f"GROUP BY 1 ORDER BY 1")
        if self.public:  # knowing what the course breakdown hides: a course's band is at most the programme's
            t = S.suppress_programme_bands(t, self.public_course()["course_breakdown"], self.k, ALL, self.courses)
        out["age_band"] = t
        return out

    # -- per course ------------------------------------------------------------------------------
    def cert_status(self) -> pa.Table:
        t = _arrow(self.con, f"SELECT course_id, cert_status, count(*) AS learners FROM models.person_course "
                             f"WHERE {self.learner_filter} GROUP BY ALL ORDER BY course_id, learners DESC, cert_status")
        if self.public:
            t = S.merge_small(t, "cert_status", "learners", self.k, by=["course_id"])
            # downloadable and notpassing are the summary's certified and certificates_failed: where the
            # joint suppression hides either (maybe to protect another course's count through the
            # programme total), the chart would give it back, so the course's chart is hidden whole
            t = _hide_courses(t, "learners", self._summary_hides("certified", "certificates_failed"))
        return _only(t, self.courses)

    def _summary_hides(self, *columns: str) -> set[str]:
        """Courses whose public course_summary hides any of ``columns``."""
        s = self.public_course()["course_summary"]
        return {r["course_id"] for r in s.select(["course_id", *columns]).to_pylist()
                if any(r[c] is None for c in columns)}

    def grades(self) -> pa.Table:
        t = _arrow(self.con, f"""
            WITH b AS (SELECT range / 10.0 AS bin FROM range(10)),
                 c AS (SELECT DISTINCT course_id FROM models.person_course WHERE grade IS NOT NULL),
                 g AS (SELECT course_id, least(greatest(floor(grade * 10), 0), 9) / 10.0 AS bin, count(*) AS n
                       FROM models.person_course WHERE {self.learner_filter} AND grade IS NOT NULL GROUP BY ALL)
            SELECT c.course_id, round(b.bin, 1) AS grade_from, CAST(coalesce(g.n, 0) AS BIGINT) AS learners
            FROM c CROSS JOIN b LEFT JOIN g ON g.course_id = c.course_id AND g.bin = b.bin
            ORDER BY 1, 2""")
        if self.public:
            t = self._protect_grades(t)
            # the bins at or above the passing grade add up to the summary's approved count: where the
            # joint suppression hides approved, the chart would give it back
            t = _hide_courses(t, "learners", self._summary_hides("approved"))
        return _only(t, self.courses)

    def _protect_grades(self, t: pa.Table) -> pa.Table:
        """Per course, the grade bins with complementary suppression, knowing what a reader knows: the
        bins' total and the course's approved learners (published by the summary), who are the bins
        from the passing grade up. When the passing grade is a bin edge (and a grade equal to it
        passes), those bins add up to approved. Otherwise the bin holding the passing grade is split
        between learners below it and at or above it (two counts never published, ``slack``): the bins
        above add up to at most approved, those from that bin up to at least approved."""
        passing = {c: rest for c, *rest in self.con.execute(
            f"SELECT course_id, any_value(passing_grade), any_value(passing_rule), count(*) FILTER (WHERE passed) "
            f"FROM models.person_course WHERE {self.learner_filter} GROUP BY 1").fetchall()}
        rows = t.to_pylist()
        by_course: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            by_course.setdefault(r["course_id"], []).append(i)
        hidden: set[int] = set()
        for cid in sorted(by_course):
            idx = sorted(by_course[cid], key=lambda i: rows[i]["grade_from"])
            hidden |= {idx[h] for h in self._grade_cells([rows[i]["learners"] or 0 for i in idx],
                                                         *passing.get(cid, (None, None, 0)))}
        learners = [None if i in hidden else r["learners"] for i, r in enumerate(rows)]
        return t.set_column(t.schema.get_field_index("learners"), "learners",
                            pa.array(learners, t.schema.field("learners").type))

    def _grade_cells(self, vals: list[int], pg: float | None, rule: str | None, approved: int) -> set[int]:
        """Positions of the bins (of width 0.1 from 0) to hide for one course."""
        n = len(vals)
        values, eqs, fixed, slack = vals + [sum(vals)], [[n, *range(n)]], [n], []
        if pg is not None and 0 <= pg <= 1:
            edge = round(pg * 10)
            if (abs(pg * 10 - edge) < 1e-9 and rule != ">" and 0 < edge < n
                    and approved == sum(vals[edge:])):  # bins edge.. are exactly the passing learners
                values.append(approved)
                eqs.append([n + 1, *range(edge, n)])
                fixed.append(n + 1)
            else:
                # the bin holding the passing grade is mixed: approved = its passing part + the bins above.
                # A grade that floats across an edge (0.3 + 0.6 < 0.9 lands in bin 0.9 and fails) makes
                # the bin above the edge the mixed one.
                for s in dict.fromkeys((min(int(pg * 10 + 1e-9), n - 1), min(edge, n - 1))):
                    x = approved - sum(vals[s + 1:])  # its passing learners
                    if 0 <= x <= vals[s]:
                        a, lo, hi = n + 1, n + 2, n + 3
                        values += [approved, vals[s] - x, x]
                        eqs += [[a, hi, *range(s + 1, n)], [s, lo, hi]]
                        fixed.append(a)
                        slack = [lo, hi]
                        break
        p = S.protect(values, eqs, self.k, fixed=fixed, slack=slack)
        if p.unprotectable:
            # e.g. approved = k split 2 + 3 above the passing grade: whatever the chart hides, its shown
            # zeros tell which hidden bins hold someone, and those bound each other under k. Hidden whole
            # (zeros too), the chart tells a reader nothing beyond the published totals.
            return set(range(n))
        return {h for h in p.hidden if h < n}

    def age_bands(self) -> pa.Table:
        """Learners by age band per course. Public: the bands protected together with the years of
        birth of the public ``course_breakdown`` (a band is a sum of years: suppressed apart, the two
        would give back hidden years by subtraction)."""
        if self.public:
            return _only(self.public_course()["age_bands"].sort_by([("course_id", "ascending"),
                                                                ("age_band", "ascending")]), self.courses)
        t = _arrow(self.con, f"""
            SELECT course_id, {age_band_sql('year_of_birth')} AS age_band, count(*) AS learners
            FROM models.person_course WHERE {self.learner_filter} GROUP BY ALL ORDER BY ALL""")
        return _only(t, self.courses)

    def median_days(self) -> dict[str, float | None]:
        rows = self.con.execute(f"""
            SELECT course_id, median(ndays_act) FILTER (WHERE ndays_act > 0), count(*) FILTER (WHERE ndays_act > 0)
            FROM models.person_course WHERE {self.learner_filter} GROUP BY 1""").fetchall()
        return {c: (None if (self.public and n < self.k) or m is None else float(m)) for c, m, n in rows}

    def structure_order(self) -> dict[str, dict[str, tuple[int, str]]]:
        """Per course: block key -> (position in course order, title) for videos and problems."""
        try:
            rows = self.con.execute("SELECT course_id, block_id, parent_id, position, category, display_name "
                                    "FROM course_structure").fetchall()
        except duckdb.CatalogException:
            return {}
        except duckdb.BinderException:  # a structure without the tree columns: titles, in id order
            rows = self.con.execute("SELECT course_id, block_id, NULL, NULL, category, display_name "
                                    "FROM course_structure").fetchall()
        by_course: dict[str, list] = {}
        for r in rows:
            by_course.setdefault(r[0], []).append(r)
        return {c: _walk(rs) for c, rs in by_course.items()}

    def videos(self, order: dict) -> pa.Table:
        t = _arrow(self.con, "SELECT course_id, video_id, viewers, plays, completers FROM models.video_summary")
        if self.public:
            t = S.suppress(t, ["viewers", "completers"], self.k, by=["course_id"], column_totals=False,
                           linked={"viewers": ["plays"]})
        return _in_order(_only(t, self.courses), "video_id", order)

    def problems(self, order: dict) -> pa.Table:
        t = _arrow(self.con, "SELECT course_id, problem_id, learners, submissions, learners_correct "
                             "FROM models.problem_summary")
        if self.public:
            t = S.suppress(t, ["learners", "learners_correct"], self.k, by=["course_id"], column_totals=False,
                           linked={"learners": ["submissions"]})
        return _in_order(_only(t, self.courses), "problem_id", order)


def block_key(block_id: str | None) -> str:
    """The hash that ends a block id in every edX spelling (i4x://.../video/H, block-v1:...@H, i4x-...-H)."""
    return re.split(r"[/@+\-:]", block_id or "")[-1]


def _walk(rows: list) -> dict[str, tuple[int, str]]:
    children: dict[str | None, list] = {}
    for _, bid, parent, pos, cat, name in rows:
        children.setdefault(parent, []).append((pos if pos is not None else 1 << 30, bid, cat, name))
    ids = {r[1] for r in rows}
    roots = [r for p, rs in children.items() if p is None or p not in ids for r in rs]
    out: dict[str, tuple[int, str]] = {}
    stack = sorted(roots, reverse=True)
    seen = set()
    while stack:
        _, bid, cat, name = stack.pop()
        if bid in seen:
            continue
        seen.add(bid)
        if cat in ("video", "problem"):
            out[block_key(bid)] = (len(out), name or "")
        stack.extend(sorted(children.get(bid, []), reverse=True))
    return out


def _in_order(t: pa.Table, id_col: str, order: dict) -> pa.Table:
    """Rows in course order with their titles (unknown blocks last, by id)."""
    rows = t.to_pylist()
    for r in rows:
        pos, title = order.get(r["course_id"], {}).get(block_key(r[id_col]), (1 << 30, ""))
        r["position"], r["title"] = pos, title or f"({block_key(r[id_col])[:8]})"
    rows.sort(key=lambda r: (r["course_id"], r["position"], r[id_col]))
    names = [c for c in t.column_names if c != S.SUPPRESSED_COLUMN] + ["position", "title"]
    return pa.Table.from_pylist([{c: r[c] for c in names} for r in rows]) if rows else \
        pa.table({c: pa.array([], pa.string()) for c in names})


# -- data health (no people counts) ------------------------------------------------------------------

def health(con: duckdb.DuckDBPyConnection, courses: set[str] | None, stale: list[str]) -> dict[str, Dataset]:
    def q(sql: str) -> list[tuple]:
        try:
            return con.execute(sql).fetchall()
        except duckdb.CatalogException:
            return []

    out: dict[str, Dataset] = {}
    sync = q("SELECT max(ended_at) FILTER (WHERE status IN ('ok', 'partial')), arg_max(status, started_at), "
             "max(started_at) FROM _edx_sync_runs")
    imp = q("SELECT max(logged_at) FROM _edx_import_log")
    ev = q("SELECT max(imported_at) FROM _edx_event_files")
    out["sync"] = Dataset("sync", [("what", "text"), ("when", "datetime"), ("status", "text")], [
        {"what": "last_sync", "when": _iso(sync[0][0]) if sync else None, "status": sync[0][1] if sync else None},
        {"what": "last_package_import", "when": _iso(imp[0][0]) if imp else None, "status": None},
        {"what": "last_log_import", "when": _iso(ev[0][0]) if ev else None, "status": None},
    ])
    files = sorted({r[0] for r in q("SELECT file_date FROM _edx_event_files WHERE file_date IS NOT NULL")})
    missing = []
    if files:
        d = files[0]
        while d <= files[-1]:
            if d not in set(files):
                missing.append(d)
            d += dt.timedelta(days=1)
    out["log_days"] = Dataset("log_days", [("first_day", "date"), ("last_day", "date"), ("days_received", "number"),
                                           ("missing_days", "number"), ("missing", "text")], [
        {"first_day": _iso(files[0]) if files else None, "last_day": _iso(files[-1]) if files else None,
         "days_received": len(files), "missing_days": len(missing),
         "missing": ", ".join(x.isoformat() for x in missing[:30]) + (" …" if len(missing) > 30 else "")}])
    rows = []
    for c, first, last, days in q("SELECT course_id, min(date), max(date), count(DISTINCT date) "
                                  "FROM models.activity_daily GROUP BY 1 ORDER BY 1"):
        if courses is not None and c not in courses:
            continue
        span = (last - first).days + 1
        rows.append({"course_id": c, "first_day": _iso(first), "last_day": _iso(last), "days_with_events": days,
                     "days_without_events": span - days})
    out["course_days"] = Dataset("course_days", [("course_id", "course"), ("first_day", "date"),
                                                 ("last_day", "date"), ("days_with_events", "number"),
                                                 ("days_without_events", "number")], rows)
    out["quarantine"] = Dataset("quarantine", [("kind", "text"), ("reason", "text"), ("files", "volume"),
                                               ("lines", "volume")], [
        {"kind": k, "reason": r, "files": f, "lines": n} for k, r, f, n in
        q("SELECT kind, regexp_replace(reason, '''[^'']*''|\"[^\"]*\"', '…', 'g'), count(DISTINCT source_file), "
          "count(*) FROM quarantine GROUP BY ALL ORDER BY 4 DESC, 1, 2")])
    out["models"] = Dataset("models", [("model", "text"), ("built_at", "datetime"), ("seconds", "seconds"),
                                       ("stale", "text")], [
        {"model": n, "built_at": _iso(b), "seconds": round(s or 0, 2), "stale": "yes" if n in stale else "no"}
        for n, b, s in q("SELECT name, built_at, seconds FROM _edx_models ORDER BY name")])
    return out
