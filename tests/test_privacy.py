"""Privacy, through the real commands: scrub, pseudonymised exports, suppressed public exports.

A synthetic package (with known personal values) is imported with the real importer; the
commands run through typer's CliRunner on that store.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from edx_engine import config
from edx_engine.cli import app, run_import
from edx_engine.lake import Lake
from edx_engine.privacy.export import PUBLIC_SPECS, scan_for_values
from edx_engine.privacy.pseudonym import Pseudonymizer, SecretError, load_secret, pseudonym
from edx_engine.privacy.scrub import table_personal_columns
from edx_engine.schemas import TABLES
from edx_engine.synthetic import SyntheticConfig, generate

SECRET = "s3cret-for-tests-0123456789abcdef"
OTHER_SECRET = "another-secret-0123456789abcdef!"
runner = CliRunner()


def invoke(*args, env=None, code=0):
    r = runner.invoke(app, [str(a) for a in args], env=env)
    assert r.exit_code == code, (r.exit_code, r.output, r.exception)
    return r


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    d = tmp_path_factory.mktemp("pkg")
    m = generate(d, SyntheticConfig(seed=0, courses=2, learners=60, days=3))
    return d, m


def make_store(tmp: Path, package_dir: Path) -> Path:
    data = tmp / "store"
    run_import(config.resolve(data_dir=str(data)), [package_dir], quiet=True)
    return data


@pytest.fixture(scope="module")
def built(package, tmp_path_factory):
    """The package imported, users located and models built once: each test works on a copy (a store
    can be copied: its views re-point at the copy's own files)."""
    data = make_store(tmp_path_factory.mktemp("built"), package[0])
    invoke("locate-users", "--data-dir", data)
    invoke("build", "--data-dir", data)
    return data


def copy_of(store: Path, tmp: Path) -> Path:
    return Path(shutil.copytree(store, tmp / "store"))


def personal_values(data: Path, manifest) -> dict[str, set[str]]:
    """Every email, username, full name and IP of the store (before any scrub), plus the manifest's."""
    kp = manifest.known_personal_values
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        q = lambda sql: {r[0] for r in con.execute(sql).fetchall() if r[0]}  # noqa: E731
        emails = q("SELECT email FROM auth_user") | q("SELECT email FROM email_opt_in")
        usernames = q("SELECT username FROM auth_user") | q("SELECT username FROM events")
        names = q("SELECT name FROM auth_userprofile") | q("SELECT trim(first_name || ' ' || last_name) FROM auth_user")
        ips = q("SELECT ip FROM events")
    assert set(kp["emails"]) <= emails and set(kp["ips"]) <= ips and len(ips) > 10
    return {"emails": emails | set(kp["emails"]), "usernames": usernames | set(kp["usernames"]),
            "full_names": {n for n in names if len(n) > 5} | set(kp["full_names"]), "ips": ips | set(kp["ips"])}


def parquet_text(path: Path) -> str:
    """All values of a Parquet file as text (the bytes on disk are compressed)."""
    t = pq.read_table(path)
    parts = []
    for col in t.columns:
        col = col.combine_chunks()
        if isinstance(col.type, pa.ExtensionType):
            col = col.storage
        if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
            parts += [v.decode("utf-8", "replace") for v in col.to_pylist() if v is not None]
        else:
            parts += [str(v) for v in col.to_pylist() if v is not None]
    return "\n".join(parts)


def leaks(text: str, values: dict[str, set[str]]) -> list[str]:
    low = text.lower()
    found = [v for k in ("emails", "full_names", "ips") for v in values[k] if v.lower() in low]
    # usernames as whole tokens (a short username may be a substring of a hex pseudonym): a username made of
    # token characters only is found when it is one of the text's maximal runs of them (one pass over the
    # text instead of one regex search per username); any other username by its own search
    tokens = set(re.findall(r"[\w.@-]+", low))
    for u in values["usernames"]:
        ul = u.lower()
        if re.fullmatch(r"[\w.@-]+", ul):
            if ul in tokens:
                found.append(u)
        elif re.search(r"(?<![\w.@-])" + re.escape(ul) + r"(?![\w.@-])", low):
            found.append(u)
    return found


def store_text(data: Path) -> str:
    texts = [parquet_text(f) for f in (data / "lake").rglob("*.parquet")]
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        for (t,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall():
            texts.append(str(con.execute(f'SELECT * FROM "{t}"').fetchall()))
    return "\n".join(texts)


# -- scrub -----------------------------------------------------------------------------------------------

def test_scrub_dry_run_then_scrub_removes_everything_and_reports_still_build(package, built, tmp_path):
    pkg, manifest = package
    data = copy_of(built, tmp_path)  # users located (as scrub does first: compare like with like), models built
    values = personal_values(data, manifest)
    assert leaks(store_text(data), values)  # the check finds personal data before scrubbing
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        before = {n: con.execute(f"SELECT * EXCLUDE (username) FROM models.{n} ORDER BY ALL").fetchall()
                  for n in ("person_course",)}
        before_summary = con.execute("SELECT * EXCLUDE (created_at) FROM models.course_summary ORDER BY ALL").fetchall()
        attributable = con.execute(
            "SELECT count(*) FROM events e WHERE e.user_id IS NOT NULL OR e.username IN "
            "(SELECT username FROM auth_user)").fetchone()[0]

    files = {f: f.stat().st_mtime_ns for f in (data / "lake").rglob("*.parquet")}
    r = invoke("scrub", "--dry-run", "--data-dir", data)
    for word in ("auth_user", "email", "username", "ip", "raw", "download_url", "would scrub"):
        assert word in r.output
    assert {f: f.stat().st_mtime_ns for f in (data / "lake").rglob("*.parquet")} == files  # nothing changed
    invoke("scrub", "--check", "--data-dir", data, code=3)

    r = invoke("scrub", "--data-dir", data)
    assert "scrubbed" in r.output
    invoke("scrub", "--check", "--data-dir", data)
    assert leaks(store_text(data), values) == []
    assert not any(f.exists() for f in files if "events" in str(f) or "tables" in str(f)
                   and any(t in str(f) for t in ("auth_user", "email_opt_in")))  # old files deleted

    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        for table in TABLES:
            for col in table_personal_columns(table):
                cols = {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
                if col in cols:  # kept as a column (queries stay valid), all NULL
                    assert con.execute(f"SELECT count({col}) FROM {table}").fetchone()[0] == 0, (table, col)
        for col in ("username", "ip", "agent", "session"):
            assert con.execute(f"SELECT count({col}) FROM events").fetchone()[0] == 0
        # events lost their username but kept their learner: user_id was back-filled first
        assert con.execute("SELECT count(*) FROM events WHERE user_id IS NOT NULL").fetchone()[0] == attributable
        assert con.execute("SELECT count(*) FROM _edx_scrub_log").fetchone()[0] > 10
        assert con.execute("SELECT count(*) FROM user_location WHERE source = 'ip'").fetchone()[0] >= 0

    invoke("build", "--force", "--data-dir", data)
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        after = con.execute("SELECT * EXCLUDE (username) FROM models.person_course ORDER BY ALL").fetchall()
        after_summary = con.execute("SELECT * EXCLUDE (created_at) FROM models.course_summary ORDER BY ALL").fetchall()
        assert con.execute("SELECT count(username) FROM models.person_course").fetchone()[0] == 0
    assert after == before["person_course"]
    assert after_summary == before_summary
    for rep in ("general", "course", "enrolment", "masterfile"):
        out = tmp_path / f"{rep}.csv"
        r = runner.invoke(app, ["report", rep, "-o", str(out), "--data-dir", str(data)])
        if r.exit_code == 0:
            assert leaks(out.read_text("utf-8"), values) == []

    # a later package brings personal data back; scrub again clears it
    later = tmp_path / "pkg2"
    generate(later, SyntheticConfig(seed=0, courses=2, learners=60, days=3, start=dt.date(2026, 10, 8)))
    run_import(config.resolve(data_dir=str(data)), [later], quiet=True)
    invoke("scrub", "--check", "--data-dir", data, code=3)
    invoke("scrub", "--data-dir", data)
    invoke("scrub", "--check", "--data-dir", data)


def test_scrub_dry_run_and_check_count_the_same_files(built, tmp_path):
    """--dry-run listed 94 files while --check said 92: the dry run counted files whose personal columns
    hold no value (an empty snapshot, an empty model file), which --check rightly did not. Both now count
    the files that hold something to remove, and the dry run names the others."""
    r = invoke("scrub", "--dry-run", "--data-dir", built)
    text = " ".join(r.output.split())
    would = int(re.search(r"would scrub (\d+) file\(s\)", text).group(1))
    r = invoke("scrub", "--check", "--data-dir", built, code=3)
    left = int(re.search(r"personal data left in (\d+) file\(s\)", " ".join(r.output.split())).group(1))
    assert would == left > 5
    assert "whose personal columns are empty" in text  # the store has such files: the case is exercised


DOCS = Path(__file__).resolve().parent.parent / "docs"


def _section(doc: str, heading: str) -> str:
    text = (DOCS / doc).read_text("utf-8")
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:end if end > 0 else None]


def _first_cells(section: str) -> dict[str, str]:
    """First cell of each table row -> the whole row."""
    return {line.split("|")[1].strip(): line for line in section.splitlines() if line.startswith("| ")}


def test_docs_name_every_personal_column_and_every_column_of_courses_and_course_summary(built):
    """docs/privacy.md §1 is the list a reader checks: it left out auth_userprofile.phone_number (and teams);
    docs/indicators.md left out courses.passing_rule and the `suppressed` column of public outputs."""
    from edx_engine.schemas import personal_columns

    rows = _first_cells(_section("privacy.md", "## 1. Which columns are personal"))
    missing = [f"{t}.{c}" for t, cols in personal_columns().items() for c in cols
               if t not in rows or not re.search(rf"\b{re.escape(c)}\b", rows[t])]
    assert missing == []
    with duckdb.connect(str(built / "edx.duckdb"), read_only=True) as con:
        cols = {m: [r[0] for r in con.execute(f"DESCRIBE models.{m}").fetchall()] for m in ("courses", "course_summary")}
    for model, heading, known in (("courses", "## Course registry (`courses`)", {"course_id"}),
                                  ("course_summary", "## Course report", {"course_id", "name", "sme", "start_date",
                                                                          "end_date"})):
        documented = {c for cell in _first_cells(_section("indicators.md", heading)) for c in re.findall(r"`(\w+)`", cell)}
        assert [c for c in cols[model] if c not in documented | known] == [], model
    assert "suppressed" in {c for cell in _first_cells(_section("indicators.md", "## Course report"))
                            for c in re.findall(r"`(\w+)`", cell)}


# -- pseudonyms and anonymised exports -----------------------------------------------------------------------

def test_pseudonym_is_hmac_sha256_of_user_id():
    expected = hmac.new(SECRET.encode(), b"user:42", hashlib.sha256).hexdigest()[:20]
    assert pseudonym(42, SECRET) == expected == pseudonym("42", SECRET)
    assert pseudonym(42, OTHER_SECRET) != expected
    assert pseudonym(None, SECRET) is None
    assert len({pseudonym(i, SECRET) for i in range(20000)}) == 20000


def test_secret_is_required_and_must_be_long(tmp_path, monkeypatch):
    monkeypatch.delenv("EDX_ENGINE_PSEUDONYM_SECRET", raising=False)
    monkeypatch.delenv("EDX_ENGINE_PSEUDONYM_SECRET_FILE", raising=False)
    with pytest.raises(SecretError, match="EDX_ENGINE_PSEUDONYM_SECRET"):
        load_secret()
    f = tmp_path / "secret"
    f.write_text("short\n")
    with pytest.raises(SecretError, match="too short"):
        load_secret(f)
    f.write_text(SECRET + "\n")
    assert load_secret(f) == SECRET.encode()
    monkeypatch.setenv("EDX_ENGINE_PSEUDONYM_SECRET", OTHER_SECRET)
    assert load_secret() == OTHER_SECRET.encode()


ROW_LEVEL = ["masterfile", "person_course", "enrolment_report", "demographics", "auth_user", "auth_userprofile",
             "certificates_generatedcertificate", "student_courseenrollment", "user_id_map", "email_opt_in",
             "courseware_studentmodule", "student_anonymoususerid", "grades_persistentcoursegrade",
             "teams_membership", "user_location"]


def export_all(data: Path, out: Path, secret: str, names: list[str] = ROW_LEVEL,
               exts: tuple[str, ...] = ("csv", "parquet")) -> list[Path]:
    env = {"EDX_ENGINE_PSEUDONYM_SECRET": secret}
    for name in names:
        for ext in exts:
            invoke("export", name, "--anonymised", "-o", out / f"{name}.{ext}", "--data-dir", data, env=env)
    return sorted(p for p in out.iterdir() if p.is_file())


def test_anonymised_exports_leak_nothing_and_pseudonyms_are_stable(package, built, tmp_path):
    pkg, manifest = package
    a = built  # only read here
    b = make_store(tmp_path / "b", pkg)  # a second, independent import of the same package
    values = personal_values(a, manifest)
    invoke("locate-users", "--data-dir", b)
    invoke("build", "--data-dir", b)

    # refused without a secret, with a clear message
    r = runner.invoke(app, ["export", "masterfile", "--anonymised", "-o", str(tmp_path / "x.csv"), "--data-dir",
                            str(a)], env={"EDX_ENGINE_PSEUDONYM_SECRET": ""})
    assert r.exit_code == 1 and "EDX_ENGINE_PSEUDONYM_SECRET" in r.output
    assert not (tmp_path / "x.csv").exists()
    r = runner.invoke(app, ["export", "person_course", "-o", str(tmp_path / "x.csv"), "--data-dir", str(a)])
    assert r.exit_code == 1 and "--anonymised" in r.output
    r = runner.invoke(app, ["export", "events", "--anonymised", "-o", str(tmp_path / "x.csv"), "--data-dir",
                            str(a)], env={"EDX_ENGINE_PSEUDONYM_SECRET": SECRET})
    assert r.exit_code == 1 and "cannot be exported" in r.output

    out_a, out_b, out_c = tmp_path / "out_a", tmp_path / "out_b", tmp_path / "out_c"
    files = export_all(a, out_a, SECRET)
    stable = ["masterfile", "person_course", "auth_userprofile"]  # compared below
    export_all(b, out_b, SECRET, stable, ("parquet",))
    export_all(a, out_c, OTHER_SECRET, stable, ("parquet",))
    assert len(files) == 4 * len(ROW_LEVEL)  # csv + parquet + their .meta.json

    # no e-mail, username, name or IP of the input in any exported file
    for f in files:
        text = parquet_text(f) if f.suffix == ".parquet" else f.read_text("utf-8")
        assert leaks(text, values) == [], f
    assert scan_for_values(files, values["emails"] | values["ips"]) == []

    mf = pq.read_table(out_a / "masterfile.parquet")
    assert "username" not in mf.column_names and mf.schema.field("user_id").type == pa.string()
    with duckdb.connect(str(a / "edx.duckdb"), read_only=True) as con:
        ids = [r[0] for r in con.execute("SELECT user_id FROM models.masterfile").fetchall()]
    pz = Pseudonymizer(SECRET)
    assert sorted(mf.column("user_id").to_pylist()) == sorted(pz.user(i) for i in ids)
    assert not set(map(str, ids)) & set(mf.column("user_id").to_pylist())

    # stable across two imports: identical pseudonyms (and files); another secret: unrelated pseudonyms
    for name in stable:
        pa_, pb = pq.read_table(out_a / f"{name}.parquet"), pq.read_table(out_b / f"{name}.parquet")
        assert sorted(pa_.column("user_id").to_pylist()) == sorted(pb.column("user_id").to_pylist())
        pc_ = pq.read_table(out_c / f"{name}.parquet")
        assert not set(pa_.column("user_id").to_pylist()) & set(pc_.column("user_id").to_pylist())
    # the same learner has the same pseudonym in every export (joinable)
    prof = set(pq.read_table(out_a / "auth_userprofile.parquet").column("user_id").to_pylist())
    assert set(mf.column("user_id").to_pylist()) <= prof
    meta = json.loads((out_a / "masterfile.csv.meta.json").read_text())
    assert meta["pseudonym_key_id"] == pz.key_id and "username" in meta["dropped_columns"]


def test_team_names_and_descriptions_are_not_exported(built, tmp_path):
    """Team names and descriptions are learners' free text (team_id is a slug of the name): an
    --anonymised export of teams holds none of them, and scrub empties them."""
    with duckdb.connect(str(built / "edx.duckdb"), read_only=True) as con:
        texts = {v for r in con.execute("SELECT name, description, team_id FROM teams").fetchall() for v in r if v}
    assert len(texts) > 4 and any("Equipo" in t for t in texts)
    out = tmp_path / "out"
    files = export_all(built, out, SECRET, ["teams"])
    for f in files:
        text = parquet_text(f) if f.suffix == ".parquet" else f.read_text("utf-8")
        assert not [t for t in texts if t in text], f
    meta = json.loads((out / "teams.csv.meta.json").read_text())
    assert {"name", "description", "team_id"} <= set(meta["dropped_columns"])
    assert "team_size" in pq.read_table(out / "teams.parquet").column_names
    assert {"name", "description", "team_id"} <= set(table_personal_columns("teams"))  # scrub empties them


# -- public exports: small-cell suppression --------------------------------------------------------------------

def test_public_exports_cannot_be_undone_by_subtraction(built, tmp_path):
    from edx_engine.privacy.suppress import check_protected

    data = built  # only read here
    r = runner.invoke(app, ["export", "person_course", "--public", "-o", str(tmp_path / "pc.csv"), "--data-dir",
                            str(data)])
    assert r.exit_code == 1 and "not an aggregated table" in r.output

    invoke("export", "course_breakdown", "--public", "-o", tmp_path / "cb.parquet", "--data-dir", data)
    pub = pq.read_table(tmp_path / "cb.parquet").to_pylist()
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        orig = {(r[0], r[1], r[2], r[3]): r[4] for r in con.execute(
            "SELECT course_id, country, dimension, value, learners FROM models.course_breakdown").fetchall()}
        totals = dict(con.execute("SELECT course_id, enrolled FROM models.course_summary").fetchall())
    # the breakdown rows of countries with fewer than country_detail_min(5) = 10 learners are not published
    # at all (which values occur there would describe those learners); the country itself stays listed
    from edx_engine.privacy.suppress import country_detail_min

    published = {(r["course_id"], r["country"], r["dimension"], r["value"]) for r in pub}
    small = {(k[0], k[3]) for k, v in orig.items() if k[1] == "(all)" and k[2] == "country"
             and 0 < v < country_detail_min(5)}
    assert country_detail_min(5) == 10
    assert small and set(orig) - published == {k for k in orig if (k[0], k[1]) in small}
    hidden = [r for r in pub if r["learners"] is None]
    assert hidden and all(r["suppressed"] == "learners" for r in hidden)
    assert all(r["learners"] is None or r["learners"] == 0 or r["learners"] >= 5 for r in pub)
    assert any(orig[(r["course_id"], r["country"], r["dimension"], r["value"])] >= 5 for r in hidden)  # complementary
    # rebuild the reader's equations from the published file (a missing row of a listed country is
    # an unknown) and check no hidden cell is determined
    keys = [(r["course_id"], r["country"], r["dimension"], r["value"]) for r in pub] + sorted(set(orig) - published)
    idx = {k: i for i, k in enumerate(keys)}
    values = [orig[k] for k in keys]
    hid = {idx[(r["course_id"], r["country"], r["dimension"], r["value"])] for r in hidden} | \
        {idx[k] for k in set(orig) - published}
    eqs, fixed = [], []
    for cid in {k[0] for k in keys}:
        t = len(values)
        values.append(totals[cid])
        fixed.append(t)
        dims = {k[2] for k in keys if k[0] == cid}
        countries = {k[1] for k in keys if k[0] == cid and k[1] != "(all)"}
        for d in dims:
            eqs.append([t] + [i for k, i in idx.items() if k[0] == cid and k[1] == "(all)" and k[2] == d])
            if d == "country":
                continue
            for v in {k[3] for k in keys if k[0] == cid and k[2] == d}:
                if (cid, "(all)", d, v) in idx:
                    eqs.append([idx[(cid, "(all)", d, v)]] + [idx[(cid, c, d, v)] for c in countries
                                                              if (cid, c, d, v) in idx])
            for c in countries:
                if (cid, "(all)", "country", c) in idx:
                    eqs.append([idx[(cid, "(all)", "country", c)]] + [i for k, i in idx.items() if k[0] == cid
                                                                      and k[1] == c and k[2] == d])
    unseen = [idx[k] for k in set(orig) - published]  # rows not published: nobody knows they are >= 1
    probs = check_protected(values, eqs, hid, 5, fixed, unseen)

    def of_k_or_more(problem: str) -> bool:
        """A count of k or more worked out: the unpublished rows of a country of k to 2k - 1 learners
        (country_detail_min) and a complement that they give back. Publishable counts: no disclosure."""
        cs = [int(x) for x in re.findall(r"cell (\d+)", problem)]
        return bool(cs) and all(values[c] >= 5 for c in cs) and ("determined" in problem or "single hidden" in problem)

    assert [p for p in probs if not of_k_or_more(p)] == []

    invoke("export", "general_report", "--public", "--k", "10", "-o", tmp_path / "g.csv", "--data-dir", data)
    invoke("export", "user_location_summary", "--public", "-o", tmp_path / "loc.csv", "--data-dir", data)
    loc = pa.csv.read_csv(tmp_path / "loc.csv").to_pylist()
    for row in loc:
        parts = [row[c] for c in ("from_profile", "from_ip", "not_locatable")]
        hidden_n = sum(p is None for p in parts) + (row["learners"] is None)
        assert hidden_n != 1  # never a single hidden cell in `learners = profile + ip + not locatable`


def test_public_specs_exist_for_the_published_reports():
    assert {"course_summary", "general_report", "course_breakdown", "active_users"} <= set(PUBLIC_SPECS)


def test_store_copy_is_not_needed_for_scrub_dry_run_on_missing_store(tmp_path):
    r = runner.invoke(app, ["scrub", "--dry-run", "--data-dir", str(tmp_path / "none")])
    assert r.exit_code == 1 and "no store" in r.output
    shutil.rmtree(tmp_path / "none", ignore_errors=True)


def test_unknown_table_columns_are_not_exported():
    """A column edX adds later (kept as text in the store) may be personal: not exported until registered."""
    from edx_engine.privacy.export import columns_plan

    drop, ids = columns_plan("auth_userprofile", "table",
                             ["id", "user_id", "gender", "country", "phone_number", "course_id", "source_file", "name"])
    assert set(drop) == {"phone_number", "name", "id"} and ids == ["user_id"]
