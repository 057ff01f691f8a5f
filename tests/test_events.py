"""Import of the daily tracking logs (issue: streaming events ingest).

Hand-made lines whose expected column values are known; a synthetic delivery (gpg, two
worker processes) for the round trip against the generator's manifest.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import duckdb
import pytest

from edx_engine.decrypt import GpgSettings
from edx_engine.ingest.events import import_events
from edx_engine.ingest.sources import discover
from edx_engine.lake import Lake

from conftest import gpg_encrypt

CID = "course-v1:IDBx+IDB1x+2T2016"
OLD = "IDBx/IDB1x/2T2014"
PAGE = f"https://courses.edx.org/courses/{CID}/courseware/3f1/9a2/"
PROBLEM = "block-v1:IDBx+IDB1x+2T2016+type@problem+block@5c1"


def ev(event_type="play_video", *, time="2016-10-12T14:03:21.584523+00:00", event="", context=None,
       username="mjperez", source="browser", page=PAGE, name=None, **extra) -> dict:
    d = {"username": username, "event_source": source, "event_type": event_type, "time": time, "event": event,
         "context": {"course_id": CID, "org_id": "IDBx", "user_id": 1042, "path": "/event"} if context is None
         else context,
         "page": page, "ip": "181.49.12.7", "agent": "Mozilla/5.0", "host": "courses.edx.org",
         "session": "9d1c", "referer": "https://courses.edx.org/x", "accept_language": "es-CO,es;q=0.9"}
    if name:
        d["name"] = name
    d.update(extra)
    return d


def line(d: dict) -> bytes:
    return json.dumps(d, ensure_ascii=False).encode()


def write_log(folder: Path, lines: list[bytes | dict], date: str = "2016-10-12", gz: bool = True,
              org: str = "idbx") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    body = b"".join((line(x) if isinstance(x, dict) else x) + b"\n" for x in lines)
    p = folder / f"{org}-edx-events-{date}.log{'.gz' if gz else ''}"
    p.write_bytes(gzip.compress(body) if gz else body)
    return p


def run(data: Path, *paths: Path, gpg: GpgSettings | None = None, workers: int = 0, limits=None):
    lake = Lake(data)
    with lake.writer():
        lake.init()
        srcs = [s for s in discover(list(paths)).sources if s.events]
        return import_events(lake, srcs, gpg or GpgSettings(), workers=workers, limits=limits)


def q(data: Path, sql: str, *params):
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


def row(data: Path, sql: str, *params):
    r = q(data, sql, *params)
    assert len(r) == 1, r
    return r[0]


# --- columns and families -----------------------------------------------------------------------

FAMILY_LINES = [
    # 1 video, browser, payload as a JSON-encoded string
    ev("play_video", name="edx.video.played",
       event=json.dumps({"id": "b3f2c1", "currentTime": 41.2, "code": "html5"}),
       context={"course_id": CID, "org_id": "IDBx", "user_id": 1042, "path": "/event",
                "module": {"display_name": "Vídeo", "usage_key": "block-v1:IDBx+IDB1x+2T2016+type@video+block@b3f2c1"}}),
    # 2 video seek (mobile, object)
    ev("seek_video", source="mobile", event={"id": "b3f2c1", "old_time": 10.5, "new_time": 99, "type": "onSlideSeek"}),
    # 3 speed change
    ev("speed_change_video", event=json.dumps({"id": "b3f2c1", "current_time": 22.95, "old_speed": "1.0",
                                                "new_speed": "1.50"})),
    # 4 server problem_check
    ev("problem_check", source="server", page=None, time="2016-10-12T14:05:03+00:00",
       event={"problem_id": PROBLEM, "attempts": 2, "grade": 1, "max_grade": 3, "success": "incorrect",
              "answers": {"x_2_1": "choice_2"}},
       context={"course_id": CID, "org_id": "IDBx", "user_id": 1042, "path": "/courses/x/problem_check",
                "module": {"display_name": "Pregunta 3", "usage_key": PROBLEM}}),
    # 5 browser problem_check: a query string, not JSON
    ev("problem_check", event="input_5c1_2_1=choice_0&input_5c1_3_1=choice_1",
       context={"course_id": CID, "org_id": "IDBx", "user_id": 1042, "path": "/event",
                "module": {"usage_key": PROBLEM}}),
    # 6 browser problem_graded: a list
    ev("problem_graded", event=["input_5c1_2_1=choice_0", "<div>html</div>"],
       context={"course_id": CID, "org_id": "IDBx", "user_id": 1042, "path": "/event",
                "module": {"usage_key": PROBLEM}}),
    # 7 navigation
    ev("seq_goto", event=json.dumps({"old": 1, "new": 3, "id": "block-v1:IDBx+IDB1x+2T2016+type@sequential+block@s1"})),
    # 8 enrolment
    ev("edx.course.enrollment.mode_changed", source="server", page=None,
       event={"course_id": CID, "user_id": 1042, "mode": "verified"}),
    # 9 certificate
    ev("edx.certificate.created", source="server", page=None,
       event={"user_id": 1042, "course_id": CID, "certificate_id": "cert9", "enrollment_mode": "honor",
              "generation_mode": "batch"}),
    # 10 forum thread
    ev("edx.forum.thread.created", source="server", page=None,
       event={"id": "t1", "commentable_id": "c1", "category_id": "cat1", "category_name": "General",
              "title": "Hola", "body": "¿Alguien?", "truncated": False}),
    # 11 forum response
    ev("edx.forum.response.created", source="server", page=None,
       event={"id": "r1", "discussion": {"id": "t1"}, "commentable_id": "c1", "category_id": "cat1",
              "category_name": "General", "body": "Sí"}),
    # 12 forum comment
    ev("edx.forum.comment.created", source="server", page=None,
       event={"id": "k1", "discussion": {"id": "t1"}, "response": {"id": "r1"}, "commentable_id": "c1",
              "body": "Ok"}),
    # 13 grades
    ev("edx.grades.course.grade_calculated", source="server", page=None,
       event={"user_id": 1042, "course_id": CID, "course_version": "v7", "percent_grade": 0.82,
              "letter_grade": "Pass"}),
    # 14 server page view: URL event_type, JSON string payload, old-style course id only in the URL
    ev(f"/courses/{OLD}/courseware/ch1/seq1/", source="server", page=None, event='{"POST": {}, "GET": {}}',
       context={"course_id": "", "org_id": "IDBx", "user_id": "", "path": f"/courses/{OLD}/courseware/ch1/seq1/"},
       username=""),
    # 15 page_close: empty payload, course only in the page URL, no context course_id at all
    ev("page_close", event="", context={"user_id": 7, "path": "/event"},
       page=f"https://courses.edx.org/courses/{OLD}/info"),
]


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    base = tmp_path_factory.mktemp("fam")
    f = write_log(base / "in", FAMILY_LINES)
    s = run(base / "data", f)
    return base / "data", s, f


def test_summary_and_common_columns(families):
    data, s, f = families
    assert s.events == len(FAMILY_LINES) and s.rejected == 0 and s.duplicates == 0 and not s.partial
    assert [r.status for r in s.files] == ["loaded"]
    assert "event files: 1 (1 loaded" in s.one_line() and "MB/s" in s.one_line()
    r = row(data, "SELECT time, event_date, username, user_id, course_id, org_id, event_type, name, event_source, "
                  "session, ip, agent, host, referer, accept_language, page, path, module_id, source_file, line "
                  "FROM events WHERE line = 1")
    assert r == (dt.datetime(2016, 10, 12, 14, 3, 21, 584523), dt.date(2016, 10, 12), "mjperez", 1042, CID, "IDBx",
                 "play_video", "edx.video.played", "browser", "9d1c", "181.49.12.7", "Mozilla/5.0",
                 "courses.edx.org", "https://courses.edx.org/x", "es-CO,es;q=0.9", PAGE, "/event",
                 "block-v1:IDBx+IDB1x+2T2016+type@video+block@b3f2c1", str(f), 1)
    # context kept as JSON, as written
    assert json.loads(row(data, "SELECT context FROM events WHERE line = 1")[0])["module"]["display_name"] == "Vídeo"
    assert row(data, "SELECT typeof(event_id), typeof(time), typeof(event), typeof(context) FROM events LIMIT 1") == \
        ("VARCHAR", "TIMESTAMP", "JSON", "JSON")
    assert row(data, "SELECT count(DISTINCT event_id) FROM events")[0] == len(FAMILY_LINES)


def test_video_family(families):
    data = families[0]
    got = q(data, "SELECT line, video_id, current_time, old_time, new_time, old_speed, new_speed "
                  "FROM events_video ORDER BY line")
    assert got == [(1, "b3f2c1", 41.2, None, None, None, None),
                   (2, "b3f2c1", None, 10.5, 99.0, None, None),
                   (3, "b3f2c1", 22.95, None, None, 1.0, 1.5)]


def test_problem_family(families):
    data = families[0]
    got = q(data, "SELECT line, event_source, problem_id, attempts, grade, max_grade, success "
                  "FROM events_problem ORDER BY line")
    assert got == [(4, "server", PROBLEM, 2, 1.0, 3.0, "incorrect"),
                   (5, "browser", PROBLEM, None, None, None, None),
                   (6, "browser", PROBLEM, None, None, None, None)]


def test_navigation_enrollment_certificate_grades(families):
    data = families[0]
    nav = q(data, "SELECT line, sequence_id, old_position, new_position FROM events_navigation ORDER BY line")
    assert nav == [(7, "block-v1:IDBx+IDB1x+2T2016+type@sequential+block@s1", 1, 3), (14, None, None, None),
                   (15, None, None, None)]
    assert q(data, "SELECT line, mode FROM events_enrollment") == [(8, "verified")]
    assert q(data, "SELECT line, certificate_id, enrollment_mode, generation_mode FROM events_certificate") == \
        [(9, "cert9", "honor", "batch")]
    assert q(data, "SELECT line, percent_grade, letter_grade, course_version FROM events_grades") == \
        [(13, 0.82, "Pass", "v7")]


def test_forum_family(families):
    data = families[0]
    got = q(data, "SELECT line, post_id, thread_id, response_id, commentable_id, category_id, category_name, title "
                  "FROM events_forum ORDER BY line")
    assert got == [(10, "t1", "t1", None, "c1", "cat1", "General", "Hola"),
                   (11, "r1", "t1", "r1", "c1", "cat1", "General", None),
                   (12, "k1", "t1", "r1", "c1", None, None, None)]


def test_event_shapes(families):
    data = families[0]
    got = {ln: (t, e, txt) for ln, t, e, txt in
           q(data, "SELECT line, json_type(event), event::VARCHAR, event_text FROM events")}
    assert got[1][0] == "OBJECT" and json.loads(got[1][1]) == {"id": "b3f2c1", "currentTime": 41.2, "code": "html5"}
    assert got[4][0] == "OBJECT" and json.loads(got[4][1])["attempts"] == 2  # object written as object
    assert got[5] == (None, None, "input_5c1_2_1=choice_0&input_5c1_3_1=choice_1")  # query string kept as text
    assert got[6][0] == "ARRAY" and json.loads(got[6][1]) == ["input_5c1_2_1=choice_0", "<div>html</div>"]
    assert got[14][0] == "OBJECT" and json.loads(got[14][1]) == {"POST": {}, "GET": {}}
    assert got[15] == (None, None, None)  # empty string -> NULL


def test_course_id_formats_and_derivation(families):
    data = families[0]
    got = dict(q(data, "SELECT line, course_id FROM events"))
    assert got[1] == CID  # from context
    assert got[14] == OLD  # context course_id "" -> from the URL event_type (old-style id)
    assert got[15] == OLD  # no context course_id -> from the page URL
    # user ids: int, "" -> NULL; empty username kept as ""
    assert row(data, "SELECT username, user_id FROM events WHERE line = 14") == ("", None)
    assert row(data, "SELECT user_id FROM events WHERE line = 15") == (7,)


def test_time_variants(tmp_path):
    times = {
        "2016-10-12T14:03:21.584523+00:00": dt.datetime(2016, 10, 12, 14, 3, 21, 584523),
        "2016-10-12T14:03:21+00:00": dt.datetime(2016, 10, 12, 14, 3, 21),
        "2016-10-12T14:03:21.5Z": dt.datetime(2016, 10, 12, 14, 3, 21, 500000),
        "2016-10-12T14:03:21Z": dt.datetime(2016, 10, 12, 14, 3, 21),
        "2016-10-12T14:03:21.584523": dt.datetime(2016, 10, 12, 14, 3, 21, 584523),  # naive: UTC
        "2016-10-12T14:03:21": dt.datetime(2016, 10, 12, 14, 3, 21),
        "2016-10-12T22:30:00-05:00": dt.datetime(2016, 10, 13, 3, 30),  # other offset: converted, next day
    }
    f = write_log(tmp_path / "in", [ev(time=t, session=str(i)) for i, t in enumerate(times)])
    s = run(tmp_path / "d", f)
    assert s.rejected == 0
    got = dict(q(tmp_path / "d", "SELECT session, time FROM events"))
    assert got == {str(i): v for i, v in enumerate(times.values())}
    # partitioned by the UTC event date
    assert q(tmp_path / "d", "SELECT event_date, count(*) FROM events GROUP BY 1 ORDER BY 1") == \
        [(dt.date(2016, 10, 12), 6), (dt.date(2016, 10, 13), 1)]
    dirs = sorted(p.name for p in (tmp_path / "d" / "lake" / "events").iterdir())
    assert dirs == ["date=2016-10-12", "date=2016-10-13"]


def test_user_id_variants(tmp_path):
    ctx = lambda u: {"course_id": CID, "user_id": u}  # noqa: E731
    f = write_log(tmp_path / "in", [ev(session="a", context=ctx(5)), ev(session="b", context=ctx("")),
                                    ev(session="c", context=ctx(None)), ev(session="d", context=ctx("17")),
                                    ev(session="e", context=ctx("abc")), ev(session="f", context="not an object")])
    s = run(tmp_path / "d", f)
    assert s.rejected == 0
    assert dict(q(tmp_path / "d", "SELECT session, user_id FROM events")) == \
        {"a": 5, "b": None, "c": None, "d": 17, "e": None, "f": None}
    # a context that is not an object is still kept as JSON
    assert row(tmp_path / "d", "SELECT context::VARCHAR FROM events WHERE session='f'") == ('"not an object"',)


def test_odd_field_types_are_kept_as_text(tmp_path):
    d = ev(session="x")
    d["ip"] = 12345
    d["agent"] = {"ua": "x"}
    f = write_log(tmp_path / "in", [d])
    assert run(tmp_path / "d", f).rejected == 0
    assert row(tmp_path / "d", "SELECT ip, agent, event_type FROM events") == ("12345", '{"ua":"x"}', "play_video")


def test_very_long_lines_kept(tmp_path, monkeypatch):
    import edx_engine.ingest.events as E

    monkeypatch.setattr(E._Plain, "CHUNK", 64 << 10)  # many reads per line
    body = "é" * (1_500_000)
    big = ev("edx.forum.thread.created", source="server", session="big",
             event={"id": "t9", "body": body, "title": "long"})
    f = write_log(tmp_path / "in", [ev(session="before"), big, ev(session="after")])
    assert len(line(big)) > 2_000_000
    s = run(tmp_path / "d", f)
    assert s.events == 3 and s.rejected == 0
    assert row(tmp_path / "d", "SELECT line, length(event->>'body'), title FROM events_forum") == (2, 1_500_000, "long")
    assert dict(q(tmp_path / "d", "SELECT session, line FROM events")) == {"before": 1, "big": 2, "after": 3}


# --- quarantine ---------------------------------------------------------------------------------

def test_bad_lines_quarantined(tmp_path):
    good = line(ev(session="g1"))
    bad_utf8_agent = line(ev(session="b1")).replace(b"Mozilla/5.0", b"Mozilla/5.0 \xff\xfe")
    bad_utf8_event = line(ev("x", source="server", event={"body": "PLACEHOLDER"})).replace(b"PLACEHOLDER", b"ca\xf1a")
    lines = [
        good,                                         # 1
        b"2016-10-12 14:00:00,118 ERROR tracking",    # 2 not JSON
        good[: len(good) // 2],                       # 3 truncated
        bad_utf8_agent,                               # 4 invalid UTF-8 in a string field
        line({k: v for k, v in ev(session="nt").items() if k != "time"}),  # 5 no time
        line(ev(session="bt", time="yesterday")),     # 6 invalid time
        b"[1, 2, 3]",                                 # 7 not an object
        b"",                                          # 8 blank: skipped, not an error
        bad_utf8_event,                               # 9 invalid UTF-8 inside the event object
        line(ev(session="g2")),                       # 10
    ]
    f = write_log(tmp_path / "in", lines)
    s = run(tmp_path / "d", f)
    assert s.events == 2 and s.rejected == 7 and s.partial
    assert s.files[0].status == "loaded" and "7 line(s) rejected, first: line 2: not JSON" in s.files[0].message
    got = q(tmp_path / "d", "SELECT kind, source_file, line, reason, raw FROM quarantine ORDER BY line")
    assert [(g[2], g[3]) for g in got] == [(2, "not JSON"), (3, "truncated JSON"), (4, "invalid UTF-8"),
                                           (5, "no time"), (6, "invalid time"), (7, "not a JSON object"),
                                           (9, "invalid UTF-8")]
    assert all(g[0] == "events" and g[1] == str(f) for g in got)
    raws = {g[2]: bytes(g[4]) for g in got}
    assert raws[4] == bad_utf8_agent and raws[9] == bad_utf8_event and raws[3] == good[: len(good) // 2]
    assert sorted(r[0] for r in q(tmp_path / "d", "SELECT session FROM events")) == ["g1", "g2"]
    # bookkeeping
    assert row(tmp_path / "d", "SELECT rows, rejected, duplicates FROM _edx_event_files") == (2, 7, 0)


def test_bad_lines_in_worker_processes(tmp_path):
    lines = [ev(session=str(i)) for i in range(50)] + [b"garbage"] + [ev(session="z")]
    f = write_log(tmp_path / "in", lines)
    s = run(tmp_path / "d", f, workers=2)
    assert s.events == 51 and s.rejected == 1
    assert q(tmp_path / "d", "SELECT line, reason FROM quarantine") == [(51, "not JSON")]
    assert row(tmp_path / "d", "SELECT line FROM events WHERE session='z'") == (52,)


# --- re-import, duplicates ----------------------------------------------------------------------

def _files_on_disk(data: Path) -> list[str]:
    return sorted(p.relative_to(data).as_posix() for p in (data / "lake" / "events").rglob("*") if p.is_file())


def test_idempotent_reimport_and_replacement(tmp_path):
    a = write_log(tmp_path / "in", [ev(session="a1"), ev(session="a2"), b"junk"], date="2016-10-12")
    b = write_log(tmp_path / "in", [ev(session="b1", time="2016-10-13T10:00:00Z")], date="2016-10-13")
    data = tmp_path / "d"
    s1 = run(data, a, b)
    assert [f.status for f in s1.files] == ["loaded", "loaded"] and s1.events == 3
    disk = _files_on_disk(data)
    s2 = run(data, a, b)
    assert [f.status for f in s2.files] == ["unchanged", "unchanged"] and s2.events == 0 and not s2.partial
    assert _files_on_disk(data) == disk
    assert row(data, "SELECT count(*) FROM events")[0] == 3
    assert row(data, "SELECT count(*) FROM quarantine")[0] == 1
    # the same file (same path) delivered again with other content: replaces its own rows (a file of the
    # same name from another folder is another source: tests/test_events_sources.py)
    a2 = write_log(tmp_path / "in", [ev(session="a1"), ev(session="a3"), ev(session="a4")], date="2016-10-12")
    s3 = run(data, a2)
    assert [f.status for f in s3.files] == ["loaded"] and s3.events == 3 and not s3.partial
    assert sorted(r[0] for r in q(data, "SELECT session FROM events")) == ["a1", "a3", "a4", "b1"]
    assert row(data, "SELECT count(*) FROM quarantine")[0] == 0  # its old rejects went with it
    assert row(data, "SELECT count(*) FROM _edx_event_files")[0] == 2
    assert row(data, "SELECT source_file, rows FROM _edx_event_files WHERE source_key LIKE 'idbx-edx-events-2016-10-12@%'") \
        == (str(a2), 3)
    assert not [p for p in _files_on_disk(data) if p in disk and "2016-10-12" in p.split("/")[-1]]  # old parts gone
    assert all(p.endswith(".parquet") for p in _files_on_disk(data))


def test_duplicates_across_files(tmp_path):
    shared = ev(session="shared", time="2016-10-12T23:59:59.5+00:00")
    d1 = write_log(tmp_path / "in", [ev(session="x1"), shared], date="2016-10-12")
    d2 = write_log(tmp_path / "in", [shared, ev(session="y1", time="2016-10-13T00:10:00+00:00")], date="2016-10-13")
    data = tmp_path / "d"
    s = run(data, d1, d2)
    assert s.events == 4 and s.duplicates == 1
    assert [f.duplicates for f in s.files] == [0, 1]
    assert row(data, "SELECT count(*) FROM events")[0] == 3
    assert row(data, "SELECT count(*), count(*) FILTER (WHERE duplicate) FROM events_all") == (4, 1)
    # the copy kept is the earlier file's; the later file's copy is flagged
    assert row(data, "SELECT source_file, line FROM events WHERE session='shared'") == (str(d1), 2)
    assert row(data, "SELECT source_file, line FROM events_all WHERE duplicate") == (str(d2), 1)
    assert q(data, "SELECT split_part(source_key, '@', 1), duplicates FROM _edx_event_files ORDER BY 1") == \
        [("idbx-edx-events-2016-10-12", 0), ("idbx-edx-events-2016-10-13", 1)]

    # imported in the other order, the store ends the same
    data2 = tmp_path / "d2"
    r1 = run(data2, d2)
    r2 = run(data2, d1)
    assert r1.duplicates == 0 and r2.duplicates == 1
    ev_sql = "SELECT session, source_file, line FROM events ORDER BY 1"
    assert q(data2, ev_sql) == q(data, ev_sql)
    assert q(data2, "SELECT split_part(source_key, '@', 1), duplicates FROM _edx_event_files ORDER BY 1") == \
        [("idbx-edx-events-2016-10-12", 0), ("idbx-edx-events-2016-10-13", 1)]

    # replacing the first file by a version without the shared event brings the other copy back
    d1b = write_log(tmp_path / "in", [ev(session="x1")], date="2016-10-12")  # same path: the same source
    run(data, d1b)
    assert row(data, "SELECT source_file, line FROM events WHERE session='shared'") == (str(d2), 1)
    assert row(data, "SELECT count(*) FILTER (WHERE duplicate) FROM events_all")[0] == 0


def test_same_event_twice_in_one_file_counted_once(tmp_path):
    e = ev(session="same")
    f = write_log(tmp_path / "in", [e, e])
    s = run(tmp_path / "d", f)
    assert s.events == 2 and s.duplicates == 1
    assert row(tmp_path / "d", "SELECT count(*), min(line) FROM events") == (1, 1)


# --- failures -----------------------------------------------------------------------------------

def test_truncated_gzip_delivered_again_fails_without_committing(tmp_path):
    """A day already imported whole, delivered again cut (same file): refused, the whole import kept
    (a cut day imported for the first time keeps its intact lines: test_events_duck)."""
    good = write_log(tmp_path / "in", [ev(session=str(i), agent="x" * 500 + str(i)) for i in range(2000)],
                     date="2016-10-12")
    data = tmp_path / "d"
    run(data, good)
    before = q(data, "SELECT session FROM events ORDER BY 1")
    raw = good.read_bytes()
    bad = good
    bad.write_bytes(raw[: len(raw) // 2])
    s = run(data, bad)
    assert [f.status for f in s.files] == ["failed"] and s.partial
    assert str(bad) in s.files[0].message and "truncated" in s.files[0].message
    assert q(data, "SELECT session FROM events ORDER BY 1") == before
    assert row(data, "SELECT source_file FROM _edx_event_files") == (str(good),)
    assert all(p.endswith(".parquet") for p in _files_on_disk(data))
    assert "failed" in s.one_line() and "1 failed" in s.one_line()
    logged = q(data, "SELECT status, message FROM _edx_import_log WHERE table_name='events' ORDER BY logged_at")
    assert logged[-1][0] == "failed"


@pytest.mark.parametrize("workers", [0, 2])
def test_gpg_decrypt_failure(tmp_path, gpg_key, other_gpg_key, workers):
    home, fpr, passphrase = gpg_key
    other_home, other_fpr = other_gpg_key
    plain = write_log(tmp_path / "plain", [ev(session="s")])
    enc_dir = tmp_path / "enc"
    enc_dir.mkdir()
    enc = gpg_encrypt(other_home, other_fpr, plain, enc_dir / (plain.name + ".gpg"))
    s = run(tmp_path / "d", enc, gpg=GpgSettings(str(home), passphrase), workers=workers)
    assert s.files[0].status == "failed" and "cannot decrypt" in s.files[0].message and str(enc) in s.files[0].message
    assert row(tmp_path / "d", "SELECT count(*) FROM events")[0] == 0


# --- views exist before any import --------------------------------------------------------------

def test_views_exist_typed_and_empty(tmp_path):
    import edx_engine.ingest.events  # noqa: F401  (registers the view hook)

    lake = Lake(tmp_path / "d")
    lake.init()
    with lake.connect() as con:
        con.execute("BEGIN TRANSACTION")
        lake.refresh_views(con)
        con.execute("COMMIT")
    data = tmp_path / "d"
    cols = {r[0]: r[1] for r in q(data, "DESCRIBE events")}
    assert list(cols) == ["event_id", "time", "event_date", "username", "user_id", "course_id", "org_id",
                          "event_type", "name", "event_source", "session", "ip", "agent", "host", "referer",
                          "accept_language", "page", "path", "module_id", "event", "event_text", "context",
                          "source_file", "line"]
    assert cols["time"] == "TIMESTAMP" and cols["user_id"] == "BIGINT" and cols["event"] == "JSON"
    assert cols["event_id"] == "VARCHAR" and cols["event_date"] == "DATE" and cols["line"] == "BIGINT"
    assert "duplicate" in {r[0] for r in q(data, "DESCRIBE events_all")}
    for view, extra in {"events_video": {"video_id": "VARCHAR", "current_time": "DOUBLE", "new_speed": "DOUBLE"},
                        "events_problem": {"problem_id": "VARCHAR", "attempts": "BIGINT", "grade": "DOUBLE",
                                           "max_grade": "DOUBLE", "success": "VARCHAR"},
                        "events_navigation": {"sequence_id": "VARCHAR", "old_position": "BIGINT"},
                        "events_enrollment": {"mode": "VARCHAR"},
                        "events_certificate": {"certificate_id": "VARCHAR", "generation_mode": "VARCHAR"},
                        "events_forum": {"post_id": "VARCHAR", "thread_id": "VARCHAR", "response_id": "VARCHAR",
                                         "title": "VARCHAR"},
                        "events_grades": {"percent_grade": "DOUBLE", "letter_grade": "VARCHAR"}}.items():
        got = {r[0]: r[1] for r in q(data, f"DESCRIBE {view}")}
        assert {k: got.get(k) for k in extra} == extra, view
        assert q(data, f"SELECT count(*) FROM {view}") == [(0,)]
    assert q(data, "SELECT count(*) FROM _edx_event_files") == [(0,)]


# --- round trip against the synthetic generator (gpg, worker processes) --------------------------

def test_synthetic_round_trip_encrypted(tmp_path, gpg_key):
    synthetic = pytest.importorskip("edx_engine.synthetic")
    home, fpr, passphrase = gpg_key
    out = tmp_path / "gen"
    m = synthetic.generate(out, synthetic.SyntheticConfig(
        org="IDBx", seed=3, courses=2, learners=60, days=3, events_per_learner=30, start=dt.date(2016, 10, 10),
        encrypt_to=fpr, gnupghome=str(home), malformed=True, package=False))
    data = tmp_path / "d"
    s = run(data, out, gpg=GpgSettings(str(home), passphrase), workers=2)
    assert [f.status for f in s.files] == ["loaded"] * len(m.events_files)
    assert all(f.label.endswith(".log.gz.gpg") for f in s.files)
    by_date = {e["date"]: e for e in m.events_files}
    for f in s.files:
        e = by_date[f.label.split("-events-")[1][:10]]
        assert f.events == e["valid_events"], f
        assert f.rejected == len(e["malformed"]), f
    assert row(data, "SELECT count(*) FROM events_all")[0] == sum(e["valid_events"] for e in m.events_files)
    assert row(data, "SELECT count(*) FROM events")[0] == sum(e["unique_events"] for e in m.events_files)
    expected_q = sorted((e["file"].rsplit("/", 1)[-1], b["line"]) for e in m.events_files for b in e["malformed"])
    got_q = sorted((Path(sf).name, ln) for sf, ln in q(data, "SELECT source_file, line FROM quarantine"))
    assert got_q == expected_q
    assert s.duplicates == sum(e["duplicated_from_previous_day"] for e in m.events_files)
    # no plaintext left behind: only Parquet in the lake
    assert all(p.suffix == ".parquet" for p in (data / "lake").rglob("*") if p.is_file())
