"""`build --store postgresql://...` with values holding NUL (U+0000), which PostgreSQL text cannot hold: one
learner's event with a \\u0000 escape (or a table value with ``\\0``) stopped the build of the whole store,
every night. The import removes NUL (test_nul_values.py); the models are then the same on both engines. A
store an older version imported, which still holds NULs, is copied without them instead of failing."""

from __future__ import annotations

import gzip
import json

import pytest

from edx_engine.models import MODELS, Params, build_duckdb, build_postgres, read_model

from conftest import new_pg_database
from models_support import PARITY_PARAMS_AT, engine_rows, parity_entries, synthetic_store


def _nul_day(pkg, out) -> None:
    """A day (2026-10-03) of one learner's events of the synthetic delivery, with \\u0000 in many fields."""
    src = sorted(pkg.rglob("*-edx-events-*.log.gz"))[0]
    base = []
    for x in gzip.open(src, "rb"):
        try:
            base.append(json.loads(x))
        except ValueError:  # the synthetic delivery's malformed lines
            continue
    video = next(e for e in base if e["event_type"] == "play_video" and e["context"].get("user_id"))
    server = next(e for e in base if e["event_type"] == "problem_check" and e["event_source"] == "server")

    def at(e, sec, **kw):
        e = json.loads(json.dumps(e))
        e.update(time=f"2026-10-03T10:00:{sec:02d}.000000+00:00", **kw)
        return e

    ctx = video["context"]
    lines = [at(video, 1, event_type="play_video\u0000"), at(video, 2, username=video["username"] + "\u0000"),
             at(video, 3, context={**ctx, "course_id": ctx["course_id"] + "\u0000"}),
             at(video, 4, event=json.dumps({**json.loads(video["event"]), "id": "vid\u0000eo"})),
             at(video, 5, name="edx.video.\u0000played", event_source="brow\u0000ser"),
             at(server, 6, event={**server["event"], "problem_id": "p\u0000x", "success": "corr\u0000ect"}),
             at(server, 7, event_type="edx.course.enrollment.activated",
                event={"course_id": ctx["course_id"], "user_id": ctx["user_id"], "mode": "aud\u0000it"})]
    out.mkdir(parents=True, exist_ok=True)
    with gzip.open(out / "idbx-edx-events-2026-10-03.log.gz", "wb") as f:
        f.write(b"".join(json.dumps(e, ensure_ascii=True).encode() + b"\n" for e in lines))


def _store(tmp):
    from edx_engine.cli import run_import
    from edx_engine.config import resolve

    lake, manifest = synthetic_store(tmp, courses=1, learners=20, days=2)
    _nul_day(tmp / "pkg", tmp / "nul")
    _, events = run_import(resolve(data_dir=str(lake.root)), [tmp / "nul"], quiet=True)
    assert events.events == 7 and events.rejected == 0
    return lake, manifest


def _same_models(lake, url, entries, params) -> None:
    for name in MODELS:
        d, p = read_model(lake, name), read_model(lake, name, store=url)
        assert d.column_names == p.column_names, name
        assert engine_rows(d) == engine_rows(p), name


def test_nul_in_events_builds_the_same_on_postgresql(tmp_path, pg_server):
    lake, manifest = _store(tmp_path)
    url = new_pg_database(pg_server)
    entries, params = parity_entries(manifest), Params(built_at=PARITY_PARAMS_AT)
    build_duckdb(lake, entries, params)
    build_postgres(lake, url, entries, params)  # stopped: "Attempting to write a VARCHAR value with a NULL-byte"
    _same_models(lake, url, entries, params)


def test_store_still_holding_nul_is_copied_without_it(tmp_path, pg_server, monkeypatch):
    """A store imported before the import removed NUL: the copy to PostgreSQL removes it."""
    import psycopg

    import edx_engine.ingest.events_duck as D

    monkeypatch.setattr(D, "strip_nul", lambda t: (t, 0), raising=False)  # an import as older versions made it
    lake, manifest = _store(tmp_path)
    with lake.connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM events WHERE contains(event_type, chr(0))").fetchone() == (1,)
    url = new_pg_database(pg_server)
    build_postgres(lake, url, parity_entries(manifest), Params(built_at=PARITY_PARAMS_AT))
    with psycopg.connect(url) as pg:
        assert pg.execute("SELECT count(*) FROM edx_raw.events WHERE event_type = 'play_video' "
                          "AND event_date = '2026-10-03'").fetchone() == (5,)  # 'play_video\0' among them


@pytest.fixture(autouse=True)
def _no_store_env(monkeypatch):
    for k in ("EDX_ENGINE_STORE", "EDX_ENGINE_DATA_DIR", "EDX_ENGINE_CONFIG"):
        monkeypatch.delenv(k, raising=False)
