"""The dashboard takes over the pages whose data did not change since the site it replaces (the daily
job rebuilds it after every build): the site is then byte for byte the one a full rendering writes
into an empty folder, with the new build time in every footer; the changed course's pages are made
again, the unchanged course's are not."""

from __future__ import annotations

import datetime as dt
import filecmp
import json
import os
from pathlib import Path

import duckdb
import pytest

from edx_engine import config
from edx_engine.cli import run_import
from edx_engine.dashboard import build_site
from edx_engine.dashboard import build as dashboard_build
from edx_engine.lake import Lake
from edx_engine.models import Params, build_duckdb
from edx_engine.synthetic import SyntheticConfig, generate

from eventlog import tracking_event, write_day


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _digests(site: Path) -> dict:
    """The page digests file without the files' identities (sizes, times and inodes differ by copy)."""
    m = json.loads((site / dashboard_build.MANIFEST).read_text())
    return {"code": m["code"], "built_at": m["built_at"], "pages": {p: v[0] for p, v in m["pages"].items()},
            "files": {p: sorted(v[1]) for p, v in m["pages"].items()}}


def _same_site(a: Path, b: Path) -> None:
    """Every file of ``a`` and ``b`` the same, byte for byte; the page digests file the same but for
    the identities of the files it records."""
    ta, tb = _tree(a), _tree(b)
    assert sorted(ta) == sorted(tb)
    different = [name for name in ta if ta[name] != tb[name] and name != dashboard_build.MANIFEST]
    assert not different, different[:5]
    assert _digests(a) == _digests(b)


@pytest.fixture(scope="module")
def day_after(tmp_path_factory):
    """A store and its site; then a day of events of one course, imported and built (a later build
    time): (store, site folder as it was, the course that changed, the one that did not)."""
    root = tmp_path_factory.mktemp("reuse")
    generate(root / "pkg", SyntheticConfig(seed=5, courses=2, learners=60, days=3))
    data = root / "store"
    settings = config.resolve(data_dir=str(data))
    run_import(settings, [root / "pkg"], quiet=True)
    build_duckdb(Lake(data), [], Params())
    site = root / "site"
    first = build_site(Lake(data), site, lang="es")
    assert first.reused == 0
    before = root / "site-before"
    os.system(f"cp -a '{site}' '{before}'")
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        courses = [c for (c,) in con.execute("SELECT DISTINCT course_id FROM student_courseenrollment ORDER BY 1")
                   .fetchall()]
        learners = con.execute("SELECT u.id, u.username FROM auth_user u JOIN student_courseenrollment e "
                               "ON e.user_id = u.id WHERE e.course_id = ? ORDER BY u.id LIMIT 5",
                               [courses[0]]).fetchall()
    events = [tracking_event(name, uid, courses[0], "10.0.0.1", n) for n, (uid, name) in enumerate(learners)]
    run_import(settings, [write_day(root / "logs", events, day="2026-11-20")], quiet=True)
    later = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(days=1)  # the next day's run
    build_duckdb(Lake(data), [], Params(built_at=later))
    return data, site, before, courses


def test_a_site_rebuilt_in_place_equals_a_full_rendering(day_after, tmp_path):
    data, site, before, (changed, unchanged) = day_after
    again = build_site(Lake(data), site, lang="es")
    fresh = build_site(Lake(data), tmp_path / "fresh", lang="es")
    assert fresh.reused == 0 and 0 < again.reused < len(again.pages)
    _same_site(site, tmp_path / "fresh")
    manifest, old = _digests(site), _digests(before)
    assert manifest["built_at"] != old["built_at"]  # a later build: every footer says so
    slug = {c: p for p in manifest["pages"] for c in (changed, unchanged) if p.startswith("es/course/")
            and (site / f"{p}.html").read_text("utf-8").count(c) > 0}
    for lang in ("es", "en", "pt"):
        page_changed = f"{lang}/course/{Path(slug[changed]).name}"
        page_same = f"{lang}/course/{Path(slug[unchanged]).name}"
        assert manifest["pages"][page_changed] != old["pages"][page_changed]  # its data changed: made again
        assert manifest["pages"][page_same] == old["pages"][page_same]  # taken over
        new_html = (site / f"{page_same}.html").read_text("utf-8")
        old_html = (before / f"{page_same}.html").read_text("utf-8")
        assert new_html != old_html and new_html[:new_html.rfind("<footer>")] == old_html[:old_html.rfind("<footer>")]
        assert not filecmp.cmp(site / f"{page_changed}.html", before / f"{page_changed}.html", shallow=False)


