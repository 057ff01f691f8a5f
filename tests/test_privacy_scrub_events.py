"""Scrub of what tracking logs and rejected lines carry besides the personal columns: free text
and other personal keys at any depth of the `event` JSON, usernames inside URLs, bad values
quoted in quarantine reasons and in the import log."""

from __future__ import annotations

import json

import duckdb

from edx_engine.lake import Lake
from edx_engine.privacy.scrub import scrub, status

from test_events import CID, ev, run, write_log
from test_exports import load, write

BODY = "Mi respuesta larga sobre el tema, con mi correo ana.ruiz@example.org"
EMAIL = "marisol.garcia978@outlook.es"


def _events() -> list[dict]:
    return [
        ev("edx.forum.thread.created", source="server", event={"body": BODY, "title": "Pregunta de Ana",
                                                               "category_name": "General"}),
        ev("edx.forum.comment.created", source="server", event=json.dumps({"body": BODY, "id": "c1"})),
        ev("edx.certificate.created", source="server",
           event={"certificate_id": "f1e2d3c4b5a697881234567890abcdef", "certificate_url": "https://x/cert/f1e2",
                  "enrollment_mode": "verified"}),
        ev("edx.user.settings.changed", source="server", event={"setting": "name", "old": "Ana Ruiz",
                                                                "new": "Ana María Ruiz"}),
        ev("seq_goto", event={"old": 1, "new": 2, "id": "block-v1:IDBx+IDB1x+2T2016+type@sequential+block@s1"}),
        ev("/create_account", source="server", event={"POST": {"email": [EMAIL], "name": ["Ana Ruiz"]}, "GET": {}}),
        ev("edx.instructor.report.requested", source="server", event={"student": "anaruiz", "report_type": "grades"}),
        ev("/u/anaruiz", source="server", page="https://courses.edx.org/u/anaruiz",
           referer="https://courses.edx.org/api/user/v1/accounts/anaruiz?x=1"),
    ]


def test_scrub_clears_event_payloads_urls_and_quoted_values(tmp_path):
    data = tmp_path / "d"
    run(data, write_log(tmp_path / "in", _events()))
    pkg = tmp_path / "IDBx-2016-10-09"
    write(pkg, "auth_user", "id\tusername\tfirst_name\tlast_name\temail\tpassword\tis_staff\tis_active\t"
                            "is_superuser\tlast_login\tdate_joined\n"
                            f"101\tana\tAna\tRuiz\ta@x.org\t\t0\t1\t0\t{EMAIL}\t2016-01-01 00:00:00\n"
                            "102\tbo\tBo\tLi\tb@x.org\t\t0\t1\t0\tNULL\t2016-01-01 00:00:00\n")
    load(data, pkg)
    catalog = data / "edx.duckdb"
    with duckdb.connect(str(catalog), read_only=True) as con:
        assert EMAIL in str(con.execute("SELECT reason FROM quarantine").fetchall())
    assert status(Lake(data))["files"] > 0

    scrub(Lake(data), locate=False)

    assert status(Lake(data)) == {"files": 0, "values": 0}
    with duckdb.connect(str(catalog), read_only=True) as con:
        events = {t: (e, p, r) for t, e, p, r in con.execute(
            "SELECT event_type, event::VARCHAR, page, referer FROM events_all").fetchall()}
        everything = str(events) + str(con.execute("SELECT * FROM quarantine").fetchall()) + \
            str(con.execute("SELECT * FROM _edx_import_log").fetchall())
        reason = con.execute("SELECT reason FROM quarantine").fetchone()[0]
    for secret in (BODY, "Pregunta de Ana", "f1e2d3c4b5a6978", "https://x/cert", "Ana Ruiz", "Ana María",
                   EMAIL, "anaruiz"):
        assert secret not in everything, secret
    assert json.loads(events["edx.forum.thread.created"][0]) == {"category_name": "General"}
    assert json.loads(events["edx.forum.comment.created"][0]) == {"id": "c1"}
    assert json.loads(events["edx.certificate.created"][0]) == {"enrollment_mode": "verified"}
    assert json.loads(events["edx.user.settings.changed"][0]) == {"setting": "name"}
    assert json.loads(events["seq_goto"][0])["old"] == 1  # old/new of other event types are not personal
    assert json.loads(events["/create_account"][0]) == {}
    assert json.loads(events["edx.instructor.report.requested"][0]) == {"report_type": "grades"}
    assert "/u/(removed)" in events  # the event type of a profile page view
    assert events["/u/(removed)"][1:] == ("https://courses.edx.org/u/(removed)",
                                          "https://courses.edx.org/api/user/v1/accounts/(removed)?x=1")
    assert reason == "column last_login: (value removed) is not a valid timestamp"
    assert CID  # the course id is kept everywhere
