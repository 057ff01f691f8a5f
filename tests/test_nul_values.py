"""NUL (U+0000) in delivered values: a browser can send the JSON escape \\u0000 in any field of a tracking-log
line, the oldest table files write NUL as the escape ``\\0``, and a raw NUL byte can sit in a table file.
PostgreSQL text cannot hold NUL (one such value stopped `build --store` for the whole store) and CSV readers
choke on it. The store holds none: it is removed at import, as edX's own exporter deletes NUL bytes, counted
and reported; everything else of the line or row is kept. (PostgreSQL: test_postgres_nul.py.)"""

from __future__ import annotations

import io
import json
import zipfile

import pytest

import edx_engine.ingest.events as E
from edx_engine.ingest import documents, tsv
from edx_engine.schemas import TABLES

from test_events import CID, ev, q, run, write_log

TEXT = ("username", "course_id", "org_id", "event_type", "name", "event_source", "session", "ip", "agent", "host",
        "referer", "accept_language", "page", "path", "module_id", "event_text")
VIDEO = json.dumps({"id": "vid\u0000eo", "currentTime": 1, "code": "html5"})  # a NUL in the JSON string's JSON


def _nul_lines() -> list[bytes]:
    ctx = {"course_id": CID + "\u0000", "org_id": "ID\u0000Bx", "user_id": 1042, "path": "/ev\u0000ent",
           "module": {"usage_key": "block\u0000x"}}
    lines = [
        ev("play_video\u0000", username="mj\u0000perez", session="s1", page="https://x/\u0000", agent="Mo\u0000z",
           referer="r\u0000", accept_language="es\u0000", host="h\u0000", ip="1.2.3.4\u0000", name="n\u0000",
           source="brow\u0000ser", event=VIDEO, context=ctx),
        ev("problem_check", session="s2", source="server", event={"problem_id": "p\u0000x", "success": "ok\u0000"}),
        ev("page_close", session="s3", event="not json \u0000 text"),
        ev("play_video", session="s4", event={"t": "\\u0000 typed as text"}),  # an escaped backslash: text, kept
        ev("play_video", session="s5"),
    ]
    return [json.dumps(d, ensure_ascii=True).encode() for d in lines]


@pytest.mark.parametrize("engine,workers", [("duckdb", 0), ("duckdb", 2), ("msgspec", 0), ("msgspec", 2)])
def test_nul_removed_from_event_values_and_counted(tmp_path, monkeypatch, engine, workers):
    monkeypatch.setattr(E, "ENGINE", engine)
    data = tmp_path / "d"
    s = run(data, write_log(tmp_path / "in", _nul_lines()), workers=workers)
    assert (s.events, s.rejected) == (5, 0)  # every line kept
    nul_text = " OR ".join(f"contains({c}, chr(0))" for c in TEXT)
    assert q(data, f"SELECT count(*) FROM events WHERE {nul_text}") == [(0,)]
    assert q(data, "SELECT count(*) FROM events WHERE contains(event::VARCHAR, '\\u0000') "
                   "AND session <> 's4' OR contains(context::VARCHAR, '\\u0000')") == [(0,)]
    got = dict(zip(("event_type", "username", "course_id", "org_id", "page", "agent", "path", "module_id",
                    "event_source", "ip", "name"),
                   q(data, "SELECT event_type, username, course_id, org_id, page, agent, path, module_id, "
                           "event_source, ip, name FROM events WHERE session = 's1'")[0]))
    assert got == {"event_type": "play_video", "username": "mjperez", "course_id": CID, "org_id": "IDBx",
                   "page": "https://x/", "agent": "Moz", "path": "/event", "module_id": "blockx",
                   "event_source": "browser", "ip": "1.2.3.4", "name": "n"}
    assert q(data, "SELECT video_id FROM events_video WHERE session = 's1'") == [("video",)]  # the payload's JSON, one level down
    assert q(data, "SELECT problem_id, success FROM events_problem") == [("px", "ok")]
    assert q(data, "SELECT event_text FROM events WHERE session = 's3'") == [("not json  text",)]
    assert q(data, "SELECT event->>'t' FROM events WHERE session = 's4'") == [("\\u0000 typed as text",)]
    assert s.nuls == 3 and "lines with NUL characters (\\u0000, removed): 3" in s.one_line()  # three held one
    # the event id is the hash of the line as delivered: the same line imported again is the same event
    again = run(tmp_path / "d2", write_log(tmp_path / "in2", _nul_lines()), workers=workers)
    assert again.nuls == 3
    ids = "SELECT list(event_id ORDER BY event_id) FROM events"
    assert q(data, ids) == q(tmp_path / "d2", ids)


