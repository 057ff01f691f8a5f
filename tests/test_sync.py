"""`edx-engine sync` / `status` against a real S3-protocol server on loopback (moto), real gpg (issue 3).

A sync that is killed, holds the lock while another waits, or is watched for the passphrase in other
processes' argv runs as a real subprocess (`edx-engine sync ...`), so that kill -9, the lock and the
passphrase checks are the real thing; the other runs (the next sync after a kill, status) run the
same command in this process (cli_support.run_cli: the same app, arguments and environment). The delivery is the synthetic generator's, encrypted to
the throwaway test key. Until the tracking-log importer exists the tests sync `--only packages`.
"""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import boto3
import duckdb
import pytest

moto_server = pytest.importorskip("moto.server")

from cli_support import kill_group, run_cli  # noqa: E402
from edx_engine.synthetic import SyntheticConfig, generate  # noqa: E402

HAS_EVENTS = importlib.util.find_spec("edx_engine.ingest.events") is not None
ONLY = [] if HAS_EVENTS else ["--only", "packages"]
PKG_BUCKET, EV_BUCKET = "course-data", "edx-course-data"
ENTRY = [sys.executable, "-c", "import sys; from edx_engine.cli import app; sys.exit(app())"]


# -- the S3 server ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.srv = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.srv.start()
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.srv.stop()
        if self.srv._server is not None:  # really close the socket: connections are refused, not queued
            self.srv._server.server_close()


@pytest.fixture(scope="module")
def moto(request):
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    m = Moto()
    yield m
    m.stop()


def client(url: str):
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


@pytest.fixture
def s3(moto):
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto.url}/moto-api/reset", method="POST")).read()
    c = client(moto.url)
    c.create_bucket(Bucket=PKG_BUCKET)
    c.create_bucket(Bucket=EV_BUCKET)
    return c


def upload(c, delivery: Path) -> list[str]:
    """Upload a generated delivery with the buckets' layout; returns the keys."""
    keys = []
    for bucket in (PKG_BUCKET, EV_BUCKET):
        root = delivery / bucket
        for f in sorted(root.rglob("*")) if root.exists() else []:
            if f.is_file():
                key = f.relative_to(root).as_posix()
                c.upload_file(str(f), bucket, key)
                keys.append(f"{bucket}/{key}")
    return keys


# -- the key ---------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def gpg_key(tmp_path_factory):
    """Like conftest's throwaway key (passphrase-protected, agent never caches), but protected with
    a small S2K count: unlocking it then costs ~10 ms instead of ~0.5 s per gpg run on these
    machines, and a package is one gpg run per member."""
    from conftest import TEST_PASSPHRASE, _gpg

    home = Path(tmp_path_factory.mktemp("gnupg-sync"))
    home.chmod(0o700)
    (home / "gpg-agent.conf").write_text("default-cache-ttl 0\nmax-cache-ttl 0\ns2k-count 65536\n")
    _gpg(home, "--quick-gen-key", "edx-engine Sync Test <sync-test@example.org>", "rsa2048", "default", "never",
         passphrase=TEST_PASSPHRASE)
    fpr = next(ln.split(":")[9] for ln in _gpg(home, "-K", "--with-colons").splitlines() if ln.startswith("fpr"))
    _gpg(home, "--quick-add-key", fpr, "rsa2048", "encr", "never", passphrase=TEST_PASSPHRASE)
    yield home, fpr, TEST_PASSPHRASE
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)


# -- deliveries -----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def deliveries(gpg_key, tmp_path_factory):
    home, fpr, _ = gpg_key
    base = tmp_path_factory.mktemp("deliveries")
    common = dict(org="IDBx", courses=2, learners=40, encrypt_to=fpr, gnupghome=str(home), malformed=False)
    generate(base / "A", SyntheticConfig(seed=0, days=3, start="2026-10-01", **common))
    generate(base / "B", SyntheticConfig(seed=0, days=3, start="2026-10-04", package_date="2026-10-11", **common))
    generate(base / "A1", SyntheticConfig(seed=1, days=3, start="2026-10-01", **common))
    return base


# -- running the CLI ------------------------------------------------------------------------------

