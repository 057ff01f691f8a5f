"""Edge cases of the tracking-log import found in review: the host's time zone, times DuckDB
casts but a date cannot hold, corrupt or empty .gz files, percent-encoded course ids in URLs,
a byte order mark, an out-of-range user id in the former engine."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import edx_engine.ingest.events as E
from edx_engine.names import course_id_from_url

from test_events import CID, ev, line, q, row, run, write_log

ENGINES = ["duckdb", "msgspec"]


@pytest.fixture(params=ENGINES)
def engine(request, monkeypatch):
    monkeypatch.setattr(E, "ENGINE", request.param)
    return request.param


TZ_SCRIPT = r"""
import json, sys
from edx_engine.ingest import events_duck as D
body = b"".join(json.dumps({"time": t, "event_type": k}).encode() + b"\n" for k, t in json.loads(sys.argv[1]))
parser = D.DuckParser(threads=1)
out = {}
for name, p in (("parser", parser), ("cursor", parser.cursor())):
    res = p.parse(D.make_block(1, body), [])
    out[name] = {k: str(t) for k, t in zip(res.column("event_type").to_pylist(), res.column("time").to_pylist())}
print(json.dumps(out))
"""


def test_times_are_utc_on_every_cursor_whatever_the_host_zone():
    """Both consumer threads (the parser and its cursor) read times as UTC in a non-UTC host zone."""
    times = {"offset": ("2016-10-12T14:03:21+05:30", "2016-10-12 08:33:21"),
             "plus0000": ("2016-10-12T14:03:21+0000", "2016-10-12 14:03:21"),
             "minus0000": ("2016-10-12T14:03:21-00:00", "2016-10-12 14:03:21"),
             "naive_in_dst_gap": ("2016-03-13T02:30:00", "2016-03-13 02:30:00"),
             "z": ("2016-10-12T14:03:21Z", "2016-10-12 14:03:21")}
    env = {**os.environ, "TZ": "America/New_York"}
    out = subprocess.run([sys.executable, "-c", TZ_SCRIPT, json.dumps([(k, t) for k, (t, _) in times.items()])],
                         env=env, capture_output=True, text=True, check=True).stdout
    got = json.loads(out)
    expected = {k: want for k, (_, want) in times.items()}
    assert got["parser"] == expected
    assert got["cursor"] == expected


BAD_TIMES = ["10000-01-01T00:00:00Z", "9999-12-31T23:30:00-05:00", "0000-01-01T00:00:00Z", "0044-03-15 (BC)",
             "-0044-03-15T00:00:00", "infinity", "-infinity", "epoch"]


def test_times_a_date_cannot_hold_are_quarantined(tmp_path, engine):
    from edx_engine.ingest.events_parse import EventLimits

    lines = [ev(event_type="ok")] + [ev(event_type=f"bad{i}", time=t) for i, t in enumerate(BAD_TIMES)]
    lines.append(ev(event_type="edge", time="9999-12-31T23:59:59Z"))
    f = write_log(tmp_path / "in", lines)
    invalid = [(i + 2, "invalid time") for i in range(len(BAD_TIMES))]
    # without a plausible-time window, the last instant a date can hold loads
    data = tmp_path / "d"
    s = run(data, f, limits=EventLimits(earliest=None, days_after_file=None))
    assert [f.status for f in s.files] == ["loaded"]
    assert q(data, "SELECT event_type, time::VARCHAR FROM events ORDER BY line") == \
        [("ok", "2016-10-12 14:03:21.584523"), ("edge", "9999-12-31 23:59:59")]
    assert q(data, "SELECT line, reason FROM quarantine ORDER BY line") == invalid
    # with the default window it is implausible for a file of 2016-10-12; the others stay invalid
    data2 = tmp_path / "d2"
    run(data2, f)
    assert q(data2, "SELECT event_type FROM events") == [("ok",)]
    assert q(data2, "SELECT line, reason FROM quarantine ORDER BY line") == \
        invalid + [(len(BAD_TIMES) + 2, "implausible time")]


def test_utc_offsets_no_place_has_are_invalid_times(tmp_path, engine):
    """DuckDB's and Arrow's casts take +25:00, +99:59 or +05:99 and move the event by hours or days
    into another date (helper-65); such a time is invalid. Real offsets (-12:00 to +14:00, also
    without the colon or the minutes) load, converted to UTC, on both engines."""
    good = {"p14": ("2016-10-12T14:03:21+14:00", "2016-10-12 00:03:21"),
            "m12": ("2016-10-12T14:03:21-12:00", "2016-10-13 02:03:21"),
            "p0545": ("2016-10-12T14:03:21.5+0545", "2016-10-12 08:18:21.5"),
            "p05": ("2016-10-12T14:03:21+05", "2016-10-12 09:03:21")}
    bad = ["2016-10-12T14:03:21.5+25:00", "2016-10-12T14:03:21+99:59", "2016-10-12T14:03:21+05:99",
           "2016-10-12T14:03:21-15:00", "2016-10-12T14:03:21+23", "2016-10-12 14:03:21+1500"]
    lines = [ev(event_type=k, time=t) for k, (t, _) in good.items()] + [ev(event_type="bad", time=t) for t in bad]
    data = tmp_path / "d"
    run(data, write_log(tmp_path / "in", lines))
    assert dict(q(data, "SELECT event_type, time::VARCHAR FROM events")) == {k: w for k, (_, w) in good.items()}
    assert q(data, "SELECT line, reason FROM quarantine ORDER BY line") == \
        [(len(good) + 1 + i, "invalid time") for i in range(len(bad))]


def test_corrupt_gzip_fails_that_file_only(tmp_path):
    good = gzip.compress(line(ev(session="a")) + b"\n")
    bad = bytearray(gzip.compress(b"".join(line(ev(session=str(i))) + b"\n" for i in range(50))))
    bad[-6] ^= 0xFF  # CRC-32 of the member no longer matches
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "idbx-edx-events-2016-10-12.log.gz").write_bytes(bytes(bad))
    (tmp_path / "in" / "idbx-edx-events-2016-10-13.log.gz").write_bytes(good)
    data = tmp_path / "d"
    s = run(data, tmp_path / "in")
    by_name = {Path(f.label).name: f for f in s.files}
    failed = by_name["idbx-edx-events-2016-10-12.log.gz"]
    assert failed.status == "failed" and "corrupt" in failed.message and "2016-10-12.log.gz" in failed.message
    assert by_name["idbx-edx-events-2016-10-13.log.gz"].status == "loaded"
    assert q(data, "SELECT session FROM events") == [("a",)]


@pytest.mark.parametrize("content", [b"", b"\x1f", b"not gzip at all\n"])
def test_gz_without_gzip_content_fails_and_keeps_the_day(tmp_path, content):
    data = tmp_path / "d"
    first = write_log(tmp_path / "a", [ev(session=str(i)) for i in range(5)])
    assert run(data, first).events == 5
    (tmp_path / "b").mkdir()
    cut = tmp_path / "b" / first.name  # the same day's file delivered again, empty or cut
    cut.write_bytes(content)
    s = run(data, cut)
    assert [f.status for f in s.files] == ["failed"] and "gzip" in s.files[0].message
    assert row(data, "SELECT count(*) FROM events")[0] == 5


PAGES = {
    "https://courses.edx.org/courses/course-v1%3AIDBx%2BIDB1x%2B2T2016/courseware/3f1/9a2/": CID,
    "https://courses.edx.org/courses/course-v1:IDBx%2BIDB1x%2B2T2016/courseware/3f1/": CID,
    "https://courses.edx.org/courses/course-v1%3aIDBx%2BIDB1x%2B2T2016/jump_to/abc": CID,
    "https://courses.edx.org/courses/IDBx/IDB2x/2014_T1/courseware/w1/": "IDBx/IDB2x/2014_T1",
    "https://courses.edx.org/courses/IDBx%2FIDB1x%2F2T2014/courseware/3f1/": None,
    "https://courses.edx.org/dashboard": None,
}


def test_course_id_from_url_decodes_percent_encoding():
    assert {p: course_id_from_url(p) for p in PAGES} == PAGES


def test_course_id_from_percent_encoded_page(tmp_path, engine):
    ctx = {"course_id": "", "org_id": "IDBx", "user_id": 1, "path": "/event"}
    data = tmp_path / "d"
    run(data, write_log(tmp_path / "in", [ev(page=p, context=ctx) for p in PAGES]))
    assert [c for (c,) in q(data, "SELECT course_id FROM events ORDER BY line")] == list(PAGES.values())


def test_blanks_around_a_context_course_id_are_trimmed(tmp_path, engine):
    """" IDBx/..." in a context made a second, empty course (helper-66); blanks only mean no id."""
    page = "https://courses.edx.org/courses/course-v1:IDBx+URL+2020/courseware"
    ctxs = [{"course_id": f" {CID}\t", "org_id": "IDBx", "user_id": 1, "path": "/event"},
            {"course_id": f"{CID}\r\n", "org_id": "IDBx", "user_id": 1, "path": "/event"},
            {"course_id": CID, "org_id": "IDBx", "user_id": 1, "path": "/event"},
            {"course_id": " \t ", "org_id": "IDBx", "user_id": 1, "path": "/event"},
            {"course_id": "x y", "org_id": "IDBx", "user_id": 1, "path": "/event"}]
    data = tmp_path / "d"
    run(data, write_log(tmp_path / "in", [ev(page=page, context=c) for c in ctxs]))
    assert [c for (c,) in q(data, "SELECT course_id FROM events ORDER BY line")] == \
        [CID, CID, CID, "course-v1:IDBx+URL+2020", "x y"]


def test_byte_order_mark_at_file_start_is_dropped(tmp_path, engine):
    data = tmp_path / "d"
    body = b"\xef\xbb\xbf" + line(ev(session="first")) + b"\n" + line(ev(session="second")) + b"\n"
    (tmp_path / "in").mkdir()
    f = tmp_path / "in" / "idbx-edx-events-2016-10-12.log"
    f.write_bytes(body)
    s = run(data, f)
    assert s.rejected == 0
    assert q(data, "SELECT line, session FROM events ORDER BY line") == [(1, "first"), (2, "second")]


def test_user_id_beyond_64_bits_is_null(tmp_path, engine):
    ctx = {"course_id": CID, "org_id": "IDBx", "user_id": 1 << 64, "path": "/event"}
    data = tmp_path / "d"
    s = run(data, write_log(tmp_path / "in", [ev(context=ctx), ev(session="n")]))
    assert s.events == 2 and s.rejected == 0
    assert q(data, "SELECT user_id FROM events ORDER BY line") == [(None,), (1042,)]


def test_lone_surrogate_escapes_become_replacement_characters(tmp_path, engine):
    """Python's json (edX's writer) writes a lone surrogate as an escape; strict parsers refuse it."""
    pair = line(ev(session="pair", agent="ok \U0001F600"))  # json.dumps(ensure_ascii=False) keeps the emoji
    lines = [line(ev(session="high")).replace(b'"Mozilla/5.0"', b'"cut \\ud83d"'),
             line(ev(session="low")).replace(b'"Mozilla/5.0"', b'"\\ude00 cut"'),
             pair,
             line(ev(session="escaped_pair")).replace(b'"Mozilla/5.0"', b'"\\ud83d\\ude00"'),
             b'{"time": "2016-10-12T10:00:00Z", "agent": "\\ud83d", oops}']
    data = tmp_path / "d"
    s = run(data, write_log(tmp_path / "in", lines))
    assert s.events == 4 and s.rejected == 1
    assert q(data, "SELECT session, agent FROM events ORDER BY line") == [
        ("high", "cut \ufffd"), ("low", "\ufffd cut"), ("pair", "ok \U0001F600"), ("escaped_pair", "\U0001F600")]
    assert q(data, "SELECT line, reason FROM quarantine") == [(5, "not JSON")]


def test_a_copy_with_crlf_or_trailing_blanks_is_the_same_event(tmp_path):
    same = line(ev(session="same"))
    a = write_log(tmp_path / "a", [same, ev(session="only-a")], date="2016-10-12")
    (tmp_path / "b").mkdir()
    b = tmp_path / "b" / "idbx-edx-events-2016-10-13.log"
    b.write_bytes(same + b"\r\n" + line(ev(session="only-b")) + b"\n" + same + b"  \n")
    data = tmp_path / "d"
    s = run(data, a, b)
    assert s.events == 5 and s.duplicates == 2
    assert row(data, "SELECT count(*) FROM events WHERE session = 'same'")[0] == 1
    assert row(data, "SELECT count(DISTINCT event_id) FROM events_all WHERE session = 'same'")[0] == 1