def test_a_manifest_of_other_code_or_a_missing_file_means_the_page_is_made(day_after, tmp_path, monkeypatch):
    data, site, _, _ = day_after
    build_site(Lake(data), site, lang="es")  # every page current
    fresh = tmp_path / "fresh"
    build_site(Lake(data), fresh, lang="es")
    csv = next((site / "en" / "data").glob("course-*.csv"))
    csv.unlink()  # a file of the old site gone: its page is made again, with its CSV files
    res = build_site(Lake(data), site, lang="es")
    assert res.reused == len(res.pages) - 1
    _same_site(site, fresh)
    # files of the old site changed in place since (an edit, another edx-engine version writing into the
    # folder, e.g. an internal site over a public one): their pages are made again, not taken over
    page = next((site / "pt" / "course").glob("*.html"))
    page.write_text(page.read_text("utf-8").replace("</h1>", " (edited)</h1>", 1), "utf-8")
    with (next((site / "es" / "data").glob("index-*.csv"))).open("a") as f:
        f.write("an added line\n")
    res = build_site(Lake(data), site, lang="es")
    assert res.reused == len(res.pages) - 2
    _same_site(site, fresh)
    # a CSV whose permissions differ from a new file's is copied, not linked (a link keeps the old mode)
    old_csv = next((site / "es" / "data").glob("course-*.csv"))
    old_csv.chmod(0o600)
    res = build_site(Lake(data), site, lang="es")
    assert res.reused == len(res.pages)
    assert old_csv.stat().st_mode & 0o777 == (fresh / old_csv.relative_to(site)).stat().st_mode & 0o777
    _same_site(site, fresh)
    monkeypatch.setattr(dashboard_build, "_code_key", lambda: "other code")
    assert build_site(Lake(data), site, lang="es").reused == 0  # the recorded digests were made by other code
    (site / dashboard_build.MANIFEST).write_text("not json")
    assert build_site(Lake(data), site, lang="es").reused == 0


def test_two_renderings_at_once_publish_whole_sites_one_after_the_other(day_after, tmp_path):
    """The nightly `run` and a person's `dashboard` at the same time: the second waits for the first
    (they shared `.building`: one crashed with a traceback, the other could publish a site without
    its Spanish pages or its chart library and exit 0), and the site in place stays whole meanwhile."""
    import subprocess
    import sys
    import time

    data = day_after[0]
    out = tmp_path / "site"
    build_site(Lake(data), out, lang="es")
    files = sorted(_tree(out))
    entry = [sys.executable, "-c", "import sys; from edx_engine.cli import app; sys.exit(app())",
             "dashboard", "-o", str(out), "--data-dir", str(data)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDX_ENGINE_") or k == "EDX_ENGINE_SQL_CACHE"}
    flag = tmp_path / "paused"
    first = subprocess.Popen(entry, env={**env, "EDX_ENGINE_TEST_PAUSE_AT": "dashboard-publish",
                                         "EDX_ENGINE_TEST_PAUSE_FILE": str(flag)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not flag.exists():
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    second = subprocess.Popen(entry, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    assert second.poll() is None  # waiting for the first
    assert [f for f in sorted(_tree(out)) if not f.startswith(".building/")] == files  # the site in place is whole
    flag.unlink()
    for p in (first, second):
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0 and "Traceback" not in stderr, (stdout, stderr)
    assert sorted(_tree(out)) == files and not (out / ".building").exists()


def test_a_site_is_replaced_folder_by_folder_never_missing_one(day_after, tmp_path, monkeypatch):
    """Each folder of the old site is exchanged with its new self in one step: a rendering stopped in
    the middle of putting the new site in place (here after the first folder) leaves every folder
    there, old or new (it used to delete the old site, then move the new one in)."""
    from edx_engine.store import files as F

    data = day_after[0]
    out = tmp_path / "site"
    build_site(Lake(data), out, lang="es")
    names = sorted(p.name for p in out.iterdir())
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.write_text("b")
    (a / "x").write_text("a")
    assert F.exchange(a, b) and (b / "x").read_text() == "a" and a.read_text() == "b"  # this system swaps
    calls = []

    def stop_after_one(x, y):
        if calls:
            raise SystemExit("killed")  # (what the process would meet: the rest of the function never runs)
        calls.append(y)
        return F.exchange(x, y)

    monkeypatch.setattr(dashboard_build, "exchange", stop_after_one)
    with pytest.raises(SystemExit):
        build_site(Lake(data), out, lang="es")
    assert calls == [out / "static"]
    assert sorted(p.name for p in out.iterdir()) == sorted(names + [".building"])
    for lang in ("en", "es", "pt"):
        assert (out / lang / "index.html").is_file() and (out / lang / "comparison.html").is_file()
    assert (out / "static" / "vega.js").is_file()
    monkeypatch.undo()
    build_site(Lake(data), out, lang="es")
    assert sorted(p.name for p in out.iterdir()) == names
