"""Package variants partners receive (issue 12, #11 item 9): unknown tables kept as text, any site
suffix, `.failed` markers, the opt-in zip, header changes over the years (synthetic vintages), and
the plausibility checks of keys and user ids."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from edx_engine import schemas
from edx_engine.cli import app
from edx_engine.decrypt import GpgSettings
from edx_engine.ingest.exports import PackageImporter
from edx_engine.ingest.sources import discover
from edx_engine.lake import Lake
from edx_engine.names import parse_package_member
from edx_engine.privacy.export import ExportError, export_table
from edx_engine.privacy.pseudonym import Pseudonymizer
from edx_engine.privacy.scrub import scrub
from edx_engine.synthetic import SyntheticConfig, generate
from edx_engine.synthetic.vintage import expected_phone, expected_state

CID = "course-v1:IDBx+IDB1x+2T2016"
SLUG = "IDBx-IDB1x-2T2016"
ENROL = "id\tuser_id\tcourse_id\tcreated\tis_active\tmode\n"
USER = ("id\tusername\tfirst_name\tlast_name\temail\tpassword\tis_staff\tis_active\tis_superuser\tlast_login\t"
        "date_joined\n")
PROFILE = ["id", "user_id", "name", "language", "location", "meta", "courseware", "gender", "mailing_address",
           "year_of_birth", "level_of_education", "goals", "country", "city"]


def put(pkg: Path, table: str, text: str, slug: str = SLUG, site: str = "prod") -> Path:
    pkg.mkdir(parents=True, exist_ok=True)
    p = pkg / f"{slug}-{table}-{site}-analytics.sql"
    p.write_text(text, encoding="utf-8")
    return p


def users(ids) -> str:
    return USER + "".join(f"{i}\tu{i}\t\t\tu{i}@example.org\t\t0\t1\t0\tNULL\t2016-01-01 00:00:00\n" for i in ids)


def enrolments(uids, ids=None, cid: str = CID) -> str:
    ids = ids or range(1, len(list(uids)) + 1)
    return ENROL + "".join(f"{i}\t{u}\t{cid}\t2016-05-01 10:00:00\t1\taudit\n" for i, u in zip(ids, uids))


def load(data: Path, *paths: Path):
    lake = Lake(data)
    lake.init()
    with lake.writer():
        return PackageImporter(lake, GpgSettings()).run(discover(list(paths)).sources)


def q(data: Path, sql: str):
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


# --- names ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("site", ["prod", "edge", "edx", "patches", "stage2", "prod-edge"])
def test_any_site_suffix_is_a_member(site):
    m = parse_package_member(f"{SLUG}-auth_user-{site}-analytics.sql.gpg")
    assert (m.table, m.slug, m.site, m.encrypted, m.unknown) == ("auth_user", SLUG, site, True, False)
    u = parse_package_member(f"{SLUG}-verify_student_verificationstatus-{site}-analytics.sql")
    assert (u.table, u.slug, u.site, u.unknown) == ("verify_student_verificationstatus", SLUG, site, True)


def test_failed_marker_and_reserved_names():
    m = parse_package_member(f"{SLUG}-auth_user-prod-analytics.sql.failed.gpg")
    assert (m.table, m.slug, m.failed_export, m.encrypted) == ("auth_user", SLUG, True, True)
    # a file may not take the name of the store's own views or bookkeeping: not a table
    for bad in ("_edx_snapshots", "events_video", "quarantine", "user_location"):
        assert parse_package_member(f"{SLUG}-{bad}-prod-analytics.sql") is None
    assert parse_package_member("README.txt") is None


# --- unknown tables ---------------------------------------------------------------------------------

def test_unknown_table_kept_as_text_one_view_per_table(tmp_path):
    pkg = tmp_path / "IDBx-2016-10-09"
    put(pkg, "student_courseenrollment", enrolments([101, 102]))
    put(pkg, "student_courseenrollment", enrolments([201], cid="course-v1:IDBx+B+1"), slug="IDBx-B-1")
    vs = "timestamp\tstatus\tcourse_id\tcheckpoint_location\tuser_id\n"
    put(pkg, "verify_student_verificationstatus", vs + f"2016-05-01 10:00:00\tapproved\t{CID}\tNULL\t101\n"
        f"2016-05-02 10:00:00\tdenied\t{CID}\tx\\ty\t102\n")
    put(pkg, "verify_student_verificationstatus", vs + "2016-05-03 10:00:00\tapproved\tcourse-v1:IDBx+B+1\t\t201\n",
        slug="IDBx-B-1")
    s = load(tmp_path / "d", pkg)
    assert s.unknown_tables == ["verify_student_verificationstatus"]  # once, for two files
    assert not s.failed and not s.warnings
    rows = q(tmp_path / "d", "SELECT course_id, status, checkpoint_location, user_id FROM "
                            "verify_student_verificationstatus ORDER BY timestamp")
    assert rows == [(CID, "approved", None, "101"), (CID, "denied", "x\ty", "102"),
                    ("course-v1:IDBx+B+1", "approved", "", "201")]  # NULL, escapes, empty text as in any table
    types = dict(q(tmp_path / "d", "SELECT column_name, data_type FROM duckdb_columns() "
                                   "WHERE table_name = 'verify_student_verificationstatus'"))
    assert set(types.values()) == {"VARCHAR"} and "timestamp" in types and "source_file" in types
    # the same file again: unchanged
    again = load(tmp_path / "d", pkg)
    assert {f.status for f in again.files} == {"unchanged"}


def test_unknown_table_without_header_is_a_failed_file(tmp_path):
    pkg = tmp_path / "IDBx-2016-10-09"
    put(pkg, "student_courseenrollment", enrolments([101]))
    put(pkg, "credit_crediteligibility", "1\t2016-05-01 10:00:00\tann\n")
    s = load(tmp_path / "d", pkg)
    bad = [f for f in s.files if f.status == "failed"]
    assert len(bad) == 1 and "line 1: no header of column names (first bad name '1')" in bad[0].message


def test_unknown_table_is_typed_by_a_reimport_once_in_the_registry(tmp_path, monkeypatch):
    pkg = tmp_path / "IDBx-2016-10-09"
    put(pkg, "student_courseenrollment", enrolments([101]))
    put(pkg, "course_groups_cohortmembership", f"user_id\tcourse_id\tgroup_type\tname\n101\t{CID}\tcohort\tA\n")
    load(tmp_path / "d", pkg)
    assert q(tmp_path / "d", "SELECT typeof(user_id) FROM course_groups_cohortmembership") == [("VARCHAR",)]
    schema = schemas.TableSchema("course_groups_cohortmembership", "Cohorts", (
        schemas.C("user_id", "int"), schemas.C("course_id"), schemas.C("group_type"), schemas.C("name")))
    monkeypatch.setitem(schemas.TABLES, schema.name, schema)
    s = load(tmp_path / "d", pkg)
    st = {f.table: f.status for f in s.files}
    assert st == {"student_courseenrollment": "unchanged", "course_groups_cohortmembership": "loaded"}
    assert s.unknown_tables == []
    assert q(tmp_path / "d", "SELECT typeof(user_id), user_id FROM course_groups_cohortmembership") == [("BIGINT", 101)]


def test_unknown_table_privacy_scrub_and_export(tmp_path):
    pkg = tmp_path / "IDBx-2016-10-09"
    put(pkg, "student_courseenrollment", enrolments([101]))
    put(pkg, "credit_crediteligibility", "id\tcreated\tmodified\tusername\tdeadline\tcourse_id\n"
        f"1\t2016-05-01 10:00:00\t2016-05-01 10:00:00\tmaria.perez\t2017-05-01 10:00:00\t{CID}\n")
    data = tmp_path / "d"
    load(data, pkg)
    lake = Lake(data)
    pz = Pseudonymizer(b"0123456789abcdef0123456789abcdef")
    for kw in ({"pseudonymizer": pz}, {"public": True}):
        with pytest.raises(ExportError, match="credit_crediteligibility cannot be exported: the schema registry"):
            export_table(lake, "credit_crediteligibility", tmp_path / "x.csv", **kw)
    assert not (tmp_path / "x.csv").exists()
    scrub(lake)
    # every column the registry does not describe is gone; the importer's own columns stay
    assert q(data, "SELECT id, created, username, deadline, course_id, org, package_date "
                   "FROM credit_crediteligibility") == [(None, None, None, None, CID, "IDBx", "2016-10-09")]
    found = [p for p in (data / "lake").rglob("*.parquet") if b"maria.perez" in p.read_bytes()]
    assert found == []


# --- .failed markers, sites, headers of other years ----------------------------------------------------

def test_failed_marker_reported_and_previous_snapshot_kept(tmp_path):
    old = tmp_path / "IDBx-2016-10-02"
    put(old, "student_courseenrollment", enrolments([101, 102]))
    put(old, "auth_user", users([101, 102]))
    new = tmp_path / "IDBx-2016-10-09"
    put(new, "student_courseenrollment", enrolments([101, 102, 103]))
    (new / f"{SLUG}-auth_user-prod-analytics.sql.failed").write_text("Traceback (most recent call last):\n")
    load(tmp_path / "d", old)
    s = load(tmp_path / "d", new)
    assert [f.status for f in s.failed] == []
    (marker,) = s.not_exported
    assert marker.table == "auth_user" and marker.course_id == CID
    assert marker.message.startswith(f"edX's export of auth_user for {CID} failed")
    assert q(tmp_path / "d", "SELECT count(*), min(package_date) FROM auth_user") == [(2, "2016-10-02")]
    assert q(tmp_path / "d", "SELECT count(*) FROM student_courseenrollment") == [(3,)]


def test_sites_user_id_map_headers_and_profile_columns(tmp_path):
    pkg = tmp_path / "IDBx-2022-10-09"
    put(pkg, "student_courseenrollment", enrolments([101, 102]), site="edge")
    put(pkg, "auth_user", users([101, 102]), site="edx")
    put(pkg, "user_id_map", "hash_id\tuser_id\tusername\nh1\t101\tu101\nh2\t102\tu102\n", site="patches")
    put(pkg, "user_id_map", "hash_id\tid\tusername\nh3\t201\tu201\n", slug="IDBx-B-1", site="prod")
    cols = PROFILE + ["bio", "state", "phone_number"]  # no allow_certificate (2021+), bio present
    row = ["7", "101", "Ana", "", "", "", "course.xml", "f", "NULL", "1990", "b", "", "US", "", "NULL", "CA",
           "+1 555 0101"]
    put(pkg, "auth_userprofile", "\t".join(cols) + "\n" + "\t".join(row) + "\n", site="any")
    put(pkg, "auth_userprofile", "\t".join(PROFILE + ["allow_certificate"]) + "\n"  # no bio (older)
        + "\t".join(row[:14] + ["1"]) + "\n", slug="IDBx-B-1")
    s = load(tmp_path / "d", pkg)
    assert not s.failed and all(f.status == "loaded" for f in s.files), [f.message for f in s.files]
    assert q(tmp_path / "d", "SELECT hash_id, id FROM user_id_map ORDER BY 1") == [("h1", 101), ("h2", 102),
                                                                                   ("h3", 201)]
    assert q(tmp_path / "d", "SELECT course_id, state, phone_number, allow_certificate, bio FROM auth_userprofile "
                             "ORDER BY 1") == [("IDBx-B-1", None, None, True, None), (CID, "CA", "+1 555 0101", None, None)]
    assert [f.extra_columns for f in s.files if f.extra_columns] == []  # every column known to the registry


# --- keys and user ids --------------------------------------------------------------------------------

def test_duplicate_primary_key_is_a_warning_rows_kept(tmp_path):
    pkg = tmp_path / "IDBx-2016-10-09"
    put(pkg, "auth_user", users([101, 102, 103]))
    put(pkg, "student_courseenrollment", enrolments([101, 102, 103], ids=[5, 5, 6]))
    s = load(tmp_path / "d", pkg)
    assert s.warnings == [f"{pkg}/{SLUG}-student_courseenrollment-prod-analytics.sql: 1 value(s) of the primary "
                          "key (id) occur more than once (2 rows, e.g. id=5); rows kept: is the header right?"]
    assert q(tmp_path / "d", "SELECT count(*) FROM student_courseenrollment") == [(3,)]
    log = q(tmp_path / "d", "SELECT message FROM _edx_import_log WHERE table_name='student_courseenrollment'")
    assert "primary key (id) occur more than once" in log[0][0]


def test_same_key_on_every_row_and_unique_keys(tmp_path):
    pkg = tmp_path / "IDBx-2016-10-09"
    put(pkg, "auth_user", users(range(101, 111)))
    sm = "id\tmodule_type\tmodule_id\tstudent_id\tstate\tgrade\tcreated\tmodified\tmax_grade\tdone\tcourse_id\n"
    sm += "".join(f"7\tproblem\tblock-v1:IDBx+IDB1x+2T2016+type@problem+block@p{i % 2}\t{101 + i // 2}\t{{}}\tNULL\t"
                  f"2016-05-01 10:00:00\t2016-05-01 10:00:00\tNULL\tna\t{CID}\n" for i in range(6))
    sm += f"8\tproblem\tblock-v1:IDBx+IDB1x+2T2016+type@problem+block@p0\t101\t{{}}\tNULL\t" \
          f"2016-05-01 10:00:00\t2016-05-01 10:00:00\tNULL\tna\t{CID}\n"
    put(pkg, "courseware_studentmodule", sm)
    s = load(tmp_path / "d", pkg)
    label = f"{pkg}/{SLUG}-courseware_studentmodule-prod-analytics.sql"
    assert s.warnings == [
        f"{label}: 1 value(s) of the primary key (id) occur more than once (6 rows, e.g. id=7); rows kept: "
        "is the header right?",
        f"{label}: 1 value(s) of the unique key (student_id, module_id) occur more than once (2 rows, e.g. "
        "student_id=101, module_id=block-v1:IDBx+IDB1x+2T2016+type@problem+block@p0); rows kept: is the header right?"]
    assert q(tmp_path / "d", "SELECT count(*) FROM courseware_studentmodule") == [(7,)]


def test_swapped_id_columns_and_unknown_user_ids(tmp_path):
    pkg = tmp_path / "IDBx-2016-10-09"
    put(pkg, "auth_user", users(range(101, 111)))
    # rows in edX's order (profile id, user id) under a header that names them the wrong way round:
    # profile ids (1..10) land in user_id
    swapped = ["user_id", "id"] + PROFILE[2:]
    put(pkg, "auth_userprofile", "\t".join(swapped) + "\n" + "".join(
        "\t".join([str(u - 100), str(u), f"N{u}", "", "", "", "course.xml", "f", "NULL", "1990", "b", "", "CO", ""])
        + "\n" for u in range(101, 111)))
    # one enrolment of ten is a user the package's auth_user does not have (10% > 1%)
    put(pkg, "student_courseenrollment", enrolments(list(range(101, 110)) + [999]))
    s = load(tmp_path / "d", pkg)
    prof = f"{pkg}/{SLUG}-auth_userprofile-prod-analytics.sql"
    enr = f"{pkg}/{SLUG}-student_courseenrollment-prod-analytics.sql"
    assert sorted(s.warnings) == sorted([
        f"{prof}: 10 of 10 user ids in column user_id are not in auth_user of the same package (e.g. 1); column id "
        "holds auth_user ids: are user_id and id swapped in the header?; rows kept",
        f"{enr}: 1 of 10 user ids in column user_id are not in auth_user of the same package (e.g. 999); rows kept"])
    assert q(tmp_path / "d", "SELECT count(*) FROM auth_userprofile") == [(10,)]


def test_few_unknown_user_ids_are_not_reported(tmp_path):
    """A staff account with state but no enrolment is normal: at most 1% of the ids may be unknown."""
    pkg = tmp_path / "IDBx-2016-10-09"
    put(pkg, "auth_user", users(range(1, 201)))
    put(pkg, "student_courseenrollment", enrolments(list(range(1, 200)) + [999]))  # 1 of 200 = 0.5%
    assert load(tmp_path / "d", pkg).warnings == []


def test_cli_summary_lines(tmp_path):
    pkg = tmp_path / "IDBx-2016-10-09"
    put(pkg, "auth_user", users([101, 102]))
    put(pkg, "student_courseenrollment", enrolments([101, 102], ids=[1, 1]))
    extra = enrolments([201], cid="course-v1:IDBx+B+1").replace("\tmode\n", "\tmode\tnew_col\n", 1)
    put(pkg, "student_courseenrollment", extra.replace("audit\n", "audit\tx\n"), slug="IDBx-B-1")
    for slug, cid in ((SLUG, CID), ("IDBx-B-1", "course-v1:IDBx+B+1")):
        put(pkg, "django_comment_client_role_users", f"course_id\tuser_id\tname\n{cid}\t101\tStudent\n", slug=slug)
    (pkg / f"{SLUG}-teams-prod-analytics.sql.failed").write_text("Traceback\n")
    (pkg / "notes.txt").write_text("not a table\n")
    r = CliRunner().invoke(app, ["import", str(pkg), "--data-dir", str(tmp_path / "d")], terminal_width=400)
    out = r.output
    assert r.exit_code == 0, out
    assert out.count("note: unknown table django_comment_client_role_users kept as text") == 1
    assert ("note: unknown column student_courseenrollment.new_col kept as text (in "
            f"{pkg / 'IDBx-B-1-student_courseenrollment-prod-analytics.sql'})") in out  # which file has it
    assert f"note: edX's export of teams for {CID} failed" in out and "1 not exported by edX" in out
    assert "warning" in out and "primary key (id) occur more than once" in out
    assert "notes.txt: not a table or file of an edX package" in out


# --- synthetic vintages -------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=[2016, 2020, 2024])
def vintage(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"v{request.param}")
    m = generate(out / "pkg", SyntheticConfig(courses=2, learners=30, days=0, events=False, malformed=False,
                                              seed=5, vintage=request.param))
    paths = [out / "pkg" / f for f in m.files]
    s = load(out / "d", *paths)
    return request.param, m, s, out / "d", out / "pkg"


def test_vintage_every_table_and_row_arrives(vintage):
    year, m, s, data, _ = vintage
    assert not s.failed and s.rejected == 0 and s.warnings == []
    stored = {(t, c): n for t, c, n in q(data, "SELECT table_name, course_id, rows FROM _edx_snapshots")}
    want = {(r["table"], r["course_id"] or "org:IDBx"): r["rows"] for r in m.row_counts}
    assert stored == want
    unknown = {2016: "verify_student_verificationstatus", 2020: "django_comment_client_role_users",
               2024: "credit_crediteligibility"}[year]
    assert s.unknown_tables == [unknown]
    assert q(data, f"SELECT count(*) FROM {unknown}") == [(sum(n for (t, _), n in want.items() if t == unknown),)]
    sites = {2016: "prod", 2020: "edx", 2024: "patches"}[year]
    assert {f.label.rsplit("-", 2)[-2] for f in s.files if f.label.endswith("-analytics.sql")} == {sites}


def test_vintage_user_tables(vintage):
    year, m, s, data, _ = vintage
    # user_id_map's user id column (id, or user_id since Oct 2022) is stored as id: the same ids as auth_user
    assert q(data, "SELECT count(*) FROM user_id_map m ANTI JOIN auth_user u ON u.id = m.id "
                   "AND u.course_id = m.course_id") == [(0,)]
    assert q(data, "SELECT count(*) FROM user_id_map") == q(data, "SELECT count(*) FROM auth_user")
    pw = q(data, "SELECT count(*), count(*) FILTER (WHERE password = ''), "
                 "count(*) FILTER (WHERE password LIKE 'sha1$%') FROM auth_user")[0]
    n = pw[0]
    assert n == sum(r["rows"] for r in m.row_counts if r["table"] == "auth_user") and n > 0
    if year == 2016:
        assert pw[2] == n  # Django hashes
    if year == 2024:
        assert pw[1] == n  # the current exporter empties the column
    prof = q(data, "SELECT user_id, country, state, phone_number, allow_certificate FROM auth_userprofile")
    for uid, country, state, phone, allow in prof:
        assert allow is (None if year == 2024 else True)
        assert state == (expected_state(country) if year in (2020, 2024) else None)
        assert phone == (expected_phone(uid) if year == 2024 else None)


def test_vintage_failed_marker_and_optin_zip(vintage):
    year, m, s, data, pkg = vintage
    failed = [(f.table, f.course_id) for f in s.not_exported]
    assert failed == [(r["table"], r["course_id"]) for r in m.failed_exports]
    assert bool(failed) == (year == 2020)
    optin = [f for f in s.files if f.table == "email_opt_in"]
    assert len(optin) == 1 and optin[0].status == "loaded"
    assert ("email-opt-in/" in optin[0].label) == (year == 2024)
    # the CSV's rows, read independently from the zip
    zpath = pkg / ("email-opt-in" if year == 2024 else "course-data") / f"IDBx-{m.package_date}.zip"
    with zipfile.ZipFile(zpath) as z:
        name = next(n for n in z.namelist() if "email_opt_in" in n)
        rows = list(csv.DictReader(io.StringIO(z.read(name).decode())))
    assert q(data, "SELECT count(*), count(DISTINCT user_id) FROM email_opt_in") == \
        [(len(rows), len({r["user_id"] for r in rows}))]


def test_vintage_cli_option(tmp_path):
    r = CliRunner().invoke(app, ["synthetic", "--out", str(tmp_path / "x"), "--vintage", "2019"])
    assert r.exit_code == 1 and "vintage must be 2016, 2020 or 2024" in r.output
