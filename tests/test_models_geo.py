"""Indicators x privacy: the IP-derived country in the models, rebuilds after `locate-users`, and
`report --public` (small-cell suppression of the reports)."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter

import duckdb
import pytest
from typer.testing import CliRunner

from edx_engine.cli import app, run_import
from edx_engine.lake import Lake
from edx_engine.models import Params, build_duckdb, read_model

from eventlog import learners_store, tracking_event, write_day


runner = CliRunner()
K = 5
# addresses whose RIR country is known (as in test_geo.py)
BR, US, GB, JP = "200.160.2.3", "8.8.8.8", "81.2.69.142", "1.0.16.1"
COUNTRY = {BR: "BR", US: "US", GB: "GB", JP: "JP"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Synthetic package without tracking logs + a hand-written log where each chosen learner's IPs are known.

    Returns (lake, plan): plan = {user_id: (course_id, [(ip, events), ...])}."""
    tmp = tmp_path_factory.mktemp("models_geo")
    data, settings, rows = learners_store(tmp, exclude_staff=True)
    first: dict[int, tuple] = {}
    for r in rows:
        first.setdefault(r[0], r)
    no_country = [r for r in first.values() if not (r[3] or "").strip()]
    with_country = [r for r in first.values() if (r[3] or "").strip()]
    assert len(no_country) >= 4 and len(with_country) >= 2
    plans = [
        (no_country[0], [(BR, 3), (US, 1)]),  # most frequent wins: BR
        (no_country[1], [(GB, 2), (JP, 2)]),  # tie: alphabetical -> GB
        (no_country[2], [(JP, 1)]),
        (no_country[3], [("10.0.0.1", 3)]),  # private address only: not locatable
        (with_country[0], [(US, 2), (GB, 1)]),  # a profile country, and a (different) IP country
        (with_country[1], [(JP, 1), (BR, 4)]),
    ]
    lines, minute = [], 0
    for (uid, username, course, _), ips in plans:
        for ip, n in ips:
            for _ in range(n):
                minute += 1
                # half the events carry no user_id: attributed through the username
                lines.append(tracking_event(username, uid if minute % 2 else "", course, ip, minute))
    write_day(tmp / "logs", lines)
    run_import(settings, [tmp / "logs"], quiet=True)
    lake = Lake(data)
    before = build_duckdb(lake, [], Params())  # user_location absent: read as empty
    before = (before, read_model(lake, "person_course"), read_model(lake, "course_summary"))
    r = runner.invoke(app, ["locate-users", "--data-dir", str(data)])
    assert r.exit_code == 0, r.output
    return lake, {r[0]: (r[2], r[3], ips) for r, ips in plans}, before


def _expected_ip_country(ips):
    votes = Counter()
    for ip, n in ips:
        if ip in COUNTRY:
            votes[COUNTRY[ip]] += n
    return sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] if votes else "unknown"


def test_models_build_without_user_location(store):
    lake, plan, (res, pc, summary) = store
    # the first build ran before locate-users: no user_location view, read as an empty input
    assert {m.status for m in res.models} == {"built"} and pc.num_rows > 60
    assert set(pc.column("ip_country").to_pylist()) == {"unknown"}
    assert set(pc.column("country_source").to_pylist()) == {"none"}
    assert set(summary.column("countries_ip").to_pylist()) == {0}


