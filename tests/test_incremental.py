"""Incremental builds equal full builds, row for row, for every model (issue 15).

A store is built day by day from the synthetic generator's logs: days arrive one by one, a day
arrives late (out of order), a day is re-delivered with changed content, another delivery repeats
part of a day (its duplicates change), a day's file is withdrawn (re-delivered empty), and a newer
package changes the enrolments. After each step the incrementally built models are compared with
a full build (``force=True``) of a copy of the same store, every column of every row.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import shutil
import zipfile
from pathlib import Path

import duckdb
import pytest

from edx_engine.lake import Lake
from edx_engine.models import Params, build_duckdb
from edx_engine.models import definitions as D
from edx_engine.models.build import stale_models
from edx_engine.synthetic import SyntheticConfig, generate
from incremental_support import day_state, import_into

START = dt.date(2026, 9, 28)  # a Monday: the days span two ISO weeks and two months
DAYS = 6
BUILT_AT = dt.datetime(2026, 11, 1, 12)
PARTITIONED = sorted(n for n, m in D.MODELS.items() if m.partition)
DAY_MODELS = [n for n in PARTITIONED if D.MODELS[n].grain != "course"
              and not any(D.MODELS[d].partition for d in D.MODELS[n].deps)]  # over events
COURSE_MODELS = [n for n in PARTITIONED if D.MODELS[n].grain == "course"]  # by course (person_course)
DERIVED = [n for n in PARTITIONED if n not in DAY_MODELS + COURSE_MODELS]  # over the day models (by date, week, month)


def _delivery(out: Path, learners: int, package_date: dt.date) -> dict[str, Path]:
    cfg = SyntheticConfig(seed=3, courses=2, learners=learners, days=DAYS, start=START, malformed=False,
                          events_per_learner=12, package_date=package_date)
    m = generate(out, cfg)
    logs = {p.name.rsplit("-events-", 1)[1][:10]: p for p in out.rglob("*-events-*.log.gz")}
    return {"package": out / m.package["path"], **logs}


@pytest.fixture(scope="module")
def deliveries(tmp_path_factory):
    root = tmp_path_factory.mktemp("incr")
    first = _delivery(root / "d1", 30, START + dt.timedelta(days=DAYS))
    second = _delivery(root / "d2", 45, START + dt.timedelta(days=DAYS + 7))
    return root, first, second


def _tables(lake: Lake) -> dict[str, list[tuple]]:
    """Every model's rows, sorted (NULLs first), through the catalog's ``models.*`` views."""
    out = {}
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        for n in D.MODELS:
            cols = [r[0] for r in con.execute(f"DESCRIBE models.{n}").fetchall()]
            order = ", ".join(f'"{c}" NULLS FIRST' for c in cols)
            out[n] = con.execute(f"SELECT * FROM models.{n} ORDER BY {order}").fetchall()
    return out


def _build(lake: Lake, force: bool = False) -> dict[str, object]:
    res = build_duckdb(lake, [], Params(built_at=BUILT_AT), force=force, threads=1)
    return {m.name: m for m in res.models}


def _assert_equals_full(lake: Lake, scratch: Path) -> dict[str, list[tuple]]:
    """The store's models (built incrementally) equal a full build of a copy of the store."""
    incr = _tables(lake)
    if scratch.exists():
        shutil.rmtree(scratch)
    shutil.copytree(lake.root, scratch)
    copy = Lake(scratch)
    _build(copy, force=True)
    full = _tables(copy)
    for n in D.MODELS:
        assert incr[n] == full[n], f"{n}: incremental build differs from the full build"
    return incr


