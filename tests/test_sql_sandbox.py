"""`edx-engine sql` runs SQL a person typed: it reads the store and nothing else.

No other file (passphrase, keyring, /etc), no URL, no extension installed or loaded, no
setting changed, nothing written; the store's views (tables, events, models, quarantine)
still work, and values come out in full (table, CSV, JSON).
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from edx_engine.cli import app
from edx_engine.lake import Lake
from store_support import edx, small_store

SECRET = "s3cret-passphrase-ñ"
KEY = "-----PRIVATE KEY MATERIAL-----"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(store copy with a keyring inside it, passphrase file, keyring outside it, HOME)."""
    base = tmp_path_factory.mktemp("sql-sandbox")
    store = base / "data"
    subprocess.run(["cp", "-a", str(small_store(base)), str(store)], check=True)
    secrets = base / "secrets"
    (secrets / "gnupg" / "private-keys-v1.d").mkdir(parents=True)
    (secrets / "passphrase").write_text(SECRET + "\n")
    (secrets / "gnupg" / "private-keys-v1.d" / "ABCDEF.key").write_text(KEY)
    (store / "gnupg" / "private-keys-v1.d").mkdir(parents=True)  # `keys import` puts the keyring here
    (store / "gnupg" / "private-keys-v1.d" / "123456.key").write_text(KEY)
    home = base / "home"
    home.mkdir()
    assert edx("tables", "--data-dir", str(store)).returncode == 0  # built for this place
    return store, secrets, home


def run(setup, query: str, *opts: str) -> subprocess.CompletedProcess:
    store, _, home = setup
    # HOME is empty: an extension install would create ~/.duckdb/extensions there
    return edx("sql", query, *opts, "--data-dir", str(store), env={"HOME": str(home)})


def run_here(setup, query: str, *opts: str):
    """The same command in this process (fast: for the many refusals)."""
    res = CliRunner().invoke(app, ["sql", query, *opts, "--data-dir", str(setup[0])], env={"HOME": str(setup[2])})
    res.returncode = res.exit_code
    return res


def refused(r, *secrets: str) -> None:
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    for s in secrets:
        assert s not in r.stdout and s not in r.stderr


def test_files_outside_the_store_cannot_be_read(setup):
    store, secrets, home = setup
    for q in (f"SELECT * FROM read_text('{secrets / 'passphrase'}')",
              f"SELECT * FROM read_blob('{secrets / 'gnupg' / 'private-keys-v1.d'}/*')",
              f"SELECT * FROM read_blob('{store / 'gnupg' / 'private-keys-v1.d'}/*')",  # inside the data dir
              f"SELECT * FROM read_text('{store / 'lake'}/../gnupg/private-keys-v1.d/123456.key')",
              "SELECT * FROM read_csv('/etc/passwd')",
              f"SELECT * FROM glob('{secrets}/*')", "SELECT * FROM glob('/etc/*')",
              f"SELECT * FROM read_text('file://{secrets / 'passphrase'}')",
              f"SELECT * FROM sniff_csv('{secrets / 'passphrase'}')"):
        r = run_here(setup, q)
        refused(r, SECRET, KEY, "root:")
        assert "reads only the store" in r.stderr, (q, r.stderr)


def test_no_url_and_no_extension_install(setup):
    _, _, home = setup
    for q in ("SELECT * FROM read_csv('https://127.0.0.1:9/x.csv')",
              "SELECT * FROM read_parquet('s3://bucket/x.parquet')",
              "SELECT * FROM read_json('http://127.0.0.1:9/x.json')"):
        r = run(setup, q)
        refused(r)
        assert "httpfs" not in r.stderr.lower() and "install" not in r.stderr.lower(), r.stderr
    assert not (home / ".duckdb").exists()  # nothing was downloaded or installed


def test_statements_other_than_queries_are_refused(setup, tmp_path):
    store, _, home = setup
    leak = tmp_path / "leak.csv"
    inside = store / "lake" / "leak.csv"
    for q in (f"COPY (SELECT * FROM auth_user) TO '{leak}'", f"COPY (SELECT * FROM auth_user) TO '{inside}'",
              f"EXPLAIN ANALYZE COPY (SELECT * FROM auth_user) TO '{inside}'",
              f"ATTACH '{tmp_path / 'o.duckdb'}' AS o", "INSTALL httpfs", "LOAD httpfs",
              "SET enable_external_access = true", "RESET lock_configuration", "PRAGMA threads=1",
              "SELECT 1; SELECT 2", "EXPORT DATABASE '/tmp/x'"):
        refused(run_here(setup, q))
    assert not leak.exists() and not inside.exists() and not (tmp_path / "o.duckdb").exists()
    assert not (home / ".duckdb").exists()


