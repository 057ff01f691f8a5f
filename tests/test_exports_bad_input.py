"""Bad or unusual package files found in review: each one is rejected or quarantined on its own,
with its file and line, and never stops the rest of the package (issue 2's rules)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from test_exports import CID, SLUG, _baseline, enrolments, load, q, store_state, write

PROFILE_HEADER = ("id\tuser_id\tname\tlanguage\tlocation\tmeta\tcourseware\tgender\tmailing_address\tyear_of_birth\t"
                  "level_of_education\tgoals\tallow_certificate\tcountry\tcity\tbio\tprofile_image_uploaded_at\n")


def profile(i: int, goals: str = "NULL", year: str = "1980") -> str:
    return f"{i}\t{100 + i}\tName {i}\t\t\t{{}}\tcourse.xml\tf\tNULL\t{year}\tm\t{goals}\t1\tCO\tBogotá\tNULL\tNULL\n"


def test_raw_carriage_return_inside_a_value_is_kept_and_lines_stay_right(tmp_path):
    """MySQL's batch output does not escape CR: it is part of the value, not a line end."""
    pkg = tmp_path / "IDBx-2016-10-09"
    write(pkg, "student_courseenrollment", enrolments(1))
    rows = [profile(1, goals="first\rsecond"), profile(2, goals="ends with CR\r"), profile(3, year="19x0"),
            profile(4).replace("\n", "\r\n")]
    write(pkg, "auth_userprofile", PROFILE_HEADER + "".join(rows))
    data = tmp_path / "d"
    load(data, pkg)
    assert q(data, "SELECT id, goals FROM auth_userprofile ORDER BY id") == \
        [(1, "first\rsecond"), (2, "ends with CR\r"), (4, None)]
    assert q(data, "SELECT line, reason FROM quarantine") == [(4, "column year_of_birth: '19x0' is not a valid int")]


def test_header_only_file_without_newline_is_truncated(tmp_path):
    data, before = _baseline(tmp_path)
    pkg = tmp_path / "IDBx-2016-10-16"
    write(pkg, "student_courseenrollment", enrolments(0).rstrip("\n"))
    (f,) = load(data, pkg).failed
    assert "line 1" in f.message and "truncated" in f.message
    assert store_state(data) == before


def test_corrupt_zip_member_fails_that_file_only(tmp_path):
    data = tmp_path / "d"
    zpath = tmp_path / "IDBx-2016-10-09.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(f"IDBx-2016-10-09/{SLUG}-student_courseenrollment-prod-analytics.sql", enrolments(3))
        z.writestr(f"IDBx-2016-10-09/{SLUG}-auth_user-prod-analytics.sql",
                   "id\tusername\tfirst_name\tlast_name\temail\tpassword\tis_staff\tis_active\tis_superuser\t"
                   "last_login\tdate_joined\n101\tana\tAna\tRuiz\ta@x.org\t\t0\t1\t0\tNULL\t2016-01-01 00:00:00\n")
    raw = bytearray(zpath.read_bytes())
    at = raw.index(b"audit")  # inside the stored enrolment member: its CRC-32 no longer matches
    raw[at] = ord("A")
    zpath.write_bytes(bytes(raw))
    summary = load(data, zpath)
    (f,) = summary.failed
    assert "student_courseenrollment" in f.message and "corrupt" in f.message and "\n" not in f.message
    assert q(data, "SELECT username FROM auth_user") == [("ana",)]
    assert q(data, "SELECT count(*) FROM student_courseenrollment") == [(0,)]


def _forum_line(**over) -> bytes:
    d = {"_id": {"$oid": "5e75a8c0c56a9a6bc7fb3cdb"}, "_type": "CommentThread", "title": "Hola", "body": "b",
         "course_id": CID, "author_id": 7, "author_username": "ana", "comment_count": 2,
         "created_at": {"$date": "2016-05-02T10:00:00Z"}, "votes": {"up_count": 1}}
    d.update(over)
    return json.dumps(d).encode() + b"\n"


