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


# -- issue 11, item 13: personal data that scrub v2 missed -------------------------------------------------

BLOCK = "block-v1:IDBx+IDB1x+2T2016+type@sequential+block@s1"
PLANTED = ("plantuser0", "plantuser1", "plant.mail", "Plant Name", "Plant%20Name", "plant2@example.com",
           "plantuser2", "plantuser3", "plant3@example.net", "p4a@example.org", "p4b@example.org", "p4c@example.org",
           "p4d@example.org", "p4e@example.org", "plantuser5", "plantuser6", "plant7", "Plantfirst", "plantuser8")


def _planted() -> list[dict]:
    ctx = {"course_id": CID, "org_id": "IDBx", "user_id": 1042, "path": "/courses/x?username=plantuser6&tab=2"}
    return [
        # server events put the requested URL in `name` (and event_type)
        ev("edx.server.request", source="server", username="plantuser0", name="/u/plantuser1"),
        # query strings in referer and page; an address under a harmless key; block ids keep their @
        ev("page_view", username="plantuser0",
           referer=f"https://courses.edx.org/search?email=plant.mail%40example.org&name=Plant%20Name&"
                   f"activate_block_id={BLOCK}",
           page="https://courses.edx.org/x?Email=plant2@example.com&user_name=plantuser2&"
                "next=%2Fdashboard%3Fq%3Dplant7%40example.org&page=3"),
        # context.username / context.email (the context otherwise kept)
        ev("play_video", context={**ctx, "username": "plantuser3", "email": "plant3@example.net",
                                  "application": {"name": "edx.mobileapp.android", "version": "2.1"}}),
        # personal keys in other spellings, at any depth, and inside a JSON-encoded string
        ev("edx.custom.event", source="server",
           event={"Email": "p4a@example.org", "user_email": "p4b@example.org", "emailAddress": "p4c@example.org",
                  "e-mail": "p4d@example.org", "nested": {"EMAIL_ADDRESS": "p4e@example.org", "keep": 1},
                  "First-Name": "Plantfirst", "user_id": 1042}),
        ev("edx.custom.string", event=json.dumps({"UserName": "plantuser5", "id": "x1"})),
        ev("edx.custom.url", event={"url": "https://courses.edx.org/y?user=plantuser8&page=2"}),
    ]


def _parquet_texts(data) -> str:
    import pyarrow.parquet as pq

    return "\n".join(str(pq.read_table(f).to_pylist()) for f in sorted((data / "lake").rglob("*.parquet")))


def test_scrub_removes_urls_in_name_query_strings_context_and_keys_in_any_spelling(tmp_path):
    data = tmp_path / "d"
    run(data, write_log(tmp_path / "in", _planted()))
    before = _parquet_texts(data)
    assert all(s in before for s in PLANTED if s != "Plant Name")  # the planted values are stored

    scrub(Lake(data), locate=False)

    after = _parquet_texts(data)  # every Parquet file of the store, whatever the catalog says
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        catalog = "\n".join(str(con.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables)
        got = {t: (n, p, r, c, e) for t, n, p, r, c, e in con.execute(
            "SELECT event_type, name, page, referer, context::VARCHAR, event::VARCHAR FROM events_all").fetchall()}
    for secret in PLANTED:
        assert secret.lower() not in after.lower(), secret
        assert secret.lower() not in catalog.lower(), secret
    assert status(Lake(data)) == {"files": 0, "values": 0}
    # what is not personal stays
    assert got["edx.server.request"][0] == "/u/(removed)"
    assert got["page_view"][2] == ("https://courses.edx.org/search?email=(removed)&name=(removed)&"
                                   f"activate_block_id={BLOCK}")
    assert got["page_view"][1] == ("https://courses.edx.org/x?Email=(removed)&user_name=(removed)&"
                                   "next=(removed)&page=3")
    ctx = json.loads(got["play_video"][3])
    assert ctx == {"course_id": CID, "org_id": "IDBx", "user_id": 1042,
                   "path": "/courses/x?username=(removed)&tab=2",
                   "application": {"name": "edx.mobileapp.android", "version": "2.1"}}
    assert json.loads(got["edx.custom.event"][4]) == {"nested": {"keep": 1}, "user_id": 1042}
    inner = json.loads(got["edx.custom.string"][4])  # the importer may have decoded the string
    assert (json.loads(inner) if isinstance(inner, str) else inner) == {"id": "x1"}
    assert json.loads(got["edx.custom.url"][4]) == {"url": "https://courses.edx.org/y?user=(removed)&page=2"}


def test_personal_keys_match_in_any_case_and_spelling():
    from edx_engine.privacy.scrub import personal_key

    for k in ("email", "Email", "EMAIL", "user_email", "emailAddress", "e-mail", "E_Mail", "studentEmail",
              "userName", "user-name", "full_name", "FullName", "body", "search_text", "SearchText", "GET", "post"):
        assert personal_key(k), k
    for k in ("user_id", "course_id", "id", "name", "display_name", "email_opt_in", "old", "new", "mode"):
        assert not personal_key(k), k
    assert personal_key("old", frozenset({"old"}))  # the event type's own keys (edx.user.settings.changed)