def test_strip_nul_json_escapes():
    import pyarrow as pa

    from edx_engine.ingest.events_parse import strip_nul

    t = pa.table({"event": [r'{"a": "x\u0000y\u0000"}', r'{"a": "\\u0000"}', r'"\\\u0000\u00e9"', None],
                  "page": ["a\x00b", "c", None, "\x00"], "line": [1, 2, 3, 4]})
    out, n = strip_nul(t)
    assert out.column("event").to_pylist() == ['{"a": "xy"}', r'{"a": "\\u0000"}', r'"\\\u00e9"', None]
    assert out.column("page").to_pylist() == ["ab", "c", None, ""]
    assert n == 3 and out.column("line").to_pylist() == [1, 2, 3, 4]


# -- table files ----------------------------------------------------------------------------------------------

def _read(body: bytes, table: str = "auth_user"):
    counts: dict = {}
    cols = {}
    for c, n, rejects in tsv.read_mysql_tsv(io.BytesIO(body), "x.sql", TABLES[table], counts=counts):
        assert not rejects, rejects
        cols = c
    return cols, counts.get("nuls", 0)


def test_tsv_nul_escape_and_raw_nul_removed():
    header = b"id\tuser_id\tcourse_id\tcreated\tis_active\tmode\n"
    body = header + (b"1\t7\tc\\0x\t2026-01-01 00:00:00\t1\taud\\0it\n"
                     b"2\t8\tc\\\\0x\t2026-01-01 00:00:00\t1\tb\x00en\n"  # an escaped backslash and a 0: text
                     b"3\t9\tc\\\\\\0x\t2026-01-01 00:00:00\t1\x00\tverified\n")
    cols, nuls = _read(body, "student_courseenrollment")
    assert cols["course_id"].to_pylist() == ["cx", "c\\0x", "c\\x"]
    assert cols["mode"].to_pylist() == ["audit", "ben", "verified"]
    assert cols["is_active"].to_pylist() == [True, True, True]
    assert nuls == 5  # three escapes, two raw bytes


def test_package_reports_removed_nuls(tmp_path):
    from edx_engine.cli import run_import
    from edx_engine.config import resolve

    zpath = tmp_path / "IDBx-2026-10-25.zip"
    head = b"id\tusername\tfirst_name\tlast_name\temail\tpassword\tis_staff\tis_active\tis_superuser\tlast_login\t"
    user = (head + b"date_joined\n7\tana\\0\tA\tB\ta@x\t\t0\t1\t0\tNULL\t2026-01-01 00:00:00\n"
            b"8\tb\x00en\tA\tB\tb@x\t\t0\t1\t0\tNULL\t2026-01-01 00:00:00\n")
    enrol = (b"id\tuser_id\tcourse_id\tcreated\tis_active\tmode\n"
             b"1\t7\tcourse-v1:IDBx+N1x+2026\t2026-01-01 00:00:00\t1\taud\\0it\n")
    structure = {"block-v1:IDBx+N1x+2026+type@course+block@course": {
        "category": "course", "children": [], "metadata": {"display_name": "Curso\u0000"}}}
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("IDBx-2026-10-25/IDBx-N1x-2026-auth_user-prod-analytics.sql", user)
        z.writestr("IDBx-2026-10-25/IDBx-N1x-2026-student_courseenrollment-prod-analytics.sql", enrol)
        z.writestr("IDBx-2026-10-25/IDBx-N1x-2026-course_structure-prod-analytics.json",
                   json.dumps(structure, ensure_ascii=True))
    data = tmp_path / "d"
    exports, _events = run_import(resolve(data_dir=str(data)), [zpath], quiet=True)
    assert exports.rejected == 0 and not exports.failed
    warn = sorted(w for w in exports.warnings if "NUL" in w)
    assert len(warn) == 3, exports.warnings
    assert "auth_user-prod-analytics.sql: 2 NUL character(s) removed" in warn[0]
    assert "course_structure-prod-analytics.json: 1 NUL character(s) removed" in warn[1]
    assert "student_courseenrollment-prod-analytics.sql: 1 NUL character(s) removed" in warn[2]
    assert q(data, "SELECT list(username ORDER BY id) FROM auth_user") == [(["ana", "ben"],)]
    assert q(data, "SELECT mode FROM student_courseenrollment") == [("audit",)]
    assert q(data, "SELECT display_name FROM course_structure") == [("Curso",)]


def test_forum_nul_escape_removed():
    line = json.dumps({"_id": {"$oid": "5e5d"}, "_type": "CommentThread", "course_id": "course-v1:A+B+C",
                       "body": "x\u0000y", "title": "t\\u0000"}, ensure_ascii=True).encode()
    counts: dict = {}
    rows = [r for batch, rej in documents.read_forum(io.BytesIO(line + b"\n"), "f.mongo", counts) for r in batch]
    assert rows[0]["body"] == "xy" and rows[0]["title"] == "t\\u0000" and counts == {"nuls": 1}
