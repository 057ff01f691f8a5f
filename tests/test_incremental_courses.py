"""Models kept by course (issue 15: person_course, the course reports over it, enrolment_daily): a build
recomputes only the courses whose inputs changed, and the result equals a full build row for row, for
every one of them and every model over them.

Steps on a synthetic store of three courses: a new day of logs touching one course, that day
re-delivered with one event given to another learner (nothing but ``learner_month`` changes), a
package that changes the mode of one enrolment of one course (nothing but that course's snapshot
changes), and a course whose enrolment data is withdrawn. After each step, the courses recomputed are the ones the step
touched (known from the step, not from the build), the other courses' partition files are the very
same files (path and modification time) in every model kept by course, and every model over
person_course equals a forced build of a copy of the store.
"""

from __future__ import annotations

import datetime as dt
import gzip
import re
import shutil
from pathlib import Path

import duckdb
import pytest

from edx_engine.lake import Lake
from edx_engine.models import Params, build_duckdb
from edx_engine.models import definitions as D
from edx_engine.synthetic import SyntheticConfig, generate
from incremental_support import import_into

START = dt.date(2026, 3, 2)
DAYS = 3
BUILT_AT = dt.datetime(2026, 4, 1, 12)
OVER = [n for n in D.order() if "person_course" in (n, *D.MODELS[n].deps)
        or any("person_course" in D.MODELS[d].deps for d in D.MODELS[n].deps)]  # person_course and models over it
BY_COURSE = [n for n in D.order() if D.MODELS[n].grain == "course"]
OVER += [n for n in BY_COURSE if n not in OVER]  # enrolment_daily: snapshots and enrolment events
# kept by course and recomputed whenever person_course's rows of the course are
OVER_PC = [n for n in BY_COURSE if n == "person_course" or "person_course" in D.MODELS[n].deps]


def _build(lake: Lake, force: bool = False) -> dict:
    """Build person_course, the models over it and what they read (not the video, problem, forum models)."""
    res = build_duckdb(lake, [], Params(built_at=BUILT_AT), OVER, force=force, threads=1)
    return {m.name: m for m in res.models}


def _rows(lake: Lake) -> dict[str, list[tuple]]:
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        out = {}
        for n in OVER:
            cols = [r[0] for r in con.execute(f"DESCRIBE models.{n}").fetchall()]
            out[n] = con.execute(f"SELECT * FROM models.{n} ORDER BY " +
                                 ", ".join(f'"{c}" NULLS FIRST' for c in cols)).fetchall()
        return out


def _equals_full(lake: Lake, scratch: Path) -> dict[str, list[tuple]]:
    incr = _rows(lake)
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(lake.root, scratch)
    _build(Lake(scratch), force=True)
    full = _rows(Lake(scratch))
    for n in OVER:
        assert incr[n] == full[n], f"{n}: incremental build differs from the full build"
    return incr


def _courses(lake: Lake) -> list[tuple]:
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        return con.execute("SELECT * FROM models.courses ORDER BY course_id").fetchall()


def _files(lake: Lake, model: str = "person_course") -> dict[str, set[tuple[str, int]]]:
    """Course -> its partition files (path, mtime in ns) of a model kept by course."""
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        rows = con.execute("SELECT part, path FROM _edx_model_parts WHERE model = ? AND part <> '#sources'",
                           [model]).fetchall()
    out: dict[str, set] = {}
    for c, p in rows:
        out.setdefault(c, set())
        if p:
            out[c].add((p, (lake.root / p).stat().st_mtime_ns))
    return out


def _all_files(lake: Lake) -> dict[str, dict[str, set[tuple[str, int]]]]:
    return {n: _files(lake, n) for n in BY_COURSE}


def _only_changed(before: dict, after: dict, changed: set[str], exact: bool = True) -> None:
    """The courses outside ``changed`` keep the very same files; those in it have new ones (or none)
    (``exact`` False: or the same ones)."""
    assert set(before) == set(after)
    for c in before:
        if c in changed:
            assert not exact or not (before[c] & after[c]), c
        else:
            assert before[c] == after[c], c


def _only_courses(before: dict, after: dict, built: dict, changed: set[str], enrolments: set[str]) -> None:
    """Every model kept by course over person_course recomputed exactly the courses ``changed``;
    enrolment_daily (not over person_course) at most the courses ``enrolments``; nothing else touched."""
    for n in BY_COURSE:
        if n in OVER_PC:
            assert built[n].days == len(changed), n
            _only_changed(before[n], after[n], changed)
        else:
            assert (built[n].days or 0) <= len(enrolments), n
            _only_changed(before[n], after[n], enrolments, exact=False)