def _recorded_files_only(lake: Lake) -> None:
    """``models.<name>`` of a partitioned model reads exactly the files ``_edx_model_parts`` lists,
    and no unlisted partition file is left in the lake."""
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        for n in PARTITIONED:
            listed = {str((lake.root / p).resolve()) for (p,) in con.execute(
                "SELECT path FROM _edx_model_parts WHERE model = ? AND path IS NOT NULL", [n]).fetchall()}
            read = {r[0] for r in con.execute(f"SELECT DISTINCT filename FROM read_parquet("
                                              f"{sorted(listed) or ['/nonexistent']}, filename=true)").fetchall()} \
                if listed else set()
            assert read == listed
            rows = con.execute(f"SELECT count(*) FROM models.{n}").fetchone()[0]
            assert rows == con.execute("SELECT coalesce(sum(rows), 0) FROM _edx_model_parts WHERE model = ?",
                                       [n]).fetchone()[0]
        on_disk = {str(p.resolve()) for p in (lake.lake_dir / "model_parts").rglob("*.parquet")}
        all_listed = {str((lake.root / p).resolve()) for (p,) in con.execute(
            "SELECT path FROM _edx_model_parts WHERE path IS NOT NULL").fetchall()}
        assert on_disk == all_listed


def _days_of(lake: Lake, model: str) -> set[str]:
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        return {r[0] for r in con.execute("SELECT DISTINCT part FROM _edx_model_parts WHERE model = ? "
                                          "AND part <> '#sources'", [model]).fetchall()}


def _changed(lake: Lake, step) -> int:
    """Run ``step`` (an import); the number of event dates it added or changed."""
    return len(_changed_dates(lake, step))


def _changed_dates(lake: Lake, step) -> set[str]:
    """Run ``step`` (an import); the event dates it added or changed."""
    before = day_state(lake)
    step()
    after = day_state(lake)
    return {d for d, s in after.items() if before.get(d) != s}


def _derived_parts(lake: Lake, model: str, dates: set[str]) -> set[str]:
    """The partitions of a model over the day models that changed ``dates`` must recompute: theirs, and
    for a cumulative model every later one too."""
    m = D.MODELS[model]
    own = _grain_parts(dates, m.grain)
    if not m.cumulative:
        return own
    return {p for p in _days_of(lake, model) if p >= min(own)}


def _grain_parts(dates: set[str], grain: str) -> set[str]:
    """The week (Monday) or month (first day) partitions of ``dates``, computed by hand."""
    out = set()
    for d in dates:
        x = dt.date.fromisoformat(d)
        out.add((x - dt.timedelta(days=x.weekday()) if grain == "week" else
                 x.replace(day=1) if grain == "month" else x).isoformat())
    return out


