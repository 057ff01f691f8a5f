"""`edx-engine skip`: an operator sets aside an S3 object that can never be imported, so that the nightly
sync stops failing on it (exit 2 every night) without anyone editing the ledger by hand.

Against the real S3-protocol server (moto on loopback) and real gpg, through the CLI in this process, like
tests/test_sync.py (whose fixtures are reused)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import duckdb
import pytest

pytest.importorskip("moto.server")

from cli_support import run_cli  # noqa: E402
from test_sync import (ENTRY, PKG_BUCKET, cli_args, deliveries, gpg_key, moto, q, run_status, s3,  # noqa: E402,F401
                       sync_env, write_config)

GOOD = "IDBx-2026-10-04.zip"
BAD = "IDBx-2026-10-18.zip"
BAD_URL = f"s3://{PKG_BUCKET}/{BAD}"


def run(data: Path, conf: Path, env: dict, *args: str):
    return run_cli(cli_args(data, conf, *args)[len(ENTRY):], env=env)


def sync(data: Path, conf: Path, env: dict, *args: str):
    return run(data, conf, env, "sync", "--only", "packages", *args)


def row(data: Path, key: str = BAD) -> dict:
    cols = ("state", "attempts", "failed_at", "error", "skipped_at", "skipped_by", "skip_reason", "skipped_from",
            "local_path", "changes")
    r = q(data, f"SELECT {', '.join(cols)} FROM _edx_ledger WHERE bucket=? AND key=?", (PKG_BUCKET, key))
    return dict(zip(cols, r[0])) if r else {}


@pytest.fixture
def failing(s3, moto, deliveries, gpg_key, tmp_path):
    """A store whose first sync imported one package and failed on a truncated one (exit 2)."""
    s3.upload_file(str(deliveries / "A" / PKG_BUCKET / GOOD), PKG_BUCKET, GOOD)
    good = (deliveries / "B" / PKG_BUCKET / "IDBx-2026-10-11.zip").read_bytes()
    s3.put_object(Bucket=PKG_BUCKET, Key=BAD, Body=good[: len(good) // 2])
    conf, data = write_config(tmp_path, moto.url), tmp_path / "d"
    env = {k: v for k, v in sync_env(gpg_key, LOGNAME="anna", USER="anna").items() if k != "SUDO_USER"}
    r = sync(data, conf, env)
    assert r.returncode == 2, r.stderr + r.stdout
    assert row(data)["state"] == "failed" and row(data, GOOD)["state"] == "imported"
    return data, conf, env, good


def test_skipped_object_is_left_alone_until_undo(failing, s3):
    data, conf, env, _ = failing
    before = row(data)
    # a reason is free text: "[/x]" would be rich markup (status and --undo failed with a traceback)
    r = run(data, conf, env, "skip", BAD_URL, "--reason", "truncated by edX, ticket 4711 [/x] [red]")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "skipped" in r.stdout and BAD_URL in r.stdout
    now = row(data)
    assert (now["state"], now["skipped_from"], now["skipped_by"], now["skip_reason"]) == \
        ("skipped", "failed", "anna", "truncated by edX, ticket 4711 [/x] [red]")
    assert now["skipped_at"] is not None and now["error"] == before["error"]  # the last error is kept
    logged = q(data, "SELECT count(*) FROM _edx_import_log")[0][0]

    # the nightly sync: exit 0, the object is neither downloaded, imported nor reported; the summary counts it
    r = sync(data, conf, env)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "sync ok" in r.stdout and "0 failed" in r.stdout and "1 skipped" in r.stdout
    assert BAD not in r.stderr
    after = row(data)
    assert (after["state"], after["attempts"], after["failed_at"]) == ("skipped", before["attempts"],
                                                                     before["failed_at"])
    assert q(data, "SELECT count(*) FROM _edx_import_log")[0][0] == logged  # no import was even attempted
    assert q(data, "SELECT status FROM _edx_sync_runs ORDER BY started_at DESC LIMIT 1") == [("ok",)]
    dry = sync(data, conf, env, "--dry-run")
    assert dry.returncode == 0 and BAD not in dry.stdout and "1 skipped" in dry.stdout

    # status: who, when, why
    st = run_status(data, conf, env)
    flat = " ".join(st.stdout.split())
    assert st.returncode == 0 and "Traceback" not in st.stderr, st.stderr
    assert "skipped" in flat and BAD in flat and "anna" in flat and "ticket 4711 [/x] [red]" in flat, st.stdout
    js = run(data, conf, env, "status", "--json")
    assert '"skipped"' in js.stdout and "ticket 4711" in js.stdout

    # skipping it twice says so and changes nothing
    r = run(data, conf, env, "skip", BAD_URL, "--reason", "other")
    assert r.returncode == 1 and "already skipped" in r.stderr and "Traceback" not in r.stderr
    assert row(data)["skip_reason"] == "truncated by edX, ticket 4711 [/x] [red]"

    # --undo: back to failed, and the next sync retries it (and fails on it again)
    r = run(data, conf, env, "skip", "--undo", BAD_URL)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "no longer skipped" in r.stdout and "back to failed" in r.stdout and "[/x] [red]" in r.stdout
    undone = row(data)
    assert undone["state"] == "failed" and undone["skipped_at"] is None and undone["skip_reason"] is None
    r = sync(data, conf, env)
    assert r.returncode == 2 and "1 failed" in r.stdout and BAD in r.stderr
    assert row(data)["attempts"] == before["attempts"] + 1
    r = run(data, conf, env, "skip", "--undo", BAD_URL)
    assert r.returncode == 1 and "not skipped" in r.stderr

    # a skipped object that edX deletes is not reported as gone either
    assert run(data, conf, env, "skip", BAD_URL).returncode == 0
    s3.delete_object(Bucket=PKG_BUCKET, Key=BAD)
    r = sync(data, conf, env)
    assert r.returncode == 0, r.stderr + r.stdout
    assert row(data)["state"] == "skipped" and "gone" not in r.stderr


def test_replaced_skipped_object_is_imported_and_imported_objects_cannot_be_skipped(failing, s3):
    data, conf, env, good = failing
    assert run(data, conf, env, "skip", BAD_URL, "--reason", "broken").returncode == 0
    s3.put_object(Bucket=PKG_BUCKET, Key=BAD, Body=good)  # edX re-delivers it: other size and ETag
    r = sync(data, conf, env)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "changed in S3" in r.stderr and "it was skipped" in r.stderr and "broken" in r.stderr
    assert "1 imported" in r.stdout and "skipped," not in r.stdout
    now = row(data)
    assert now["state"] == "imported" and now["changes"] == 1
    assert (now["skipped_at"], now["skipped_by"], now["skip_reason"], now["skipped_from"]) == (None,) * 4

    # an imported object makes no sense to skip; an unknown one is an error; so is a bad address
    for url, words in ((BAD_URL, "is imported"), (f"s3://{PKG_BUCKET}/IDBx-2030-01-01.zip", "not in the sync ledger"),
                       (f"{PKG_BUCKET}/{BAD}", "not an S3 address"), (f"s3://{PKG_BUCKET}", "not an S3 address")):
        r = run(data, conf, env, "skip", url)
        assert r.returncode == 1 and words in r.stderr and "Traceback" not in r.stderr, (url, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert row(data)["state"] == "imported"


# -- without S3: the lock, a store with no ledger, a ledger made by an older version ----------------------

OLD_LEDGER = """CREATE TABLE _edx_ledger (
    bucket VARCHAR NOT NULL, key VARCHAR NOT NULL, kind VARCHAR, org VARCHAR, object_date VARCHAR, site VARCHAR,
    size BIGINT, etag VARCHAR, last_modified TIMESTAMP, sha256 VARCHAR,
    state VARCHAR NOT NULL, rows BIGINT, rejected BIGINT, error VARCHAR, local_path VARCHAR,
    first_seen TIMESTAMP, listed_at TIMESTAMP, downloaded_at TIMESTAMP, decrypted_at TIMESTAMP,
    imported_at TIMESTAMP, failed_at TIMESTAMP, attempts INTEGER DEFAULT 0, changes INTEGER DEFAULT 0,
    run_id VARCHAR,
    PRIMARY KEY (bucket, key));