def _one_course_log(src: Path, course: str, others: list[str], dst: Path, keep=lambda i: True) -> Path:
    lines = [ln for ln in gzip.decompress(src.read_bytes()).splitlines(True)
             if course.encode() in ln and not any(o.encode() in ln for o in others)]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(gzip.compress(b"".join(x for i, x in enumerate(lines) if keep(i))))
    return dst


def _move_one_event(path: Path) -> None:
    """Re-deliver a log with its first event given to another learner of the file: the course's event
    counts and days stay (its ``courses`` row too); two learners' ``learner_month`` rows change."""
    lines = gzip.decompress(path.read_bytes()).splitlines(True)
    ids = [re.search(rb'"user_id":(\d+)', ln).group(1) for ln in lines]
    other = next(i for i in ids if i != ids[0])
    lines[0] = lines[0].replace(b'"user_id":' + ids[0], b'"user_id":' + other)
    path.write_bytes(gzip.compress(b"".join(lines)))


def _slug(course: str) -> str:
    return course.split(":", 1)[-1].replace("+", "-").replace("/", "-")


def mode_package(lake: Lake, work: Path, course: str) -> tuple[Path, tuple]:
    """A newer package holding the enrolments of ``course`` only, its first enrolment's mode changed: the
    course's learner count stays (its ``courses`` row too), only its snapshot says it. (The package
    folder, the changed enrolment row: id, user_id, course_id, created, is_active, mode.)"""
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        enr = con.execute("SELECT id, user_id, course_id, created, is_active, mode FROM student_courseenrollment "
                          "WHERE course_id = ? ORDER BY id", [course]).fetchall()
    enr[0] = (*enr[0][:5], "verified" if enr[0][5] != "verified" else "audit")
    pkg = work / f"IDBx-{START + dt.timedelta(days=DAYS + 7)}"
    pkg.mkdir()
    (pkg / f"{_slug(course)}-student_courseenrollment-prod-analytics.sql").write_text(
        "id\tuser_id\tcourse_id\tcreated\tis_active\tmode\n" + "".join(
            f"{i}\t{u}\t{cid}\t{t:%Y-%m-%d %H:%M:%S}\t{int(act)}\t{md}\n" for i, u, cid, t, act, md in enr))
    return pkg, enr[0]


def withdraw(lake: Lake, course: str) -> None:
    """``course``'s enrolments and certificates withdrawn (its snapshots of those tables removed): its
    learners leave person_course; its events stay."""
    with lake.writer(), lake.transaction("withdraw") as con:
        con.execute("DELETE FROM _edx_snapshots WHERE course_id = ? AND table_name IN "
                    "('student_courseenrollment', 'certificates_generatedcertificate')", [course])
        lake.refresh_views(con)


def gender_package(lake: Lake, work: Path, course: str, other: str) -> tuple[Path, int, str]:
    """A newer package of ``course`` whose profiles give one learner, also enrolled in ``other``, another
    gender: (package folder, that learner, the new gender)."""
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        learner = con.execute("SELECT min(user_id) FROM student_courseenrollment WHERE course_id = ? AND user_id IN "
                              "(SELECT user_id FROM student_courseenrollment WHERE course_id = ?)",
                              [course, other]).fetchone()[0]
        cols = ["id", "user_id", "name", "language", "location", "meta", "courseware", "gender", "mailing_address",
                "year_of_birth", "level_of_education", "goals", "country", "city"]
        prof = con.execute(f"SELECT {', '.join(cols)} FROM auth_userprofile WHERE course_id = ? ORDER BY id",
                           [course]).fetchall()
    assert learner is not None and any(r[1] == learner for r in prof)
    old = next(r[7] for r in prof if r[1] == learner)
    new = "o" if old != "o" else "f"
    prof = [(*r[:7], new if r[1] == learner else r[7], *r[8:]) for r in prof]
    pkg = work / f"IDBx-{START + dt.timedelta(days=DAYS + 14)}"
    pkg.mkdir()
    (pkg / f"{_slug(course)}-auth_userprofile-prod-analytics.sql").write_text(
        "\t".join(cols) + "\n" + "".join("\t".join("NULL" if v is None else str(v) for v in r) + "\n" for r in prof))
    return pkg, learner, new


@pytest.fixture(scope="module")
def delivery(tmp_path_factory):
    out = tmp_path_factory.mktemp("courses")
    cfg = SyntheticConfig(seed=5, courses=3, learners=24, days=DAYS, start=START, malformed=False,
                          events_per_learner=10, package_date=START + dt.timedelta(days=DAYS))
    m = generate(out, cfg)
    logs = {p.name.rsplit("-events-", 1)[1][:10]: p for p in out.rglob("*-events-*.log.gz")}
    return out / m.package["path"], [logs[k] for k in sorted(logs)]