def test_the_sandbox_holds_without_the_statement_check(setup, tmp_path):
    """The connection itself refuses, should a statement get past `_check_read_only_query`."""
    store, secrets, _ = setup
    lake = Lake(store)
    with lake.connect_sandboxed() as con:
        for q in (f"SELECT * FROM read_text('{secrets / 'passphrase'}')", "SELECT * FROM read_csv('/etc/passwd')",
                  f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'", f"ATTACH '{tmp_path / 'o.duckdb'}'",
                  "INSTALL httpfs", "LOAD httpfs", "SET enable_external_access = true",
                  "SET allowed_directories = ['/']", "SET autoinstall_known_extensions = true",
                  "RESET lock_configuration"):
            with pytest.raises(duckdb.Error):
                con.execute(q).fetchall()
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] > 0
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "o.duckdb").exists()
    # the settings went with that connection: the next ordinary one is not sandboxed
    with lake.connect(read_only=True) as con:
        assert con.execute(f"SELECT content FROM read_text('{secrets / 'passphrase'}')").fetchone()[0].strip() == SECRET


def test_the_store_views_still_work(setup):
    store, _, _ = setup
    names = ("auth_user", "events", "events_video", "quarantine", "models.person_course", "models.general_report")
    with duckdb.connect(str(store / "edx.duckdb"), read_only=True) as con:
        expected = [con.execute(f"SELECT count(*) FROM {v}").fetchone()[0] for v in names]
    assert expected[1] > 0 and expected[3] > 0 and expected[4] > 0
    q = "SELECT " + ", ".join(f"(SELECT count(*) FROM {v}) AS c{i}" for i, v in enumerate(names))
    r = run(setup, q, "--format", "json")
    assert r.returncode == 0, r.stderr
    assert list(json.loads(r.stdout)[0].values()) == expected
    for q in ("DESCRIBE auth_user", "SHOW TABLES", "EXPLAIN SELECT count(*) FROM events",
              "EXPLAIN ANALYZE SELECT count(*) FROM events", "SUMMARIZE models.person_course",
              "FROM quarantine LIMIT 1"):
        r = run_here(setup, q)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (q, r.stderr)


# -- output formats ------------------------------------------------------------------------------

FULL = ("SELECT course_id, repeat('x', 200) || course_id AS long_id, 'a,\"b\"\nc' AS tricky, NULL AS nothing, "
        "count(*) AS n, sum(id) AS total, 1.5 AS d, TIMESTAMP '2026-10-01 12:34:56' AS t "
        "FROM auth_user GROUP BY course_id ORDER BY course_id")


@pytest.fixture(scope="module")
def expected(setup):
    store, _, _ = setup
    with duckdb.connect(str(store / "edx.duckdb"), read_only=True) as con:
        rows = con.execute(FULL).fetchall()
    assert rows and len(rows[0][1]) > 200
    return rows


def test_csv_has_every_value_in_full_and_a_bom(setup, expected):
    r = run(setup, FULL, "--format", "csv")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("\ufeffcourse_id,")
    got = list(csv.reader(io.StringIO(r.stdout.lstrip("\ufeff"))))
    assert got[0] == ["course_id", "long_id", "tricky", "nothing", "n", "total", "d", "t"]
    assert got[1:] == [[c, lid, tr, "", str(n), str(tot), "1.5", "2026-10-01 12:34:56"]
                       for c, lid, tr, _, n, tot, _, _ in expected]
    r = run(setup, FULL, "--format", "csv", "--no-bom")
    assert r.stdout.startswith("course_id,")


def test_json_has_every_value_typed(setup, expected):
    r = run(setup, FULL, "--format", "json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got == [{"course_id": c, "long_id": lid, "tricky": tr, "nothing": None, "n": n, "total": int(tot),
                    "d": 1.5, "t": "2026-10-01T12:34:56"} for c, lid, tr, _, n, tot, _, _ in expected]


def test_quarantined_raw_bytes_come_out_as_text(setup):
    store, _, _ = setup
    with duckdb.connect(str(store / "edx.duckdb"), read_only=True) as con:
        raws = [bytes(r[0]).decode("utf-8", "backslashreplace")
                for r in con.execute("SELECT raw FROM quarantine ORDER BY source_file, line").fetchall()]
    r = run(setup, "SELECT raw FROM quarantine ORDER BY source_file, line", "--format", "json")
    assert [x["raw"] for x in json.loads(r.stdout)] == raws and raws


def test_table_does_not_cut_long_values(setup, expected):
    """Not a terminal (a pipe, a file): the table is as wide as its widest value, whatever COLUMNS says."""
    store, _, home = setup
    r = edx("sql", FULL, "--data-dir", str(store), env={"HOME": str(home), "COLUMNS": "160"})
    assert r.returncode == 0, r.stderr
    for row in expected:
        assert row[1] in r.stdout  # 200+ characters on one line, not folded nor cut with an ellipsis
    assert "…" not in r.stdout
    r = run(setup, "SELECT * FROM range(60)")
    assert r.stdout.count("\n│") == 50 and "--limit" in r.stderr
    r = run(setup, "SELECT * FROM range(60)", "--limit", "55")
    assert r.stdout.count("\n│") == 55
    r = run(setup, "SELECT * FROM range(60)", "--format", "csv")
    assert len(r.stdout.splitlines()) == 61  # csv and json: every row


def test_unknown_format_is_a_one_line_error(setup):
    r = run_here(setup, "SELECT 1", "--format", "xml")
    refused(r)
    assert "xml" in r.stderr
