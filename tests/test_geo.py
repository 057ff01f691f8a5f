"""IP -> country and `edx-engine locate-users`, on IPs whose countries are known."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from edx_engine import geo
from edx_engine.cli import app, run_import

from eventlog import learners_store, tracking_event, write_day

runner = CliRunner()
KNOWN = {"8.8.8.8": "US", "200.160.2.3": "BR", "81.2.69.142": "GB", "1.0.16.1": "JP"}


def test_lookup_known_ips_offline():
    assert geo.lookup(list(KNOWN)) == list(KNOWN.values())
    assert geo.lookup(["10.0.0.1", "127.0.0.1", "", None, "not an ip", "8.8.8.8, 10.0.0.1", " 81.2.69.142 "]) == \
        [None, None, None, None, None, "US", "GB"]
    db = geo.ip_database()
    assert db.name.startswith("iptocc ") and db.date and len(db.date) == 10
    assert geo.valid_country(" co ") == "CO" and geo.valid_country("") is None and geo.valid_country("XX") is None
    assert geo.country_name("BR") == "Brazil"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("geo")
    data, settings, rows = learners_store(tmp)
    no_country = [r for r in rows if not (r[3] or "").strip()]
    with_country = [r for r in rows if (r[3] or "").strip()]
    assert len({r[0] for r in no_country}) >= 4
    seen, users = set(), []
    for r in no_country:
        if r[0] not in seen:
            seen.add(r[0])
            users.append(r)
    u_br, u_gb, u_jp, u_none = users[:4]
    u_prof = with_country[0]
    lines, minute = [], 0
    # u_jp: 3 events from one US address, 2 + 2 from two JP addresses: the country of most events wins
    plan = [(u_br, "200.160.2.3", 3), (u_br, "8.8.8.8", 1), (u_gb, "81.2.69.142", 2), (u_jp, "1.0.16.1", 2),
            (u_jp, "1.0.16.2", 2), (u_jp, "8.8.8.8", 3), (u_none, "10.0.0.1", 2), (u_prof, "8.8.8.8", 2)]
    for (uid, username, course, _), ip, n in plan:
        for _ in range(n):
            minute += 1
            # half the events carry no user_id: attributed through the username
            lines.append(tracking_event(username, uid if minute % 2 else "", course, ip, minute))
    write_day(tmp / "logs", lines)
    run_import(settings, [tmp / "logs"], quiet=True)
    return data, {"BR": u_br, "GB": u_gb, "JP": u_jp, None: u_none, "profile": u_prof}


def test_locate_users_profile_then_ip(store):
    data, users = store
    r = runner.invoke(app, ["locate-users", "--data-dir", str(data)])
    assert r.exit_code == 0, r.output
    assert "not locatable" in r.output and "iptocc" in r.output
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        loc = {(row[0], row[1]): row for row in con.execute(
            "SELECT course_id, user_id, profile_country, ip_country, country, source, ip_events, ip_db, ip_db_date "
            "FROM user_location").fetchall()}
        summary = {row[0]: row[1:5] for row in con.execute(
            "SELECT course_id, learners, from_profile, from_ip, not_locatable FROM user_location_summary").fetchall()}
        profile = dict(con.execute("SELECT user_id, upper(trim(country)) FROM auth_userprofile").fetchall())
        enrol = con.execute("SELECT DISTINCT course_id, user_id FROM student_courseenrollment").fetchall()
        # staff are not counted in the summary, as in every report: person_course says who they are
        staff = set(con.execute("SELECT DISTINCT e.course_id, e.user_id FROM auth_user a JOIN student_courseenrollment e "
                                "ON e.user_id = a.id WHERE a.is_staff").fetchall())
    for cc in ("BR", "GB", "JP"):
        uid, _, course, _ = users[cc]
        row = loc[(course, uid)]
        assert row[2] is None and row[3] == cc and row[4] == cc and row[5] == "ip"
        assert row[7].startswith("iptocc") and row[8] == geo.ip_database().date
    assert loc[(users["BR"][2], users["BR"][0])][6] == 4  # 3 x BR + 1 x US: the most frequent wins
    uid, _, course, _ = users[None]
    assert loc[(course, uid)][3:6] == (None, None, None)  # private IP only: not locatable
    uid, _, course, pc = users["profile"]
    assert loc[(course, uid)][2:6] == (pc.strip().upper(), "US", pc.strip().upper(), "profile")
    # every enrolment has a row; per-course counts add up and match an independent count
    assert {(c, u) for c, u in enrol} <= set(loc)
    assert staff, "no staff account in this store: the summary's exclusion is not tested"
    for course, (learners, from_profile, from_ip, not_locatable) in summary.items():
        mine = [v for (c, u), v in loc.items() if c == course and (c, u) not in staff]
        assert learners == len(mine) == from_profile + from_ip + not_locatable
        assert from_profile == sum(1 for v in mine if geo.valid_country(profile.get(v[1])))
        assert from_ip == sum(1 for v in mine if v[5] == "ip")


def test_ip_country_survives_scrub(store):
    data, users = store
    runner.invoke(app, ["locate-users", "--data-dir", str(data)])
    r = runner.invoke(app, ["scrub", "--data-dir", str(data)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["locate-users", "--data-dir", str(data)])  # IPs are gone now
    assert r.exit_code == 0, r.output
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(ip) FROM events").fetchone()[0] == 0
        uid, _, course, _ = users["GB"]
        assert con.execute("SELECT country, source FROM user_location WHERE user_id=? AND course_id=?",
                           [uid, course]).fetchone() == ("GB", "ip")