def _one_course_step(lake: Lake, scratch: Path, path: Path, course: str) -> dict[str, list[tuple]]:
    """Import ``path`` and build: exactly ``course`` recomputed, the other courses' files untouched, every
    model equal to a full build (its rows returned)."""
    before = _all_files(lake)
    import_into(lake, path)
    built = _build(lake)
    _only_courses(before, _all_files(lake), built, {course}, {course})
    assert built["course_package_counts"].status == "unchanged"  # a day of events changes no snapshot
    return _equals_full(lake, scratch)


def test_person_course_recomputes_only_changed_courses(delivery, tmp_path):
    package, logs = delivery
    lake = Lake(tmp_path / "store")
    scratch = tmp_path / "full"
    import_into(lake, package, logs[0], logs[1])
    assert _build(lake)["person_course"].status == "built"
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        courses = [r[0] for r in con.execute("SELECT DISTINCT course_id FROM student_courseenrollment "
                                             "ORDER BY 1").fetchall()]
    assert len(courses) == 3
    a, b, c = courses
    first = _rows(lake)
    assert {r[0] for r in first["person_course"]} == set(courses)

    # a new day whose events are all of course a
    day = _one_course_log(logs[2], a, [b, c], tmp_path / "logs" / logs[2].name)
    _one_course_step(lake, scratch, day, a)

    # nothing new: nothing recomputed
    assert all(m.status == "unchanged" for m in _build(lake).values())

    # that day re-delivered with one event given to another learner: only learner_month tells
    courses_before = _courses(lake)
    _move_one_event(day)
    _one_course_step(lake, scratch, day, a)
    assert _courses(lake) == courses_before  # the courses row of course a did not say it

    # a newer package with the enrolments of course b only, one learner's mode changed: the course's
    # learner count stays (its courses row too), the snapshot says it
    pkg, changed = mode_package(lake, tmp_path, b)
    before, courses_before = _all_files(lake), _courses(lake)
    import_into(lake, pkg)
    built = _build(lake)
    assert _courses(lake) == courses_before
    _only_courses(before, _all_files(lake), built, {b}, {b})
    assert built["enrolment_daily"].days == 1  # its snapshot of course b changed
    rows = _equals_full(lake, scratch)
    assert (b, changed[1], changed[5]) in {(r[0], r[1], r[6]) for r in rows["person_course"]}  # course, learner, mode

    # course c's enrolments and certificates withdrawn (its snapshots of those tables removed): its
    # learners leave person_course; its events stay
    before = _all_files(lake)
    withdraw(lake, c)
    built = _build(lake)
    _only_courses(before, _all_files(lake), built, {c}, {c})
    assert built["enrolment_daily"].days == 1
    rows = _equals_full(lake, scratch)
    assert c not in {r[0] for r in rows["person_course"]} and c in {r[0] for r in first["person_course"]}

    # a newer package of course b whose profiles give one learner, also enrolled in course a, another
    # gender: auth_userprofile is one row per learner over every course, so every course is recomputed
    pkg, learner, new = gender_package(lake, tmp_path, b, a)
    before = _all_files(lake)
    import_into(lake, pkg)
    built = _build(lake)
    assert built["person_course"].days == len(_files(lake))
    for n in OVER_PC:
        assert built[n].days == len(_files(lake, n)), n
    assert built["enrolment_daily"].status == "unchanged"  # it reads no profile
    assert _files(lake, "enrolment_daily") == before["enrolment_daily"]
    _equals_full(lake, scratch)
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        got = con.execute("SELECT DISTINCT course_id, gender FROM models.person_course WHERE user_id = ?",
                          [learner]).fetchall()
    assert {g for _, g in got} == {new} and a in {c for c, _ in got}

def test_write_parts_odd_course_ids(tmp_path):
    """Course ids as edX writes them, and odder: each comes back exactly, with its rows only, whatever
    DuckDB's folder names make of it ('%', '/', '+', ':', spaces, quotes, two ids with the same file
    label, and ids whose escaped folder name exceeds the 255 bytes a file name may have)."""
    from edx_engine.models import incremental as inc

    ids = ["course-v1:MITx+6.002x+2T2026", "HarvardX/CS50/2012", "a%2Fb", "a/b", "50% off: a b",
           "it's", "course-v1:" + "Org+" * 60 + "Run", "course-v1:" + "é+" * 100 + "x", "a:b", "a+b"]
    assert len({re.sub(r"[^A-Za-z0-9.-]+", "_", c) for c in ids}) < len(ids)  # some share a label
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT c AS course_id, i AS n FROM (SELECT unnest(?::VARCHAR[]) c, "
                "generate_subscripts(?::VARCHAR[], 1) i), range(3)", [ids, ids])
    root = tmp_path
    out = inc.write_parts(con, "SELECT * FROM t", "course_id", "person_course", root, root / "parts", hashed=True)
    assert set(out) == set(ids)
    for i, c in enumerate(ids, 1):
        files = [str(root / p) for p, _ in out[c]]
        assert sum(k for _, k in out[c]) == 3
        got = con.execute(f"SELECT DISTINCT course_id, n FROM read_parquet({files!r})").fetchall()
        assert got == [(c, i)]
        assert all(len(Path(f).name) < 255 for f in files)




