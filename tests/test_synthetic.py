"""Tests of the synthetic edX delivery generator (edx_engine.synthetic)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest

from edx_engine.names import (course_id_from_url, course_id_from_usage_key, course_slug, parse_events_name,
                              parse_package_member, parse_package_name)
from edx_engine.schemas import TABLES
from edx_engine.synthetic import Manifest, SyntheticConfig, generate

SMALL = dict(org="IDBx", courses=3, learners=60, days=3, events_per_learner=30, studentmodule_per_learner=10)


def _unescape(v: str) -> str | None:
    """Naive MySQL batch unescape, written independently of the generator."""
    if v == "NULL":
        return None
    out, i = [], 0
    while i < len(v):
        ch = v[i]
        if ch == "\\" and i + 1 < len(v):
            nxt = v[i + 1]
            out.append({"t": "\t", "n": "\n", "\\": "\\", "0": "\0"}.get(nxt, nxt))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


class Delivery:
    def __init__(self, root: Path, manifest: Manifest) -> None:
        self.root = root
        self.m = manifest
        self.zip = zipfile.ZipFile(root / manifest.package["path"])
        self.bad_lines = {(b["member"], b["line"]) for b in manifest.malformed}

    def member(self, name_part: str) -> str:
        [n] = [n for n in self.m.package["members"] if n.endswith(name_part)]
        return n

    def text(self, member: str) -> str:
        return self.zip.read(member).decode("utf-8")

    def table(self, course_id: str | None, table: str) -> tuple[list[str], list[list[str]]]:
        slug = course_slug(course_id) if course_id else self.m.org
        member = self.member(f"/{slug}-{table}-prod-analytics.sql")
        lines = self.text(member).split("\n")
        assert lines[-1] == ""
        header = lines[0].split("\t")
        rows = [l.split("\t") for no, l in enumerate(lines[1:-1], start=2) if (member, no) not in self.bad_lines]
        return header, rows

    def dicts(self, course_id: str, table: str) -> list[dict]:
        header, rows = self.table(course_id, table)
        return [dict(zip(header, r)) for r in rows]

    def structure(self, course_id: str) -> dict:
        return json.loads(self.text(self.member(f"/{course_slug(course_id)}-course_structure-prod-analytics.json")))

    def event_lines(self, rel: str) -> list[bytes]:
        return gzip.decompress((self.root / rel).read_bytes()).split(b"\n")[:-1]


@pytest.fixture(scope="module")
def delivery(tmp_path_factory) -> Delivery:
    root = tmp_path_factory.mktemp("syn")
    m = generate(root, SyntheticConfig(seed=7, **SMALL))
    return Delivery(root, m)


def _all_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic(tmp_path, delivery):
    a = generate(tmp_path / "a", SyntheticConfig(seed=7, **SMALL))
    assert _all_bytes(tmp_path / "a") == _all_bytes(delivery.root)
    assert a.to_json() == delivery.m.to_json()
    generate(tmp_path / "b", SyntheticConfig(seed=8, **SMALL))
    b = _all_bytes(tmp_path / "b")
    ref = _all_bytes(delivery.root)
    assert b.keys() == ref.keys()
    assert all(b[k] != ref[k] for k in ref)


def test_manifest_json_roundtrip(delivery):
    on_disk = Manifest.load(delivery.root / "manifest.json")
    assert on_disk.to_json() == delivery.m.to_json()
    assert sorted(delivery.m.files) == sorted(k for k in _all_bytes(delivery.root) if k != "manifest.json")


def test_file_names_parse(delivery):
    m = delivery.m
    assert parse_package_name(m.package["path"]) == ("IDBx", m.package_date)
    assert parse_package_name(m.package["folder"]) == ("IDBx", m.package_date)
    slugs = {c.slug for c in m.courses}
    expected_per_course = {"auth_user", "auth_userprofile", "certificates_generatedcertificate",
                           "courseware_studentmodule", "student_courseenrollment", "user_id_map",
                           "course_structure", "forum"}
    seen: dict[str, set] = {s: set() for s in slugs}
    names = [n for n in delivery.zip.namelist() if not n.endswith("/")]
    assert sorted(names) == sorted(m.package["members"])
    for n in names:
        assert n.startswith(m.package["folder"] + "/")
        pf = parse_package_member(n)
        assert pf is not None, n
        assert pf.site == "prod" and not pf.encrypted
        if pf.table == "email_opt_in":
            assert pf.org == "IDBx" and pf.slug is None
            continue
        assert pf.slug in slugs, n
        seen[pf.slug].add(pf.table)
    for s in slugs:
        assert expected_per_course <= seen[s]
    assert len(m.events_files) == 3
    for e in m.events_files:
        ef = parse_events_name(e["file"])
        assert ef and ef.org == "idbx" and ef.site == "edx" and ef.gzipped and not ef.encrypted
        assert ef.date == e["date"]
        assert e["file"].startswith(f"edx-course-data/idbx/edx/events/{e['date'][:4]}/")


def test_both_course_id_formats(delivery):
    ids = [c.course_id for c in delivery.m.courses]
    assert any(i.startswith("course-v1:") for i in ids)
    old = [i for i in ids if not i.startswith("course-v1:")]
    assert old and all(i.count("/") == 2 for i in old)
    for c in delivery.m.courses:
        s = delivery.structure(c.course_id)
        roots = [k for k, v in s.items() if v["category"] == "course"]
        assert len(roots) == 1
        if c.old_style:
            assert roots[0] == f"i4x://{c.course_id.replace('/', '/', 1).rsplit('/', 1)[0]}/course/{c.course_id.rsplit('/', 1)[1]}"
            assert all(k.startswith("i4x://") for k in s)
        else:
            assert all(k.startswith("block-v1:") for k in s)
        for k in s:
            if s[k]["category"] != "course" and not c.old_style:
                assert course_id_from_usage_key(k) == c.course_id
        root = s[roots[0]]
        assert root["metadata"]["display_name"] and root["metadata"]["start"] and root["metadata"]["end"]
        assert len(root["children"]) == c.chapters
        for v in s.values():  # children exist
            assert all(ch in s for ch in v["children"])


def test_headers_match_schema(delivery):
    for member in delivery.m.package["members"]:
        pf = parse_package_member(member)
        if TABLES[pf.table].kind == "sql":
            header = delivery.text(member).split("\n", 1)[0].split("\t")
            schema = TABLES[pf.table]
            # the registry's columns in its order; optional ones (state, phone_number: later years) may be absent
            assert header == [c for c in schema.column_names if c in header]
            assert all(c.name in header for c in schema.columns if c.required)
        elif pf.table == "email_opt_in":
            first = delivery.text(member).split("\n", 1)[0]
            assert first.split(",") == TABLES["email_opt_in"].column_names


def test_row_counts_match_files(delivery):
    for r in delivery.m.row_counts:
        text = delivery.text(r["member"])
        if r["table"] == "course_structure":
            n = len(json.loads(text))
        elif r["table"] == "forum":
            n = len([l for l in text.split("\n") if l])
        elif r["table"] == "email_opt_in":
            n = len(list(csv.reader(io.StringIO(text)))) - 1
        else:
            lines = text.split("\n")[1:-1]
            bad = [b for b in delivery.m.malformed if b["member"] == r["member"]]
            n = len(lines) - len(bad)
        assert n == r["rows"], r
    assert delivery.m.rows("courseware_studentmodule", delivery.m.courses[1].course_id) > 0


def test_ids_consistent(delivery):
    users_seen: dict[str, list[str]] = {}
    for c in delivery.m.courses:
        cid = c.course_id
        users = {r["id"]: r for r in delivery.dicts(cid, "auth_user")}
        idmap = {r["id"]: r for r in delivery.dicts(cid, "user_id_map")}
        profiles = {r["user_id"] for r in delivery.dicts(cid, "auth_userprofile")}
        assert set(users) == set(idmap) == profiles
        for uid, r in idmap.items():
            assert len(r["hash_id"]) == 32 and all(ch in "0123456789abcdef" for ch in r["hash_id"])
            assert r["username"] == users[uid]["username"]
        _, raw_users = delivery.table(cid, "auth_user")
        for row in raw_users:  # identical rows across courses
            prev = users_seen.setdefault(row[0], row)
            assert prev == row
        enrol = delivery.dicts(cid, "student_courseenrollment")
        assert {r["user_id"] for r in enrol} == set(users)
        assert {r["course_id"] for r in enrol} == {cid}
        assert {r["is_active"] for r in enrol} == {"0", "1"}
        for r in delivery.dicts(cid, "certificates_generatedcertificate"):
            assert r["user_id"] in users and r["course_id"] == cid
        structure = delivery.structure(cid)
        sm = delivery.dicts(cid, "courseware_studentmodule")
        assert sm
        students = set()
        for r in sm:
            assert r["student_id"] in users
            assert r["module_id"] in structure, r["module_id"]
            assert structure[r["module_id"]]["category"] == r["module_type"]
            assert r["course_id"] == cid
            json.loads(_unescape(r["state"]))
            students.add(r["student_id"])
        # learners who enrolled and never came back
        assert set(users) - students
        for table in ("student_anonymoususerid", "grades_persistentcoursegrade", "user_api_usercoursetag"):
            for r in delivery.dicts(cid, table):
                assert r["user_id"] in users
        for r in delivery.dicts(cid, "grades_persistentsubsectiongrade"):
            assert r["usage_key"] in structure
        staff = {str(i) for i in delivery.m.staff_user_ids}
        assert staff <= set(users)
        assert all(users[s]["is_staff"] == "1" for s in staff)
        assert all(r["is_staff"] == "0" for k, r in users.items() if k not in staff)


def test_certificate_statuses(delivery):
    statuses = set()
    for c in delivery.m.courses:
        statuses |= {r["status"] for r in delivery.dicts(c.course_id, "certificates_generatedcertificate")}
    assert {"downloadable", "notpassing", "audit_passing", "audit_notpassing", "unavailable", "error"} <= statuses


def test_escapes_present_and_roundtrip(delivery):
    found = {"\\t": False, "\\n": False, "\\\\": False}
    unescaped_specials = set()
    for c in delivery.m.courses:
        for table in ("auth_userprofile", "courseware_studentmodule", "teams"):
            header, rows = delivery.table(c.course_id, table)
            for r in rows:
                assert len(r) == len(header)
                for v in r:
                    for k in found:
                        if k in v:
                            found[k] = True
                    u = _unescape(v)
                    if u:
                        unescaped_specials |= {ch for ch in "\t\n\\" if ch in u}
    assert all(found.values()), found
    assert unescaped_specials == {"\t", "\n", "\\"}
    # JSON with its own escapes shows doubled backslashes
    prof = delivery.dicts(delivery.m.courses[1].course_id, "auth_userprofile")
    metas = [r["meta"] for r in prof if '\\\\"' in r["meta"]]
    assert metas and all(json.loads(_unescape(m)) for m in metas)
    genders = {r["gender"] for r in prof}
    assert {"m", "f"} <= genders


def test_malformed_tsv_where_recorded(delivery):
    bad = delivery.m.malformed
    assert len(bad) == 1 and bad[0]["table"] == "courseware_studentmodule" and bad[0]["reason"] == "too_few_fields"
    lines = delivery.text(bad[0]["member"]).split("\n")
    ncols = len(TABLES["courseware_studentmodule"].column_names)
    wrong = [no for no, l in enumerate(lines[:-1], start=1) if len(l.split("\t")) != ncols]
    assert wrong == [bad[0]["line"]]


def _parse_event(line: bytes):
    try:
        d = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(d, dict) or "time" not in d:
        return None
    return d


def test_events_valid_malformed_and_duplicates(delivery):
    prev_valid: list[bytes] = []
    kinds = set()
    for e in delivery.m.events_files:
        lines = delivery.event_lines(e["file"])
        assert len(lines) == e["lines"]
        bad_at = {b["line"]: b["reason"] for b in e["malformed"]}
        kinds |= set(bad_at.values())
        assert bad_at
        valid = []
        for no, line in enumerate(lines, start=1):
            d = _parse_event(line)
            assert (d is None) == (no in bad_at), (e["file"], no, line[:200])
            if d is not None:
                valid.append(line)
        assert len(valid) == e["valid_events"]
        dups = e["duplicated_from_previous_day"]
        assert e["unique_events"] == e["valid_events"] - dups
        if dups:
            assert lines[:dups] == prev_valid[-dups:]
        prev_valid = valid
    assert kinds == {"truncated_json", "not_json", "invalid_utf8", "missing_time"}
    assert delivery.m.events_files[0]["duplicated_into_next_day"] == delivery.m.events_files[1]["duplicated_from_previous_day"] > 0


def test_events_reference_existing_users_and_blocks(delivery):
    users = {}
    structures = {}
    for c in delivery.m.courses:
        users[c.course_id] = {r["id"]: r["username"] for r in delivery.dicts(c.course_id, "auth_user")}
        structures[c.course_id] = delivery.structure(c.course_id)
    forum_ids = set()
    for c in delivery.m.courses:
        for l in delivery.text(delivery.member(f"/{c.slug}-prod.mongo")).split("\n"):
            if l:
                forum_ids.add(json.loads(l)["_id"]["$oid"])
    types, sources, shapes, time_forms = set(), set(), set(), set()
    anonymous = no_course = 0
    for e in delivery.m.events_files:
        for line in delivery.event_lines(e["file"]):
            d = _parse_event(line)
            if d is None:
                continue
            ctx = d["context"]
            cid = ctx.get("course_id") or course_id_from_url(d.get("page")) or course_id_from_url(d["event_type"])
            if "course_id" not in ctx:
                no_course += 1
            assert cid in users, d
            uid = ctx["user_id"]
            if uid == "":
                anonymous += 1
                assert d["username"] == ""
            else:
                assert users[cid][str(uid)] == d["username"]
            mod = ctx.get("module")
            if mod:
                assert mod["usage_key"] in structures[cid]
            ev = d["event"]
            shapes.add(type(ev).__name__)
            if d["event_type"] == "problem_check" and d["event_source"] == "server":
                assert ev["problem_id"] in structures[cid]
            if d["event_type"] == "problem_check" and d["event_source"] == "browser":
                assert isinstance(ev, str) and "=" in ev and not ev.startswith("{")
            if d["event_type"].startswith("edx.forum.") and d["event_type"].endswith(".created"):
                assert ev["id"] in forum_ids
            t = d["time"]
            time_forms.add("Z" if t.endswith("Z") else "+00:00" if t.endswith("+00:00") else "naive")
            types.add(d["event_type"] if not d["event_type"].startswith("/") else "pageview")
            sources.add(d["event_source"])
    assert anonymous and no_course
    assert {"str", "dict", "list"} <= shapes
    assert time_forms == {"Z", "+00:00", "naive"}
    assert {"browser", "server", "mobile"} <= sources
    assert {"pageview", "play_video", "pause_video", "seek_video", "load_video", "problem_check", "problem_graded",
            "seq_next", "page_close", "edx.course.enrollment.activated", "edx.grades.course.grade_calculated",
            "edx.certificate.created"} <= types


def test_known_personal_values_appear(delivery):
    kp = delivery.m.known_personal_values
    allsql = "".join(delivery.text(n) for n in delivery.m.package["members"])
    for k in ("emails", "usernames", "full_names"):
        assert kp[k] and all(v in allsql for v in kp[k])
    events = b"".join(gzip.decompress((delivery.root / e["file"]).read_bytes()) for e in delivery.m.events_files)
    assert kp["ips"] and all(ip.encode() in events for ip in kp["ips"])


def test_only_what_was_asked(tmp_path):
    m = generate(tmp_path, SyntheticConfig(seed=1, courses=1, learners=10, days=2, events=False, malformed=False))
    assert m.events_files == [] and m.malformed == [] and m.package
    assert not (tmp_path / "edx-course-data").exists()
    m = generate(tmp_path / "ev", SyntheticConfig(seed=1, courses=1, learners=10, days=2, package=False))
    assert m.package is None and len(m.events_files) == 2


@pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg not installed")
def test_encryption_roundtrip(tmp_path):
    home = tempfile.mkdtemp(prefix="g", dir="/tmp")  # short path: gpg-agent socket length limit
    env = {**os.environ, "GNUPGHOME": home}
    try:
        os.chmod(home, 0o700)
        run = lambda *a: subprocess.run(["gpg", "--batch", *a], env=env, check=True, capture_output=True, text=True)
        run("--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key", "Test <t@example.org>",
            "rsa2048", "default", "never")
        fpr = [l.split(":")[9] for l in run("--with-colons", "--list-keys", "t@example.org").stdout.splitlines()
               if l.startswith("fpr")][0]
        run("--pinentry-mode", "loopback", "--passphrase", "", "--quick-add-key", fpr, "rsa2048", "encr", "never")
        cfg = dict(seed=5, courses=2, learners=15, days=2, events_per_learner=10, studentmodule_per_learner=5)
        plain = generate(tmp_path / "plain", SyntheticConfig(**cfg))
        enc = generate(tmp_path / "enc", SyntheticConfig(**cfg, encrypt_to="t@example.org", gnupghome=home))
        assert enc.encrypted
        assert all(n.endswith(".gpg") for n in enc.package["members"])
        assert all(e["file"].endswith(".log.gz.gpg") for e in enc.events_files)
        assert enc.row_counts[0]["member"] == plain.row_counts[0]["member"] + ".gpg"
        for n in enc.package["members"]:
            pf = parse_package_member(n)
            assert pf and pf.encrypted
        zp = zipfile.ZipFile(tmp_path / "plain" / plain.package["path"])
        ze = zipfile.ZipFile(tmp_path / "enc" / enc.package["path"])
        member = [n for n in plain.package["members"] if "courseware_studentmodule" in n][0]
        (tmp_path / "m.gpg").write_bytes(ze.read(member + ".gpg"))
        run("--pinentry-mode", "loopback", "--passphrase", "", "-o", str(tmp_path / "m"), "-d", str(tmp_path / "m.gpg"))
        assert (tmp_path / "m").read_bytes() == zp.read(member)
        ef = tmp_path / "enc" / enc.events_files[0]["file"]
        assert parse_events_name(ef.name).encrypted
        run("--pinentry-mode", "loopback", "--passphrase", "", "-o", str(tmp_path / "e.gz"), "-d", str(ef))
        assert (tmp_path / "e.gz").read_bytes() == (tmp_path / "plain" / plain.events_files[0]["file"]).read_bytes()
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