def test_forum_values_of_unexpected_types_become_text_or_null(tmp_path):
    pkg = tmp_path / "IDBx-2016-10-09"
    pkg.mkdir()
    (pkg / f"{SLUG}-prod.mongo").write_bytes(
        _forum_line() +
        _forum_line(title={"a": 1}, body=5, _type=["x"], comment_count=10 ** 20,
                    created_at={"$date": "99999-01-01T00:00:00Z"}, updated_at={"$date": 10 ** 18}, votes=[1]))
    data = tmp_path / "d"
    summary = load(data, pkg)
    assert not summary.failed and summary.rejected == 0
    assert q(data, "SELECT title, body, type, comment_count, created_at IS NULL, updated_at, votes_up FROM forum "
                   "ORDER BY title") == [
        ("Hola", "b", "CommentThread", 2, False, None, 1),
        ('{"a":1}', "5", '["x"]', None, True, None, None)]


def test_truncated_forum_file_keeps_the_previous_snapshot(tmp_path):
    data = tmp_path / "d"
    first = tmp_path / "IDBx-2016-10-09"
    first.mkdir()
    (first / f"{SLUG}-prod.mongo").write_bytes(_forum_line() + _forum_line(title="two"))
    load(data, first)
    before = store_state(data)
    cut = tmp_path / "IDBx-2016-10-16"
    cut.mkdir()
    (cut / f"{SLUG}-prod.mongo").write_bytes((_forum_line() + _forum_line(title="two"))[:-20])
    (f,) = load(data, cut).failed
    assert "truncated" in f.message
    assert store_state(data) == before and q(data, "SELECT count(*) FROM forum") == [(2,)]


def test_course_structure_with_odd_blocks_loads(tmp_path):
    course = "i4x://IDBx/IDB1x/course/2T2016"
    doc = {course: {"category": "course", "children": ["ch1", 5, ["x"], "odd", "meta_str"],
                    "metadata": {"display_name": 42, "start": "99999-01-01T00:00:00Z"}},
           "ch1": {"category": "chapter", "children": "abc", "metadata": {"display_name": "Week 1"}},
           "odd": "not an object", "meta_str": {"category": "html", "metadata": "x"}}
    pkg = tmp_path / "IDBx-2016-10-09"
    pkg.mkdir()
    (pkg / f"{SLUG}-course_structure-prod-analytics.json").write_text(json.dumps(doc))
    data = tmp_path / "d"
    summary = load(data, pkg)
    assert not summary.failed
    assert q(data, "SELECT block_id, category, display_name, parent_id, position, start FROM course_structure "
                   "ORDER BY block_id") == [
        ("ch1", "chapter", "Week 1", course, 0, None), (course, "course", "42", None, None, None),
        ("meta_str", "html", None, course, 4, None), ("odd", None, None, course, 3, None)]


OPT_HEADER = "user_id,username,email,full_name,course_id,is_opted_in_for_email,preference_set_datetime\n"


def _optin(*rows: str) -> str:
    return OPT_HEADER + "".join(r + "\n" for r in rows)


def _load_optin(tmp_path: Path, name: str, body: bytes, data: Path):
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "IDBx-email_opt_in-prod-analytics.csv").write_bytes(body)
    return load(data, pkg)