def write_config(tmp: Path, url: str, **extra) -> Path:
    conf = {"org": "IDBx", "endpoint_url": url, "retries": 1, "retry_delay": 0.05,
            "multipart_threshold_mb": 0.05, "chunk_size_mb": 0.03125, "concurrency": 2, **extra}
    lines = ["[sync]"] + [f"{k} = {v!r}".replace("'", '"') if isinstance(v, str) else f"{k} = {v}"
                          for k, v in conf.items()]
    p = tmp / f"edx-engine-{abs(hash(url)) % 10000}.toml"
    p.write_text("\n".join(lines) + "\n")
    return p


def sync_env(gpg_key, passphrase: str | None = None, **extra) -> dict:
    home, _, pw = gpg_key
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDX_ENGINE_", "AWS_")) or k == "EDX_ENGINE_SQL_CACHE"}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
               EDX_ENGINE_GPG_PASSPHRASE=passphrase if passphrase is not None else pw, GNUPGHOME=str(home),
               COLUMNS="200")
    env.update(extra)
    return env


def cli_args(data: Path, conf: Path, *args: str) -> list[str]:
    return [*ENTRY, *args, "--data-dir", str(data), "--config", str(conf)]


def run_sync(data: Path, conf: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    """A sync run to its end, in this process."""
    return run_cli(cli_args(data, conf, "sync", *ONLY, *args)[len(ENTRY):], env=env)


def run_status(data: Path, conf: Path, env: dict) -> subprocess.CompletedProcess:
    return run_cli(cli_args(data, conf, "status")[len(ENTRY):], env=env)


def q(data: Path, sql: str, params=()):
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


def counts(data: Path) -> dict[str, int]:
    """Rows of every view of the store (database tables, events, quarantine)."""
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        views = [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal "
                                          "AND schema_name='main' ORDER BY 1").fetchall()]
        return {v: con.execute(f'SELECT count(*) FROM "{v}"').fetchone()[0] for v in views}


def ledger(data: Path) -> dict[str, tuple]:
    return {f"{b}/{k}": (s, r, e) for b, k, s, r, e in
            q(data, "SELECT bucket, key, state, rows, error FROM _edx_ledger ORDER BY 1, 2")}


_CLEAN: dict[str, dict] = {}


def clean_counts(name: str, s3c, deliveries, conf, env, tmp: Path, *parts: str) -> dict[str, int]:
    """Row counts of a single clean sync of the given deliveries (computed once per name)."""
    if name not in _CLEAN:
        for p in parts:
            upload(s3c, deliveries / p)
        data = tmp / f"clean-{name}"
        r = run_sync(data, conf, env)
        assert r.returncode == 0, r.stderr + r.stdout
        _CLEAN[name] = counts(data)
        for b in (PKG_BUCKET, EV_BUCKET):  # empty the buckets again
            for o in s3c.list_objects_v2(Bucket=b).get("Contents", []):
                s3c.delete_object(Bucket=b, Key=o["Key"])
    return _CLEAN[name]


# -- first sync, second sync, new objects, changed objects ------------------------------------------

def test_first_sync_loads_everything_second_does_nothing(s3, moto, deliveries, gpg_key, tmp_path):
    keys = upload(s3, deliveries / "A") + upload(s3, deliveries / "B")
    conf, env, data = write_config(tmp_path, moto.url), sync_env(gpg_key), tmp_path / "d"
    r = run_sync(data, conf, env)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "sync ok" in r.stdout and "0 failed" in r.stdout
    led = ledger(data)
    want = [k for k in keys if HAS_EVENTS or k.startswith(PKG_BUCKET)]
    assert sorted(led) == sorted(want)
    assert all(state == "imported" and rows > 0 and err is None for state, rows, err in led.values())
    c = counts(data)
    assert c["student_courseenrollment"] > 0 and c["auth_user"] > 0
    _CLEAN.setdefault("AB", c)  # a clean sync of A and B: what clean_counts("AB") would compute again
    # downloads are deleted after import by default, nothing half-written is left
    assert not [p for p in (data / "downloads").rglob("*") if p.is_file()]
    runs = q(data, "SELECT status, imported, failed FROM _edx_sync_runs")
    assert runs == [("ok", len(want), 0)]
    # rows name the S3 object they came from, not the (deleted) download
    sources = {r[0] for r in q(data, "SELECT DISTINCT source_file FROM student_courseenrollment")}
    assert sources and all(s.startswith(f"s3://{PKG_BUCKET}/") and ".zip:" in s for s in sources), sources
    log_rows = q(data, "SELECT count(*) FROM _edx_import_log")[0][0]

    r2 = run_sync(data, conf, env)
    assert r2.returncode == 0, r2.stderr
    assert "0 new, 0 changed, 0 downloaded" in r2.stdout and "0 imported" in r2.stdout
    assert counts(data) == c
    assert q(data, "SELECT count(*) FROM _edx_import_log")[0][0] == log_rows  # nothing was even attempted

    st = run_status(data, conf, env)
    assert st.returncode == 0, st.stderr
    assert "last sync" in st.stdout and "ok" in st.stdout and "coverage per course" in st.stdout
    assert "2026-10-11" in st.stdout  # latest package per course


