"""Which tracking-log file is which source (issue 11, item 1).

Two files of the same name from two places (two folders, two S3 keys) are two sources: both are
kept, exact duplicate events left out once. Only the same source delivered again (same path or
S3 key, new content) replaces its rows, and a replacement that removes more than 10 % of a day's
events is reported. The summary's store figure is the change of ``SELECT count(*) FROM events``.
Stores made before sources had an origin keep their bare keys: nothing of them is re-imported.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import duckdb

from edx_engine.ingest import events as events_mod
from edx_engine.ingest.events import REPLACE_WARN_SHARE

from conftest import _gpg, gpg_encrypt
from test_events import ev, q, row, run, write_log
from test_sync import EV_BUCKET, counts, deliveries, gpg_key, moto, run_sync, s3, sync_env, upload, write_config  # noqa: F401

DAY = "2016-10-12"


def evs(prefix: str, n: int, hour: int = 10) -> list[dict]:
    """``n`` distinct events of DAY (their sessions are ``prefix0`` ...)."""
    return [ev(session=f"{prefix}{i}", time=f"{DAY}T{hour:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z") for i in range(n)]


def count_events(data: Path) -> int:
    if not (data / "edx.duckdb").exists():
        return 0
    return row(data, "SELECT count(*) FROM events")[0]


def sessions(data: Path) -> list[str]:
    return sorted(r[0] for r in q(data, "SELECT session FROM events"))


def test_same_name_in_two_folders_is_two_sources(tmp_path):
    """`import a/x b/x`: 30 and 10 events, 2 of b's are lines of a's. Before, b replaced a
    (the store kept 10) while the summary said 40."""
    a_lines, b_only = evs("a", 30), evs("b", 8)
    a = write_log(tmp_path / "a", a_lines, date=DAY)
    b = write_log(tmp_path / "b", b_only + a_lines[:2], date=DAY)
    data = tmp_path / "d"
    s = run(data, a, b)
    assert [f.status for f in s.files] == ["loaded", "loaded"] and s.events == 40
    expected = sorted({d["session"] for d in a_lines + b_only})  # 38 distinct events
    assert sessions(data) == expected
    assert s.added == count_events(data) == 38 and s.duplicates == 2
    assert "(+38 in the store)" in s.one_line()
    keys = q(data, "SELECT source_key, source_file, origin FROM _edx_event_files ORDER BY source_file")
    assert [(sf, o) for _, sf, o in keys] == [(str(a), str(a.resolve())), (str(b), str(b.resolve()))]
    assert all(k.startswith(f"idbx-edx-events-{DAY}@") for k, _, _ in keys) and keys[0][0] != keys[1][0]
    assert row(data, "SELECT count(*) FROM events_all")[0] == 40
    # both are now known: a second run changes nothing
    s2 = run(data, b, a)
    assert [f.status for f in s2.files] == ["unchanged", "unchanged"] and s2.added == 0
    assert count_events(data) == 38
    # the other import order ends in the same store (the copy kept does not depend on the order)
    data2 = tmp_path / "d2"
    run(data2, b)
    run(data2, a)
    cols = "SELECT session, source_file, line FROM events ORDER BY ALL"
    assert q(data2, cols) == q(data, cols)


def test_summary_never_counts_rows_the_store_does_not_hold(tmp_path):
    """Over a sequence of runs (new sources, copies, replacements, unchanged files), the summary's
    store figure is exactly the change of `SELECT count(*) FROM events`."""
    data = tmp_path / "d"
    day2 = "2016-10-13"
    runs = [
        [write_log(tmp_path / "r1", evs("x", 12), date=DAY)],
        [write_log(tmp_path / "r2", evs("x", 3) + evs("y", 4), date=DAY),  # 3 copies of r1's lines
         write_log(tmp_path / "r2", [ev(session="z", time=f"{day2}T01:00:00Z")], date=day2)],
        [write_log(tmp_path / "r1", evs("x", 5), date=DAY)],  # r1 replaced by a smaller version
        [tmp_path / "r1" / f"idbx-edx-events-{DAY}.log.gz"],  # unchanged
    ]
    for paths in runs:
        before = count_events(data)
        s = run(data, *paths)
        assert s.added == count_events(data) - before, (paths, s.one_line())
        assert f"({s.added:+,} in the store" in s.one_line()
    assert sessions(data) == sorted([f"x{i}" for i in range(5)] + [f"y{i}" for i in range(4)] + ["z"])


def test_only_the_same_path_replaces_and_a_large_loss_is_reported(tmp_path):
    data = tmp_path / "d"
    f = write_log(tmp_path / "in", evs("a", 20), date=DAY)
    run(data, f)
    # a newer version of the same file that lost one event of 20 (5 %): replaced, no warning
    f = write_log(tmp_path / "in", evs("a", 19), date=DAY)
    s = run(data, f)
    assert s.files[0].status == "loaded" and s.files[0].replaced == 20 and s.added == -1
    assert not s.warnings and count_events(data) == 19
    # a version with 2 events: 17 of the day's 19 gone (89 %) is reported, in the summary and the import log
    f = write_log(tmp_path / "in", evs("a", 2), date=DAY)
    s = run(data, f)
    assert s.added == -17 and count_events(data) == 2
    assert s.warnings == [f"{f} replaced its earlier import and {DAY} lost 17 of its 19 events (89%)"]
    assert s.files[0].warning in s.files[0].message and "warnings: 1" in s.one_line()
    logged = q(data, "SELECT message FROM _edx_import_log WHERE table_name='events' ORDER BY logged_at")[-1][0]
    assert s.files[0].warning in logged
    assert 17 / 19 > REPLACE_WARN_SHARE > 1 / 20


def test_relative_and_absolute_paths_of_one_file_are_one_source(tmp_path, monkeypatch):
    f = write_log(tmp_path / "in", evs("a", 3), date=DAY)
    data = tmp_path / "d"
    monkeypatch.chdir(tmp_path)
    s1 = run(data, Path("in") / f.name)
    s2 = run(data, f)
    assert s1.files[0].status == "loaded" and s2.files[0].status == "unchanged"
    # the same bytes under the same name somewhere else: already imported, nothing doubled
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(f, copy / f.name)
    s3 = run(data, copy / f.name)
    assert s3.files[0].status == "unchanged" and "the same bytes" in s3.files[0].message
    assert row(data, "SELECT count(*) FROM events_all")[0] == 3


# --- stores made before sources had an origin ------------------------------------------------------

def legacy_store(tmp_path, monkeypatch, *paths: Path) -> Path:
    """A store imported with the former scheme: bare keys (in the catalog and in the Parquet
    parts' ``source_key`` column), and no ``origin`` column in ``_edx_event_files``."""
    data = tmp_path / "legacy"
    with monkeypatch.context() as m:
        m.setattr(events_mod, "_new_key", lambda name, origin, digits=10: name)
        run(data, *paths)
    with duckdb.connect(str(data / "edx.duckdb")) as con:
        con.execute("ALTER TABLE _edx_event_files DROP COLUMN origin")
        parts = [str(data / p) for (p,) in con.execute("SELECT path FROM _edx_event_parts").fetchall()]
        assert con.execute("SELECT DISTINCT source_key FROM read_parquet(?)", [parts]).fetchall() \
            == [(f"idbx-edx-events-{DAY}",)]
    return data


def lake_files(data: Path) -> list[str]:
    return sorted(p.relative_to(data).as_posix() for p in (data / "lake").rglob("*") if p.is_file())


def test_legacy_keys_stay_valid(tmp_path, monkeypatch):
    a = write_log(tmp_path / "a", evs("a", 6), date=DAY)
    data = legacy_store(tmp_path, monkeypatch, a)
    files = lake_files(data)
    # the same file again: unchanged, nothing written, the bare key kept (and its origin now recorded)
    s = run(data, a)
    assert s.files[0].status == "unchanged" and s.files[0].source_key == f"idbx-edx-events-{DAY}"
    assert lake_files(data) == files and count_events(data) == 6
    assert q(data, "SELECT source_key, origin FROM _edx_event_files") == [(f"idbx-edx-events-{DAY}", str(a.resolve()))]
    # another file of that name from another folder: a second source; the old one stays
    b = write_log(tmp_path / "b", evs("b", 4) + evs("a", 1), date=DAY)
    s = run(data, b)
    assert s.files[0].status == "loaded" and s.files[0].source_key.startswith(f"idbx-edx-events-{DAY}@")
    assert s.added == 4 and count_events(data) == 10
    # the legacy file delivered again with new content: replaces its own (bare-key) rows only
    a = write_log(tmp_path / "a", evs("a", 7), date=DAY)
    s = run(data, a)
    assert s.files[0].source_key == f"idbx-edx-events-{DAY}" and s.files[0].replaced == 6
    assert sessions(data) == sorted([f"a{i}" for i in range(7)] + [f"b{i}" for i in range(4)])
    assert row(data, "SELECT count(*) FROM _edx_event_files")[0] == 2


def test_legacy_key_matched_by_bytes_when_the_folder_moved(tmp_path, monkeypatch):
    a = write_log(tmp_path / "old-place", evs("a", 5), date=DAY)
    data = legacy_store(tmp_path, monkeypatch, a)
    files = lake_files(data)
    moved = tmp_path / "new-place"
    shutil.move(str(a.parent), moved)
    s = run(data, moved / a.name)
    assert s.files[0].status == "unchanged" and s.files[0].source_key == f"idbx-edx-events-{DAY}"
    assert lake_files(data) == files and count_events(data) == 5


# --- sync: two S3 objects of the same name ---------------------------------------------------------

def _decrypt(home: Path, passphrase: str, enc: Path, out: Path) -> list[bytes]:
    _gpg(home, "--decrypt", "-o", str(out), str(enc), passphrase=passphrase)
    return [ln for ln in gzip.decompress(out.read_bytes()).split(b"\n") if ln.strip()]


def test_sync_second_object_of_the_same_name_is_a_second_source(tmp_path, moto, s3, deliveries, gpg_key):
    """The reported attack: ``…/events/2027/idbx-edx-events-2026-10-01.log.gz.gpg`` (10 lines) next to
    the real ``…/2026/…`` replaced its events. Now both are kept; a newer version of the real
    object (same key) replaces only its own rows and the large loss is in the import log."""
    home, fpr, passphrase = gpg_key
    conf, env = write_config(tmp_path, moto.url), sync_env(gpg_key)
    upload(s3, deliveries / "A")
    clean = tmp_path / "clean"
    assert run_sync(clean, conf, env).returncode == 0
    want = counts(clean)["events"]

    name = "idbx-edx-events-2026-10-01.log.gz.gpg"
    real_key = f"idbx/edx/events/2026/{name}"
    real = next((deliveries / "A" / EV_BUCKET).rglob(name))
    real_lines = _decrypt(home, passphrase, real, tmp_path / "real.log.gz")
    extra = tmp_path / "extra"
    plain = write_log(extra, [ev(session=f"late{i}", time=f"2026-10-01T23:00:{i:02d}Z") for i in range(10)],
                      date="2026-10-01")
    s3.upload_file(str(gpg_encrypt(home, fpr, plain, extra / name)), EV_BUCKET, f"idbx/edx/events/2027/{name}")
    data = tmp_path / "d"
    r = run_sync(data, conf, env)
    assert r.returncode == 0, r.stdout + r.stderr
    per_source = dict(q(data, "SELECT source_file, count(*) FROM events_all GROUP BY 1"))
    assert per_source[f"s3://{EV_BUCKET}/{real_key}"] == len(real_lines)
    assert per_source[f"s3://{EV_BUCKET}/idbx/edx/events/2027/{name}"] == 10
    assert counts(data)["events"] == want + 10

    # a newer version of the real object (same key, 5 of its lines): replaces only its own rows
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / "v2.log.gz").write_bytes(gzip.compress(b"".join(ln + b"\n" for ln in real_lines[:5])))
    s3.upload_file(str(gpg_encrypt(home, fpr, newer / "v2.log.gz", newer / name)), EV_BUCKET, real_key)
    r = run_sync(data, conf, env)
    assert r.returncode == 0 and "1 changed" in r.stdout, r.stdout + r.stderr
    # the daily job says it as `import` does: a warning line for the object, counted in the summary
    warned = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("warning ")]
    assert len(warned) == 1 and f"s3://{EV_BUCKET}/{real_key}" in warned[0] and "2026-10-01 lost" in warned[0]
    assert warned[0].count(f"s3://{EV_BUCKET}/{real_key}") == 1  # named once (it said "warning URL: URL replaced...")
    assert r.stdout.strip().splitlines()[-1].endswith("1 warning(s)"), r.stdout
    per_source = dict(q(data, "SELECT source_file, count(*) FROM events_all GROUP BY 1"))
    assert per_source[f"s3://{EV_BUCKET}/{real_key}"] == 5
    assert per_source[f"s3://{EV_BUCKET}/idbx/edx/events/2027/{name}"] == 10
    logged = q(data, "SELECT message FROM _edx_import_log WHERE source_file = ? ORDER BY logged_at",
               f"s3://{EV_BUCKET}/{real_key}")[-1][0]
    assert "replaced its earlier import and 2026-10-01 lost" in logged, logged