def test_email_opt_in_follows_the_line_rules(tmp_path):
    data = tmp_path / "d"
    good = f"1,ana,a@x.org,Ana,{CID},True,2016-01-01 00:00:00"
    s = _load_optin(tmp_path, "IDBx-2016-10-09", _optin(good, f"2,bo,b@x.org,Bo,{CID},Maybe,",
                                                          f"3,cy,c@x.org,Cy,{CID},False,,extra",
                                                          f"4,di,d@x.org,Di,{CID},False,2016-02-30 00:00:00",
                                                          f"5,ed,e@x.org,Ed,{CID},False,").encode(), data)
    assert not s.failed and s.rejected == 3
    assert q(data, "SELECT user_id FROM email_opt_in ORDER BY 1") == [(1,), (5,)]
    assert [(line, reason.split(":")[0]) for line, reason in q(data, "SELECT line, reason FROM quarantine ORDER BY 1")] \
        == [(3, "column is_opted_in_for_email"), (4, "expected 7 fields, found 8"), (5, "column preference_set_datetime")]
    before = store_state(data)
    (f,) = _load_optin(tmp_path, "IDBx-2016-10-16", _optin(good, good).encode()[:-10], data).failed
    assert "truncated" in f.message
    (f,) = _load_optin(tmp_path, "IDBx-2016-10-23", _optin(good, good).encode().replace(b"Ana", b"A\xffa"), data).failed
    assert "line 2" in f.message and "invalid UTF-8" in f.message
    assert store_state(data) == before
    s = _load_optin(tmp_path, "IDBx-2016-10-30", OPT_HEADER.encode(), data)
    assert not s.failed and q(data, "SELECT count(*) FROM email_opt_in") == [(0,)]


def test_rows_naming_another_course_reject_the_file(tmp_path):
    data, before = _baseline(tmp_path)
    pkg = tmp_path / "IDBx-2016-10-16"
    lines = enrolments(4).splitlines(keepends=True)
    lines[1] = lines[1].replace(CID, "course-v1:Other+X+1")  # the first row names another course
    write(pkg, "student_courseenrollment", "".join(lines))
    (f,) = load(data, pkg).failed
    assert "more than one course" in f.message and "course-v1:Other+X+1" in f.message
    assert store_state(data) == before


def test_two_files_of_one_package_for_the_same_table_and_course(tmp_path):
    """Copies of a table file with other rows used to replace each other silently, the last one
    winning (9 enrolments instead of 302, found by an outside tester). Now, and again on a re-import:
    the same site's copies (another folder) are both refused and named, the course keeps its earlier
    snapshot; another site's copy gives way to edx.org's with a warning; an empty copy gives way to
    the one with rows; the same bytes count once."""
    data, before = _baseline(tmp_path)
    pkg = tmp_path / "IDBx-2016-10-16"
    write(pkg, "student_courseenrollment", enrolments(5))
    write(pkg / "sub", "student_courseenrollment", enrolments(3))  # the same site, in a folder
    write(pkg / "sub2", "student_courseenrollment", enrolments(4))  # and a third copy
    write(pkg, "auth_userprofile", PROFILE_HEADER + profile(1))
    s = load(data, pkg)
    failed = [f.message for f in s.failed]
    assert len(failed) == 3 and all("student_courseenrollment" in m and "files of package 2016-10-16" in m
                                    and "none is imported" in m for m in failed), failed
    assert q(data, "SELECT count(*) FROM student_courseenrollment") == [(2,)]  # the earlier snapshot
    assert [r for r in store_state(data) if r[0] == "student_courseenrollment"] == \
        [r for r in before if r[0] == "student_courseenrollment"]
    assert q(data, "SELECT count(*) FROM auth_userprofile") == [(1,)]  # the rest of the package is imported
    assert not [p for p in (data / "lake").rglob("*.parquet") if "2016-10-16" in str(p) and "enroll" in str(p)]

    # another site's copy, and an empty one: edx.org's file with rows is imported, the others named
    other = tmp_path / "IDBx-2016-10-23"
    (other / "a").mkdir(parents=True)
    (other / "a" / f"{SLUG}-student_courseenrollment-edge-analytics.sql").write_text(enrolments(1))
    write(other / "b", "student_courseenrollment", enrolments(6))
    write(other / "c", "student_courseenrollment", enrolments(0))
    s = load(data, other)
    assert not s.failed and q(data, "SELECT count(*) FROM student_courseenrollment") == [(6,)]
    notes = sorted(f.message for f in s.files if f.status == "set aside")
    assert len(notes) == 2 and notes[0].startswith("no rows;") and "files of two sites (prod, edge)" in notes[1]
    assert any("edge" in w and "is not" in w for w in s.warnings)
    # re-imported: the imported copy stays, a new different copy of the same site is refused
    write(other / "d", "student_courseenrollment", enrolments(2))
    s = load(data, other)
    (f,) = s.failed
    assert "already imported" in f.message and q(data, "SELECT count(*) FROM student_courseenrollment") == [(6,)]

    # the same bytes under two names: one snapshot, the copy reported as the same file
    again = tmp_path / "IDBx-2016-10-30"
    write(again, "student_courseenrollment", enrolments(4))
    write(again / "sub", "student_courseenrollment", enrolments(4))
    s = load(data, again)
    assert not s.failed and sorted(f.status for f in s.files) == ["loaded", "set aside"]
    assert q(data, "SELECT count(*) FROM student_courseenrollment") == [(4,)]

    # an empty copy that names no course (its id falls back to the file-name slug) beside the copy
    # whose rows name the course, in a store that does not know the course yet: set aside, not "loaded"
    fresh, pkg4 = tmp_path / "fresh", tmp_path / "IDBx-2016-11-06"
    write(pkg4, "student_courseenrollment", enrolments(0))
    write(pkg4 / "sub", "student_courseenrollment", enrolments(5))
    s = load(fresh, pkg4)
    assert sorted(f.status for f in s.files) == ["loaded", "set aside"], [(f.status, f.message) for f in s.files]
    assert q(fresh, "SELECT course_id, rows FROM _edx_snapshots") == [(CID, 5)]