def test_dry_run_changes_nothing(s3, moto, deliveries, gpg_key, tmp_path):
    upload(s3, deliveries / "A")
    conf, env, data = write_config(tmp_path, moto.url), sync_env(gpg_key), tmp_path / "d"
    r = run_cli(cli_args(data, conf, "sync", "--dry-run", *ONLY)[len(ENTRY):], env=env)
    assert r.returncode == 0, r.stderr
    assert "IDBx-2026-10-04.zip" in r.stdout and "dry run" in r.stdout
    assert not (data / "edx.duckdb").exists()


def test_new_objects_are_picked_up_and_since_filters(s3, moto, deliveries, gpg_key, tmp_path):
    conf, env, data = write_config(tmp_path, moto.url), sync_env(gpg_key), tmp_path / "d"
    clean = clean_counts("AB", s3, deliveries, conf, env, tmp_path, "A", "B")
    upload(s3, deliveries / "A")
    assert run_sync(data, conf, env).returncode == 0
    first = set(ledger(data))
    upload(s3, deliveries / "B")
    # --since after every date: nothing is done
    r = run_sync(data, conf, env, "--since", "2030-01-01")
    assert r.returncode == 0 and "0 objects listed" in r.stdout
    r = run_sync(data, conf, env)
    assert r.returncode == 0, r.stderr
    new = set(ledger(data)) - first
    assert any("IDBx-2026-10-11.zip" in k for k in new)
    assert counts(data) == clean


def test_changed_object_is_reimported_and_replaces_its_rows(s3, moto, deliveries, gpg_key, tmp_path):
    conf, env, data = write_config(tmp_path, moto.url), sync_env(gpg_key), tmp_path / "d"
    clean = clean_counts("A1", s3, deliveries, conf, env, tmp_path, "A1")
    upload(s3, deliveries / "A")
    assert run_sync(data, conf, env).returncode == 0
    before = counts(data)
    upload(s3, deliveries / "A1")  # same keys, other content
    r = run_sync(data, conf, env)
    assert r.returncode == 0, r.stderr
    assert "changed in S3" in r.stderr
    assert counts(data) == clean != before
    assert all(c >= 1 for c, in q(data, "SELECT changes FROM _edx_ledger"))


# -- crash safety: kill -9 at several points -------------------------------------------------------

def start_paused(data: Path, conf: Path, env: dict, stage: str, flag: Path, *args: str) -> subprocess.Popen:
    env = dict(env, EDX_ENGINE_TEST_PAUSE_AT=stage, EDX_ENGINE_TEST_PAUSE_FILE=str(flag))
    return subprocess.Popen(cli_args(data, conf, "sync", *ONLY, *args), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"sync ended before pausing: {proc.returncode}\n{proc.stderr.read()}")
        assert time.monotonic() < deadline, "sync did not reach the pause point"
        time.sleep(0.02)


kill9 = kill_group  # the sync and its gpg children