def test_a_date_that_is_no_day_in_a_name_is_refused_and_the_rest_loads(tmp_path):
    """A log, a package zip or a package folder whose name holds an impossible date
    (2016-02-30, 2016-99-99) is refused with one line naming it, and the other files load. Before,
    the log stopped the whole events import with a traceback (DuckDB's date cast), and the folder's
    date, compared as text, made every later real package "older" (helper-65)."""
    import zipfile

    from cli_support import run_cli
    from test_exports import enrolments, write

    logs = tmp_path / "logs"
    good = write_log(logs, [evs("a", 3)[0], evs("b", 3)[1]], date=DAY)
    write_log(logs, [evs("c", 3)[0]], date="2016-02-30")
    bad_dir = write(tmp_path / "IDBx-2016-99-99", "student_courseenrollment", enrolments(2))
    z = tmp_path / "IDBx-2016-13-01.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(bad_dir, f"IDBx-2016-13-01/{bad_dir.name}")
    data = tmp_path / "d"
    r = run_cli(["import", "--data-dir", data, logs, bad_dir.parent, z])
    text = " ".join((r.stdout + r.stderr).split())
    assert r.returncode != 0, text
    assert "Traceback" not in text
    for name, d in (("idbx-edx-events-2016-02-30.log.gz", "2016-02-30"), ("IDBx-2016-99-99", "2016-99-99"),
                    ("IDBx-2016-13-01.zip", "2016-13-01")):
        assert name in text and f"the date {d} in" in text, (name, text)
    # one line for a folder, however many files it holds (helper-69)
    assert "IDBx-2016-99-99: the date 2016-99-99 in this folder's name is not a day of the calendar; " \
           "its 1 file(s) not imported" in text
    assert "refused: 3 (named above)" in text
    assert count_events(data) == 2
    assert q(data, "SELECT DISTINCT source_file FROM events") == [(str(good),)]
    assert not q(data, "SELECT * FROM _edx_snapshots")
    # the next real package is not held back by the refused folder
    ok = write(tmp_path / "IDBx-2016-10-16", "student_courseenrollment", enrolments(2))
    r = run_cli(["import", "--data-dir", data, ok.parent])
    assert r.returncode == 0, r.stdout + r.stderr
    assert q(data, "SELECT DISTINCT package_date::VARCHAR FROM student_courseenrollment") == [("2016-10-16",)]
