"""video_summary on hand-written tracking logs over two months: the right answers are written here.

A completion can be logged without any play (the mobile apps, lost events, a player that emits only
"complete"). ``viewers`` counted plays alone, so completers outnumbered viewers and the completion rate
went above 1 (1.5 on this fixture). A viewer is now a learner with a play or a completion: every
completer is a viewer and the rate, "of the learners who watched the video, the share who completed
it", lies in [0, 1].

Five learners of one course (not staff, from a synthetic package without tracking logs), video V:

- X loads V in September, completes it in October, no play ever logged;
- Y plays V twice in September, plays and completes it in October;
- Z plays V in September and in October, never completes it;
- W completes V in October from the mobile app (``edx.video.completed``), no play;
- U only loads V and a second video V2 in October (a learner of both, a viewer of neither).

September arrives first and is built; October arrives next and is built incrementally (its month
only); the result equals a full build, and PostgreSQL gives the same rows.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from edx_engine.cli import run_import
from edx_engine.config import resolve
from edx_engine.lake import Lake
from edx_engine.models import MODELS, Params, build_duckdb, build_postgres, read_model

from eventlog import learners_store, video_event, write_day
from models_support import engine_rows

V, V2 = "video-v", "video-v2"
SEP, OCT = dt.date(2026, 9, 1), dt.date(2026, 10, 1)
PARAMS = Params(built_at=dt.datetime(2026, 10, 5, 12))
VIDEO_MODELS = ["video_day", "video_month", "video_summary_month", "video_summary"]
COLUMNS = ("learners", "viewers", "plays", "completers", "nevents")

# (learner, event type, video) per day; the learners are named by letter, their accounts chosen below
DAYS = {
    "2026-09-29": [("X", "load_video", V), ("Y", "play_video", V), ("Y", "play_video", V), ("Z", "play_video", V)],
    "2026-10-02": [("X", "complete_video", V), ("Y", "play_video", V), ("Y", "complete_video", V),
                   ("Z", "play_video", V), ("W", "edx.video.completed", V), ("U", "load_video", V),
                   ("U", "load_video", V2)],
}
# video_summary_month, hand-computed: each learner counted in the first month they met the condition
MONTHS = {
    (V, SEP): dict(learners=3, viewers=2, plays=3, completers=0, nevents=4),  # X Y Z; viewers Y Z
    (V, OCT): dict(learners=2, viewers=2, plays=2, completers=3, nevents=6),  # new: W U; viewers X W; X Y W
    (V2, OCT): dict(learners=1, viewers=0, plays=0, completers=0, nevents=1),  # U
}
SUMMARY = {  # video_summary: learners X Y Z W U, viewers X Y Z W, completers X Y W
    V: dict(learners=5, viewers=4, plays=5, completers=3, nevents=10, completion_rate=0.75),
    V2: dict(learners=1, viewers=0, plays=0, completers=0, nevents=1, completion_rate=None),
}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, Path, str]:
    """(store with the package imported and no events, directory of the two days' logs, course id)."""
    tmp = tmp_path_factory.mktemp("video")
    data, _, rows = learners_store(tmp, exclude_staff=True)
    course = rows[0][2]
    accounts = dict(zip("XYZWU", sorted({(uid, name) for uid, name, c, _ in rows if c == course})))
    assert len(accounts) == 5
    logs = tmp / "logs"
    for day, events in DAYS.items():
        write_day(logs / day, [video_event(accounts[who][1], accounts[who][0], course, etype, video,
                                           f"{day}T10:{n:02d}:00+00:00")
                               for n, (who, etype, video) in enumerate(events)], day)
    return data, logs, course


def _store(base, dest: Path) -> Lake:
    data, _, _ = base
    shutil.copytree(data, dest)
    return Lake(dest)


def _import_day(lake: Lake, base, day: str) -> None:
    run_import(resolve(data_dir=str(lake.root)), [base[1] / day], quiet=True)


def _summary(lake: Lake, course: str, store: str | None = None) -> dict[str, dict]:
    return {r["video_id"]: {k: r[k] for k in (*COLUMNS, "completion_rate")}
            for r in read_model(lake, "video_summary", store=store).to_pylist() if r["course_id"] == course}


def _months(lake: Lake, course: str) -> dict[tuple, dict]:
    return {(r["video_id"], r["month"]): {k: r[k] for k in COLUMNS}
            for r in read_model(lake, "video_summary_month").to_pylist() if r["course_id"] == course}


def test_completion_without_play_incremental_equals_full(base, tmp_path):
    lake = _store(base, tmp_path / "store")
    course = base[2]
    _import_day(lake, base, "2026-09-29")
    build_duckdb(lake, [], PARAMS, threads=1)
    # September alone: X loaded V, Y and Z played it, nobody completed it
    assert _summary(lake, course) == {V: dict(learners=3, viewers=2, plays=3, completers=0, nevents=4,
                                              completion_rate=0.0)}
    assert _months(lake, course) == {(V, SEP): MONTHS[(V, SEP)]}

    _import_day(lake, base, "2026-10-02")
    built = {m.name: m for m in build_duckdb(lake, [], PARAMS, threads=1).models}
    assert built["video_summary_month"].days == 1  # October recomputed, September kept
    assert _months(lake, course) == MONTHS
    assert _summary(lake, course) == SUMMARY
    # the monthly parts add up to the all-time distinct counts
    for video, want in SUMMARY.items():
        for k in COLUMNS:
            assert sum(m[k] for (v, _), m in MONTHS.items() if v == video) == want[k], (video, k)

    incremental = {n: engine_rows(read_model(lake, n)) for n in MODELS}
    shutil.copytree(lake.root, tmp_path / "full")
    full = Lake(tmp_path / "full")
    build_duckdb(full, [], PARAMS, force=True, threads=1)
    for n in MODELS:
        assert engine_rows(read_model(full, n)) == incremental[n], n


def test_completion_without_play_on_postgresql(base, tmp_path, pg_url):
    """The same two steps built on PostgreSQL (incrementally) give DuckDB's rows."""
    lake = _store(base, tmp_path / "store")
    course = base[2]
    for day in DAYS:
        _import_day(lake, base, day)
        build_postgres(lake, pg_url, [], PARAMS)
    assert _summary(lake, course, store=pg_url) == SUMMARY
    on_pg = {n: engine_rows(read_model(lake, n, store=pg_url)) for n in VIDEO_MODELS}
    build_duckdb(lake, [], PARAMS, threads=1)
    for n in VIDEO_MODELS:
        assert engine_rows(read_model(lake, n)) == on_pg[n], n
