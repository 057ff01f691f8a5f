"""A full disk under the data directory, at each stage of the nightly job (helper-74).

Every case was first reproduced by hand on a real small tmpfs holding ``--data-dir``, pre-filled with a
ballast file leaving N kB free (see the report of helper-74); here each is made at its exact point by a
faked ``OSError(ENOSPC)`` or DuckDB's own error text, so that the tests run anywhere. What each
checks: one line saying the disk is full and where, a non-zero exit, nothing half-done (the rerun
after space is freed gives the store a run without the full disk gives), no input blamed.
(``test_commit_wait.py`` has the one real-tmpfs test, of the events commit; it skips where mounting is
not permitted.)"""

from __future__ import annotations

import errno
import os
import urllib.request
from pathlib import Path

import duckdb
import pytest

import cli_support
from edx_engine.synthetic import SyntheticConfig, generate

from test_sync import counts

FULL = "No space left on device"


def enospc(path: str | None = None) -> OSError:
    # Arrow's form (no file name): "Error writing bytes to file. Detail: [errno 28] No space left on device"
    return OSError(errno.ENOSPC, FULL, path) if path else OSError(errno.ENOSPC, f"Error writing bytes to file. "
                                                                              f"Detail: [errno 28] {FULL}")


@pytest.fixture(scope="module")
def delivery(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("full-delivery")
    generate(base, SyntheticConfig(org="IDBx", seed=7, courses=2, learners=30, days=2, malformed=False))
    return base


def run_cli(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDX_ENGINE_") or k == "EDX_ENGINE_SQL_CACHE"}
    env.update(COLUMNS="400")  # messages on one line
    r = cli_support.run_cli([str(a) for a in args], env=env)
    return r.returncode, r.stdout, r.stderr


@pytest.fixture(scope="module")
def clean(delivery, tmp_path_factory) -> Path:
    """A store built from the delivery on a disk that never filled: package, logs, models."""
    data = tmp_path_factory.mktemp("clean") / "d"
    rc, out, err = run_cli("import", delivery / "course-data", delivery / "edx-course-data", "--data-dir", data)
    assert rc == 0, out + err
    rc, out, err = run_cli("build", "--data-dir", data)
    assert rc == 0, out + err
    return data


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


def rows(data: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


# --- the package import ------------------------------------------------------------------------------

def test_full_disk_in_a_package_member_stops_the_package_and_blames_no_member(delivery, clean, tmp_path,
                                                                             monkeypatch):
    """The disk fills while a member's Parquet file is written (the 4th member of the package): before,
    that member and every later one were reported "failed: ... cannot read the file (OSError ...)"
    (the input blamed), and had the commit still fit, the package would have gone in without them.
    Now: one line, exit 1, nothing of the package committed, no import-log row; the rerun is whole."""
    from edx_engine.ingest import exports

    data = tmp_path / "d"
    calls = {"n": 0}
    real = exports._SnapshotWriter.write

    def write(self, cols, n):
        calls["n"] += 1
        if calls["n"] >= 4:
            raise enospc()
        return real(self, cols, n)

    monkeypatch.setattr(exports._SnapshotWriter, "write", write)
    rc, out, err = run_cli("import", delivery / "course-data", "--data-dir", data)
    assert rc == 1, out + err
    line = one_error_line(err)
    assert "no space left on device" in line and "nothing of the package was committed" in line, line
    assert "cannot read" not in out + err and "failed " not in out + err, out + err
    assert rows(data, "SELECT count(*) FROM _edx_snapshots") == [(0,)]
    assert rows(data, "SELECT count(*) FROM _edx_import_log") == [(0,)]
    assert not [p for p in (data / "lake").rglob("*") if p.is_file()]  # what it wrote is deleted at once
    monkeypatch.setattr(exports._SnapshotWriter, "write", real)
    rc, out, err = run_cli("import", delivery / "course-data", "--data-dir", data)
    assert rc == 0, out + err
    whole = {k: v for k, v in counts(clean).items() if not k.startswith("events") and k != "quarantine"}
    assert {k: v for k, v in counts(data).items() if k in whole} == whole


# --- the catalog's checkpoint --------------------------------------------------------------------------

def test_a_checkpoint_the_full_disk_refuses_when_the_catalog_closes_loses_nothing(tmp_path, monkeypatch):
    """DuckDB checkpoints a catalog when its last connection closes (DETACH); on a full disk that
    fails with "Detached database ..., but CHECKPOINT during DETACH failed ... No space left on device"
    after the transactions were committed to the write-ahead log. Seen on a real full tmpfs at the end
    of `build` (every model recorded, then a traceback and exit 1) and of the catalog's initialisation
    (a traceback before any file was read). The file is detached and the WAL holds the commits, which
    the next open applies: the close is not an error."""
    from edx_engine.store import connection

    path = tmp_path / "c.duckdb"
    con = connection.open_database(path)
    con.execute("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2)")
    key, host = con._host
    real = host.db

    class Refusing:  # the instance, with DuckDB's error for a checkpoint the full disk refused
        def __getattr__(self, name):
            return getattr(real, name)

        def execute(self, sql, *args):
            if sql.startswith("DETACH"):
                real.execute(sql)  # DuckDB detaches the file, then reports the checkpoint it could not write
                raise duckdb.IOException(f"IO Error: Detached database 'c', but CHECKPOINT during DETACH failed. "
                                         f"Checkpoint failed for database \"c\". The database has been invalidated. "
                                         f"Original error: Could not write file \"{path}\": {FULL}")
            return real.execute(sql, *args)

    host.db = Refusing()
    con.close()  # no exception
    assert key not in connection._ACTIVE and key not in connection._SHARED  # the instance goes, the next starts anew
    with connection.open_database(path, read_only=True) as again:
        assert again.execute("SELECT sum(x) FROM t").fetchone() == (3,)


def test_other_detach_errors_still_raise(tmp_path):
    from edx_engine.store import connection

    assert not connection._checkpoint_refused(duckdb.IOException("IO Error: Detached database 'c', but CHECKPOINT "
                                                                 "during DETACH failed: Input/output error"))
    assert connection._checkpoint_refused(duckdb.IOException(f"IO Error: Detached database 'c', but CHECKPOINT "
                                                             f"during DETACH failed. ... {FULL}"))


# --- the models ----------------------------------------------------------------------------------------

def test_full_disk_during_build_is_one_line_and_keeps_the_previous_models(clean, tmp_path, monkeypatch):
    """DuckDB's COPY of a model's Parquet file on a full disk raised an IOException through the CLI (a
    traceback). Now one line naming the file, exit 1; the models switch in one transaction at the end,
    so the previous ones stay, and the rerun rebuilds exactly what a build on a roomy disk does."""
    import shutil

    from edx_engine.models import build

    data = tmp_path / "d"
    shutil.copytree(clean, data)
    before = rows(data, "SELECT name, path, rows FROM _edx_models ORDER BY 1")
    real = build._DuckRun.build_whole, build._DuckRun.build_partitioned
    seen = []

    def refusing(method):
        def run(self, name, *args):
            seen.append(name)
            if len(seen) == 5:  # a few models built (written, not yet recorded), then the disk is full
                raise duckdb.IOException(f'IO Error: Could not write file "{data}/lake/model_parts/{name}/'
                                         f'.tmp-1/data_0.parquet": {FULL}')
            return method(self, name, *args)
        return run

    monkeypatch.setattr(build._DuckRun, "build_whole", refusing(real[0]))
    monkeypatch.setattr(build._DuckRun, "build_partitioned", refusing(real[1]))
    rc, out, err = run_cli("build", "--full", "--data-dir", data)
    assert rc == 1, out + err
    line = one_error_line(err)
    assert "no space left on device" in line and f"model_parts/{seen[-1]}/" in line and "no model was changed" in line, line
    assert rows(data, "SELECT name, path, rows FROM _edx_models ORDER BY 1") == before
    monkeypatch.setattr(build._DuckRun, "build_whole", real[0])
    monkeypatch.setattr(build._DuckRun, "build_partitioned", real[1])
    rc, out, err = run_cli("build", "--full", "--data-dir", data)
    assert rc == 0, out + err
    for (name,) in rows(clean, "SELECT name FROM _edx_models"):
        q = f"SELECT count(*) FROM (SELECT * EXCLUDE (created_at) FROM models.{name})" if name == "course_summary" \
            else f"SELECT count(*) FROM models.{name}"
        assert rows(data, q) == rows(clean, q), name


# --- the dashboard -------------------------------------------------------------------------------------

def test_full_disk_during_dashboard_is_one_line_and_keeps_the_published_site(clean, tmp_path, monkeypatch):
    """A page written on a full disk raised OSError through the CLI (a traceback) and left the half-made
    site in <site>/.building. Now one line, exit 1, .building removed (its space back), the published
    site as it was; the rerun publishes the site a roomy disk gives."""
    import shutil

    from edx_engine.dashboard import build as dash

    data = tmp_path / "d"
    shutil.copytree(clean, data)
    rc, out, err = run_cli("dashboard", "--data-dir", data)
    assert rc == 0, out + err
    site = data / "site"
    before = {p.relative_to(site): p.read_bytes() for p in site.rglob("*") if p.is_file()}
    real, pages = dash._render, []

    def render(env, root, lang, path, *args):
        pages.append(path)
        if len(pages) == 4:
            raise OSError(errno.ENOSPC, FULL, str(root / lang / f"{path}.html"))
        return real(env, root, lang, path, *args)

    monkeypatch.setattr(dash, "_render", render)
    rc, out, err = run_cli("dashboard", "--data-dir", data)
    assert rc == 1, out + err
    line = one_error_line(err)
    assert "no space left on device" in line and str(site) in line and "published site is unchanged" in line, line
    assert not (site / ".building").exists()
    assert {p.relative_to(site): p.read_bytes() for p in site.rglob("*") if p.is_file()} == before
    monkeypatch.setattr(dash, "_render", real)
    rc, out, err = run_cli("dashboard", "--data-dir", data)
    assert rc == 0, out + err
    assert {p.relative_to(site) for p in site.rglob("*") if p.is_file()} == set(before)


# --- the tracking logs ---------------------------------------------------------------------------------

def _full_disk_at_day(monkeypatch, day: str) -> None:
    """The disk fills when the tracking-log parts of ``day`` are written (a faked ENOSPC at that point)."""
    from edx_engine.ingest import events_pipeline as P

    real = P.PartSink._flush

    def flush(self, date):
        if day in self.label:
            raise OSError(errno.ENOSPC, FULL, str(self.dir))
        return real(self, date)

    monkeypatch.setattr(P.PartSink, "_flush", flush)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_full_disk_during_a_log_import_stops_the_run_and_marks_no_file_failed(delivery, clean, tmp_path,
                                                                            monkeypatch, jobs):
    """The disk fills while the second day's parts are written. Before: that day and every later one
    were each read to the end and recorded "failed" (a sync marked the objects failed), exit 2. Now:
    the first day stays imported, the run stops with one line and exit 1, no day is logged as failed,
    and the rerun gives the store of a roomy disk. (--jobs 2: the parallel import's committer.)"""
    data = tmp_path / "d"
    rc, out, err = run_cli("import", delivery / "course-data", "--data-dir", data)
    assert rc == 0, out + err
    _full_disk_at_day(monkeypatch, "2026-10-02")
    rc, out, err = run_cli("import", delivery / "edx-course-data", "--data-dir", data, "--jobs", jobs)
    assert rc == 1, out + err
    line = one_error_line(err)
    assert "no space left on device while importing" in line and "2026-10-02" in line and "not marked failed" in line
    assert rows(data, "SELECT count(*) FROM _edx_import_log WHERE status = 'failed'") == [(0,)]
    assert rows(data, "SELECT count(*) FROM _edx_event_files") == [(1,)]
    monkeypatch.undo()
    rc, out, err = run_cli("import", delivery / "edx-course-data", "--data-dir", data, "--jobs", jobs)
    assert rc == 0, out + err
    assert counts(data) == counts(clean)


# --- the sync ------------------------------------------------------------------------------------------

@pytest.fixture
def s3_delivery(delivery):
    """The delivery in the two buckets of an S3-protocol server on loopback (moto, as tests/test_sync.py)."""
    pytest.importorskip("moto.server")
    from test_sync import Moto, client, upload

    m = Moto()
    try:
        # moto keeps its buckets per process, not per server: another test's objects would still be there
        urllib.request.urlopen(urllib.request.Request(f"{m.url}/moto-api/reset", method="POST")).read()
        c = client(m.url)
        c.create_bucket(Bucket="course-data")
        c.create_bucket(Bucket="edx-course-data")
        upload(c, delivery)
        yield m.url
    finally:
        m.stop()


def sync_cli(data: Path, url: str) -> tuple[int, str, str]:
    conf = data.parent / "sync.toml"
    conf.write_text(f'[sync]\norg = "IDBx"\nendpoint_url = "{url}"\nretries = 2\nretry_delay = 0.01\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDX_ENGINE_", "AWS_"))
           or k == "EDX_ENGINE_SQL_CACHE"}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
               COLUMNS="400")
    r = cli_support.run_cli(["sync", "--data-dir", str(data), "--config", str(conf)], env=env)
    return r.returncode, r.stdout, r.stderr


def test_full_disk_during_a_download_stops_the_sync_and_blames_neither_s3_nor_the_object(s3_delivery, tmp_path,
                                                                                       monkeypatch):
    """A download's write on a full disk was taken for a network error: retried, then the sync stopped
    with "S3 unreachable: ... [Errno 28] No space left on device". Now: not retried, the .part removed,
    one line saying the disk is full, exit 1, no object failed; the next sync downloads everything."""
    from edx_engine.fetch import s3

    data = tmp_path / "d"
    real, calls = s3.S3Fetcher._single, []

    def single(self, obj, part, on_bytes):
        calls.append(obj.key)
        if obj.key.endswith("2026-10-02.log.gz"):
            with open(part, "wb") as f:
                f.write(b"x" * 100)
            raise OSError(errno.ENOSPC, FULL)
        return real(self, obj, part, on_bytes)

    monkeypatch.setattr(s3.S3Fetcher, "_single", single)
    monkeypatch.setattr(s3.S3Fetcher, "_ranged", lambda self, obj, part, meta, label, *a: single(self, obj, part, None))
    rc, out, err = sync_cli(data, s3_delivery)
    assert rc == 1, out + err
    line = one_error_line(err)
    assert "could not download" in line and "2026-10-02.log.gz" in line and "no space left on device" in line, line
    assert "unreachable" not in out + err and "failed " not in out + err, out + err
    assert sum(k.endswith("2026-10-02.log.gz") for k in calls) == 1  # not retried
    assert not list((data / "downloads").rglob("*.part*"))
    assert rows(data, "SELECT count(*) FROM _edx_ledger WHERE state = 'failed'") == [(0,)]
    monkeypatch.setattr(s3.S3Fetcher, "_single", real)
    monkeypatch.undo()
    rc, out, err = sync_cli(data, s3_delivery)
    assert rc == 0, out + err
    assert rows(data, "SELECT state, count(*) FROM _edx_ledger GROUP BY 1") == [("imported", 3)]


def test_full_disk_during_a_synced_import_leaves_the_object_to_the_next_sync(s3_delivery, tmp_path, monkeypatch):
    """An import the full disk stops (here a log's parts) was recorded as the object's failure, and the
    ledger write that followed on the full disk was a TransactionException traceback. Now one line,
    exit 1; the object stays downloaded (not failed) and the next sync imports it."""
    data = tmp_path / "d"
    _full_disk_at_day(monkeypatch, "2026-10-02")
    rc, out, err = sync_cli(data, s3_delivery)
    assert rc == 1, out + err
    line = one_error_line(err)
    assert "no space left on device while importing s3://" in line and "2026-10-02" in line, line
    assert rows(data, "SELECT state, count(*) FROM _edx_ledger GROUP BY 1 ORDER BY 1") == [("downloaded", 1),
                                                                                            ("imported", 2)]
    monkeypatch.undo()
    rc, out, err = sync_cli(data, s3_delivery)
    assert rc == 0, out + err
    assert rows(data, "SELECT state, count(*) FROM _edx_ledger GROUP BY 1") == [("imported", 3)]


# --- every other command -------------------------------------------------------------------------------

def test_a_full_disk_no_command_catches_is_one_line_not_a_traceback(clean, tmp_path, monkeypatch):
    """`scrub` and `locate-users` on a real full tmpfs ended in a traceback (an OSError or DuckDB's
    IOException from deep inside). The console entry point now says it in one line, exit 1, for any
    command; the stages that can say more (import, build, dashboard, sync) do so first."""
    import shutil

    from edx_engine.privacy import scrub

    data = tmp_path / "d"
    shutil.copytree(clean, data)

    def full(*args, **kwargs):
        raise duckdb.IOException(f'IO Error: Could not write file "{data}/lake/tables/x.parquet": {FULL}')

    monkeypatch.setattr(scrub, "scrub", full)
    rc, out, err = run_cli("scrub", "--data-dir", data)
    assert rc == 1, out + err
    line = one_error_line(err)
    assert line == f"error: no space left on device (writing {data}/lake/tables/x.parquet); free some space and run again"