def _rewrite(src: Path, dst: Path, keep) -> Path:
    """A copy of a log keeping the lines ``keep(index)`` accepts."""
    lines = gzip.decompress(src.read_bytes()).splitlines(keepends=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(gzip.compress(b"".join(x for i, x in enumerate(lines) if keep(i))))
    return dst


def test_incremental_equals_full_day_by_day(deliveries, tmp_path):
    root, first, second = deliveries
    day = [(START + dt.timedelta(days=i)).isoformat() for i in range(DAYS)]
    lake = Lake(tmp_path / "store")
    scratch = tmp_path / "full"
    logs = tmp_path / "logs"  # the files as the store receives them (re-deliveries overwrite them)
    for d in day:
        logs.joinpath(d).mkdir(parents=True)
        shutil.copy(first[d], logs / d / first[d].name)
    delivered = {d: logs / d / first[d].name for d in day}

    # package and the first two days
    import_into(lake, first["package"], delivered[day[0]], delivered[day[1]])
    built = _build(lake)
    assert all(built[n].status == "built" for n in D.MODELS)
    assert _days_of(lake, "learner_day") == {day[0], day[1]}
    _assert_equals_full(lake, scratch)

    # nothing arrived: nothing is rebuilt
    assert all(m.status == "unchanged" for m in _build(lake).values())

    # one new day (a log also holds a few events of the days around it): only the dates it changed
    # are computed, for every day model; the models over them recompute only the dates, weeks and
    # months of those dates (the staff filter's package tables did not change)
    changed = _changed_dates(lake, lambda: import_into(lake, delivered[day[2]]))
    built = _build(lake)
    assert 1 <= len(changed) < 3 and {built[m].days for m in DAY_MODELS} == {len(changed)}
    for m in DERIVED:
        assert built[m].days == len(_derived_parts(lake, m, changed)), m

    # a late day: day 5 arrives before day 4, then day 4
    n = _changed(lake, lambda: import_into(lake, delivered[day[4]]))
    assert _build(lake)["learner_day"].days == n
    n = _changed(lake, lambda: import_into(lake, delivered[day[3]]))
    assert _build(lake)["learner_day"].days == n
    before = _assert_equals_full(lake, scratch)
    _recorded_files_only(lake)

    # day 2 re-delivered with a third of its lines removed: its partitions change, the others stay
    _rewrite(first[day[1]], delivered[day[1]], lambda i: i % 3 != 0)
    changed = _changed_dates(lake, lambda: import_into(lake, delivered[day[1]]))
    built = _build(lake)
    assert 1 <= len(changed) < 5 and built["learner_day"].days == len(changed)
    for m in DERIVED:  # a September day: the cumulative monthly parts of October are recomputed too
        assert built[m].days == len(_derived_parts(lake, m, changed)), m
    assert built["video_summary_month"].days == 2
    after = _assert_equals_full(lake, scratch)
    assert after["learner_day"] != before["learner_day"]

    # another delivery repeats half of day 3 (duplicates), then day 3 is re-delivered without those
    # lines: the repeated events stop being duplicates and count again
    extra = _rewrite(first[day[2]], tmp_path / "elsewhere" / first[day[2]].name, lambda i: i % 2 == 0)
    n = _changed(lake, lambda: import_into(lake, extra))
    assert _build(lake)["learner_day"].days == n
    _rewrite(first[day[2]], delivered[day[2]], lambda i: i % 2 == 1)
    n = _changed(lake, lambda: import_into(lake, delivered[day[2]]))
    assert _build(lake)["learner_day"].days == n
    _assert_equals_full(lake, scratch)

    # day 5's file withdrawn (re-delivered empty): the date only it held disappears with its
    # partitions, the day before loses the few late events the file held for it
    before_state = day_state(lake)
    _rewrite(first[day[4]], delivered[day[4]], lambda i: False)
    import_into(lake, delivered[day[4]])
    after_state = day_state(lake)
    gone = set(before_state) - set(after_state)
    changed = {d for d, s in after_state.items() if before_state.get(d) != s}
    assert gone == {day[4]}
    built = _build(lake)
    assert built["learner_day"].days == len(changed) and not gone & _days_of(lake, "learner_day")
    tables = _assert_equals_full(lake, scratch)
    assert all(str(r[2]) not in gone for r in tables["learner_day"])

    # a newer package with more enrolments (and users): the package models change; a partition is
    # recomputed only for dates attributing events through usernames alone
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        by_name = {r[0] for r in con.execute("SELECT DISTINCT CAST(event_date AS VARCHAR) FROM events "
                                             "WHERE user_id IS NULL AND coalesce(username, '') <> ''").fetchall()}
    before_state = day_state(lake)
    import_into(lake, second["package"], delivered[day[5]])
    changed = {d for d, s in day_state(lake).items() if before_state.get(d) != s}
    built = _build(lake)
    assert built["course_day"].days == len(changed)  # reads no package table
    assert built["learner_day"].days == len(by_name | changed)
    assert built["person_course"].status == "built"
    tables = _assert_equals_full(lake, scratch)
    assert len(tables["person_course"]) > len(before["person_course"])
    _recorded_files_only(lake)

    # a package that only gives an active learner a staff role in their course: no day model changes,
    # every partition of the staff-filtered models over them is recomputed (and the learner leaves them)
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        cid, uid = con.execute("SELECT course_id, user_id FROM models.learner_day WHERE nevents_own > 0 "
                               "GROUP BY 1, 2 ORDER BY count(*) DESC, 1, 2 LIMIT 1").fetchone()
        weekly_rows = con.execute("SELECT sum(active_learners) FROM models.activity_weekly WHERE course_id = ?",
                                  [cid]).fetchone()[0]
    slug = cid.split(":", 1)[-1].replace("+", "-").replace("/", "-")
    pkg = tmp_path / f"IDBx-{START + dt.timedelta(days=DAYS + 14)}"
    pkg.mkdir()
    (pkg / f"{slug}-student_courseaccessrole-prod-analytics.sql").write_text(
        f"org\tcourse_id\tuser_id\trole\nIDBx\t{cid}\t{uid}\tstaff\n")
    import_into(lake, pkg)
    built = _build(lake)
    assert all(built[m].status == "unchanged" for m in DAY_MODELS)
    for m in DERIVED:
        staff_filtered = "student_courseaccessrole" in D.MODELS[m].inputs
        parts = len(_days_of(lake, m))
        assert built[m].days == (parts if staff_filtered else None), m
    assert built["person_course"].days == 1  # the role is in one course: the other keeps its partition
    tables = _assert_equals_full(lake, scratch)
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        weeks_of_uid = con.execute("SELECT count(DISTINCT date_trunc('week', date)) FROM models.learner_day "
                                   "WHERE course_id = ? AND user_id = ? AND nevents_own > 0", [cid, uid]).fetchone()[0]
        assert con.execute("SELECT sum(active_learners) FROM models.activity_weekly WHERE course_id = ?",
                           [cid]).fetchone()[0] == weekly_rows - weeks_of_uid > 0


def test_force_rebuilds_every_date_and_view_survives(deliveries, tmp_path):
    """``force`` recomputes every date; a partitioned model with no events has an empty typed view."""
    _root, first, _second = deliveries
    lake = Lake(tmp_path / "store")
    import_into(lake, first["package"])
    _build(lake)
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM models.learner_day").fetchone()[0] == 0
        cols = [r[0] for r in con.execute("DESCRIBE models.learner_day").fetchall()]
    assert cols[:3] == ["course_id", "user_id", "date"]
    days = sorted(k for k in first if k != "package")[:2]
    n = _changed(lake, lambda: import_into(lake, *(first[d] for d in days)))
    assert _build(lake)["learner_day"].days == n
    assert _build(lake, force=True)["learner_day"].days == n
    assert all(m.status == "unchanged" for m in _build(lake).values())


def _auth_user_package(src: Path, out: Path, date: dt.date, course: str, edit=lambda rows: rows) -> Path:
    """A package of date ``date`` holding only ``course``'s auth_user file, taken from package ``src`` (a
    zip) with its rows (lists of fields, the header first) passed through ``edit``."""
    slug = course.split(":", 1)[-1].replace("+", "-").replace("/", "-")
    with zipfile.ZipFile(src) as z:
        member = next(n for n in z.namelist() if n.endswith(f"/{slug}-auth_user-prod-analytics.sql"))
        rows = [ln.split("\t") for ln in z.read(member).decode().splitlines() if ln]
    pkg = out / f"IDBx-{date}"
    pkg.mkdir(parents=True)
    (pkg / member.rsplit("/", 1)[1]).write_text("".join("\t".join(r) + "\n" for r in edit(rows)))
    return pkg


def _name_days(lake: Lake) -> set[str]:
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        return {r[0] for r in con.execute("SELECT DISTINCT CAST(event_date AS VARCHAR) FROM events "
                                          "WHERE user_id IS NULL AND coalesce(username, '') <> ''").fetchall()}


def test_package_changing_auth_user(deliveries, tmp_path):
    """A newer package whose auth_user changes: the day models recompute exactly the dates whose events
    are attributed through a username alone (the other dates do not read auth_user and keep their
    partitions), every model equals a full build, and no model is called older than its data after
    the build (the build records the auth_user it checked the kept dates against)."""
    _root, first, _second = deliveries
    day = [(START + dt.timedelta(days=i)).isoformat() for i in range(DAYS)]
    lake = Lake(tmp_path / "store")
    scratch = tmp_path / "full"

    def build_current() -> dict[str, object]:
        built = _build(lake)
        assert stale_models(lake) == []
        assert all(m.status == "unchanged" for m in _build(lake).values())
        return built

    import_into(lake, first["package"], first[day[0]], first[day[1]])
    build_current()
    assert not _name_days(lake)
    events = [json.loads(ln) for ln in gzip.decompress(first[day[2]].read_bytes()).splitlines()]
    counts: dict[tuple, int] = {}
    for e in events:
        ctx = e.get("context") if isinstance(e.get("context"), dict) else {}
        if e.get("username") and ctx.get("user_id") and ctx.get("course_id"):
            key = (ctx["course_id"], e["username"], ctx["user_id"])
            counts[key] = counts.get(key, 0) + 1
    course, name, uid = max(sorted(counts), key=lambda k: counts[k])  # the day's most active learner

    # the same auth_user in a later package: no date reads it (every event has a user id), so no day
    # model changes; the staff-filtered models over them are recomputed (their context holds it)
    week = START + dt.timedelta(days=DAYS + 7)
    import_into(lake, _auth_user_package(first["package"], tmp_path / "p1", week, course))
    built = build_current()
    assert all(built[m].status == "unchanged" for m in DAY_MODELS)
    assert built["activity_daily"].status == "built"
    before = _assert_equals_full(lake, scratch)

    # a day whose events of one learner carry their username but no user id: attributed through auth_user
    for e in events:
        if e.get("username") == name and isinstance(e.get("context"), dict):
            e["context"]["user_id"] = None
    log = tmp_path / "logs" / first[day[2]].name
    log.parent.mkdir()
    log.write_bytes(gzip.compress(b"".join((json.dumps(e) + "\n").encode() for e in events)))
    import_into(lake, log)
    build_current()
    by_name = _name_days(lake)
    assert day[2] in by_name
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM models.learner_day WHERE user_id = ? AND date = ?",
                           [uid, day[2]]).fetchone()[0] > 0
    _assert_equals_full(lake, scratch)

    # a package giving that username to another user of the course (the learner is renamed): the dates
    # attributing events through it are recomputed, the others are kept, and the events change hands
    other = None

    def swap(rows):
        nonlocal other
        head = rows[0]
        i, u = head.index("id"), head.index("username")
        other = next(int(r[i]) for r in rows[1:] if int(r[i]) != uid)
        for r in rows[1:]:
            if int(r[i]) == uid:
                r[u] = name + "_renamed"
            elif int(r[i]) == other:
                r[u] = name
        return rows

    import_into(lake, _auth_user_package(first["package"], tmp_path / "p2", week + dt.timedelta(days=7), course, swap))
    built = build_current()
    for m in DAY_MODELS:
        assert built[m].status == "unchanged" if m == "course_day" else built[m].days == len(by_name), m
    tables = _assert_equals_full(lake, scratch)
    assert tables["learner_day"] != before["learner_day"]
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM models.learner_day WHERE user_id = ? AND date = ?",
                           [other, day[2]]).fetchone()[0] > 0

    # a package making an active learner of another day staff: every staff-filtered partition changes
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        staff = con.execute("SELECT user_id FROM models.learner_day WHERE course_id = ? AND date = ? AND "
                            "nevents_own > 0 AND user_id NOT IN (?, ?) ORDER BY nevents_own DESC, 1 LIMIT 1",
                            [course, day[0], uid, other]).fetchone()[0]

    def make_staff(rows):
        i, s = rows[0].index("id"), rows[0].index("is_staff")
        for r in rows[1:]:
            if int(r[i]) == staff:
                r[s] = "1"
        return swap(rows)  # the names as the package before gave them

    import_into(lake, _auth_user_package(first["package"], tmp_path / "p3", week + dt.timedelta(days=14), course,
                                         make_staff))
    built = build_current()
    assert built["learner_day"].days == len(by_name) and built["course_day"].status == "unchanged"
    after = _assert_equals_full(lake, scratch)
    assert after["activity_daily"] != tables["activity_daily"]