def test_a_snapshot_far_smaller_than_the_one_it_replaces_is_named(tmp_path):
    """Next week's file of a course with a header and no rows replaced 302 enrolments without a word
    (an outside tester); it still replaces them (a package is a full dump), with a warning."""
    def many(n: int) -> str:
        return "".join(enrolments(1).splitlines(keepends=True)[:1] +
                       [f"{i}\t{100 + i}\t{CID}\t2016-05-01 13:11:09\t1\taudit\n" for i in range(1, n + 1)])

    data = tmp_path / "d"
    write(tmp_path / "IDBx-2016-10-09", "student_courseenrollment", many(40))
    load(data, tmp_path / "IDBx-2016-10-09")
    write(tmp_path / "IDBx-2016-10-16", "student_courseenrollment", many(38))  # 2 accounts retired
    s = load(data, tmp_path / "IDBx-2016-10-16")
    assert s.warnings == [] and q(data, "SELECT count(*) FROM student_courseenrollment") == [(38,)]
    write(tmp_path / "IDBx-2016-10-23", "student_courseenrollment", enrolments(0))
    s = load(data, tmp_path / "IDBx-2016-10-23")
    assert s.warnings == [f"student_courseenrollment of {CID}: package 2016-10-23 holds 0 rows against 38 in "
                          "package 2016-10-16 (100% fewer) and replaces them; check the file"]
    assert q(data, "SELECT count(*) FROM student_courseenrollment") == [(0,)]
    logged = [m for (m,) in q(data, "SELECT message FROM _edx_import_log WHERE package_date = '2016-10-23'")]
    assert len(logged) == 1 and "holds 0 rows against 38" in logged[0], logged
    # two weeks in one run: the later one is compared with the earlier one, not only with the store
    data2 = tmp_path / "d2"
    s = load(data2, tmp_path / "IDBx-2016-10-16", tmp_path / "IDBx-2016-10-23")
    assert len(s.warnings) == 1 and "package 2016-10-23 holds 0 rows against 38 in package 2016-10-16" in s.warnings[0]