def test_person_course_ip_country_is_most_frequent_ip(store):
    lake, plan, _ = store
    r = build_duckdb(lake, [], Params())
    built = {m.name for m in r.models if m.status == "built"}
    # locate-users ran since the last build: what reads user_location is rebuilt, nothing else
    assert {"person_course", "course_summary", "course_breakdown", "general_report"} <= built
    assert not built & {"learner_day", "courses", "enrolment_daily", "activity_daily", "video_summary"}
    pc = {(x["course_id"], x["user_id"]): x for x in read_model(lake, "person_course").to_pylist()}
    for uid, (course, profile, ips) in plan.items():
        row = pc[(course, uid)]
        assert row["ip_country"] == _expected_ip_country(ips), (uid, ips)
        profile = (profile or "").strip().upper() or "unknown"
        assert row["country"] == profile  # the profile country is unchanged
        want_source = "profile" if profile != "unknown" else ("ip" if row["ip_country"] != "unknown" else "none")
        assert row["country_source"] == want_source
    # learners without located events: unknown; every row agrees with user_location
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        loc = {(c, u): (ipc, src) for c, u, ipc, src in con.execute(
            "SELECT course_id, user_id, ip_country, source FROM user_location").fetchall()}
    for key, row in pc.items():
        ipc, src = loc.get(key, (None, None))
        assert row["ip_country"] == (ipc or "unknown") and row["country_source"] == (src or "none"), key
    assert {u for (_, u), x in pc.items() if x["ip_country"] != "unknown"} == \
        {u for u, (_, _, ips) in plan.items() if _expected_ip_country(ips) != "unknown"}
    # course report: IP-country dimension and distinct IP countries
    for course in {c for c, _ in pc}:
        learners = [x for (c, _), x in pc.items() if c == course and not x["is_staff"]]
        s = [x for x in read_model(lake, "course_summary").to_pylist() if x["course_id"] == course][0]
        assert s["countries_ip"] == len({x["ip_country"] for x in learners} - {"unknown"})
        g = [x for x in read_model(lake, "general_report").to_pylist() if x["course_id"] == course][0]
        assert g["countries_ip"] == s["countries_ip"]
        bd = {x["value"]: x["learners"] for x in read_model(lake, "course_breakdown", course=course).to_pylist()
              if x["dimension"] == "ip_country" and x["country"] == "(all)"}
        assert bd == dict(Counter(x["ip_country"] for x in learners))
        assert sum(bd.values()) == s["enrolled"]
        by_country = Counter((x["country"], x["ip_country"]) for x in learners)  # profile country x IP country
        assert {(x["country"], x["value"]): x["learners"]
                for x in read_model(lake, "course_breakdown", course=course).to_pylist()
                if x["dimension"] == "ip_country" and x["country"] != "(all)"} == dict(by_country)
    assert sum(x["countries_ip"] for x in read_model(lake, "course_summary").to_pylist()) >= 3
    # nothing changed: nothing rebuilt; a new locate-users run: the dependants are rebuilt
    assert all(m.status == "unchanged" for m in build_duckdb(lake, [], Params()).models)
    r = runner.invoke(app, ["locate-users", "--data-dir", str(lake.root)])
    assert r.exit_code == 0, r.output
    built = {m.name for m in build_duckdb(lake, [], Params()).models if m.status == "built"}
    assert "person_course" in built and "learner_day" not in built


def _cells(path):
    return list(csv.DictReader(io.StringIO(path.read_text("utf-8-sig"))))


