"""Generator -> import round trip: row counts and sampled values equal (issue 2)."""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from pathlib import Path

import duckdb
import pytest

from edx_engine.config import resolve
from edx_engine.cli import run_import
from edx_engine.synthetic import SyntheticConfig, generate


def naive_unescape(v: str):
    """Independent MySQL batch unescape, character by character."""
    if v == "NULL":
        return None
    out, i = [], 0
    while i < len(v):
        if v[i] == "\\" and i + 1 < len(v):
            out.append({"t": "\t", "n": "\n", "\\": "\\", "0": "", "r": "\r"}.get(v[i + 1], v[i + 1]))  # NUL: removed
            i += 2
        else:
            out.append(v[i])
            i += 1
    return "".join(out)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("rt")
    pkg = root / "pkg"
    manifest = generate(pkg, SyntheticConfig(seed=7, courses=3, learners=120, days=2, events_per_learner=10))
    data = root / "data"
    exports, _ = run_import(resolve(data_dir=str(data)), [pkg / "course-data"], quiet=True)
    return pkg, data, json.loads((pkg / "manifest.json").read_text()), exports


def test_row_counts_match_manifest(imported):
    pkg, data, manifest, exports = imported
    assert not exports.failed, [f.message for f in exports.failed]
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        for rc in manifest["row_counts"]:
            if rc["table"] not in ("auth_user", "auth_userprofile", "courseware_studentmodule",
                                   "student_courseenrollment", "user_id_map", "certificates_generatedcertificate"):
                continue
            (n,) = con.execute(f"SELECT count(*) FROM {rc['table']} WHERE course_id = ?", [rc["course_id"]]).fetchone()
            assert n == rc["rows"], rc
        # the malformed lines the generator injected are in the quarantine, at their line numbers
        q = {(Path(s.split(":", 1)[-1]).name, line) for s, line in
             con.execute("SELECT source_file, line FROM quarantine").fetchall()}
    expected = {(Path(m["member"]).name, m["line"]) for m in manifest["malformed"] if m.get("member")}
    assert expected and expected <= q


def test_sampled_values_equal_naive_reader(imported):
    pkg, data, manifest, _ = imported
    (zpath,) = (pkg / "course-data").glob("*.zip")
    with zipfile.ZipFile(zpath) as z:
        name = next(n for n in z.namelist() if n.endswith("auth_userprofile-prod-analytics.sql"))
        lines = z.read(name).decode("utf-8").split("\n")
    header = lines[0].split("\t")
    rows = [dict(zip(header, map(naive_unescape, ln.split("\t")))) for ln in lines[1:] if ln]
    escaped = [r for r in rows if any(v and ("\t" in v or "\n" in v or "\\" in v) for v in r.values())]
    assert escaped, "the generator writes values that need escaping"
    sample = rows[:: max(1, len(rows) // 25)] + escaped[:10]
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        for r in sample:
            got = con.execute("SELECT name, gender, year_of_birth, level_of_education, country, goals, bio "
                              "FROM auth_userprofile WHERE id = ? AND source_file LIKE ?",
                              [int(r["id"]), f"%{Path(name).name}"]).fetchone()
            yob = None if r["year_of_birth"] is None else int(r["year_of_birth"])
            assert got == (r["name"], r["gender"], yob, r["level_of_education"], r["country"], r["goals"], r["bio"])


def test_studentmodule_types_and_timestamps(imported):
    pkg, data, _, _ = imported
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_name = 'courseware_studentmodule'").fetchall())
        assert types["student_id"] == "BIGINT" and types["created"] == "TIMESTAMP" and types["grade"] == "DOUBLE"
        (mn,) = con.execute("SELECT min(created) FROM courseware_studentmodule").fetchone()
        assert isinstance(mn, dt.datetime)
        # every studentmodule row points at a block of its course's structure
        (orphans,) = con.execute(
            "SELECT count(*) FROM courseware_studentmodule m ANTI JOIN course_structure s "
            "ON s.block_id = m.module_id AND s.course_id = m.course_id").fetchone()
        assert orphans == 0
