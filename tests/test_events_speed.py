"""The events import's fixed costs and parallelism (issue 15, "a day's import at full speed").

No timings: each test checks the behaviour that makes small and medium days fast. A medium day
(a few MB compressed, tens of MB of JSON) is parsed by both consumers, the lake is walked for
garbage once per run rather than once per file, and the part files keep dictionaries only where
values repeat. Row values are compared with the same file imported inline (the old path)."""

from __future__ import annotations

import gzip
import json
import random
import threading
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from edx_engine.decrypt import GpgSettings
from edx_engine.ingest import events
from edx_engine.ingest.sources import discover
from edx_engine.store.lake import Lake

COURSES = ["course-v1:IDBx+CS101+2025_T1", "IDBx/CS200/2015_T1"]


def bad_lines(n: int) -> int:
    """How many of ``day_lines(n)`` are not JSON."""
    return sum(1 for i in range(n) if i % 97 == 50)


def day_lines(n: int, seed: int = 3) -> bytes:
    """``n`` varied lines (random ids keep gzip from shrinking them to nothing), every 97th not JSON."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 97 == 50:
            out.append(b"not json at all")
            continue
        cid = COURSES[i % 2]
        d = {"username": f"u{rng.randrange(500)}", "event_source": "browser", "event_type": "play_video",
             "time": f"2025-10-09T{i * 86400 // n // 3600:02d}:{i * 86400 // n % 3600 // 60:02d}:00.{i % 1000:06d}+00:00",
             "event": json.dumps({"id": f"v-{rng.getrandbits(64):016x}", "currentTime": rng.random()}),
             "context": {"course_id": cid, "user_id": rng.randrange(1, 500), "path": "/event"},
             "page": f"https://courses.edx.org/courses/{cid}/courseware/{rng.getrandbits(64):016x}/",
             "session": f"{rng.getrandbits(128):032x}", "ip": f"10.0.{rng.randrange(256)}.{rng.randrange(256)}"}
        out.append(json.dumps(d).encode())
    return b"\n".join(out) + b"\n"


@pytest.fixture(scope="module")
def medium_day(tmp_path_factory) -> Path:
    """A day of about 1.1 MB as .log.gz: above INLINE_BELOW, far below the former 16 MB threshold."""
    folder = tmp_path_factory.mktemp("medium")
    p = folder / "idbx-edx-events-2025-10-09.log.gz"
    p.write_bytes(gzip.compress(day_lines(15_000), compresslevel=6))
    assert events.INLINE_BELOW <= p.stat().st_size < 16 << 20
    return p


def _import(data: Path, *paths: Path, workers: int | None = None):
    lake = Lake(data)
    with lake.writer():
        lake.init()
        srcs = [s for s in discover(list(paths)).sources if s.events]
        return import_events_(lake, srcs, workers)


def import_events_(lake, srcs, workers):
    return events.import_events(lake, srcs, GpgSettings(), workers=workers)


def _rows(data: Path) -> list[tuple]:
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        return con.execute("SELECT line, event_id, time, username, user_id, course_id, event, page, session "
                           "FROM events ORDER BY line").fetchall()


def _engines(monkeypatch) -> list:
    """The DuckDB engines the imports make (their ``threaded``: a reader thread and two consumers)."""
    made: list = []
    init = events._DuckEngine.__init__

    def recording(self, workers):
        init(self, workers)
        made.append(self)

    monkeypatch.setattr(events._DuckEngine, "__init__", recording)
    return made


def test_a_medium_day_is_parsed_by_both_consumers(medium_day, tmp_path, monkeypatch):
    """The thread choice follows the input size as stored (compressed): a 1.1 MB .log.gz holds
    about 6 MB of JSON and used to run in one thread (the threshold was 16 MB of input)."""
    made = _engines(monkeypatch)
    summary = _import(tmp_path / "auto", medium_day)  # workers=None: the import decides
    assert summary.events == 15_000 - bad_lines(15_000) and summary.rejected == bad_lines(15_000)
    assert [e.threaded for e in made] == [True] and len(made[0].others) == events.CONSUMERS - 1
    _import(tmp_path / "inline", medium_day, workers=0)
    assert [e.threaded for e in made] == [True, False]
    assert _rows(tmp_path / "auto") == _rows(tmp_path / "inline")


def test_a_tiny_day_stays_in_the_calling_thread(tmp_path, monkeypatch):
    folder = tmp_path / "tiny"
    folder.mkdir()
    p = folder / "idbx-edx-events-2025-10-09.log.gz"
    p.write_bytes(gzip.compress(day_lines(200)))
    made = _engines(monkeypatch)
    assert _import(tmp_path / "store", p).events == 200 - bad_lines(200)
    assert [e.threaded for e in made] == [False]
    assert not [t for t in threading.enumerate() if t.name in ("events-reader", "events-sql")]


def test_garbage_is_collected_once_per_run_and_replaced_parts_go(tmp_path, monkeypatch):
    """Walking the lake for unreferenced files costs as much as the store is big: once per run."""
    folder = tmp_path / "logs"
    folder.mkdir()
    paths = []
    for day in ("09", "10", "11"):
        p = folder / f"idbx-edx-events-2025-10-{day}.log.gz"
        p.write_bytes(gzip.compress(day_lines(300, seed=int(day)).replace(b"2025-10-09T", f"2025-10-{day}T".encode())))
        paths.append(p)
    data = tmp_path / "store"
    calls = []
    collect = Lake.collect_garbage
    monkeypatch.setattr(Lake, "collect_garbage", lambda self, con=None: (calls.append(1), collect(self, con))[1])
    assert len(_import(data, *paths).loaded) == 3
    assert len(calls) == 1  # was one per file
    calls.clear()
    first_parts = {p for p in (data / "lake" / "events").rglob("*.parquet")}
    paths[0].write_bytes(gzip.compress(day_lines(250, seed=9)))  # the same source delivered again, changed
    summary = _import(data, *paths)
    assert [f.status for f in summary.files] == ["loaded", "unchanged", "unchanged"]
    assert len(calls) == 1
    now = {p for p in (data / "lake" / "events").rglob("*.parquet")}
    gone = first_parts - now
    assert len(gone) == 1 and "date=2025-10-09" in str(next(iter(gone)))  # the replaced day's old part
    assert summary.replaced == 300 - bad_lines(300) and summary.events == 250 - bad_lines(250)


def test_parts_keep_dictionaries_only_for_repeating_columns(medium_day, tmp_path):
    _import(tmp_path / "store", medium_day, workers=0)
    part = next((tmp_path / "store" / "lake" / "events").rglob("*.parquet"))
    meta = pq.ParquetFile(part).metadata
    names = [meta.schema.column(i).path for i in range(meta.num_columns)]

    def dictionary(col: str) -> bool:
        c = meta.row_group(0).column(names.index(col))
        return any("DICTIONARY" in e for e in c.encodings)

    assert dictionary("username") and dictionary("course_id") and dictionary("page") and dictionary("source_key")
    for col in ("event_id", "time", "event", "context", "line"):
        assert not dictionary(col), col


# -- a commit's fixed costs and decryption ahead (issue 15, second round) ----------------------

class _Recording:
    """A catalog connection that records the views its statements create."""

    def __init__(self, con, created: list[str]):
        self._con, self._created = con, created

    def execute(self, sql, *args):
        head = " ".join(str(sql).split()[:6]).upper()
        if head.startswith("CREATE OR REPLACE VIEW") or head.startswith("CREATE VIEW"):
            self._created.append(str(sql).split()[4 if head.startswith("CREATE OR") else 2])
        return self._con.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._con, name)


def _day(folder: Path, day: str, n: int, bad: bool = True) -> Path:
    folder.mkdir(exist_ok=True)
    lines = day_lines(n, seed=int(day[-2:])).replace(b"2025-10-09T", f"{day}T".encode())
    if not bad:
        lines = b"\n".join(ln for ln in lines.split(b"\n") if ln != b"not json at all")
    p = folder / f"idbx-edx-events-{day}.log.gz"
    p.write_bytes(gzip.compress(lines))
    return p


def test_a_commit_recreates_only_the_views_that_list_files(tmp_path, monkeypatch):
    """Creating a view binds every file it lists, so a commit re-creates ``events`` and ``events_all``
    only (the family views select from ``events`` by name) and ``quarantine`` only when its files
    changed; the family views still see the new rows."""
    data = tmp_path / "store"
    _import(data, _day(tmp_path / "a", "2025-10-09", 300))
    created: list[str] = []
    transaction = Lake.transaction

    def recording(self, purpose, collect=False):
        cm = transaction(self, purpose, collect)
        con = cm.__enter__()

        class _Cm:
            def __enter__(self_):
                return _Recording(con, created)

            def __exit__(self_, *exc):
                return cm.__exit__(*exc)
        return _Cm()

    monkeypatch.setattr(Lake, "transaction", recording)
    # the glob views (store/views.py) are the same after a commit: none is re-created
    _import(data, _day(tmp_path / "b", "2025-10-10", 200, bad=False))  # no rejected line
    assert sorted(created) == []
    created.clear()
    _import(data, _day(tmp_path / "c", "2025-10-11", 200))  # rejected lines: a new quarantine file
    assert sorted(created) == ["quarantine"]
    monkeypatch.undo()
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        per_day = dict(con.execute("SELECT CAST(event_date AS VARCHAR), count(*) FROM events_video GROUP BY 1").fetchall())
        q = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    assert per_day == {"2025-10-09": 300 - bad_lines(300), "2025-10-10": 200 - bad_lines(200),
                       "2025-10-11": 200 - bad_lines(200)}
    assert q == bad_lines(300) + bad_lines(200)


def test_the_next_files_decryption_starts_ahead_and_gives_the_same_store(gpg_key, tmp_path, monkeypatch):
    """Each encrypted day's key unlock (0.1-0.5 s in gpg-agent) overlaps the previous day's parse and
    commit: two gpg runs at once, never more, one per file; the rows are those of the plain files.
    Importing the same files again decrypts none of them but the first, started before the store
    was read and stopped when it turned out unchanged."""
    from conftest import gpg_encrypt
    from test_gpg_passphrase import decrypt_runs, gpg_spy, max_overlap

    from edx_engine.decrypt import gpg_session

    home, fpr, pw = gpg_key
    plain, enc = tmp_path / "plain", tmp_path / "enc"
    enc.mkdir()
    for day in ("2025-10-09", "2025-10-10", "2025-10-11"):
        p = _day(plain, day, 3000)  # ~0.5 MB compressed: gpg waits on a full pipe until its turn
        gpg_encrypt(home, fpr, p, enc / (p.name + ".gpg"))
    spy, log = gpg_spy(tmp_path)
    monkeypatch.setenv("PATH", f"{spy}:{__import__('os').environ['PATH']}")

    committed: list[int] = []  # when each file's commit ended (the clock of the spy's `date +%s%N`)
    commit = events._commit
    monkeypatch.setattr(events, "_commit", lambda *a, **k: (commit(*a, **k), committed.append(time.time_ns()))[0])

    def run(data: Path, folder: Path):
        lake = Lake(data)
        with gpg_session(GpgSettings(str(home), pw)) as gpg, lake.writer():
            lake.init()
            return events.import_events(lake, [s for s in discover([folder]).sources if s.events], gpg)

    summary = run(tmp_path / "s-enc", enc)
    assert [f.status for f in summary.files] == ["loaded"] * 3
    starts = [int(ln.split()[2]) for ln in decrypt_runs(log)]
    assert len(starts) == 3 and max_overlap(log) <= 2  # one file ahead, not more
    # file k+1's gpg started before file k was committed (it used to start after)
    assert starts[1] < committed[0] and starts[2] < committed[1], (starts, committed)
    _import(tmp_path / "s-plain", plain)
    def no_id(data: Path) -> list[tuple]:  # event ids hash the source key, which names the file's path
        return sorted(r[:1] + r[2:] for r in _rows(data))

    assert no_id(tmp_path / "s-enc") == no_id(tmp_path / "s-plain")
    assert len(_rows(tmp_path / "s-enc")) == 3 * (3000 - bad_lines(3000))
    log.unlink()
    again = run(tmp_path / "s-enc", enc)
    assert [f.status for f in again.files] == ["unchanged"] * 3
    assert len(decrypt_runs(log)) <= 1
    assert not [t for t in threading.enumerate() if t.name == "gpg-status"]


def test_an_interrupt_in_the_last_commits_collection_keeps_the_committed_file(tmp_path, monkeypatch):
    """The run's last commit collects garbage through its connection, after its COMMIT: Ctrl-C (or
    an I/O error) there must not delete the parts the catalog now references."""
    folder = tmp_path / "logs"
    day = _day(folder, "2025-10-09", 300)
    collect = Lake.collect_garbage

    def interrupted(self, con=None):
        if con is not None:
            raise KeyboardInterrupt
        return collect(self, con)

    monkeypatch.setattr(Lake, "collect_garbage", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _import(tmp_path / "store", day)
    monkeypatch.undo()
    with duckdb.connect(str(tmp_path / "store" / "edx.duckdb"), read_only=True) as con:
        paths = [r[0] for r in con.execute("SELECT path FROM _edx_event_parts").fetchall()]
        assert paths and all((tmp_path / "store" / p).exists() for p in paths)
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 300 - bad_lines(300)