def test_a_column_named_like_the_stores_own_is_renamed_not_taken(tmp_path):
    """A column the registry does not describe, named like one the importer adds (org, package_date,
    source_file) or like another column in other letter case (DuckDB's names ignore case), took the
    place of the importer's: the rows' package date read 'from-edx' and the models pick each user's
    newest row by it (helper-65). It is stored as <name>_in_file, with a note; an empty name (a header
    ending in a tab) as column_<position>. Such columns are personal to scrub, like any unknown one."""
    from cli_support import run_cli
    from edx_engine.schemas import personal_in

    pkg = tmp_path / "IDBx-2016-10-09"
    head, *rows = enrolments(2).splitlines(keepends=True)
    body = head.rstrip("\n") + "\tpackage_date\tsource_file\tMode\t\n" + "".join(
        r.rstrip("\n") + f"\tfrom-edx\tsf{i}\tM{i}\t\n" for i, r in enumerate(rows))
    f = write(pkg, "student_courseenrollment", body)
    data = tmp_path / "d"
    r = run_cli(["import", "--data-dir", data, pkg])
    text = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 0, text
    assert q(data, "SELECT DISTINCT package_date, source_file, org FROM student_courseenrollment") == \
        [("2016-10-09", str(f), "IDBx")]
    assert q(data, "SELECT mode, package_date_in_file, source_file_in_file, Mode_in_file, column_10 "
                   "FROM student_courseenrollment ORDER BY id") == \
        [("audit", "from-edx", "sf0", "M0", ""), ("audit", "from-edx", "sf1", "M1", "")]
    for new, old in (("package_date_in_file", "package_date"), ("Mode_in_file", "Mode")):
        assert f"student_courseenrollment.{new} kept as text (the file's column '{old}', renamed" in text
    assert "student_courseenrollment.column_10 kept as text (the file's header has no name for it" in text
    cols = [c for (c,) in q(data, "SELECT column_name FROM (DESCRIBE student_courseenrollment)")]
    assert set(personal_in("student_courseenrollment", cols)) == \
        {"package_date_in_file", "source_file_in_file", "Mode_in_file", "column_10"}
    # also against the columns the stored file has whatever the header: an optional one the header
    # lacks (auth_user.country) and the importer's course_id (helper-69); an exact course_id is the file's
    from edx_engine.ingest.tsv import _stored_names
    from edx_engine.schemas import schema_for

    assert _stored_names(["id", "username", "Country", "Course_ID", "course_id"], schema_for("auth_user")) == \
        (["id", "username", "Country_in_file", "Course_ID_in_file", "course_id"],
         {"Country_in_file": "Country", "Course_ID_in_file": "Course_ID"})


def test_lines_ending_in_a_carriage_return_alone_are_named(tmp_path):
    data, before = _baseline(tmp_path)
    pkg = tmp_path / "IDBx-2016-10-16"
    write(pkg, "student_courseenrollment", enrolments(2).replace("\n", "\r"))
    (f,) = load(data, pkg).failed
    assert "carriage return alone" in f.message and "truncated" not in f.message
    assert store_state(data) == before


def test_another_copy_of_an_imported_package_date_replaces_it_with_a_warning(tmp_path):
    """Two different copies of one package (same date, other content) imported in two runs: the later
    wins, as a corrected re-delivery must, but no longer silently (helper-65: the order of the imports
    decided the data without a word). Importing the same bytes again changes nothing and says nothing."""
    a = write(tmp_path / "A" / "IDBx-2016-10-09", "student_courseenrollment", enrolments(3))
    b = write(tmp_path / "B" / "IDBx-2016-10-09", "student_courseenrollment",
              enrolments(3).replace("\taudit\n", "\tverified\n", 1))
    data = tmp_path / "d"
    assert not load(data, a.parent).warnings
    s = load(data, b.parent)
    (w,) = s.warnings
    assert "package 2016-10-09: 1 file(s) replace" in w and f"before from {a}" in w and "student_courseenrollment" in w
    assert q(data, "SELECT DISTINCT source_file FROM student_courseenrollment") == [(str(b),)]
    assert q(data, "SELECT count(*) FROM student_courseenrollment WHERE mode = 'verified'") == [(1,)]
    s = load(data, b.parent)
    assert not s.warnings and [f.status for f in s.files] == ["unchanged"]
    # the same rows from a zip (another fingerprint: CRC-32, not SHA-256) are not "other content" (helper-69)
    z = tmp_path / "Z" / "IDBx-2016-10-09.zip"
    z.parent.mkdir()
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(b, f"IDBx-2016-10-09/{b.name}")
    s = load(data, z)
    assert not s.warnings and [f.status for f in s.files] == ["loaded"]