CREATE TABLE _edx_sync_runs (
    run_id VARCHAR PRIMARY KEY, pid INTEGER, host VARCHAR, started_at TIMESTAMP, ended_at TIMESTAMP,
    status VARCHAR, options VARCHAR, listed INTEGER, new INTEGER, downloaded INTEGER, imported INTEGER,
    failed INTEGER, pending INTEGER, rows BIGINT, rejected BIGINT, bytes BIGINT, summary VARCHAR);
CREATE TABLE _edx_meta (key VARCHAR PRIMARY KEY, value VARCHAR);
INSERT INTO _edx_meta VALUES ('store_format', '1');
INSERT INTO _edx_sync_runs (run_id, pid, started_at, ended_at, status, summary) VALUES
    ('20261019T020000-abcdef', 1, TIMESTAMP '2026-10-19 02:00:00', TIMESTAMP '2026-10-19 02:01:00', 'partial',
     'sync partial: 1 objects listed, 1 failed');
"""


def old_store(data: Path) -> None:
    """A catalog as the version before `skip` left it: the ledger without the skip columns, one failed object."""
    data.mkdir()
    with duckdb.connect(str(data / "edx.duckdb")) as con:
        con.execute(OLD_LEDGER)
        con.execute("INSERT INTO _edx_ledger (bucket, key, kind, org, object_date, size, etag, state, error, "
                    "failed_at, attempts) VALUES (?, ?, 'packages', 'IDBx', '2026-10-18', 10, 'abc', 'failed', "
                    "'not a readable zip', TIMESTAMP '2026-10-19 02:00:00', 3)", [PKG_BUCKET, BAD])


def test_ledger_of_an_older_version_gains_the_skip_columns(tmp_path):
    data, env = tmp_path / "d", {"LOGNAME": "ben", "USER": "ben", "PATH": "/usr/bin:/bin"}
    old_store(data)
    conf = tmp_path / "empty.toml"
    conf.write_text("")
    st = run(data, conf, env, "status")  # read-only: not upgraded, still readable
    assert st.returncode == 0 and "not a readable zip" in st.stdout, st.stderr + st.stdout
    from edx_engine.store.ledger import Ledger

    with Ledger(data).connect(read_only=True) as con:  # what a dry run reads before any upgrade
        e = Ledger(data).entries(con)[(PKG_BUCKET, BAD)]
    assert e.state == "failed" and e.skipped_from is None

    r = run(data, conf, env, "skip", BAD_URL, "--reason", "never readable")
    assert r.returncode == 0, r.stderr + r.stdout
    cols = {c for c, in q(data, "SELECT column_name FROM duckdb_columns() WHERE table_name='_edx_ledger'")}
    assert {"skipped_at", "skipped_by", "skip_reason", "skipped_from"} <= cols
    got = row(data)
    assert (got["state"], got["skipped_by"], got["skip_reason"], got["skipped_from"], got["attempts"]) == \
        ("skipped", "ben", "never readable", "failed", 3)
    # no format bump: a version that knows format 1 still opens the store
    assert q(data, "SELECT value FROM _edx_meta WHERE key='store_format'") == [("1",)]
    st = run(data, conf, env, "status")
    assert st.returncode == 0 and "never readable" in st.stdout and "ben" in st.stdout


def test_skip_waits_for_a_running_sync_or_says_it_is_running(tmp_path):
    from edx_engine.fetch.sync import sync_lock

    data, env = tmp_path / "d", {"LOGNAME": "ben", "USER": "ben", "PATH": "/usr/bin:/bin"}
    old_store(data)
    conf = tmp_path / "empty.toml"
    conf.write_text("")
    with sync_lock(data):  # a sync holds the ledger's entries in memory: a skip now would be overwritten
        r = run(data, conf, env, "skip", BAD_URL)
    assert r.returncode == 1 and "another sync is running" in r.stderr and "--wait" in r.stderr
    assert q(data, "SELECT state FROM _edx_ledger") == [("failed",)]  # nothing changed, not even upgraded

    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with sync_lock(data):
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    threading.Timer(0.8, release.set).start()
    t0 = time.monotonic()
    r = run(data, conf, env, "skip", "--wait", BAD_URL)
    t.join()
    assert r.returncode == 0, r.stderr + r.stdout
    assert time.monotonic() - t0 >= 0.7 and row(data)["state"] == "skipped"


def test_skip_without_a_ledger_is_one_line_and_makes_nothing(tmp_path):
    conf = tmp_path / "empty.toml"
    conf.write_text("")
    r = run(tmp_path / "none", conf, {"PATH": "/usr/bin:/bin"}, "skip", BAD_URL)
    assert r.returncode == 1 and "no sync ledger" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "none").exists()