def fake_gpg_dir(tmp: Path, flag: Path) -> Path:
    """A `gpg` first on PATH that announces a decryption, then hangs in it (to be killed there)."""
    d = tmp / "fakebin"
    d.mkdir(exist_ok=True)
    real = shutil.which("gpg")
    (d / "gpg").write_text(f"""#!/bin/sh
for a in "$@"; do
  if [ "$a" = "--decrypt" ]; then echo "$$ decrypt" > "{flag}"; sleep 60; fi
done
exec {real} "$@"
""")
    (d / "gpg").chmod(0o755)
    return d


def assert_complete(data: Path, clean: dict) -> None:
    assert counts(data) == clean
    led = ledger(data)
    assert led and all(state == "imported" for state, _, _ in led.values()), led
    assert not [p for p in (data / "downloads").rglob("*") if p.is_file()]
    assert not list((data / "lake").rglob("*.tmp"))


@pytest.mark.parametrize("stage", ["download", "downloaded", "import", "decrypt", "imported",
                                   "import+0.2", "import+0.8", "import:2"])
def test_kill_9_then_next_sync_completes_exactly(stage, s3, moto, deliveries, gpg_key, tmp_path):
    conf, env, data = write_config(tmp_path, moto.url), sync_env(gpg_key), tmp_path / "d"
    # one delivery (a package and three logs): a pause point is reached whatever the size of the work, and
    # a timed kill lands inside the package's import (31 members, each its own gpg run: over 1 s)
    clean = clean_counts("A", s3, deliveries, conf, env, tmp_path, "A")
    upload(s3, deliveries / "A")
    flag = tmp_path / "paused"
    if stage == "decrypt":
        env_k = dict(env, PATH=f"{fake_gpg_dir(tmp_path, flag)}:{env['PATH']}")
        proc = start_paused(data, conf, env_k, "none", tmp_path / "unused")
        wait_for(flag, proc)
    elif "+" in stage:  # let the import run, kill it somewhere inside (timing)
        point, delay = stage.split("+")
        proc = start_paused(data, conf, env, point, flag)
        wait_for(flag, proc)
        flag.unlink()
        time.sleep(float(delay))
    else:
        proc = start_paused(data, conf, env, stage, flag)
        wait_for(flag, proc)
    kill9(proc)
    if stage == "download":  # the multipart download was cut after its first chunks
        assert list((data / "downloads").rglob("*.part"))
    if stage.startswith("decrypt"):
        flag.unlink(missing_ok=True)
    r = run_sync(data, conf, env)
    assert r.returncode == 0, r.stderr + r.stdout
    if stage == "download":
        assert "resuming download" in r.stderr
    assert_complete(data, clean)
    assert q(data, "SELECT count(*) FROM _edx_sync_runs WHERE status='interrupted'")[0][0] == 1
    # and once more: nothing left to do
    r = run_sync(data, conf, env)
    assert r.returncode == 0 and "0 downloaded" in r.stdout and "0 imported" in r.stdout
    assert counts(data) == clean


# -- one sync at a time ------------------------------------------------------------------------------

