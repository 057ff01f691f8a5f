"""Every indicator, defined once, as Ibis expressions.

The same functions run on DuckDB (default), PostgreSQL and - unchanged - any other Ibis
backend (Spark). Nothing here knows which engine runs it: a definition receives the input
tables and the models it depends on as Ibis tables and returns an Ibis table. The
prose definition of every column is in ``docs/indicators.md``; keep the two in step.

Conventions
- learner key: ``user_id`` (auth_user.id). Tables delivered per course (auth_user,
  auth_userprofile) are de-duplicated to one row per user (the row from the newest package,
  ties broken by course id).
- "unknown": a NULL or empty (after trimming) demographic value is counted as ``unknown``,
  never dropped.
- staff (auth_user.is_staff) are flagged in ``person_course`` and excluded from every other
  model unless ``Params.include_staff``.
- events without a ``user_id`` are attributed through their ``username``; anonymous events
  (no user id, empty username) count only in course coverage (first/last event day).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from ..schemas import COURSE_STAFF_ROLES as _COURSE_STAFF_ROLES

if TYPE_CHECKING:
    import ibis
    import ibis.expr.types as ir
else:
    class _LazyIbis:
        """``ibis``, imported at first use: a build whose model SQL is all cached (models/sqlcache.py)
        never builds an expression, and skips the import (~0.8 s)."""

        def __getattr__(self, name: str):
            import ibis as module

            globals()["ibis"] = module
            return getattr(module, name)

    ibis = _LazyIbis()

UNKNOWN = "unknown"
ALL = "(all)"
DEFAULT_PASSING_GRADE = 0.65
# How a grade is compared with the pass mark: edX's convention is "at or above" (">="); the original
# IDBx system counted "above" (">"). The registry (per course) or --passing-rule chooses.
PASSING_RULES = (">=", ">")
DEFAULT_PASSING_RULE = ">="

PLAY_VIDEO = ("play_video", "edx.video.played")
COMPLETE_VIDEO = ("complete_video", "edx.video.completed")
ENROLL_ACTIVATED = "edx.course.enrollment.activated"
ENROLL_DEACTIVATED = "edx.course.enrollment.deactivated"


@dataclass(frozen=True)
class Params:
    passing_grade: float = DEFAULT_PASSING_GRADE
    include_staff: bool = False
    passing_rule: str = DEFAULT_PASSING_RULE
    built_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).replace(tzinfo=None,
                                                                                                   microsecond=0))

    def fingerprint(self) -> str:
        return (f"passing_grade={self.passing_grade!r};include_staff={self.include_staff!r}"
                + (f";passing_rule={self.passing_rule}" if self.passing_rule != DEFAULT_PASSING_RULE else ""))


UPTO = "__upto"  # suffix: a cumulative model's source up to its partitions (``Tables.upto``)


class Tables:
    """Input tables and already-built models, by name (``t.events``, ``t["person_course"]``).

    ``upto``: the engine binds ``<model>__upto`` apart (the DuckDB build of a ``cumulative`` model:
    the source's partitions up to the ones being computed, while ``<model>`` holds only theirs);
    other engines compute every partition at once and give the whole model for both."""

    def __init__(self, get: Callable[[str], ir.Table], upto: bool = False):
        self._get = get
        self._cache: dict[str, ir.Table] = {}
        self._upto = upto

    def upto(self, name: str) -> ir.Table:
        """Model ``name`` up to (and with) the partitions being computed (see the class docstring)."""
        return self[name + UPTO] if self._upto else self[name]

    def __getitem__(self, name: str) -> ir.Table:
        if name not in self._cache:
            self._cache[name] = self._get(name)
        return self._cache[name]

    __getattr__ = __getitem__


@dataclass(frozen=True)
class Model:
    name: str
    inputs: tuple[str, ...]  # input tables (models/inputs.py)
    deps: tuple[str, ...]  # models it reads
    build: Callable[[Tables, Params], ir.Table]
    doc: str
    uses_params: bool = True
    uses_built_at: bool = False
    # Name of the column holding the event date when the model is kept by date partition: the rows
    # with value d are computed from the events of event_date d alone, and from the other inputs
    # only through username attribution (``event_users``). models/build.py then recomputes only the
    # dates whose events changed (docs/indicators.md "Incremental maintenance").
    # A model that reads no events but date-partitioned models (``deps``) can be partitioned too: its
    # rows with value v are computed from the source partitions of the dates whose ``grain`` is v
    # alone ("day": the date, "week": its ISO week's Monday, "month": its month's first day), and from
    # its ``inputs`` (any change of those recomputes every partition).
    # ``cumulative``: partition v is computed from the source dates up to v (a "first seen" count
    # needs the months before); it reads ``t.<dep>`` (the dates of v) and ``t.upto(<dep>)``.
    # grain "course" (partition "course_id"): the rows of course c are computed from the rows of c of
    # ``course_inputs`` (package tables whose course snapshot holds that course's rows only) and of
    # ``deps``, and from the other inputs whole (any change of those recomputes every course).
    partition: str | None = None
    grain: str = "day"
    cumulative: bool = False
    course_inputs: tuple[str, ...] = ()


GRAINS = ("day", "week", "month", "course")
MODELS: dict[str, Model] = {}


def model(name: str, inputs=(), deps=(), doc: str = "", uses_params: bool = True, uses_built_at: bool = False,
          partition: str | None = None, grain: str = "day", cumulative: bool = False, course_inputs=()):
    if grain not in GRAINS:
        raise ValueError(f"model {name}: grain must be one of {GRAINS}, not {grain!r}")
    if (grain == "course") != (partition == "course_id") or not set(course_inputs) <= set(inputs):
        raise ValueError(f"model {name}: a course partition is partition='course_id', grain='course', "
                         f"course_inputs among its inputs")

    def deco(fn):
        MODELS[name] = Model(name, tuple(inputs), tuple(deps), fn, doc or (fn.__doc__ or "").strip(),
                             uses_params, uses_built_at, partition, grain, cumulative, tuple(course_inputs))
        return fn
    return deco


# --- helpers -------------------------------------------------------------------------------------

def clean(col: ir.Value, upper: bool = False, lower: bool = False) -> ir.StringValue:
    """Trimmed text; NULL or empty -> 'unknown'."""
    s = col.cast("string").strip()
    if upper:
        s = s.upper()
    if lower:
        s = s.lower()
    return s.nullif("").fill_null(UNKNOWN)


def isum(col: ir.NumericColumn) -> ir.IntegerScalar:
    """Integer sum. SUM(BIGINT) is HUGEINT in DuckDB (stored as DOUBLE in Parquet) and NUMERIC in
    PostgreSQL. Ibis drops a plain cast to int64 (the sum already is int64 to it), so the cast goes
    through DECIMAL(38, 0), which it keeps and both engines turn into BIGINT."""
    return col.sum().cast("decimal(38, 0)").cast("int64")


def enrolments(t: Tables) -> ir.Table:
    """One student_courseenrollment row per (course, user): newest package, then latest `created`,
    then highest `id` (a snapshot can hold stale duplicates)."""
    e = t.student_courseenrollment.filter(lambda s: s.user_id.notnull() & s.course_id.notnull())
    return first_per(e, ["course_id", "user_id"], [ibis.desc(e.package_date), ibis.desc(e.created), ibis.desc(e.id)])


def first_per(t: ir.Table, keys: list[str], order: list) -> ir.Table:
    """One row per ``keys``: the first in ``order`` (deterministic on every engine)."""
    w = ibis.window(group_by=[t[k] for k in keys], order_by=order)
    return t.mutate(_rn=ibis.row_number().over(w)).filter(lambda s: s._rn == 0).drop("_rn")


def among(rel: ir.Table, col: str, ids: ir.Table | None) -> ir.Table:
    """``rel``'s rows whose ``col`` is one of the ids of ``ids`` (one column), all of them when None.

    Applied before a per-user ``first_per`` it keeps every row of the users kept, so their chosen row
    is the same, and the window sorts the rows of those users only: a build of three courses out of
    two hundred ranks their learners' rows, not the whole organisation's (auth_user and
    auth_userprofile hold one row per user and course)."""
    if ids is None:
        return rel
    k = ids.select(_among_id=ids[ids.columns[0]])
    return rel.semi_join(k, rel[col] == k._among_id)


def users(t: Tables, ids: ir.Table | None = None) -> ir.Table:
    """auth_user, one row per user id: user_id, username, is_staff (only the users ``ids`` when given)."""
    u = among(t.auth_user.filter(lambda s: s.id.notnull()), "id", ids)
    u = first_per(u, ["id"], [ibis.desc(u.package_date), u.course_id])
    return u.select(user_id=u.id, username=u.username, is_staff=u.is_staff.fill_null(False))


def profiles(t: Tables, ids: ir.Table | None = None) -> ir.Table:
    """auth_userprofile, one row per user id, demographics normalised (only the users ``ids`` when given)."""
    p = among(t.auth_userprofile.filter(lambda s: s.user_id.notnull()), "user_id", ids)
    p = first_per(p, ["user_id"], [ibis.desc(p.package_date), p.course_id])
    return p.select(
        user_id=p.user_id,
        gender=clean(p.gender, lower=True),
        year_of_birth=p.year_of_birth,
        level_of_education=clean(p.level_of_education, lower=True),
        country=clean(p.country, upper=True),
    )


def locations(t: Tables) -> ir.Table:
    """user_location (``edx-engine locate-users``), one row per (course, user): the IP-derived country
    (upper-cased; 'unknown' when not locatable) and where ``user_location.country`` came from."""
    loc = t.user_location.filter(lambda s: s.user_id.notnull() & s.course_id.notnull())
    loc = first_per(loc, ["course_id", "user_id"], [loc.source.fill_null(""), loc.ip_country.fill_null("")])
    return loc.select(l_course_id=loc.course_id, l_user_id=loc.user_id, ip_country=clean(loc.ip_country, upper=True),
                      country_source=clean(loc.source, lower=True).substitute({UNKNOWN: "none"}))


def staff_ids(t: Tables) -> ir.Table:
    """Global staff: users whose current auth_user row says is_staff. Only a user with a staff row in
    some package can be one: the others' rows are not ranked."""
    a = t.auth_user
    u = users(t, a.filter(a.is_staff.fill_null(False) & a.id.notnull()).select("id"))
    return u.filter(u.is_staff).select(staff_id=u.user_id)


# student_courseaccessrole roles that make an account the course's staff (beta testers and library
# users are learners). edx2bigquery's person_course "roles"; docs/indicators.md "Staff".
COURSE_STAFF_ROLES = _COURSE_STAFF_ROLES  # (defined with the table, in schemas.py: geo uses it too)


def course_staff(t: Tables) -> ir.Table:
    """(r_course_id, r_user_id): accounts with a staff role in that course."""
    r = t.student_courseaccessrole
    r = r.filter(r.user_id.notnull() & r.course_id.notnull() & r.role.lower().strip().isin(COURSE_STAFF_ROLES))
    return r.select(r_course_id="course_id", r_user_id="user_id").distinct()


def without_staff(t: Tables, p: Params, rel: ir.Table, col: str = "user_id") -> ir.Table:
    """``rel`` without global staff and without the course's own staff (course roles)."""
    if p.include_staff:
        return rel
    s = staff_ids(t)
    rel = rel.anti_join(s, rel[col] == s.staff_id)
    r = course_staff(t)
    return rel.anti_join(r, (rel.course_id == r.r_course_id) & (rel[col] == r.r_user_id))


def event_users(t: Tables, ev: ir.Table) -> ir.Table:
    """Add ``uid``, the learner the event is attributed to, and ``own``, whether that learner performed it.

    ``uid``: the learner named in the payload of an enrolment or certificate event (``subject_id``,
    i.e. ``event.user_id``: such events are often logged by a staff account or by "anonymous"), else
    the context user id, else the id of the username (anonymous -> NULL). ``own``: the event is not
    about another account than the one that acted (a batch enrolment is not the learner's action).

    The join key is NULL whenever user_id is known, so the hash join only probes the few
    username-only events."""
    # Only the users with a row named as one of these events' usernames can be named so now: their rows
    # alone are ranked (a day's events, not the whole organisation's auth_user).
    names = ev.filter(ev.user_id.isnull() & (ev.username != "")).select(_name=ev.username).distinct()
    a = t.auth_user
    u = users(t, a.semi_join(names, a.username == names._name).select("id"))
    u = u.select(map_username="username", map_user_id="user_id")
    u = u.group_by("map_username").aggregate(map_user_id=u.map_user_id.min())
    ev = ev.mutate(_lookup=ibis.ifelse(ev.user_id.isnull() & (ev.username != ""), ev.username, None))
    j = ev.left_join(u, ev._lookup == u.map_username)
    actor = ibis.coalesce(j.user_id, j.map_user_id)
    j = j.mutate(uid=ibis.coalesce(j.subject_id, actor),
                 own=j.subject_id.isnull() | (j.subject_id == actor).fill_null(False))
    return j.drop("_lookup", "map_username", "map_user_id")


def course_events(ev: ir.Table) -> ir.Table:
    return ev.filter(ev.course_id.notnull() & (ev.course_id != ""))


def weeks(d: ir.DateValue) -> ir.DateValue:
    """Monday of the ISO week."""
    return d.cast("timestamp").truncate("W").date()


def months(d: ir.DateValue) -> ir.DateValue:
    """First day of the month."""
    return d.cast("timestamp").truncate("M").date()


# --- course registry --------------------------------------------------------------------------------

@model("learner_day", inputs=("events", "auth_user"), uses_params=False, partition="date")
def learner_day(t: Tables, p: Params) -> ir.Table:
    """One row per learner per course per day with events attributed to them (staff included; filtered
    downstream). ``nevents``/``nplay_video``/``nproblem_check`` follow the research (edx2bigquery)
    definitions; ``nevents_own`` counts every event the learner performed, ``nevents_all`` also the
    events about them (enrolments by staff or anonymous)."""
    ev = course_events(t.events)
    ev = ev.filter(ev.user_id.notnull() | ev.subject_id.notnull() | (ev.username.notnull() & (ev.username != "")))
    ev = event_users(t, ev)
    ev = ev.filter(ev.uid.notnull())
    research = research_event(ev)
    etype = ev.event_type.fill_null("")
    is_play = ev.event_type.isin(PLAY_VIDEO) | ev.name.fill_null("").isin(PLAY_VIDEO)
    return ev.group_by(["course_id", ev.uid.name("user_id"), ev.event_date.name("date")]).aggregate(
        nevents=ev.count(where=research), nevents_own=ev.count(where=ev.own), nevents_all=ev.count(),
        first_event=ev.time.min(), last_event=ev.time.max(),
        nplay_video=ev.count(where=research & (etype == "play_video")),
        nplay_video_all=ev.count(where=is_play),
        nproblem_check=ev.count(where=research & (etype == "problem_check")),
        nproblem_check_server=ev.count(where=(etype == "problem_check") & (ev.event_source == "server")),
    )


def research_event(ev: ir.Table) -> ir.BooleanValue:
    """An event counted by edx2bigquery's person_course_day: performed by the learner's own account (it
    counts events by username; we use the account, which stays when ``scrub`` removes usernames), not
    an ``/xblock/`` handler call, not a background task."""
    return ev.own & ~ev.event_type.fill_null("").contains("/xblock/") & (ev.event_source.fill_null("") != "task")


@model("course_day", inputs=("events",), uses_params=False, partition="date")
def course_day(t: Tables, p: Params) -> ir.Table:
    """Per course and event day: every event of the course (anonymous ones included), and those whose
    context named the course (``nevents_context``: the others name it only in an enrolment payload)."""
    ev = course_events(t.events)
    ctx = ev.context_course_id.notnull() & (ev.context_course_id != "")
    return ev.group_by(["course_id", ev.event_date.name("date")]).aggregate(nevents=ev.count(),
                                                                            nevents_context=ev.count(where=ctx))


@model("course_month", deps=("course_day",), uses_params=False, partition="month", grain="month")
def course_month(t: Tables, p: Params) -> ir.Table:
    """``course_day`` per course and month: its first and last event day, events, events whose context
    named the course (what ``courses`` and the course registry read: a dozen files a year, not 365)."""
    cd = t.course_day
    return cd.group_by(["course_id", months(cd.date).name("month")]).aggregate(
        first_event_day=cd.date.min(), last_event_day=cd.date.max(), nevents=isum(cd.nevents),
        nevents_context=isum(cd.nevents_context))


@model("course_package_counts", inputs=("student_courseenrollment", "course_structure", "auth_user",
                                        "student_courseaccessrole"),
       partition="course_id", grain="course",
       course_inputs=("student_courseenrollment", "course_structure", "student_courseaccessrole"))
def course_package_counts(t: Tables, p: Params) -> ir.Table:
    """Per course, from its package snapshots: ``learners`` (distinct enrolled users, staff removed) and
    ``nchapters`` (chapters of its structure). Kept by course, so that ``courses``, rebuilt whenever a day
    of events arrives, reads one row per course instead of every course's enrolments and structure."""
    enr = without_staff(t, p, t.student_courseenrollment.filter(lambda s: s.course_id.notnull()))
    learners = enr.group_by("course_id").aggregate(learners=enr.user_id.nunique())
    cs = t.course_structure
    cs = cs.filter(cs.course_id.notnull() & (cs.category == "chapter"))
    chapters = cs.group_by(cs.course_id.name("c_course_id")).aggregate(nchapters=cs.block_id.nunique())
    keys = ibis.union(learners.select("course_id"), chapters.select(course_id="c_course_id"), distinct=True)
    j = keys.left_join(learners, keys.course_id == learners.course_id).drop("course_id_right")
    j = j.left_join(chapters, j.course_id == chapters.c_course_id)
    return j.select("course_id", "learners", "nchapters")


@model("courses", inputs=("course_info",), deps=("course_month", "course_package_counts"))
def courses(t: Tables, p: Params) -> ir.Table:
    """Course registry merged with the package: one row per course known anywhere."""
    ci = t.course_info
    cm = t.course_month
    cover = cm.group_by("course_id").aggregate(first_event_day=cm.first_event_day.min(),
                                               last_event_day=cm.last_event_day.max(), nevents=isum(cm.nevents))
    pkg = t.course_package_counts
    j = ci.left_join(pkg, ci.course_id == pkg.course_id).drop("course_id_right")
    j = j.left_join(cover, j.course_id == cover.course_id).drop("course_id_right")
    return j.select(
        "course_id", "name", "sme", "start_date", "end_date", "in_registry", "structure_name", "structure_start",
        "structure_end", "tables",
        nchapters=j.nchapters.fill_null(0), learners=j.learners.fill_null(0),
        first_event_day=j.first_event_day, last_event_day=j.last_event_day, nevents=j.nevents.fill_null(0),
        passing_grade=j.passing_grade, passing_source=j.passing_source, passing_rule=j.passing_rule,
    )


# --- person_course -------------------------------------------------------------------------------------

EXPLORE_MIN_VIEWERS = 20  # a chapter counts towards "explored" once this many learners opened it (edx2bigquery)


def chapter_activity(t: Tables) -> tuple[ir.Table, ir.Table]:
    """Per (course, learner): studentmodule rows, chapter rows (research ``nchapters``), chapters reached
    through the structure (``nchapters_structure``), first/last row; and per course the number of
    chapters opened by at least EXPLORE_MIN_VIEWERS learners."""
    sm = t.courseware_studentmodule.filter(lambda s: s.student_id.notnull())
    cs = t.course_structure
    blocks = cs.select(b_course_id="course_id", b_block_id="block_id", b_chapter_id="chapter_id")
    smj = sm.left_join(blocks, (sm.course_id == blocks.b_course_id) & (sm.module_id == blocks.b_block_id))
    is_chapter = smj.module_type.fill_null("").strip().lower() == "chapter"
    mapped = ibis.coalesce(smj.b_chapter_id, ibis.ifelse(is_chapter, smj.module_id, None))
    per = smj.group_by([smj.course_id.name("s_course_id"), smj.student_id.name("s_user_id")]).aggregate(
        nstudentmodule=smj.count(), nchapters=smj.module_id.nunique(where=is_chapter),
        nchapters_structure=mapped.nunique(),
        first_studentmodule=smj.created.min(), last_studentmodule=ibis.greatest(smj.modified, smj.created).max(),
    )
    ch = sm.filter(sm.module_type.fill_null("").strip().lower() == "chapter")
    ch = ch.group_by(["course_id", "module_id"]).aggregate(viewers=ch.student_id.nunique())
    ch = ch.filter(ch.viewers >= EXPLORE_MIN_VIEWERS)
    return per, ch.group_by(ch.course_id.name("n_course_id")).aggregate(chapters_viewed=ch.count())


@model("learner_month", deps=("learner_day",), uses_params=False, partition="month", grain="month")
def learner_month(t: Tables, p: Params) -> ir.Table:
    """``learner_day`` rolled up per course, learner and month (staff included): sums, active days, first
    and last event. learner_day has one row per (course, learner, date), so a month's days are counted
    with ``count`` (no distinct needed) and a learner's days over all time are the sum of the months'."""
    ld = t.learner_day
    dated = ld.date.notnull()  # nunique over dates ignores NULL: so do the counts
    return ld.group_by(["course_id", "user_id", months(ld.date).name("month")]).aggregate(
        nevents=isum(ld.nevents), ndays_act=ld.count(where=dated & (ld.nevents > 0)),
        nevents_all=isum(ld.nevents_all), ndays_act_all=ld.count(where=dated),
        first_event=ld.first_event.min(), last_event=ld.last_event.max(),
        nplay_video=isum(ld.nplay_video), nplay_video_all=isum(ld.nplay_video_all),
        nproblem_check=isum(ld.nproblem_check), nproblem_check_server=isum(ld.nproblem_check_server),
    )


@model("person_course", deps=("learner_month", "courses"),
       inputs=("student_courseenrollment", "auth_user", "auth_userprofile", "certificates_generatedcertificate",
               "courseware_studentmodule", "course_structure", "forum", "user_location", "student_courseaccessrole"),
       partition="course_id", grain="course",  # auth_user, auth_userprofile: one row per user over all courses
       course_inputs=("student_courseenrollment", "certificates_generatedcertificate", "courseware_studentmodule",
                      "course_structure", "forum", "student_courseaccessrole"))
def person_course(t: Tables, p: Params) -> ir.Table:
    """One row per learner with an enrolment or a certificate in a course, HarvardX/MITx research
    definitions (docs/indicators.md); staff flagged, not removed."""
    e = enrolments(t)
    e = e.select(e_course_id="course_id", e_user_id="user_id", enrolled_at=e.created,
                 is_active=e.is_active.fill_null(True), e_mode=e.mode)

    c = t.certificates_generatedcertificate.filter(lambda s: s.user_id.notnull() & s.course_id.notnull())
    c = first_per(c, ["course_id", "user_id"], [ibis.desc(c.modified_date), ibis.desc(c.id)])
    c = c.select(c_course_id="course_id", c_user_id="user_id", cert_status=c.status, grade=c.grade,
                 cert_mode=c.mode, cert_created=c.created_date)
    keys = ibis.union(e.select(course_id="e_course_id", user_id="e_user_id"),
                      c.select(course_id="c_course_id", user_id="c_user_id"), distinct=True)

    sma, viewed_chapters = chapter_activity(t)

    lm = t.learner_month  # month rollups of learner_day: their sums, counts, min/max give the same values
    eva = lm.group_by([lm.course_id.name("v_course_id"), lm.user_id.name("v_user_id")]).aggregate(
        nevents=isum(lm.nevents), ndays_act=isum(lm.ndays_act),
        nevents_all=isum(lm.nevents_all), ndays_act_all=isum(lm.ndays_act_all),
        first_event=lm.first_event.min(), last_event=lm.last_event.max(),
        nplay_video=isum(lm.nplay_video), nplay_video_all=isum(lm.nplay_video_all),
        nproblem_check=isum(lm.nproblem_check), nproblem_check_server=isum(lm.nproblem_check_server),
    )

    f = t.forum.filter(lambda s: s.author_id.notnull())
    fa = f.group_by([f.course_id.name("f_course_id"), f.author_id.name("f_user_id")]).aggregate(
        nforum_posts=f.count())

    crs = t.courses.select(k_course_id="course_id", course_chapters="nchapters", course_passing="passing_grade",
                           course_rule="passing_rule")
    learner_ids = keys.select("user_id")
    u = users(t, learner_ids).select(u_user_id="user_id", username="username", is_global_staff="is_staff")
    pr = profiles(t, learner_ids).rename(p_user_id="user_id")
    loc = locations(t)
    roles = course_staff(t).mutate(course_role=ibis.literal(True))

    j = keys.left_join(e, (keys.course_id == e.e_course_id) & (keys.user_id == e.e_user_id))
    j = j.left_join(c, (j.course_id == c.c_course_id) & (j.user_id == c.c_user_id))
    j = j.left_join(sma, (j.course_id == sma.s_course_id) & (j.user_id == sma.s_user_id))
    j = j.left_join(viewed_chapters, j.course_id == viewed_chapters.n_course_id)
    j = j.left_join(eva, (j.course_id == eva.v_course_id) & (j.user_id == eva.v_user_id))
    j = j.left_join(fa, (j.course_id == fa.f_course_id) & (j.user_id == fa.f_user_id))
    j = j.left_join(crs, j.course_id == crs.k_course_id)
    j = j.left_join(u, j.user_id == u.u_user_id)
    j = j.left_join(pr, j.user_id == pr.p_user_id)
    j = j.left_join(loc, (j.course_id == loc.l_course_id) & (j.user_id == loc.l_user_id))
    j = j.left_join(roles, (j.course_id == roles.r_course_id) & (j.user_id == roles.r_user_id))

    registered = j.e_user_id.notnull()
    is_active = registered & j.is_active.fill_null(True)
    nchapters = j.nchapters.fill_null(0)
    nstruct = j.nchapters_structure.fill_null(0)
    n_viewed = j.chapters_viewed.fill_null(0)
    course_chapters = j.course_chapters.fill_null(0)
    passing = ibis.coalesce(j.course_passing, ibis.literal(repr(float(p.passing_grade))).cast("float64"))
    rule = ibis.coalesce(j.course_rule, ibis.literal(p.passing_rule))
    grade = j.grade.fill_null(-1.0)
    global_staff = j.is_global_staff.fill_null(False)
    course_role = j.course_role.fill_null(False)
    return j.select(
        "course_id", "user_id", "username",
        registered=registered,
        is_active=is_active,
        unenrolled=registered & ~is_active,
        # a blank enrolment mode says no more than NULL: the certificate's is taken then
        mode=clean(ibis.coalesce(j.e_mode.cast("string").strip().nullif(""), j.cert_mode), lower=True),
        enrolled_at=j.enrolled_at,
        viewed=nchapters > 0,
        # nchapters >= floor(N / 2), in integers
        explored=(nchapters > 0) & (nchapters * 2 >= n_viewed - n_viewed % 2),
        explored_structure=(course_chapters > 0) & (nstruct * 2 >= course_chapters),
        certified=clean(j.cert_status, lower=True) == "downloadable",  # as cert_status: ' Downloadable' too
        passed=ibis.ifelse(rule == ">", grade > passing, grade >= passing),
        passing_grade=passing,
        passing_rule=rule,
        cert_status=clean(j.cert_status, lower=True).substitute({UNKNOWN: "none"}),
        grade=j.grade,
        cert_created=j.cert_created,
        nstudentmodule=j.nstudentmodule.fill_null(0),
        nchapters=nchapters,
        nchapters_structure=nstruct,
        course_chapters=course_chapters,
        course_chapters_viewed=n_viewed,
        first_studentmodule=j.first_studentmodule,
        last_studentmodule=j.last_studentmodule,
        nevents=j.nevents.fill_null(0),
        ndays_act=j.ndays_act.fill_null(0),
        nevents_all=j.nevents_all.fill_null(0),
        ndays_act_all=j.ndays_act_all.fill_null(0),
        first_event=j.first_event,
        last_event=j.last_event,
        nplay_video=j.nplay_video.fill_null(0),
        nplay_video_all=j.nplay_video_all.fill_null(0),
        nproblem_check=j.nproblem_check.fill_null(0),
        nproblem_check_server=j.nproblem_check_server.fill_null(0),
        nforum_posts=j.nforum_posts.fill_null(0),
        gender=j.gender.fill_null(UNKNOWN),
        level_of_education=j.level_of_education.fill_null(UNKNOWN),
        year_of_birth=j.year_of_birth,
        country=j.country.fill_null(UNKNOWN),
        ip_country=j.ip_country.fill_null(UNKNOWN),
        country_source=j.country_source.fill_null("none"),
        is_staff=global_staff | course_role,
        is_global_staff=global_staff,
        course_staff=course_role,
    )


def learners(t: Tables, p: Params) -> ir.Table:
    """person_course rows counted by the indicators (staff removed unless include_staff)."""
    pc = t.person_course
    return pc if p.include_staff else pc.filter(~pc.is_staff)


# --- the original reports ------------------------------------------------------------------------------

# The course reports are kept by course, as person_course is (grain "course"): a build recomputes only the
# courses whose person_course rows (or ``courses`` row) changed. course_summary and general_report stay
# whole (one row a course, and ``created_at`` is the build's time for every row): course_summary reads
# the per-course counts of ``course_counts``, so its whole rebuild costs a row per course, not a scan of
# person_course.

COURSE_COUNTS = ["enrolled", "enrolled_active", "unenrolled", "active", "active_events", "explored",
                 "certificates_failed", "approved", "certified", "male", "female", "other_unknown", "countries",
                 "countries_ip"]


@model("course_counts", deps=("person_course",), partition="course_id", grain="course")
def course_counts(t: Tables, p: Params) -> ir.Table:
    """Course report, the counts of course_summary: one row per course with learners (kept by course)."""
    pc = learners(t, p)
    known_country = pc.country != UNKNOWN
    return pc.group_by("course_id").aggregate(
        enrolled=pc.count(where=pc.registered),
        enrolled_active=pc.count(where=pc.is_active),
        unenrolled=pc.count(where=pc.unenrolled),
        active=pc.count(where=pc.viewed),
        active_events=pc.count(where=pc.nevents > 0),
        explored=pc.count(where=pc.explored),
        certificates_failed=pc.count(where=pc.cert_status == "notpassing"),
        approved=pc.count(where=pc.passed),
        certified=pc.count(where=pc.certified),
        male=pc.count(where=pc.gender == "m"),
        female=pc.count(where=pc.gender == "f"),
        other_unknown=pc.count(where=~pc.gender.isin(["m", "f"])),
        countries=pc.country.nunique(where=known_country),
        countries_ip=pc.ip_country.nunique(where=pc.ip_country != UNKNOWN),
    )


@model("course_summary", deps=("course_counts", "courses"), uses_built_at=True)
def course_summary(t: Tables, p: Params) -> ir.Table:
    """Course report, headline figures: one row per course (courses with no learners get zeros)."""
    a = t.course_counts.rename(a_course_id="course_id")
    c = t.courses
    j = c.left_join(a, c.course_id == a.a_course_id)
    return j.select(
        "course_id", "name", "sme", "start_date", "end_date",
        **{k: j[k].fill_null(0) for k in COURSE_COUNTS},
        passing_grade=ibis.coalesce(j.passing_grade, ibis.literal(repr(float(p.passing_grade))).cast("float64")),
        passing_rule=ibis.coalesce(j.passing_rule, ibis.literal(p.passing_rule)),
        created_at=ibis.literal(p.built_at, type="timestamp"),
    )


@model("course_breakdown", deps=("person_course",), partition="course_id", grain="course")
def course_breakdown(t: Tables, p: Params) -> ir.Table:
    """Course report, breakdowns: learners by gender / education / year of birth / IP-derived country /
    profile country for the whole course (country = '(all)'), and per (profile) country by gender, education,
    year of birth and IP-derived country."""
    pc = learners(t, p)
    pc = pc.mutate(yob=clean(pc.year_of_birth.cast("string")))
    dims = {"gender": pc.gender, "level_of_education": pc.level_of_education, "year_of_birth": pc.yob,
            "ip_country": pc.ip_country}
    parts = []
    for dim, col in {**dims, "country": pc.country}.items():
        parts.append(pc.group_by(["course_id", col.name("value")]).aggregate(learners=pc.count())
                     .mutate(country=ibis.literal(ALL), dimension=ibis.literal(dim)))
    for dim, col in dims.items():
        parts.append(pc.group_by(["course_id", pc.country.name("country"), col.name("value")])
                     .aggregate(learners=pc.count()).mutate(dimension=ibis.literal(dim)))
    cols = ["course_id", "country", "dimension", "value", "learners"]
    return ibis.union(*[x.select(*cols) for x in parts], distinct=False)


@model("general_report", deps=("course_summary",), uses_built_at=True)
def general_report(t: Tables, p: Params) -> ir.Table:
    """One row per course: the general CSV of the original system."""
    s = t.course_summary
    return s.select("course_id", "name", "sme", "start_date", "end_date", total=s.enrolled, active=s.active,
                    approved=s.approved, certified=s.certified, failed=s.certificates_failed, male=s.male,
                    female=s.female, other_unknown=s.other_unknown, countries=s.countries,
                    countries_ip=s.countries_ip, passing_grade=s.passing_grade, passing_rule=s.passing_rule)


@model("enrolment_report", deps=("person_course", "courses"), partition="course_id", grain="course")
def enrolment_report(t: Tables, p: Params) -> ir.Table:
    """One row per enrolment, all courses: course name, id, registration date, gender, country."""
    pc = learners(t, p)
    pc = pc.filter(pc.registered)
    c = t.courses.select(k_course_id="course_id", course_name="name")
    j = pc.left_join(c, pc.course_id == c.k_course_id)
    return j.select("course_name", "course_id", "user_id", registration_date=j.enrolled_at, gender=j.gender,
                    country=j.country, mode=j.mode, is_active=j.is_active)


@model("active_users", deps=("person_course", "courses"))
def active_users(t: Tables, p: Params) -> ir.Table:
    """Active learners per course and combined (course_id '(all)': distinct learners over all courses)."""
    pc = learners(t, p)
    c = t.courses
    per = pc.group_by(pc.course_id.name("a_course_id")).aggregate(
        enrolled=pc.count(where=pc.registered),
        active=pc.user_id.nunique(where=pc.viewed),
        active_events=pc.user_id.nunique(where=pc.nevents > 0),
    )
    j = c.left_join(per, c.course_id == per.a_course_id)
    per = j.select("course_id", enrolled=j.enrolled.fill_null(0), active=j.active.fill_null(0),
                   active_events=j.active_events.fill_null(0))
    allc = pc.aggregate(enrolled=pc.user_id.nunique(where=pc.registered), active=pc.user_id.nunique(where=pc.viewed),
                        active_events=pc.user_id.nunique(where=pc.nevents > 0)).mutate(course_id=ibis.literal(ALL))
    return ibis.union(per, allc.select(*per.columns), distinct=False)


@model("demographics", deps=("person_course",))
def demographics(t: Tables, p: Params) -> ir.Table:
    """One row per learner (over all courses): demographics and course counts."""
    pc = learners(t, p)
    return pc.group_by(["user_id", "gender", "year_of_birth", "level_of_education", "country"]).aggregate(
        courses=pc.count(), courses_active=pc.count(where=pc.viewed), certificates=pc.count(where=pc.certified))


@model("masterfile", deps=("person_course", "courses"), partition="course_id", grain="course")
def masterfile(t: Tables, p: Params) -> ir.Table:
    """MASTERFILE: one row per learner per course, demographics + progress + certificate + course metadata."""
    pc = learners(t, p)
    c = t.courses.select(k_course_id="course_id", course_name="name", sme="sme", course_start="start_date",
                         course_end="end_date")
    j = pc.left_join(c, pc.course_id == c.k_course_id)
    return j.select("user_id", "username", "course_id", "course_name", "sme", "course_start", "course_end",
                    "gender", "year_of_birth", "level_of_education", "country", "mode", "enrolled_at", "is_active",
                    progress=j.nstudentmodule, cert_status=j.cert_status, grade=j.grade, certified=j.certified,
                    passed=j.passed)


# --- time series --------------------------------------------------------------------------------------------

@model("enrolment_day", inputs=("events_enrollment", "auth_user"), uses_params=False, partition="date")
def enrolment_day(t: Tables, p: Params) -> ir.Table:
    """Per course, event day, day of the enrolment event's time, mode and learner: activations and
    deactivations (staff not removed yet: ``enrolment_daily`` does, with the current packages)."""
    ev = course_events(t.events_enrollment)
    ev = event_users(t, ev)
    ev = ev.filter(ev.uid.notnull() & ev.event_type.isin([ENROLL_ACTIVATED, ENROLL_DEACTIVATED]) & ev.time.notnull())
    return ev.group_by(["course_id", ev.event_date.name("date"), ev.time.date().name("enrol_date"),
                        clean(ev.mode, lower=True).name("mode"), ev.uid.name("user_id")]) \
        .aggregate(activations=ev.count(where=ev.event_type == ENROLL_ACTIVATED),
                   deactivations=ev.count(where=ev.event_type == ENROLL_DEACTIVATED))


@model("enrolment_month", deps=("enrolment_day",), uses_params=False, partition="month", grain="month")
def enrolment_month(t: Tables, p: Params) -> ir.Table:
    """``enrolment_day`` per month of the event date (``month``), course, enrolment day, mode and learner:
    activations and deactivations (what ``enrolment_daily`` reads: a dozen files a year, not 365)."""
    ed = t.enrolment_day
    return ed.group_by(["course_id", months(ed.date).name("month"), "enrol_date", "mode", "user_id"]).aggregate(
        activations=isum(ed.activations), deactivations=isum(ed.deactivations))


EARLIEST_DAY = (2012, 1, 1)  # edX's first courses (the tracking logs' earliest_time too)
# Days an enrolment may be created after its package's date: an export named by the day it started can
# run past midnight. A margin for that, far below the absurd dates it is there to catch.
PACKAGE_LAG_DAYS = 7


def enrol_day(e: ir.Table) -> ir.Value:
    """The day of an enrolment's ``created``, or NULL for a day no enrolment can have: before edX's first
    courses or more than ``PACKAGE_LAG_DAYS`` after the package that lists it (a value such as 0001-01-01
    or 9999-12-31 put the dashboard's enrolment charts on an axis of thousands of years, a site of
    gigabytes). The enrolment is still counted, on no day."""
    day = e.created.date()
    latest = e.package_date.cast("date") + ibis.interval(days=PACKAGE_LAG_DAYS)
    ok = (day >= ibis.date(*EARLIEST_DAY)) & (e.package_date.isnull() | (day <= latest))
    return ibis.ifelse(ok, day, None)


@model("enrolment_daily", inputs=("student_courseenrollment", "auth_user", "student_courseaccessrole"),
       deps=("enrolment_month",), partition="course_id", grain="course",
       course_inputs=("student_courseenrollment", "student_courseaccessrole"))
def enrolment_daily(t: Tables, p: Params) -> ir.Table:
    """Per course, day and mode: enrolments (snapshot `created`), activations / deactivations (events)."""
    e = without_staff(t, p, enrolments(t).filter(lambda s: s.created.notnull()))
    snap = e.group_by(["course_id", enrol_day(e).name("date"), clean(e.mode, lower=True).name("mode")]) \
        .aggregate(enrollments=e.count()).mutate(activations=ibis.literal(0, "int64"),
                                                 deactivations=ibis.literal(0, "int64"))
    ed = without_staff(t, p, t.enrolment_month)
    evs = ed.select("course_id", "mode", "activations", "deactivations", date=ed.enrol_date,
                    enrollments=ibis.literal(0, "int64"))
    cols = ["course_id", "date", "mode", "enrollments", "activations", "deactivations"]
    u = ibis.union(snap.select(*cols), evs.select(*cols), distinct=False)
    return u.group_by(["course_id", "date", "mode"]).aggregate(
        enrollments=isum(u.enrollments), activations=isum(u.activations), deactivations=isum(u.deactivations))


@model("activity_daily", deps=("learner_day",), inputs=("auth_user", "student_courseaccessrole"), partition="date")
def activity_daily(t: Tables, p: Params) -> ir.Table:
    """Per course and day: learners with at least one event, and their events. learner_day has one row
    per (course, learner, date): the day's learners are its rows (``count``, no distinct needed)."""
    ld = own_days(t, p)
    return ld.group_by(["course_id", "date"]).aggregate(active_learners=ld.count(),
                                                         nevents=isum(ld.nevents_own))


@model("activity_weekly", deps=("learner_day",), inputs=("auth_user", "student_courseaccessrole"),
       partition="week", grain="week")
def activity_weekly(t: Tables, p: Params) -> ir.Table:
    """Per course and ISO week (Monday): learners with at least one event that week, and their events."""
    ld = own_days(t, p)
    return ld.group_by(["course_id", weeks(ld.date).name("week")]).aggregate(
        active_learners=ld.user_id.nunique(), nevents=isum(ld.nevents_own))


def own_days(t: Tables, p: Params) -> ir.Table:
    """learner_day rows where the learner did something (an enrolment by staff is not activity)."""
    ld = without_staff(t, p, t.learner_day)
    return ld.filter(ld.nevents_own > 0)


@model("video_day", inputs=("events_video", "auth_user"), uses_params=False, partition="date")
def video_day(t: Tables, p: Params) -> ir.Table:
    """Per course, video, learner and event day: plays, completions and events (staff not removed yet)."""
    ev = course_events(t.events_video)
    ev = ev.filter(ev.video_id.notnull() & (ev.video_id != ""))
    ev = event_users(t, ev)
    ev = ev.filter(ev.uid.notnull())
    play = ev.event_type.isin(PLAY_VIDEO) | ev.name.fill_null("").isin(PLAY_VIDEO)
    done = ev.event_type.isin(COMPLETE_VIDEO) | ev.name.fill_null("").isin(COMPLETE_VIDEO)
    return ev.group_by(["course_id", "video_id", ev.uid.name("user_id"), ev.event_date.name("date")]).aggregate(
        plays=ev.count(where=play), completions=ev.count(where=done), nevents=ev.count())


@model("video_month", deps=("video_day",), uses_params=False, partition="month", grain="month")
def video_month(t: Tables, p: Params) -> ir.Table:
    """``video_day`` per course, video, learner and month: plays, completions, events (what
    ``video_summary`` reads: a learner has a day with plays iff a month with plays)."""
    vd = t.video_day
    return vd.group_by(["course_id", "video_id", "user_id", months(vd.date).name("month")]).aggregate(
        plays=isum(vd.plays), completions=isum(vd.completions), nevents=isum(vd.nevents))


def firsts(t: Tables, source: str, own: ir.Table, keys: list[str], **conds: ir.BooleanValue) -> ir.Table:
    """``own`` (rows of ``source`` per ``keys`` + ``month``) with, per condition name, whether the row's
    month is the first the key had a row meeting it (``first_<name>``, never NULL; ``first_any``: any
    row), read from ``source`` up to the months computed, limited to the keys of ``own``."""
    first_day = ibis.date(1, 1, 1)  # a NULL month (events without a date: hand-made catalogs) comes first
    own = own.mutate(month=own.month.fill_null(first_day))
    h = t.upto(source).view()  # another reference: with staff included, ``own`` can be this very table
    h = h.mutate(month=h.month.fill_null(first_day)).semi_join(own, [h[k] == own[k] for k in keys])
    f = h.group_by([h[k].name(f"h_{k}") for k in keys]).aggregate(
        month_any=h.month.min(), **{f"month_{c}": h.month.min(where=cond(h)) for c, cond in conds.items()})
    j = own.join(f, [own[k] == f[f"h_{k}"] for k in keys])
    flags = {f"first_{c}": (j.month == j[f"month_{c}"]).fill_null(False) for c in ("any", *conds)}
    return j.mutate(month=ibis.ifelse(j.month == first_day, None, j.month), **flags).drop(
        *[f"h_{k}" for k in keys], *[f"month_{c}" for c in ("any", *conds)])


@model("video_summary_month", inputs=("auth_user", "student_courseaccessrole"), deps=("video_month",),
       partition="month", grain="month", cumulative=True)
def video_summary_month(t: Tables, p: Params) -> ir.Table:
    """video_summary's monthly parts, staff removed: per course, video and month the learners, viewers
    and completers seen for the first time that month, and the month's plays and events. Their sums
    over the months are the distinct counts over all time; a new day recomputes its month only.

    A viewer is a learner with a play *or* a completion: a completion can be logged without any play (the
    mobile apps, lost events, a player that emits "complete" alone), and counting plays alone made
    completers outnumber viewers (completion rates above 1). Every completer is a viewer."""
    vm = without_staff(t, p, t.video_month)
    j = firsts(t, "video_month", vm, ["course_id", "video_id", "user_id"],
               view=lambda h: (h.plays > 0) | (h.completions > 0), done=lambda h: h.completions > 0)
    return j.group_by(["course_id", "video_id", "month"]).aggregate(
        learners=j.count(where=j.first_any), viewers=j.count(where=j.first_view),
        plays=isum(j.plays), completers=j.count(where=j.first_done), nevents=isum(j.nevents))


@model("video_summary", deps=("video_summary_month",))
def video_summary(t: Tables, p: Params) -> ir.Table:
    """Per course and video: viewers, plays, learners who completed it, completion rate (the share of the
    viewers who completed it: completers are viewers, so it lies in [0, 1])."""
    s = t.video_summary_month
    a = s.group_by(["course_id", "video_id"]).aggregate(
        learners=isum(s.learners), viewers=isum(s.viewers), plays=isum(s.plays), completers=isum(s.completers),
        nevents=isum(s.nevents))
    return a.mutate(completion_rate=ibis.ifelse(a.viewers > 0, (a.completers / a.viewers).round(6), None))


@model("problem_day", inputs=("events_problem", "auth_user"), uses_params=False, partition="date")
def problem_day(t: Tables, p: Params) -> ir.Table:
    """Per course, problem, learner and event day (server problem_check events): submissions, correct
    ones, and the day's first submission (time, event id, success) for first-attempt correctness."""
    ev = course_events(t.events_problem)
    ev = ev.filter((ev.event_type == "problem_check") & (ev.event_source == "server") & ev.problem_id.notnull()
                   & (ev.problem_id != ""))
    ev = event_users(t, ev)
    ev = ev.filter(ev.uid.notnull())
    keys = ["course_id", "problem_id", "uid", "event_date"]
    first = first_per(ev, keys, [ev.time, ev.event_id])
    first = first.select(f_course_id="course_id", f_problem_id="problem_id", f_uid="uid", f_date="event_date",
                         first_time="time", first_event_id="event_id", first_success="success")
    a = ev.group_by(keys).aggregate(submissions=ev.count(), ncorrect=ev.count(where=ev.success == "correct"))
    j = a.join(first, (a.course_id == first.f_course_id) & (a.problem_id == first.f_problem_id)
               & (a.uid == first.f_uid) & (a.event_date == first.f_date))
    return j.select("course_id", "problem_id", user_id=j.uid, date=j.event_date, submissions=j.submissions,
                    ncorrect=j.ncorrect, first_time=j.first_time, first_event_id=j.first_event_id,
                    first_success=j.first_success)


@model("problem_month", deps=("problem_day",), uses_params=False, partition="month", grain="month")
def problem_month(t: Tables, p: Params) -> ir.Table:
    """``problem_day`` per course, problem, learner and month: submissions, correct ones, and the month's
    first submission (the earliest of its days' first submissions: same order as ``problem_summary``)."""
    pd = t.problem_day.mutate(month=months(t.problem_day.date))
    keys = ["course_id", "problem_id", "user_id", "month"]
    first = first_per(pd, keys, [pd.first_time, pd.first_event_id])
    first = first.select(f_course_id="course_id", f_problem_id="problem_id", f_user_id="user_id", f_month="month",
                         first_time="first_time", first_event_id="first_event_id", first_success="first_success")
    a = pd.group_by(keys).aggregate(submissions=isum(pd.submissions), ncorrect=isum(pd.ncorrect))
    j = a.join(first, (a.course_id == first.f_course_id) & (a.problem_id == first.f_problem_id)
               & (a.user_id == first.f_user_id) & (a.month == first.f_month))  # problem_day has no NULL date
    return j.select("course_id", "problem_id", "user_id", "month", "submissions", "ncorrect", "first_time",
                    "first_event_id", "first_success")


@model("problem_summary_month", inputs=("auth_user", "student_courseaccessrole"), deps=("problem_month",),
       partition="month", grain="month", cumulative=True)
def problem_summary_month(t: Tables, p: Params) -> ir.Table:
    """problem_summary's monthly parts, staff removed: per course, problem and month the learners and
    correct learners seen for the first time that month, the first-time learners whose first submission
    (their first month's first) was correct, and the month's submissions."""
    pm = without_staff(t, p, t.problem_month)
    j = firsts(t, "problem_month", pm, ["course_id", "problem_id", "user_id"], correct=lambda h: h.ncorrect > 0)
    return j.group_by(["course_id", "problem_id", "month"]).aggregate(
        submissions=isum(j.submissions), learners=j.count(where=j.first_any),
        learners_correct=j.count(where=j.first_correct),
        first_attempt_correct=j.count(where=j.first_any & (j.first_success == "correct").fill_null(False)))


@model("problem_summary", deps=("problem_summary_month",))
def problem_summary(t: Tables, p: Params) -> ir.Table:
    """Per course and problem (server problem_check events): submissions, learners, first-attempt correctness."""
    s = t.problem_summary_month
    a = s.group_by(["course_id", "problem_id"]).aggregate(
        submissions=isum(s.submissions), learners=isum(s.learners), learners_correct=isum(s.learners_correct),
        first_attempt_correct=isum(s.first_attempt_correct))
    return a.select("course_id", "problem_id", "submissions", "learners", "learners_correct", "first_attempt_correct",
                    first_attempt_correct_rate=ibis.ifelse(a.learners > 0,
                                                           (a.first_attempt_correct / a.learners).round(6), None),
                    attempts_per_learner=ibis.ifelse(a.learners > 0, (a.submissions / a.learners).round(6), None))


@model("forum_weekly", inputs=("forum", "auth_user", "student_courseaccessrole"))
def forum_weekly(t: Tables, p: Params) -> ir.Table:
    """Per course and ISO week: forum posts (threads + responses/comments) and distinct authors."""
    f = t.forum.filter(lambda s: s.created_at.notnull())
    f = without_staff(t, p, f, "author_id")
    return f.group_by(["course_id", weeks(f.created_at.date()).name("week")]).aggregate(
        posts=f.count(), threads=f.count(where=f.type == "CommentThread"),
        comments=f.count(where=f.type == "Comment"), authors=f.author_id.nunique())


def order(names: list[str] | None = None) -> list[str]:
    """Models in dependency order (all, or ``names`` plus what they need)."""
    want = set(names or MODELS)
    out: list[str] = []

    def visit(n: str) -> None:
        if n in out:
            return
        for d in MODELS[n].deps:
            visit(d)
        out.append(n)

    for n in MODELS:
        if n in want:
            visit(n)
    return out


def all_inputs(name: str) -> set[str]:
    """Input tables a model depends on, directly or through the models it reads."""
    m = MODELS[name]
    s = set(m.inputs)
    for d in m.deps:
        s |= all_inputs(d)
    return s
