"""The cache of compiled model SQL (models/sqlcache.py): a warm build compiles nothing, imports no ibis,
and writes the same models as a cold one; built_at is substituted; a new input schema or a corrupt
entry misses the cache and the build stays right."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from models_support import engine_rows, synthetic_store

from edx_engine.models import Params, build_duckdb, sqlcache
from edx_engine.models import build as B
from edx_engine.models import definitions as D
from edx_engine.models.inputs import INPUTS

BUILT_AT = dt.datetime(2026, 11, 1, 12, 0, 0)
NAMES = sorted(D.MODELS)


def _snapshot(lake) -> dict[str, list[tuple]]:
    """Every model's rows through the catalog's ``models.*`` views, in a total order."""
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        return {n: con.execute(f"SELECT * FROM models.{n} ORDER BY ALL NULLS FIRST").fetchall() for n in NAMES}


def _build(lake, built_at: dt.datetime = BUILT_AT) -> None:
    res = build_duckdb(lake, [], Params(built_at=built_at), force=True, threads=1)
    assert {m.status for m in res.models} == {"built"} and len(res.models) == len(NAMES)


def _use_cache(monkeypatch, directory: Path | None) -> None:
    """Point the cache at ``directory`` (None: the store's own) and forget the in-memory entries."""
    if directory is None:
        monkeypatch.delenv(sqlcache.ENV, raising=False)
    else:
        monkeypatch.setenv(sqlcache.ENV, str(directory))
    sqlcache.clear_memory()


@pytest.fixture(scope="module")
def cold(tmp_path_factory):
    """A small store built once with an empty cache in its default place (<data-dir>/cache/model-sql)."""
    root = tmp_path_factory.mktemp("sqlcache")
    lake, _ = synthetic_store(root, courses=2, learners=60, days=3, seed=5)
    with pytest.MonkeyPatch.context() as mp:
        _use_cache(mp, None)
        before = sqlcache.stats.compiles
        _build(lake)
        compiles = sqlcache.stats.compiles - before
    sqlcache.clear_memory()
    return lake, _snapshot(lake), compiles


@pytest.fixture
def warm_dir(cold, tmp_path) -> Path:
    """A copy of the cold build's cache entries (each test may spoil its own)."""
    lake = cold[0]
    return Path(shutil.copytree(lake.root / "cache" / "model-sql", tmp_path / "cache"))


def test_cold_build_keeps_one_entry_per_model_beside_the_lake(cold):
    lake, _, compiles = cold
    files = sorted((lake.root / "cache" / "model-sql").glob("*.json"))
    assert len(files) == len(NAMES) and compiles >= len(NAMES)
    assert lake.collect_garbage() == 0 and len(list((lake.root / "cache" / "model-sql").glob("*.json"))) == len(NAMES)
    for f in files:  # no path of the store: a copied or moved store's cache stays right
        assert str(lake.root) not in f.read_text() and "read_parquet" not in f.read_text()


def test_warm_build_compiles_nothing_and_writes_the_same_models(cold, warm_dir, monkeypatch):
    lake, expected, _ = cold
    _use_cache(monkeypatch, warm_dir)

    def no_compile(self, n, days):
        raise AssertionError(f"{n} compiled on a warm build")

    monkeypatch.setattr(B._DuckRun, "_compile", no_compile)
    hits = sqlcache.stats.hits
    _build(lake)
    assert sqlcache.stats.hits - hits == len(NAMES)
    assert _snapshot(lake) == expected


def test_placeholder_sql_gives_what_inline_ibis_gives(cold):
    """An independent path: ``evaluate`` compiles course_summary and everything it reads inline (no
    placeholder, no file, no cache), as builds did before the cache."""
    lake, expected, _ = cold
    got = B.evaluate(lake, [], Params(built_at=BUILT_AT), "course_summary")
    assert engine_rows(got) == sorted(expected["course_summary"], key=repr)


PROBE = """
import json, sys
sys.argv = ["edx-engine", "build", "--full", "--data-dir", {data!r}]
from edx_engine.cli import main
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code or 0
print(json.dumps({{"code": code, "ibis": "ibis" in sys.modules, "sqlglot": "sqlglot" in sys.modules}}))
"""


def test_warm_cli_build_does_not_import_ibis(cold, warm_dir, tmp_path):
    lake, expected, _ = cold
    env = {**os.environ, sqlcache.ENV: str(warm_dir)}
    r = subprocess.run([sys.executable, "-c", PROBE.format(data=str(lake.root))], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"code": 0, "ibis": False, "sqlglot": False}
    got = _snapshot(lake)
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        built_at = con.execute("SELECT built_at FROM _edx_models WHERE name = 'course_summary'").fetchone()[0]
        cols = [r[0] for r in con.execute("DESCRIBE models.course_summary").fetchall()]
    at = cols.index("created_at")
    assert built_at != BUILT_AT and {r[at] for r in got["course_summary"]} == {built_at}
    strip = [r[:at] + r[at + 1:] for r in got.pop("course_summary")]
    assert strip == [r[:at] + r[at + 1:] for r in expected["course_summary"]]
    assert got == {n: v for n, v in expected.items() if n != "course_summary"}


@pytest.mark.parametrize("built_at", [dt.datetime(2027, 3, 9, 8, 7, 6), dt.datetime(2031, 12, 31, 23, 59, 58)])
def test_built_at_is_substituted_on_a_warm_build(cold, warm_dir, monkeypatch, built_at):
    lake, expected, _ = cold
    _use_cache(monkeypatch, warm_dir)
    compiles = sqlcache.stats.compiles
    _build(lake, built_at)
    assert sqlcache.stats.compiles == compiles
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        got = {r[0] for r in con.execute("SELECT DISTINCT created_at FROM models.course_summary").fetchall()}
    assert got == {built_at}


def test_template_from_two_sentinel_texts():
    a_, b_ = sqlcache.SENTINELS
    at = dt.datetime(2027, 3, 9, 8, 7, 6)

    def text(t: dt.datetime, form: str) -> str:
        return f"SELECT 1 AS x, {form.format(t=t)} AS created_at FROM y"

    for form, want in [("MAKE_TIMESTAMP({t.year}, {t.month}, {t.day}, {t.hour}, {t.minute}, {t.second}.0)",
                        "MAKE_TIMESTAMP(2027, 3, 9, 8, 7, 6.0)"),
                       ("TIMESTAMP '{t:%Y-%m-%d %H:%M:%S}'", "TIMESTAMP '2027-03-09 08:07:06'"),
                       ("'{t:%Y-%m-%dT%H:%M:%S}'::TIMESTAMP", "'2027-03-09T08:07:06'::TIMESTAMP")]:
        e = sqlcache.template(text(a_, form), text(b_, form))
        assert e is not None and e.render(at) == f"SELECT 1 AS x, {want} AS created_at FROM y", form
    assert sqlcache.template("SELECT 1", "SELECT 1") == sqlcache.Entry("SELECT 1")
    two = "SELECT {t.year} AS a, {t.year} AS b"  # two literals: not one clean difference
    assert sqlcache.template(two.format(t=a_), two.format(t=b_)) is None
    other = "SELECT {n} AS a"  # numbers that are not the sentinels' fields
    assert sqlcache.template(other.format(n=5), other.format(n=17)) is None


def test_a_new_input_schema_misses_the_cache_and_builds_right(cold, warm_dir, monkeypatch):
    """A column added to auth_userprofile's inputs changes its placeholder's schema: the models reading
    it directly get a new key and are compiled; the others (reading model files) still hit."""
    lake, expected, _ = cold
    _use_cache(monkeypatch, warm_dir)
    monkeypatch.setitem(INPUTS["auth_userprofile"], "city", "VARCHAR")
    readers = [n for n in NAMES if "auth_userprofile" in D.MODELS[n].inputs]
    misses, hits = sqlcache.stats.misses, sqlcache.stats.hits
    _build(lake)
    assert readers and sqlcache.stats.misses - misses == len(readers)
    assert sqlcache.stats.hits - hits == len(NAMES) - len(readers)
    assert len(list(warm_dir.glob("*.json"))) == len(NAMES) + len(readers)
    assert _snapshot(lake) == expected


def test_corrupt_entries_are_ignored_and_rewritten(cold, warm_dir, monkeypatch):
    lake, expected, _ = cold
    files = sorted(warm_dir.glob("*.json"))
    spoilt = {files[0]: '{"format": 1, "sql": "SELECT', files[1]: b"\xff\xfe garbage",
              files[2]: json.dumps({"format": 1, "key": "another", "sql": "SELECT 1", "built_at": None})}
    templ = next(f for f in files if json.loads(f.read_text())["built_at"])
    data = json.loads(templ.read_text())
    spoilt[templ] = json.dumps({**data, "sql": data["sql"].replace(sqlcache.MARKER, "")})  # marker lost
    for f, body in spoilt.items():
        f.write_bytes(body if isinstance(body, bytes) else body.encode())
    _use_cache(monkeypatch, warm_dir)
    misses = sqlcache.stats.misses
    _build(lake)
    assert sqlcache.stats.misses - misses == len(spoilt)
    assert _snapshot(lake) == expected
    for f in spoilt:  # rewritten, readable
        assert json.loads(f.read_text())["key"] == f.stem


def test_an_unwritable_cache_directory_does_not_fail_the_build(cold, tmp_path, monkeypatch):
    lake, expected, _ = cold
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    _use_cache(monkeypatch, blocker / "cache")
    _build(lake)
    assert _snapshot(lake) == expected and blocker.read_text() == "x"