def test_second_sync_exits_or_waits(s3, moto, deliveries, gpg_key, tmp_path):
    upload(s3, deliveries / "A")
    conf, env, data = write_config(tmp_path, moto.url), sync_env(gpg_key), tmp_path / "d"
    flag = tmp_path / "paused"
    first = start_paused(data, conf, env, "list", flag)
    try:
        wait_for(flag, first)
        r = run_sync(data, conf, env)
        assert r.returncode == 1
        assert f"another sync is running (pid {first.pid})" in r.stderr
        assert "Traceback" not in r.stderr
        st = run_status(data, conf, env)
        assert f"a sync is running now (pid {first.pid})" in st.stdout
        waiter = subprocess.Popen(cli_args(data, conf, "sync", *ONLY, "--wait"), env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        assert waiter.poll() is None  # still waiting for the lock
        flag.unlink()
        assert first.wait(timeout=180) == 0
        out, err = waiter.communicate(timeout=180)
        assert waiter.returncode == 0, err
        assert "0 downloaded" in out  # the first one did the work
    finally:
        if first.poll() is None:
            kill9(first)
    assert all(s == "imported" for s, _, _ in ledger(data).values())
    assert q(data, "SELECT status FROM _edx_sync_runs ORDER BY started_at") == [("ok",), ("ok",)]


# -- failures ------------------------------------------------------------------------------------------

def test_corrupt_objects_are_marked_failed_others_go_on(s3, moto, deliveries, gpg_key, tmp_path):
    upload(s3, deliveries / "A")
    conf, env, data = write_config(tmp_path, moto.url), sync_env(gpg_key), tmp_path / "d"
    good = (deliveries / "B" / "course-data" / "IDBx-2026-10-11.zip").read_bytes()
    s3.put_object(Bucket=PKG_BUCKET, Key="IDBx-2026-10-18.zip", Body=good[: len(good) // 2])  # truncated zip
    buf = io.BytesIO()  # a zip whose member is not OpenPGP data
    with zipfile.ZipFile(buf, "w") as z:
        # deterministic: random bytes sometimes look like an OpenPGP packet and fail differently
        z.writestr("IDBx-2026-10-25/IDBx-IDB1x-2T2026-student_courseenrollment-prod-analytics.sql.gpg",
                   b"id\tuser_id\tcourse_id\tcreated\tis_active\tmode\n" * 60)
    s3.put_object(Bucket=PKG_BUCKET, Key="IDBx-2026-10-25.zip", Body=buf.getvalue())
    if HAS_EVENTS:
        s3.put_object(Bucket=EV_BUCKET, Key="idbx/edx/events/2026/idbx-edx-events-2026-10-09.log.gz.gpg",
                      Body=b"this log was never encrypted\n" * 150)
    s3.put_object(Bucket=PKG_BUCKET, Key="README.txt", Body=b"not ours")
    r = run_sync(data, conf, env)
    assert r.returncode == 2, r.stderr + r.stdout
    assert "Traceback" not in r.stderr
    led = ledger(data)
    assert led["course-data/IDBx-2026-10-04.zip"][0] == "imported"
    state, _, err = led["course-data/IDBx-2026-10-18.zip"]
    assert state == "failed" and "not a readable zip" in err
    state, _, err = led["course-data/IDBx-2026-10-25.zip"]
    assert state == "failed" and "OpenPGP" in err
    if HAS_EVENTS:
        assert led["edx-course-data/idbx/edx/events/2026/idbx-edx-events-2026-10-09.log.gz.gpg"][0] == "failed"
    assert "2 failed" in r.stdout or "3 failed" in r.stdout
    assert "not a readable zip" in r.stderr
    st = run_status(data, conf, env)
    assert "failed" in st.stdout and "not a readable zip" in st.stdout and "IDBx-2026-10-25.zip" in st.stdout
    assert q(data, "SELECT status FROM _edx_sync_runs") == [("partial",)]
    # fixed upstream: the replaced object is picked up and the failure clears
    s3.put_object(Bucket=PKG_BUCKET, Key="IDBx-2026-10-18.zip", Body=good)
    r = run_sync(data, conf, env)
    assert ledger(data)["course-data/IDBx-2026-10-18.zip"][0] == "imported"


def test_wrong_passphrase_fails_clearly_then_recovers(s3, moto, deliveries, gpg_key, tmp_path):
    upload(s3, deliveries / "A")
    conf, data = write_config(tmp_path, moto.url), tmp_path / "d"
    wrong = "not-the-passphrase-4711"
    r = run_sync(data, conf, sync_env(gpg_key, passphrase=wrong))
    assert r.returncode == 1  # a configuration error: nothing encrypted can be imported
    assert "wrong passphrase" in r.stderr
    assert wrong not in r.stdout + r.stderr
    state, _, err = ledger(data)["course-data/IDBx-2026-10-04.zip"]
    assert state == "failed" and "wrong passphrase" in err
    # the download is kept for the retry; the right passphrase finishes the job without downloading again
    r = run_sync(data, conf, sync_env(gpg_key))
    assert r.returncode == 0, r.stderr
    assert "0 downloaded" in r.stdout and f"{len(ledger(data))} imported" in r.stdout
    assert all(state == "imported" for state, _, _ in ledger(data).values())


def test_network_error_is_retried_reported_then_recovered(s3, moto, deliveries, gpg_key, tmp_path):
    conf0, env = write_config(tmp_path, moto.url), sync_env(gpg_key)
    clean = clean_counts("A", s3, deliveries, conf0, env, tmp_path, "A")
    upload(s3, deliveries / "A")  # a package and three logs: the server goes away after the first import
    own = Moto()  # a second server on the same (global) moto state, which we can stop
    conf, data, flag = write_config(tmp_path, own.url), tmp_path / "d", tmp_path / "paused"
    proc = start_paused(data, conf, env, "import", flag)
    try:
        wait_for(flag, proc)
        own.stop()  # the server goes away mid-sync
        flag.unlink()
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            kill9(proc)
    assert proc.returncode == 2, err + out
    assert "Traceback" not in err
    assert "gave up after" in err and "cannot connect" in err
    assert "pending" in out and "stopped early" in out
    led = ledger(data)
    pending = {k: v for k, v in led.items() if v[0] == "listed"}
    assert pending and all("cannot connect" in (e or "") or "not downloaded" in (e or "") or e is None
                           for _, _, e in pending.values())
    assert any(v[0] == "imported" for v in led.values())
    st = run_status(data, conf, env)
    assert "pending" in st.stdout
    back = Moto(port=own.port)  # the server is back
    try:
        r = run_sync(data, conf, env)
        assert r.returncode == 0, r.stderr + r.stdout
    finally:
        back.stop()
    assert_complete(data, clean)


def test_listing_unreachable_server_is_reported(gpg_key, tmp_path):
    conf = write_config(tmp_path, f"http://127.0.0.1:{free_port()}")
    r = run_sync(tmp_path / "d", conf, sync_env(gpg_key))
    assert r.returncode == 2
    assert "gave up after 2 attempts" in r.stdout + r.stderr and "Traceback" not in r.stderr


class FailingProxy:
    """An HTTP proxy in front of moto that answers 500 InternalError to every GET of objects whose path
    holds ``needle`` (moto cannot make one object fail and not the others; the proxy is real HTTP,
    so botocore's own retries and our backoff run for real). Not 503 SlowDown: botocore backs off a
    throttling error at a 1 s scale (about 8 s of sleeping in this test) against 0.05 s for the others;
    that SlowDown is retried too is test_sync_units' check."""

    def __init__(self, upstream_port: int, needle: str):
        import http.client
        import http.server

        outer = self
        self.needle = needle

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _forward(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                if self.command == "GET" and outer.needle and outer.needle in self.path and "list-type" not in self.path:
                    x = b"<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>"
                    self.send_response(500)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(x)))
                    self.end_headers()
                    self.wfile.write(x)
                    return
                c = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                hdrs = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                hdrs["Host"] = f"127.0.0.1:{upstream_port}"
                c.request(self.command, self.path, body=body, headers=hdrs)
                r = c.getresponse()
                data = r.read()
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


def test_one_object_that_keeps_failing_does_not_hold_back_the_others(s3, moto, deliveries, gpg_key, tmp_path):
    upload(s3, deliveries / "A")  # the package fails, its three logs after it are imported
    stubborn = "course-data/IDBx-2026-10-04.zip"  # downloaded first, every day
    proxy = FailingProxy(moto.port, "IDBx-2026-10-04.zip")
    try:
        conf, env, data = write_config(tmp_path, proxy.url), sync_env(gpg_key), tmp_path / "d"
        for _ in range(2):  # two days in a row: the same object fails, everything else is done
            r = run_sync(data, conf, env)
            assert r.returncode == 2, r.stderr + r.stdout
            assert "stopped early" not in r.stdout
            led = ledger(data)
            state, _, err = led[stubborn]
            assert state == "listed" and "InternalError" in err
            assert all(v[0] == "imported" for k, v in led.items() if k != stubborn), led
    finally:
        proxy.stop()
    r = run_sync(data, write_config(tmp_path, moto.url), env)  # S3 serves it again
    assert r.returncode == 0, r.stderr + r.stdout
    assert ledger(data)[stubborn][0] == "imported"


def test_object_deleted_from_s3_before_its_import_is_reported_once(s3, moto, deliveries, gpg_key, tmp_path):
    upload(s3, deliveries / "A")
    conf, env, data, flag = write_config(tmp_path, moto.url), sync_env(gpg_key), tmp_path / "d", tmp_path / "p"
    proc = start_paused(data, conf, env, "download", flag)  # inside the first (multipart) download
    wait_for(flag, proc)
    kill9(proc)
    assert list((data / "downloads").rglob("*.part"))
    s3.delete_object(Bucket=PKG_BUCKET, Key="IDBx-2026-10-04.zip")
    r = run_sync(data, conf, env)
    assert r.returncode == 2, r.stderr + r.stdout
    assert "deleted from the bucket before it was imported" in r.stderr + r.stdout and "1 failed" in r.stdout
    state, _, err = ledger(data)["course-data/IDBx-2026-10-04.zip"]
    assert state == "gone" and "deleted from the bucket" in err
    assert not [p for p in (data / "downloads").rglob("*") if p.is_file()]  # no partial download left
    st = run_status(data, conf, env)
    assert "IDBx-2026-10-04.zip" in st.stdout and "gone" in st.stdout
    r = run_sync(data, conf, env)  # reported once; nothing else to do
    assert r.returncode == 0, r.stderr + r.stdout


def test_status_counts_the_days_the_store_holds(s3, moto, deliveries, gpg_key, tmp_path):
    """A day imported whole, then re-delivered broken and deleted from S3 (helper-70): `status` listed it
    as a missing day and said "deleted from the bucket before it was imported", and a day's second copy
    (edge) counted as a second day. Coverage now comes from what the store holds, like the dashboard's
    data-health page, and the ledger says that the version imported before stays."""
    if not HAS_EVENTS:
        pytest.skip("no events importer")
    upload(s3, deliveries / "A")
    conf, env, data = write_config(tmp_path, moto.url), sync_env(gpg_key), tmp_path / "d"
    assert run_sync(data, conf, env).returncode == 0
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=EV_BUCKET)["Contents"])
    days = sorted({k.rsplit("events-", 1)[1][:10] for k in keys})
    first, middle = keys[0], keys[len(keys) // 2]
    edge = first.replace("/edx/", "/edge/").replace("-edx-", "-edge-")
    s3.copy_object(Bucket=EV_BUCKET, Key=edge, CopySource={"Bucket": EV_BUCKET, "Key": first})
    s3.put_object(Bucket=EV_BUCKET, Key=middle, Body=b"this log was never encrypted\n" * 150)
    before = counts(data)
    assert run_sync(data, conf, env).returncode == 2
    s3.delete_object(Bucket=EV_BUCKET, Key=middle)
    r = run_sync(data, conf, env)
    state, _, err = ledger(data)[f"{EV_BUCKET}/{middle}"]
    assert state == "gone" and "before its new version was imported" in err and "stays in the store" in err, err
    assert counts(data)["events"] == before["events"]  # the edge copy is all duplicates
    st = run_status(data, conf, env)
    line = next(ln for ln in st.stdout.splitlines() if ln.startswith("event logs:"))
    assert line.startswith(f"event logs: {len(days)} days imported, {days[0]} to {days[-1]}"), line
    assert "missing" not in line, line


def test_run_that_fails_is_summarised_as_failed(s3, moto, gpg_key, tmp_path):
    conf, env, data = write_config(tmp_path, moto.url), sync_env(gpg_key), tmp_path / "d"
    r = run_sync(data, conf, env, "--packages-bucket", "no-such-bucket", "--only", "packages")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    ((status, summary),) = q(data, "SELECT status, summary FROM _edx_sync_runs")
    assert status == "failed" and summary.startswith("sync failed"), summary


def test_many_foreign_keys_are_counted_not_listed(s3, moto, gpg_key, tmp_path):
    for i in range(13):
        s3.put_object(Bucket=PKG_BUCKET, Key=f"IDBx-readme-{i:02d}.txt", Body=b"not ours")
    r = run_sync(tmp_path / "d", write_config(tmp_path, moto.url), sync_env(gpg_key), "--only", "packages")
    assert r.returncode == 0, r.stderr + r.stdout
    flat = " ".join(r.stderr.split())
    assert flat.count("not an edX name for IDBx") == 10  # 10 named, then one line for the rest
    assert "readme-00.txt" in flat and "readme-12.txt" not in flat
    assert "3 more keys that are not edX names for IDBx" in flat


# -- secrets ---------------------------------------------------------------------------------------------

def test_passphrase_never_in_argv_logs_or_ledger_and_key_file_import(s3, moto, gpg_key, tmp_path):
    home, fpr, pw = gpg_key
    # a small delivery (a one-course package and a log): the keyring `--key-file` makes protects the key with
    # gpg's own S2K calibration, so each member's unlock costs ~0.3 s of gpg-agent CPU
    generate(tmp_path / "K", SyntheticConfig(org="IDBx", seed=2, courses=1, learners=10, days=1, start="2026-10-01",
                                             encrypt_to=fpr, gnupghome=str(home), malformed=False))
    upload(s3, tmp_path / "K")
    # the private key as edX's partner would hand it to us: a key file
    key_file = tmp_path / "org-private.asc"
    r0, w0 = os.pipe()
    os.write(w0, pw.encode() + b"\n")
    os.close(w0)
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase-fd",
                    str(r0), "--armor", "--export-secret-keys", "-o", str(key_file), fpr], check=True, pass_fds=(r0,),
                   capture_output=True)
    os.close(r0)
    conf, data = write_config(tmp_path, moto.url), tmp_path / "d"
    env = sync_env(gpg_key)
    env.pop("GNUPGHOME")
    proc = subprocess.Popen(cli_args(data, conf, "sync", *ONLY, "--key-file", str(key_file)), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    needle = pw.encode()
    hits: list[str] = []
    seen_gpg = [0]

    def scan() -> None:
        while proc.poll() is None:
            for d in Path("/proc").iterdir():
                if not d.name.isdigit():
                    continue
                try:
                    cmd = (d / "cmdline").read_bytes()
                except OSError:
                    continue
                if needle in cmd:
                    hits.append(f"cmdline of {d.name}: {cmd!r}")
                if cmd.startswith(b"gpg") or b"/gpg\0" in cmd or cmd.startswith(b"gpg-agent"):
                    seen_gpg[0] += 1
                    try:
                        if needle in (d / "environ").read_bytes():
                            hits.append(f"environment of {d.name} ({cmd[:40]!r})")
                    except OSError:
                        pass
            time.sleep(0.005)

    t = threading.Thread(target=scan)
    t.start()
    out, err = proc.communicate(timeout=300)
    t.join()
    assert proc.returncode == 0, err.decode()
    assert seen_gpg[0] > 0  # the scan did see gpg at work
    assert hits == []
    assert needle not in out and needle not in err
    gnupg = data / "gnupg"
    assert gnupg.is_dir() and (gnupg.stat().st_mode & 0o777) == 0o700
    assert "default-cache-ttl 0" in (gnupg / "gpg-agent.conf").read_text()
    for f in data.rglob("*"):  # the ledger (catalog), the lake, downloads: no trace of it
        if f.is_file() and "gnupg" not in f.parts:
            assert needle not in f.read_bytes(), f
    text = str(q(data, "SELECT * FROM _edx_ledger")) + str(q(data, "SELECT * FROM _edx_sync_runs"))
    assert pw not in text
    subprocess.run(["gpgconf", "--homedir", str(gnupg), "--kill", "all"], check=False)


def test_user_errors_are_clear(tmp_path, gpg_key):
    env = sync_env(gpg_key)
    conf = tmp_path / "empty.toml"
    conf.write_text("")
    r = run_cli(cli_args(tmp_path / "d", conf, "sync")[len(ENTRY):], env=env)
    assert r.returncode == 1 and "no organisation" in r.stderr and "Traceback" not in r.stderr
    r = run_cli(cli_args(tmp_path / "d", conf, "sync", "--org", "IDBx", "--since", "yesterday")[len(ENTRY):], env=env)
    assert r.returncode == 1 and "YYYY-MM-DD" in r.stderr
    r = run_status(tmp_path / "d", conf, env)
    assert r.returncode == 0 and "no sync has run" in r.stdout