def test_course_snapshots_with_other_columns(delivery, tmp_path):
    """A newer package of one course whose enrolment file has a column the other courses' snapshots lack
    (edX added one): the views' columns changed, so every course is recomputed once; then a build of
    another course reads that course's snapshots only (without the column: NULL, as the catalog's view
    gives it), recomputes that course alone and equals a full build."""
    package, logs = delivery
    lake = Lake(tmp_path / "store")
    import_into(lake, package, logs[0])
    _build(lake)
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        a, b, c = [r[0] for r in con.execute("SELECT DISTINCT course_id FROM student_courseenrollment "
                                             "ORDER BY 1").fetchall()]
        enr = con.execute("SELECT id, user_id, course_id, created, is_active, mode FROM student_courseenrollment "
                          "WHERE course_id = ? ORDER BY id", [b]).fetchall()
    enr[0] = (*enr[0][:5], "verified" if enr[0][5] != "verified" else "audit")
    pkg = tmp_path / f"IDBx-{START + dt.timedelta(days=DAYS + 21)}"
    pkg.mkdir()
    cols = ["id", "user_id", "course_id", "created", "is_active", "mode", "added_by_edx"]
    (pkg / f"{_slug(b)}-student_courseenrollment-prod-analytics.sql").write_text(
        "\t".join(cols) + "\n" + "".join("\t".join(str(int(v) if isinstance(v, bool) else v) for v in r) + "\tx\n"
                                         for r in enr))
    before = _all_files(lake)
    import_into(lake, pkg)
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        got = dict(con.execute("SELECT course_id, count(added_by_edx) FROM student_courseenrollment GROUP BY 1")
                   .fetchall())
    assert got[b] == len(enr) and got[a] == 0  # the view has the column; course a's snapshot has not
    built = _build(lake)  # the views' columns are in the context: every course is recomputed once
    _only_courses(before, _all_files(lake), built, {a, b, c}, {a, b, c})
    rows = _equals_full(lake, tmp_path / "full")
    assert (b, enr[0][1], enr[0][5]) in {(r[0], r[1], r[6]) for r in rows["person_course"]}

    # a new day whose events are all of course a: a's snapshots (without the column) are read alone
    day = _one_course_log(logs[1], a, [b, c], tmp_path / "logs" / logs[1].name)
    _one_course_step(lake, tmp_path / "full", day, a)


@pytest.mark.parametrize("hashed", [True, False])
def test_write_parts_one_file_per_partition(tmp_path, hashed):
    """More partitions than DuckDB keeps files open (100), rows arriving interleaved from two threads as a
    build's query gives them: each partition is written as one file, or two where the sorted stream is
    split between the threads (unsorted, a million rows over 250 partitions gave 401 files, and a full
    build of 200 courses 1,545), with every row."""
    from edx_engine.models import incremental as inc

    con = duckdb.connect(config={"threads": 2, "preserve_insertion_order": False})
    value = ("'course-v1:X+' || (hash(i) % 250)" if hashed else "DATE '2025-01-01' + CAST(hash(i) % 250 AS INTEGER)")
    column = "course_id" if hashed else "date"
    sql = f"SELECT {value} AS {column}, i AS n FROM range(1000000) t(i)"
    out = inc.write_parts(con, sql, column, "m", tmp_path, tmp_path / "parts", hashed=hashed)
    assert len(out) == 250
    assert sum(len(files) for files in out.values()) <= 250 + 4
    expected = dict(con.execute(f"SELECT CAST({column} AS VARCHAR), count(*) FROM ({sql}) GROUP BY 1").fetchall())
    assert {k: sum(r for _, r in files) for k, files in out.items()} == expected
    for k, files in out.items():
        for path, rows in files:
            got = con.execute(f"SELECT DISTINCT CAST({column} AS VARCHAR), count(*) OVER () FROM read_parquet(?, "
                              f"hive_partitioning = false)", [str(tmp_path / path)]).fetchall()
            assert got == [(k, rows)]
