"""A second, naive implementation (plain Python over the raw rows) against the models, on a synthetic package."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict

import duckdb
import pytest

from edx_engine.models import Params, build_duckdb, read_model

from models_support import synthetic_store

PASS = 0.65


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    lake, manifest = synthetic_store(tmp_path_factory.mktemp("naive"), seed=3, learners=150, days=9)
    build_duckdb(lake, [], Params(passing_grade=PASS))
    return lake, manifest


def fetch(lake, sql):
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]


def norm(v, up=False):
    if v is None or str(v).strip() == "":
        return "unknown"
    s = str(v).strip()
    return s.upper() if up else s.lower()


def naive(lake):
    users = {}
    for r in sorted(fetch(lake, "SELECT id, username, is_staff, package_date, course_id FROM auth_user"),
                    key=lambda r: (r["id"], _desc(r["package_date"]), r["course_id"])):
        users.setdefault(r["id"], r)
    profiles = {}
    for r in sorted(fetch(lake, "SELECT * FROM auth_userprofile"),
                    key=lambda r: (r["user_id"], _desc(r["package_date"]), r["course_id"])):
        profiles.setdefault(r["user_id"], r)
    by_username = {}
    for uid in sorted(users):
        by_username.setdefault(users[uid]["username"], uid)
    enr = {}
    for r in sorted(fetch(lake, "SELECT * FROM student_courseenrollment"),
                    key=lambda r: (_desc(r["package_date"]), _desc(r["created"]), -r["id"])):
        enr.setdefault((r["course_id"], r["user_id"]), r)
    certs = {}
    for r in sorted(fetch(lake, "SELECT * FROM certificates_generatedcertificate"),
                    key=lambda r: (_desc(r["modified_date"]), -r["id"])):
        certs.setdefault((r["course_id"], r["user_id"]), r)
    chapter_of, course_chapters = {}, defaultdict(set)
    for r in fetch(lake, "SELECT course_id, block_id, category, chapter_id FROM course_structure"):
        chapter_of[(r["course_id"], r["block_id"])] = r["chapter_id"]
        if r["category"] == "chapter":
            course_chapters[r["course_id"]].add(r["block_id"])
    nsm, mapped, chapter_rows, viewers = defaultdict(int), defaultdict(set), defaultdict(set), defaultdict(set)
    for r in fetch(lake, "SELECT course_id, student_id, module_type, module_id FROM courseware_studentmodule"):
        k = (r["course_id"], r["student_id"])
        nsm[k] += 1
        ch = chapter_of.get((r["course_id"], r["module_id"]))
        if r["module_type"] == "chapter":
            chapter_rows[k].add(r["module_id"])
            viewers[(r["course_id"], r["module_id"])].add(r["student_id"])
            ch = ch or r["module_id"]
        if ch is not None:
            mapped[k].add(ch)
    popular = defaultdict(int)  # chapters opened by >= 20 learners
    for (cid, _), who in viewers.items():
        popular[cid] += len(who) >= 20
    posts = defaultdict(int)
    for r in fetch(lake, "SELECT course_id, author_id FROM forum WHERE author_id IS NOT NULL"):
        posts[(r["course_id"], r["author_id"])] += 1
    ev = defaultdict(lambda: {"n": 0, "all": 0, "days": set(), "days_all": set(), "first": None, "last": None,
                              "play": 0, "play_all": 0, "check": 0, "check_server": 0})
    for r in fetch(lake, "SELECT time, event_date, username, user_id, course_id, event_type, name, event_source, "
                         "event::VARCHAR AS event FROM events"):
        payload = json.loads(r["event"]) if r["event"] else None
        payload = payload if isinstance(payload, dict) else {}
        about = r["event_type"].startswith(("edx.course.enrollment.", "edx.certificate."))
        cid = r["course_id"] or (payload.get("course_id") if r["event_type"].startswith("edx.course.enrollment.")
                                 else None)
        if not cid:
            continue
        actor = r["user_id"] if r["user_id"] is not None else by_username.get(r["username"]) if r["username"] else None
        subject = int(payload["user_id"]) if about and str(payload.get("user_id", "")).isdigit() else None
        uid = subject if subject is not None else actor
        if uid is None:
            continue
        own = subject is None or subject == actor
        research = own and "/xblock/" not in r["event_type"] and r["event_source"] != "task"
        e = ev[(cid, uid)]
        e["all"] += 1
        e["n"] += research
        e["days_all"].add(r["event_date"])
        if research:
            e["days"].add(r["event_date"])
        e["first"] = r["time"] if e["first"] is None else min(e["first"], r["time"])
        e["last"] = r["time"] if e["last"] is None else max(e["last"], r["time"])
        e["play"] += research and r["event_type"] == "play_video"
        e["play_all"] += r["event_type"] in ("play_video", "edx.video.played") or r["name"] in ("play_video",
                                                                                                  "edx.video.played")
        e["check"] += research and r["event_type"] == "problem_check"
        e["check_server"] += r["event_type"] == "problem_check" and r["event_source"] == "server"
    roles = {(r["course_id"], r["user_id"]) for r in fetch(lake, "SELECT * FROM student_courseaccessrole")
             if r["role"] in ("instructor", "staff")}
    pc = {}
    for cid, uid in set(enr) | {k for k in certs if k[0] is not None and k[1] is not None}:
        r = enr.get((cid, uid))
        c = certs.get((cid, uid), {})
        p = profiles.get(uid, {})
        e = ev.get((cid, uid))
        ncc = len(course_chapters[cid])
        nch = len(chapter_rows[(cid, uid)])
        grade = c.get("grade")
        pc[(cid, uid)] = {
            "registered": r is not None,
            "is_active": r is not None and (r["is_active"] if r["is_active"] is not None else True),
            "mode": norm(r["mode"] if r and str(r["mode"] or "").strip() else c.get("mode")), "viewed": nch > 0, "nstudentmodule": nsm[(cid, uid)],
            "nchapters": nch, "nchapters_structure": len(mapped[(cid, uid)]),
            "explored": nch > 0 and nch >= popular[cid] // 2,
            "explored_structure": ncc > 0 and len(mapped[(cid, uid)]) * 2 >= ncc,
            "certified": c.get("status") == "downloadable", "passed": grade is not None and grade >= PASS,
            "cert_status": norm(c.get("status")).replace("unknown", "none"), "grade": grade,
            "nevents": e["n"] if e else 0, "ndays_act": len(e["days"]) if e else 0,
            "nevents_all": e["all"] if e else 0, "ndays_act_all": len(e["days_all"]) if e else 0,
            "first_event": e["first"] if e else None, "last_event": e["last"] if e else None,
            "nplay_video": e["play"] if e else 0, "nproblem_check": e["check"] if e else 0,
            "nplay_video_all": e["play_all"] if e else 0, "nproblem_check_server": e["check_server"] if e else 0,
            "nforum_posts": posts[(cid, uid)], "gender": norm(p.get("gender")),
            "level_of_education": norm(p.get("level_of_education")), "year_of_birth": p.get("year_of_birth"),
            "country": norm(p.get("country"), up=True),
            "is_staff": bool(users.get(uid, {}).get("is_staff")) or (cid, uid) in roles,
        }
    return pc, users, by_username


def _desc(v):
    """Sort key for 'descending, NULLs last' on strings, datetimes and numbers."""
    if v is None:
        return (1, 0)
    if isinstance(v, str):
        return (0, tuple(-ord(ch) for ch in v) + (1,))
    if isinstance(v, dt.datetime):
        return (0, -v.timestamp())
    return (0, -v)


def test_person_course_matches_naive(built):
    lake, manifest = built
    expected, users, _ = naive(lake)
    got = {(r["course_id"], r["user_id"]): r for r in read_model(lake, "person_course").to_pylist()}
    assert set(got) == set(expected)
    assert sum(1 for v in expected.values() if v["nevents"]) > 50  # the comparison is not vacuous
    assert sum(1 for v in expected.values() if v["certified"]) > 10
    assert {u for u, r in users.items() if r["is_staff"]} == set(manifest.staff_user_ids)
    for k, exp in expected.items():
        g = got[k]
        assert {c: g[c] for c in exp} == exp, k


def test_course_summary_and_series_match_naive(built):
    lake, _ = built
    pc, users, by_username = naive(lake)
    learners = {k: v for k, v in pc.items() if not v["is_staff"]}
    summary = {r["course_id"]: r for r in read_model(lake, "course_summary").to_pylist()}
    for cid in {k[0] for k in pc}:
        rows = [v for k, v in learners.items() if k[0] == cid]
        s = summary[cid]
        assert s["enrolled"] == sum(r["registered"] for r in rows)
        assert s["active"] == sum(r["viewed"] for r in rows)
        assert s["active_events"] == sum(r["nevents"] > 0 for r in rows)
        assert s["explored"] == sum(r["explored"] for r in rows)
        assert s["approved"] == sum(r["passed"] for r in rows)
        assert s["certified"] == sum(r["certified"] for r in rows)
        assert s["certificates_failed"] == sum(r["cert_status"] == "notpassing" for r in rows)
        assert s["male"] == sum(r["gender"] == "m" for r in rows)
        assert s["female"] == sum(r["gender"] == "f" for r in rows)
        assert s["other_unknown"] == len(rows) - s["male"] - s["female"]
        assert s["countries"] == len({r["country"] for r in rows} - {"unknown"})
        bd = {(r["country"], r["dimension"], r["value"]): r["learners"]
              for r in read_model(lake, "course_breakdown", course=cid).to_pylist()}
        for r in rows:
            assert bd[("(all)", "gender", r["gender"])] == sum(x["gender"] == r["gender"] for x in rows)
            yob = "unknown" if r["year_of_birth"] is None else str(r["year_of_birth"])
            assert bd[(r["country"], "year_of_birth", yob)] == sum(
                x["country"] == r["country"] and ("unknown" if x["year_of_birth"] is None else str(x["year_of_birth"]))
                == yob for x in rows)
    # weekly active learners, from the raw events
    staff = {u for u, r in users.items() if r["is_staff"]}
    weekly = defaultdict(set)
    first = {}
    for r in fetch(lake, "SELECT time, event_id, event_date, username, user_id, course_id, event_type, "
                         "event_source, problem_id, success FROM events_problem"):
        uid = r["user_id"] if r["user_id"] is not None else by_username.get(r["username"]) if r["username"] else None
        if (uid is None or uid in staff or not r["course_id"] or r["event_type"] != "problem_check"
                or r["event_source"] != "server" or not r["problem_id"]):
            continue
        k = (r["course_id"], r["problem_id"], uid)
        if k not in first or (r["time"], r["event_id"]) < first[k][:2]:
            first[k] = (r["time"], r["event_id"], r["success"])
    for r in fetch(lake, "SELECT event_date, username, user_id, course_id FROM events"):
        uid = r["user_id"] if r["user_id"] is not None else by_username.get(r["username"]) if r["username"] else None
        if uid is None or uid in staff or not r["course_id"]:
            continue
        monday = r["event_date"] - dt.timedelta(days=r["event_date"].weekday())
        weekly[(r["course_id"], monday)].add(uid)
    got = {(r["course_id"], r["week"]): r["active_learners"] for r in read_model(lake, "activity_weekly").to_pylist()}
    assert got == {k: len(v) for k, v in weekly.items()}
    fa = defaultdict(int)
    for (cid, pid, _), (_, _, success) in first.items():
        fa[(cid, pid)] += success == "correct"
    got = {(r["course_id"], r["problem_id"]): r["first_attempt_correct"]
           for r in read_model(lake, "problem_summary").to_pylist()}
    assert got == {k: fa.get(k, 0) for k in got} and set(got) == {k[:2] for k in first}
    assert sum(got.values()) > 0