def test_report_public_suppresses_small_cells(store, tmp_path):
    lake, _, _ = store
    build_duckdb(lake, [], Params())
    d = str(lake.root)
    out = tmp_path / "bd.csv"
    r = runner.invoke(app, ["report", "course_breakdown", "--public", "--data-dir", d, "-o", str(out)])
    assert r.exit_code == 0, r.output
    rows = _cells(out)
    raw = read_model(lake, "course_breakdown").to_pylist()
    assert "suppressed" in rows[0]
    # every row is published except the breakdown of a country with fewer than country_detail_min(K) learners
    from edx_engine.privacy.suppress import country_detail_min

    small = {(x["course_id"], x["value"]) for x in raw
             if x["country"] == "(all)" and x["dimension"] == "country" and 0 < x["learners"] < country_detail_min(K)}
    assert small and len(rows) == len([x for x in raw if (x["course_id"], x["country"]) not in small])
    assert not [x for x in rows if (x["course_id"], x["country"]) in small]
    published = [int(x["learners"]) for x in rows if x["learners"] != ""]
    assert not [v for v in published if 0 < v < K]  # no published cell below k
    assert any(x["learners"] == "" for x in rows) and any(v >= K for v in published)  # not vacuous
    assert any(x["dimension"] == "ip_country" and x["learners"] == "" for x in rows)
    assert any(0 < x["learners"] < K for x in raw)
    # a larger k hides more
    r = runner.invoke(app, ["report", "course_breakdown", "--public", "--k", "10", "--data-dir", d, "-o",
                            str(tmp_path / "bd10.csv")])
    assert r.exit_code == 0, r.output
    rows10 = _cells(tmp_path / "bd10.csv")
    assert not [x for x in rows10 if x["learners"] != "" and 0 < int(x["learners"]) < 10]
    unpublished = lambda rs: len(raw) - len(rs) + sum(x["learners"] == "" for x in rs)  # noqa: E731 dropped or hidden
    assert unpublished(rows10) >= unpublished(rows)
    # the whole course report (summary + breakdown), CSV and JSON
    r = runner.invoke(app, ["report", "course", "--public", "--data-dir", d, "-o", str(tmp_path / "c.csv")])
    assert r.exit_code == 0, r.output
    c = _cells(tmp_path / "c.csv")
    people = [x for x in c if not (x["dimension"] == "indicator" and x["value"] in ("countries", "countries_ip"))]
    assert not [x for x in people if x["learners"] != "" and 0 < int(x["learners"]) < K]
    assert {x["value"] for x in c if x["dimension"] == "indicator"} >= {"enrolled", "countries_ip"}
    r = runner.invoke(app, ["report", "course", "--public", "--format", "json", "--data-dir", d, "-o", "-"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert all(v is None or v == 0 or v >= K for x in doc for v in x["by_ip_country"].values())
    r = runner.invoke(app, ["report", "general", "--public", "--data-dir", d, "-o", str(tmp_path / "g.csv")])
    assert r.exit_code == 0, r.output
    g = _cells(tmp_path / "g.csv")
    assert g and "countries_ip" in g[0]
    for x in g:
        for col in ("total", "active", "approved", "certified", "failed", "male", "female", "other_unknown"):
            assert x[col] == "" or int(x[col]) == 0 or int(x[col]) >= K
    # --course picks rows of the suppressed whole: the same cells hidden as in the full report
    for cid in sorted({x["course_id"] for x in g}):
        r = runner.invoke(app, ["report", "general", "--public", "--course", cid, "--data-dir", d,
                                "-o", str(tmp_path / "g1.csv")])
        assert r.exit_code == 0, r.output
        assert _cells(tmp_path / "g1.csv") == [x for x in g if x["course_id"] == cid]


def test_report_public_refuses_row_level(store, tmp_path):
    lake, _, _ = store
    d = str(lake.root)
    for name, model in (("masterfile", "masterfile"), ("person_course", "person_course"),
                        ("enrolment", "enrolment_report"), ("video", "video_summary")):
        out = tmp_path / f"{name}.csv"
        r = runner.invoke(app, ["report", name, "--public", "--data-dir", d, "-o", str(out)], env={"COLUMNS": "300"})
        assert r.exit_code == 1, r.output
        assert f"edx-engine export {model} --anonymised" in " ".join(r.output.split()), r.output
        assert not out.exists()
    r = runner.invoke(app, ["report", "general", "--public", "--k", "0", "--data-dir", d, "-o",
                            str(tmp_path / "x.csv")])
    assert r.exit_code == 1 and "k" in r.output
    # without --public, the identified report is unchanged
    r = runner.invoke(app, ["report", "masterfile", "--data-dir", d, "-o", str(tmp_path / "m.csv")])
    assert r.exit_code == 0, r.output


def test_ip_country_models_identical_on_postgresql(store, pg_url):
    """DuckDB = PostgreSQL with a non-empty user_location (the parity test's package has none)."""
    from edx_engine.models import build_postgres

    from models_support import engine_rows

    lake, _, _ = store
    params = Params(built_at=Params().built_at)
    build_duckdb(lake, [], params, force=True)
    build_postgres(lake, pg_url, [], params)
    for name in ("person_course", "course_summary", "course_breakdown", "general_report"):
        d, p = read_model(lake, name), read_model(lake, name, store=pg_url)
        assert (d.column_names, engine_rows(d)) == (p.column_names, engine_rows(p)), name
    located = [r for r in read_model(lake, "person_course", store=pg_url).to_pylist() if r["ip_country"] != "unknown"]
    assert located and all(r["country_source"] in ("profile", "ip") for r in located)
