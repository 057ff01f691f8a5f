"""The dashboard site, built from a small synthetic store and driven by Playwright with Debian's Chromium.

One store (real importer, real model build) and two sites (internal and ``--public``) per module. The
browser tests block every request that leaves the site and assert that none was attempted.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from edx_engine import config
from edx_engine.cli import app, run_import
from edx_engine.dashboard import DashboardError, build_site
from edx_engine.dashboard.data import block_key, _walk
from edx_engine.dashboard.labels import CODES, apply_labels, country_name, fmt_int, fmt_pct, label
from edx_engine.lake import Lake
from edx_engine.models import Params, build_duckdb
from edx_engine.privacy.export import PUBLIC_SPECS, public_table
from edx_engine.synthetic import SyntheticConfig, generate

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
K = 5
# copies of installed library files (checked byte for byte in test_site_layout...), not data
LIBRARY_FILES = ("vega.js", "world.js", "countries-110m.LICENSE", "vega.version")
PAGE_JSON = re.compile(r'<script type="application/json" id="edx-page">(.*?)</script>', re.S)


# -- fixtures -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash")
    manifest = generate(root / "pkg", SyntheticConfig(seed=3, courses=2, learners=80, days=3))
    data = root / "store"
    run_import(config.resolve(data_dir=str(data)), [root / "pkg"], quiet=True)
    build_duckdb(Lake(data), [], Params())
    return data, manifest


@pytest.fixture(scope="module")
def site(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    return build_site(Lake(store[0]), out, lang="es")


@pytest.fixture(scope="module")
def public_site(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("public")
    return build_site(Lake(store[0]), out, lang="en", public=True, k=K)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian Chromium (/usr/bin/chromium) is not installed: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


class Visit:
    """A browser context that lets only the site's own files through and records everything else."""

    def __init__(self, browser, root: Path, width: int = 1280, height: int = 800):
        self.root = str(Path(root).resolve())
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.ctx = browser.new_context(viewport={"width": width, "height": height})
        self.ctx.route("**/*", self._route)

    def _route(self, route):
        url = route.request.url
        if url.startswith("file://" + self.root + "/") or url.startswith(("data:", "blob:", "about:")):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def open(self, rel: str):
        page = self.ctx.new_page()
        page.on("console", lambda m: self.errors.append(f"{rel}: {m.text}") if m.type in ("error", "warning")
                else None)
        page.on("pageerror", lambda e: self.errors.append(f"{rel}: {e}"))
        page.goto((Path(self.root) / rel).as_uri())
        page.wait_for_function("window.EDX && window.EDX.done", timeout=30_000)
        return page

    def close(self):
        self.ctx.close()


def sql(store_dir: Path, q: str, params=None) -> list[tuple]:
    with duckdb.connect(str(store_dir / "edx.duckdb"), read_only=True) as con:
        return con.execute(q, params or []).fetchall()


def page_data(path: Path) -> dict:
    return json.loads(PAGE_JSON.search(path.read_text("utf-8")).group(1).replace("<\\/", "</"))


def courses_of(store_dir: Path) -> list[tuple[str, str]]:
    return sql(store_dir, "SELECT course_id, name FROM models.courses ORDER BY course_id")


def course_page(site_dir: Path, lang: str, course_id: str) -> Path:
    for f in (site_dir / lang / "course").glob("*.html"):
        if page_data(f) and course_id in f.read_text("utf-8"):
            return f
    raise AssertionError(f"no page for {course_id}")


def small_counts(site_dir: Path, k: int) -> list[tuple]:
    """Every people count 0 < n < k in the data of every page (items and headline figures)."""
    bad = []
    for f in site_dir.rglob("*.html"):
        m = PAGE_JSON.search(f.read_text("utf-8"))
        if not m:
            continue
        d = json.loads(m.group(1).replace("<\\/", "</"))
        for iid, it in d["items"].items():
            kinds = dict(it["columns"])
            rows = list(it["rows"]) + (list((it["spec"] or {}).get("datasets", {}).get("table", [])))
            for r in rows:
                for col, kind in kinds.items():
                    v = r.get(col)
                    if kind == "count" and isinstance(v, (int, float)) and 0 < v < k:
                        bad.append((f.name, iid, col, v))
        for key, v in d["headline"].items():
            if d["headline_kinds"][key] == "count" and v is not None and 0 < v < k:
                bad.append((f.name, key, v))
    return bad


# -- refusing -------------------------------------------------------------------------------------------

def test_refuses_without_models_with_one_line_naming_build(tmp_path):
    Lake(tmp_path / "empty").init()
    with pytest.raises(DashboardError, match=r"not built.*`edx-engine build`"):
        build_site(Lake(tmp_path / "empty"), tmp_path / "site")
    r = CliRunner().invoke(app, ["dashboard", "--data-dir", str(tmp_path / "empty"), "-o", str(tmp_path / "s")])
    assert r.exit_code == 1 and "edx-engine build" in r.output and len(r.output.strip().splitlines()) <= 2
    assert not (tmp_path / "s" / "index.html").exists()


def test_refuses_when_models_are_stale(store, tmp_path, monkeypatch):
    from edx_engine.models import build as B

    monkeypatch.setattr(B, "stale_models", lambda lake: ["person_course", "course_summary"], raising=False)
    with pytest.raises(DashboardError, match=r"older than the data.*person_course.*`edx-engine build`"):
        build_site(Lake(store[0]), tmp_path / "site")


# -- content --------------------------------------------------------------------------------------------

def test_site_layout_shared_bundle_and_page_sizes(site):
    import vl_convert

    root = site.out_dir
    bundle = (root / "static" / "vega.js").read_text("utf-8")
    assert bundle == vl_convert.javascript_bundle()  # the installed library, written once
    world = (root / "static" / "world.js").read_text("utf-8")
    shipped = (Path(__file__).parents[1] / "src/edx_engine/dashboard/static/countries-110m.json").read_text("utf-8")
    assert world == "window.EDX_WORLD=" + shipped + ";\n"
    for lang in ("es", "en", "pt"):
        assert (root / lang / "index.html").exists() and (root / lang / "comparison.html").exists()
        assert (root / lang / "health.html").exists()
        assert len(list((root / lang / "course").glob("*.html"))) == 2
    for f in [p for lang in ("es", "en", "pt") for p in (root / lang).rglob("*.html")]:
        text = f.read_text("utf-8")
        assert "vegaEmbed=" not in text and "cdn." not in text and "https://" not in text.replace(
            "https://vega.github.io/schema/", "")  # only the spec's schema id, never fetched
        lang_dir = root / f.relative_to(root).parts[0]
        stem = f.relative_to(lang_dir).with_suffix("").as_posix().replace("/", "-")
        csvs = sum(p.stat().st_size for p in (lang_dir / "data").glob(f"{stem}-*.csv"))
        assert len(text.encode()) + csvs < 2 * 2**20, f
    assert (root / "index.html").read_text().count("es/index.html") >= 1


def test_headline_and_table_equal_sql(site, store):
    data = store[0]
    d = page_data(site.out_dir / "es" / "index.html")
    h = d["headline"]
    (enrolled, certified, approved, active), = sql(data, "SELECT sum(enrolled), sum(certified), sum(approved), "
                                                        "sum(active) FROM models.course_summary")
    assert h["enrolments"] == enrolled and h["certificates"] == certified
    assert h["pass_rate"] == pytest.approx(approved / active, abs=1e-6)
    # distinct learners, independently of the models: enrolment rows of non-staff users
    (learners,), = sql(data, "SELECT count(DISTINCT e.user_id) FROM student_courseenrollment e WHERE e.user_id NOT IN "
                             "(SELECT id FROM auth_user WHERE is_staff)")
    assert h["learners"] == learners
    gen = {r[0]: r[1:] for r in sql(data, "SELECT course_id, total, certified FROM models.general_report")}
    rows = d["items"]["course_table"]["rows"]
    assert {r["course_id"]: (r["total"], r["certified"]) for r in rows} == gen
    html = (site.out_dir / "es" / "index.html").read_text("utf-8")
    assert f'data-key="enrolments" data-value="{enrolled}"' in html
    assert f">{fmt_int(enrolled, 'es')}<" in html


def test_course_page_numbers_equal_sql(site, store):
    data = store[0]
    cid, name = courses_of(data)[0]
    d = page_data(course_page(site.out_dir, "en", cid))
    (en, ac, ex, ap, ce), = sql(data, "SELECT enrolled, active, explored, approved, certified "
                                      "FROM models.course_summary WHERE course_id = ?", [cid])
    assert [r["learners"] for r in d["items"]["funnel"]["rows"]] == [en, ac, ex, ap, ce]
    certs = dict(sql(data, "SELECT cert_status, count(*) FROM models.person_course WHERE course_id = ? AND NOT "
                           "is_staff GROUP BY 1", [cid]))
    shown = {r["cert_status"]: r["learners"] for r in d["items"]["certs"]["rows"]}
    assert shown == {label("cert_status", c, "en"): n for c, n in certs.items()}
    vids = sql(data, "SELECT video_id, viewers, plays FROM models.video_summary WHERE course_id = ?", [cid])
    assert sorted((r["viewers"], r["plays"]) for r in d["items"]["videos"]["rows"]) == sorted(v[1:] for v in vids)
    # titles come from the course structure, in course order
    titles = {block_key(b): n for b, n in sql(data, "SELECT block_id, display_name FROM course_structure WHERE "
                                                    "course_id = ? AND category = 'video'", [cid])}
    known = [r for r in d["items"]["videos"]["rows"] if r["position"] is not None]
    assert known and all(r["title"] in titles.values() for r in known)
    assert [r["position"] for r in known] == sorted(r["position"] for r in known)
    weekly = dict(sql(data, "SELECT strftime(week, '%Y-%m-%d'), active_learners FROM models.activity_weekly "
                            "WHERE course_id = ?", [cid]))
    assert {r["week"]: r["active_learners"] for r in d["items"]["active_weekly"]["rows"]} == weekly


def test_course_order_walk_follows_parents_and_positions():
    rows = [("c", "course/root", None, 0, "course", "C"), ("c", "ch2", "course/root", 2, "chapter", "B"),
            ("c", "ch1", "course/root", 1, "chapter", "A"), ("c", "v/x9", "ch2", 1, "video", "late"),
            ("c", "block@p1", "ch1", 2, "problem", "second"), ("c", "i4x://o/c/video/v1", "ch1", 1, "video", "first")]
    assert _walk(rows) == {"v1": (0, "first"), "p1": (1, "second"), "x9": (2, "late")}
    assert block_key("block-v1:IDBx+A+1+type@video+block@abc") == block_key("i4x-IDBx-A-video-abc") == "abc"


def test_labels_in_three_languages_never_raw_codes(site):
    assert country_name("DE", "es") == "Alemania" and country_name("DE", "pt") == "Alemanha"
    assert country_name("DE", "en") == "Germany" and country_name("unknown", "en") == "Not stated"
    assert label("gender", "f", "pt") == "Feminino" and label("level_of_education", "p_se", "en").startswith("Doctor")
    assert fmt_int(1234567, "es") == "1.234.567" and fmt_int(1234567, "en") == "1,234,567"
    assert fmt_pct(0.125, "pt") == "12,5 %" and fmt_pct(0.125, "en") == "12.5%"
    import pyarrow as pa

    t = apply_labels(pa.table({"gender": ["m", None], "country": ["BR", "MX"], "n": [1, 2]}), "pt")
    assert t.column("gender").to_pylist() == ["Masculino", None] and t.column("country").to_pylist() == ["Brasil",
                                                                                                          "México"]
    codes = {c for fam in CODES.values() for c in fam} | {"unknown"}
    for f in (site.out_dir / "pt").rglob("*.html"):
        for iid, it in page_data(f)["items"].items():
            for col in ("gender", "level_of_education", "mode", "cert_status", "age_band", "country"):
                vals = {r.get(col) for r in it["rows"]} - {None}
                assert not (vals & (codes - {"<20", "20-29", "30-39", "40-49", "50-59", "60+", "other", "none",
                                             "error"})), (f, iid, col, vals & codes)


# -- privacy ---------------------------------------------------------------------------------------------

def personal_values(data: Path, manifest) -> dict[str, set[str]]:
    kp = manifest.known_personal_values
    q = lambda s: {r[0] for r in sql(data, s) if r[0]}  # noqa: E731
    return {"emails": q("SELECT email FROM auth_user") | set(kp["emails"]),
            "usernames": q("SELECT username FROM auth_user") | q("SELECT username FROM events") | set(kp["usernames"]),
            "names": {n for n in q("SELECT name FROM auth_userprofile") | set(kp["full_names"]) if len(n) > 5},
            "ips": q("SELECT ip FROM events") | set(kp["ips"])}


def leaks(text: str, values: dict[str, set[str]]) -> list[str]:
    low = text.lower()
    found = [v for key in ("emails", "names", "ips") for v in values[key] if v.lower() in low]
    tokens = set(re.findall(r"[\w.@-]+", low))  # whole tokens: a short username may be part of a word
    return found + [u for u in values["usernames"] if len(u) >= 4 and u.lower() in tokens]


def test_public_site_has_no_small_count_and_no_personal_data(site, public_site, store):
    data, manifest = store
    assert small_counts(site.out_dir, K), "the internal site should hold small counts (else this test proves nothing)"
    assert small_counts(public_site.out_dir, K) == []
    values = personal_values(data, manifest)
    assert len(values["ips"]) > 5 and len(values["usernames"]) > 20
    for root in (site.out_dir, public_site.out_dir):
        files = [f for f in root.rglob("*") if f.is_file() and f.name not in LIBRARY_FILES]
        assert len(files) > 50
        found = leaks("\n".join(f.read_text("utf-8") for f in files), values)
        assert found == [], [(f, leaks(f.read_text("utf-8"), values)) for f in files if leaks(f.read_text("utf-8"),
                                                                                               values)][:5]
    # the course table is report --public's general report, not a suppression of our own
    pub = public_table("general_report", sql_table(data, "SELECT * FROM models.general_report"), K,
                       lambda m: sql_table(data, f"SELECT * FROM models.{m}")).to_pylist()
    rows = page_data(public_site.out_dir / "en" / "index.html")["items"]["course_table"]["rows"]
    assert {r["course_id"]: (r["total"], r["certified"], r["male"]) for r in rows} == \
        {r["course_id"]: (r["total"], r["certified"], r["male"]) for r in pub}
    text = (public_site.out_dir / "en" / "index.html").read_text("utf-8")
    assert "counts of people below 5" in text


def sql_table(data: Path, q: str):
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        return con.execute(q).to_arrow_table()


# -- in the browser ------------------------------------------------------------------------------------

def test_every_page_renders_offline_without_errors(browser, site):
    root = site.out_dir
    pages = [p.relative_to(root).as_posix() for p in sorted((root / "es").rglob("*.html"))]
    pages += ["index.html"]  # other languages: test_displayed_figures... and the language-switch test
    v = Visit(browser, root)
    try:
        for rel in pages:
            if rel == "index.html":  # the redirect to the default language
                p = v.ctx.new_page()
                p.goto((root / rel).as_uri())
                p.wait_for_url("**/es/index.html")
                p.close()
                continue
            page = v.open(rel)
            rendered, expected, errors = page.evaluate("[EDX.rendered, EDX.expected, EDX.errors]")
            assert errors == [] and rendered == expected and expected > 0, (rel, errors)
            assert page.locator(".chart svg").count() == expected, rel
            page.close()
    finally:
        v.close()
    assert v.outside == [], v.outside
    assert v.errors == [], v.errors


def test_displayed_figures_equal_sql_in_the_browser(browser, site, store):
    data = store[0]
    v = Visit(browser, site.out_dir)
    try:
        page = v.open("en/index.html")
        (enrolled,), = sql(data, "SELECT sum(enrolled) FROM models.course_summary")
        assert page.locator('.card[data-key="enrolments"] .value').inner_text() == fmt_int(enrolled, "en")
        shown = page.evaluate("EDX.views['active_weekly'].data('table').map(d => [d.week, d.active_learners])")
        names = dict(courses_of(data))
        want = sql(data, "SELECT course_id, strftime(week, '%Y-%m-%d'), active_learners FROM models.activity_weekly")
        assert sorted(map(tuple, shown)) == sorted((w, n) for _, w, n in want if _ in names)
        cid, name = courses_of(data)[1]
        (total,), = sql(data, "SELECT total FROM models.general_report WHERE course_id = ?", [cid])
        row = page.locator("#course_table tbody tr", has_text=cid)
        assert row.locator("td.count").first.inner_text() == fmt_int(total, "en")
        # the map joins the countries to the shipped TopoJSON: some shapes are coloured
        assert page.evaluate("EDX.views['map'].data('table').length") > 0
        page.close()
    finally:
        v.close()
    assert v.outside == [] and v.errors == []


def test_course_selector_by_keyboard_and_language_switch(browser, site, store):
    data = store[0]
    (c0, n0), (c1, n1) = courses_of(data)[:2]
    v = Visit(browser, site.out_dir)
    try:
        page = v.open("es/index.html")
        page.focus("#course-select")
        page.keyboard.press("End")  # the last course
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")  # the "Abrir" button
        page.wait_for_url("**/es/course/*.html")
        page.wait_for_function("window.EDX && window.EDX.done")
        assert page.locator("h1").inner_text() == n1
        assert page.locator("#funnel h2").inner_text() == "Embudo de participación"
        page.get_by_role("link", name="English").click()
        page.wait_for_url("**/en/course/*.html")
        page.wait_for_function("window.EDX && window.EDX.done")
        assert page.evaluate("document.documentElement.lang") == "en"
        assert page.locator("h1").inner_text() == n1
        assert page.locator("#funnel h2").inner_text() == "Participation funnel"
        assert page.locator(".card[data-key='pass_rate'] .value").inner_text().endswith("%")
        page.get_by_role("link", name="Português").click()
        page.wait_for_url("**/pt/course/*.html")
        assert page.locator("#funnel h2").inner_text() == "Funil de participação"
        page.close()
    finally:
        v.close()
    assert v.outside == [] and v.errors == []


def test_phone_width_has_no_horizontal_scroll(browser, site):
    v = Visit(browser, site.out_dir, width=390, height=844)
    try:
        page = v.open(next((site.out_dir / "es" / "course").glob("*.html")).relative_to(site.out_dir).as_posix())
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        page.close()
    finally:
        v.close()


def test_wide_tables_on_a_phone_keep_their_first_column_and_say_they_scroll(browser, site):
    """At 390 and 768 px the course table's Active, Passed and Certified were off-screen in a box that
    scrolled both ways with no hint: the box now says it scrolls sideways (only when it does), and the
    course name stays in view while the other columns scroll under it."""
    hint = "#course_table .scroll-hint"
    for width in (390, 768, 1800):
        v = Visit(browser, site.out_dir, width=width, height=844)
        try:
            page = v.open("en/index.html")
            wrap = "document.querySelector('#course_table .table-wrap')"
            scrolls = page.evaluate(f"{wrap}.scrollWidth > {wrap}.clientWidth + 1")
            assert scrolls == (width < 1800), width
            assert page.is_visible(hint) == scrolls and "sideways" in page.inner_text(hint) if scrolls else True
            if scrolls:
                left = page.evaluate(f"{wrap}.getBoundingClientRect().left")
                page.evaluate(f"{wrap}.scrollLeft = 300")
                cell = page.locator("#course_table tbody tr td").first
                assert abs(cell.bounding_box()["x"] - left) < 2 and cell.is_visible()
                th = page.locator("#course_table thead th").first
                assert abs(th.bounding_box()["x"] - left) < 2
            assert not page.is_visible("#gender .scroll-hint")  # a narrow table (or a closed one) says nothing
            page.close()
        finally:
            v.close()
        assert v.errors == [], v.errors


def test_the_comparison_legend_is_whole_at_tablet_and_phone_width(browser, site):
    """At 768 and 390 px the comparison chart's legend was cut off at the bottom (its box kept the
    height of another layout) and its labels cut to "Activos / inscr…"."""
    for width in (390, 768):
        v = Visit(browser, site.out_dir, width=width, height=844)
        try:
            page = v.open("es/comparison.html")
            box = page.evaluate("""() => {
                const svg = document.querySelector('#compare .chart svg').getBoundingClientRect();
                const legend = document.querySelector('#compare .chart svg .role-legend').getBoundingClientRect();
                return [svg.bottom, legend.bottom, svg.right, legend.right]; }""")
            assert box[1] <= box[0] + 0.5 and box[3] <= box[2] + 0.5, (width, box)
            labels = page.evaluate("[...document.querySelectorAll('#compare .role-legend-label text')]"
                                   ".map(t => t.textContent)")
            assert len(labels) == 3 and not any(x.endswith("…") for x in labels), labels
            page.close()
        finally:
            v.close()
        assert v.errors == [], v.errors


# -- serve -----------------------------------------------------------------------------------------------

def test_serve_is_read_only_on_loopback(site):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "edx_engine", "dashboard", "serve", "-o", str(site.out_dir),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(100):
            try:
                body = urllib.request.urlopen(url + "es/index.html", timeout=2).read().decode()
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        else:
            raise AssertionError(proc.stderr.read() if proc.poll() is not None else "server did not start")
        assert 'id="edx-page"' in body
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(urllib.request.Request(url + "es/index.html", data=b"x", method="POST"), timeout=2)
        assert exc.value.code == 501
    finally:
        proc.terminate()
        rc = proc.wait(timeout=10)
    # a service manager's stop (SIGTERM) ends the server cleanly: exit 0, no "interrupted" line (after
    # SIGTERM became Ctrl-C for every command, it read "interrupted ... run the same command again", 130)
    assert rc == 0, proc.stderr.read()
    assert "interrupted" not in proc.stderr.read()


def test_enrolment_lines_have_a_zero_for_every_week_and_month_without_enrolments(store):
    """A line chart joins the points it gets: every week (and month) between a course's first and last
    enrolment is a point, 0 where nobody enrolled, and the other points are the model's own sums
    (computed here with SQL of their own)."""
    import datetime as dt

    from edx_engine.dashboard.build import gather, overview_items

    sd = gather(Lake(store[0]), False, K, None)
    item = next(i for i in overview_items(sd, "en") if i.id == "enrol_time")
    names = {c.course_id: c.name for c in sd.courses}
    with duckdb.connect(str(store[0] / "edx.duckdb"), read_only=True) as con:
        for grain, unit, step in (("Week", "week", 7), ("Month", "month", None)):
            rows = [r for r in item.rows if r["grain"] == grain]
            want = {(names[c], str(d)): n for c, d, n in con.execute(
                f"SELECT course_id, date_trunc('{unit}', date)::DATE, sum(enrollments) FROM models.enrolment_daily "
                f"WHERE date IS NOT NULL GROUP BY ALL").fetchall()}
            got = {(r["course"], r["date"]): r["enrollments"] for r in rows}
            assert len(got) == len(rows)  # one point per course and date
            assert {k: v for k, v in got.items() if v} == {k: v for k, v in want.items() if v}
            for course in {c for c, _ in want}:
                dates = sorted(dt.date.fromisoformat(d) for c, d in got if c == course)
                assert dates[0] == min(dt.date.fromisoformat(d) for c, d in want if c == course)
                assert dates[-1] == max(dt.date.fromisoformat(d) for c, d in want if c == course)
                for a, b in zip(dates, dates[1:]):  # no gap: consecutive weeks, or consecutive months
                    if step:
                        assert (b - a).days == step, (course, a, b)
                    else:
                        assert (b.year * 12 + b.month) - (a.year * 12 + a.month) == 1 and b.day == 1, (course, a, b)
                assert any(got[(course, d.isoformat())] == 0 for d in dates) or len(dates) == len(
                    [1 for c, _ in want if c == course])  # zeros were added where the model has no row


def test_enrolment_lines_by_mode_have_a_zero_for_every_week_without_enrolments(store):
    """The same on each course page, one line per mode: consecutive weeks from the mode's first to its
    last, and the non-zero points are the model's sums per week and mode."""
    import datetime as dt

    from edx_engine.dashboard.build import course_items, gather

    sd = gather(Lake(store[0]), False, K, None)
    with duckdb.connect(str(store[0] / "edx.duckdb"), read_only=True) as con:
        for c in sd.courses:
            item = next(i for i in course_items(sd, c, "en") if i.id == "enrol_mode")
            want = {(str(w), m): n for w, m, n in con.execute(
                "SELECT date_trunc('week', date)::DATE, mode, sum(enrollments) FROM models.enrolment_daily "
                "WHERE date IS NOT NULL AND course_id = ? GROUP BY ALL", [c.course_id]).fetchall()}
            modes = {m for _, m in want}
            lines: dict[str, list] = {}
            for r in item.rows:
                lines.setdefault(r["mode"], []).append((r["week"], r["enrollments"]))
            assert len(lines) == len(modes)
            assert sorted(n for pts in lines.values() for _, n in pts if n) == sorted(n for n in want.values() if n)
            for pts in lines.values():
                weeks = sorted(dt.date.fromisoformat(w) for w, _ in pts)
                assert all((b - a).days == 7 for a, b in zip(weeks, weeks[1:])), weeks


def test_count_axes_tick_whole_numbers_only(store):
    """An axis that writes its labels as integers (",d") must not tick at fractions: with at most 2
    enrolments a week Vega ticked every 0.2 and wrote 0, 0, 0, 1, 1, ... 2 (seen on a course page)."""
    from edx_engine.dashboard.build import course_items, gather, overview_items

    sd = gather(Lake(store[0]), False, K, None)
    items = overview_items(sd, "en") + [i for c in sd.courses for i in course_items(sd, c, "en")]

    def axes(node):
        if isinstance(node, dict):
            if isinstance(node.get("axis"), dict):
                yield node["axis"]
            for v in node.values():
                yield from axes(v)
        elif isinstance(node, list):
            for v in node:
                yield from axes(v)

    integer_axes = [a for i in items if i.spec for a in axes(i.spec) if a.get("format") == ",d"]
    assert integer_axes  # the enrolment and activity charts have them
    assert all(a == integer_axes[0] for a in integer_axes), integer_axes  # one definition (charts.value_axis)

    # rendered by the Vega that the site ships: a small count (2) and a larger one (40) give distinct labels
    import vl_convert

    for top in (2, 40):
        spec = {"height": 260, "width": 300, "mark": "bar",
                "data": {"values": [{"w": "2026-01-05", "n": 1}, {"w": "2026-01-12", "n": top}]},
                "encoding": {"x": {"field": "w", "type": "ordinal", "axis": None},
                             "y": {"field": "n", "type": "quantitative", "title": None, "axis": integer_axes[0]}}}
        labels = [x for x in re.findall(r"<text[^>]*>([^<]*)</text>", vl_convert.vegalite_to_svg(spec)) if x]
        assert labels == sorted(set(labels), key=int) and labels[0] == "0" and labels[-1] == str(top), labels


def test_count_axis_labels_keep_apart(browser, site):
    """A bar chart's count axis wrote "150" and "160" 0.4 px apart, read as one number ("150160"):
    Vega's overlap test let labels touch (so did the dates of a long axis on a phone). Bars of the
    widths and values where they touched, rendered by the site's Vega: consecutive visible labels on
    the bottom axis are at least 4 px apart."""
    from edx_engine.dashboard import charts as C

    cases = [(160, 553), (280, 488), (175, 1177), (1600, 800), (16000, 969), (160000, 1138)]
    specs = [C.hbar("t", [{"c": "a", "n": top}, {"c": "b", "n": top // 3}], "c", "n", "C", "N") for top, _ in cases]
    # and a date axis over 11 years at phone width: "Jan 2016Jan 2018Jan 2020..."
    weeks = [{"week": (dt.date(2015, 3, 2) + dt.timedelta(weeks=i)).isoformat(), "n": i % 7} for i in range(600)]
    cases.append(("dates", 330))
    specs.append(C.time_lines("t", weeks, "week", "n", None, "Week", "N"))
    divs = "".join(f'<div id="c{i}" style="width:{w}px"></div>' for i, (_, w) in enumerate(cases))
    html = site.out_dir / "gap-test.html"
    html.write_text('<!doctype html><meta charset="utf-8"><script src="static/vega.js"></script>'
                    f'{divs}<script>window.EDX = {{done: false}}; const specs = {json.dumps(specs)};'
                    'Promise.all(specs.map((s, i) => vegaEmbed("#c" + i, s, {actions: false, renderer: "svg"})))'
                    '.then(() => { window.EDX.done = true; });</script>', "utf-8")
    v = Visit(browser, site.out_dir)
    try:
        page = v.open("gap-test.html")
        labels = page.evaluate("""n => [...Array(n).keys()].map(i =>
            [...document.querySelectorAll('#c' + i + ' .role-axis-label text')]
              .filter(t => t.textContent && getComputedStyle(t).opacity !== '0' && t.getAttribute('opacity') !== '0')
              .map(t => t.getBoundingClientRect()).map(b => [b.left, b.right, Math.round(b.top)]))""", len(cases))
    finally:
        v.close()
        html.unlink()
    for (top, width), boxes in zip(cases, labels):
        axis = sorted(b for b in boxes if b[2] == max(x[2] for x in boxes))  # the bottom row: the x axis
        gaps = [b[0] - a[1] for a, b in zip(axis, axis[1:])]
        assert len(axis) >= 2 and min(gaps) >= 4, (top, width, gaps)
    assert v.errors == [], v.errors


def test_date_axis_labels_are_distinct_over_short_and_long_spans():
    """A weekly series of two weeks was ticked daily and every tick labelled "%b %Y" ("Sep 2026" ten
    times, seen on the overview's weekly active learners); the axis now labels days over a short span
    and months over a long one. Rendered by the Vega the site ships."""
    import datetime as dt

    import vl_convert

    from edx_engine.dashboard.charts import time_lines

    def x_labels(rows):
        spec = time_lines("t", rows, "week", "n", None, "Week", "Learners")
        spec.update(width=500, height=200)
        spec["encoding"]["y"]["axis"] = None
        svg = vl_convert.vegalite_to_svg(spec)
        return [x for x in re.findall(r"<text[^>]*>([^<]*)</text>", svg) if x and x not in ("Week", "t")]

    short = [{"week": "2026-09-28", "n": 210}, {"week": "2026-10-05", "n": 190}]
    labels = x_labels(short)
    assert len(labels) >= 2 and len(labels) == len(set(labels)), labels
    assert all(re.fullmatch(r"\d\d (Sep|Oct)", lab) for lab in labels), labels
    start = dt.date(2023, 1, 2)
    long = [{"week": str(start + dt.timedelta(weeks=k)), "n": k} for k in range(160)]
    labels = x_labels(long)
    assert len(labels) >= 2 and len(labels) == len(set(labels)), labels
    assert all(re.fullmatch(r"[A-Z][a-z]{2} 20\d\d", lab) for lab in labels), labels


def test_public_age_bands_and_public_breakdown_together_give_back_no_hidden_cell(public_site, store):
    """The public course pages show age bands; ``export course_breakdown --public`` shows years of
    birth; a band is the sum of its years. Suppressed apart, a published band minus its published
    years gave back a hidden year (found by an outside review). Both now come from one system per
    course: written over the true counts, the published cells of both outputs (and the course total)
    determine no hidden cell."""
    from edx_engine.age import AGE_BANDS, age_band
    from edx_engine.privacy import suppress as S

    data, _ = store
    full = sql_table(data, "SELECT * FROM models.course_breakdown").to_pylist()
    public = public_table("course_breakdown", sql_table(data, "SELECT * FROM models.course_breakdown"), K,
                          lambda m: sql_table(data, f"SELECT * FROM models.{m}"))
    shown = {(r["course_id"], r["country"], r["dimension"], r["value"]): r["learners"] for r in public.to_pylist()}
    code_of = {label("age_band", b, "en"): b for b in (*AGE_BANDS, "unknown")}
    hidden_years = 0
    for cid, _name in courses_of(data):
        rows = [r for r in full if r["course_id"] == cid]
        cell = {(r["country"], r["dimension"], r["value"]): i for i, r in enumerate(rows)}
        values = [r["learners"] for r in rows]
        hidden = {i for i, r in enumerate(rows) if shown.get((cid, r["country"], r["dimension"], r["value"])) is None}
        total = len(values)
        values.append(sum(r["learners"] for r in rows if r["country"] == "(all)" and r["dimension"] == "country"))
        eqs = []
        for (country, dim), cells in _groups_of(cell).items():
            eqs.append([total] + cells if country == "(all)" else [cell[("(all)", "country", country)]] + cells)
        for (country, dim, value), i in cell.items():
            parts = [j for (c, d, v), j in cell.items() if c != "(all)" and d == dim and v == value]
            if country == "(all)" and dim != "country" and parts:
                eqs.append([i] + parts)
        # the course page's age bands, as the public site shows them
        ages = {code_of[r["age_band"]]: r["learners"]
                for r in page_data(course_page(public_site.out_dir, "en", cid))["items"]["age"]["rows"]}
        years = [(v, i) for (c, d, v), i in cell.items() if c == "(all)" and d == "year_of_birth"]
        for band in {age_band(v) for v, _ in years}:
            parts = [i for v, i in years if age_band(v) == band]
            b = len(values)
            values.append(sum(values[i] for i in parts))
            assert ages.get(band, "missing") in (None, values[b])  # hidden, or the true count
            if ages.get(band) is None:
                hidden.add(b)
            eqs.append([b] + parts)
        hidden_years += sum(1 for v, i in years if i in hidden and 0 < values[i] < K)
        assert S.determined(values, eqs, hidden) == [], cid
    assert hidden_years > 0, "no small year-of-birth cell was hidden: this store proves nothing"


def _groups_of(cell: dict) -> dict:
    out: dict = {}
    for (country, dim, _value), i in cell.items():
        out.setdefault((country, dim), []).append(i)
    return out


def test_public_country_detail_shows_hidden_never_a_false_zero(public_site, store):
    """A country with fewer than 2k learners has no per-country rows in the public breakdown: its
    women and men are hidden, not 0 (an outside review saw 'Women 0, Men 0' for 4 women)."""
    data, _ = store
    truth = {(c, country, g): n for c, country, g, n in sql(data, """
        SELECT course_id, country, value, learners FROM models.course_breakdown
        WHERE dimension = 'gender' AND country <> '(all)'""")}
    hidden = 0
    for cid, _name in courses_of(data):
        codes = {country_name(c, "en"): c for (course, c, _g) in truth if course == cid}
        for r in page_data(course_page(public_site.out_dir, "en", cid))["items"]["country_detail"]["rows"]:
            code = codes.get(r["country"])
            if code is None:
                continue  # a country without a profile gender row anywhere
            for col, g in (("female", "f"), ("male", "m")):
                if r[col] is None:
                    hidden += truth.get((cid, code, g), 0) > 0
                else:
                    assert r[col] == truth.get((cid, code, g), 0), (cid, r)
    assert hidden > 0, "no hidden women or men: this store proves nothing"


def _chart_states(page) -> dict:
    """Each item's state as drawn: 'chart' (an SVG with marks), 'bare' (an SVG without one) or its message."""
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('section.item')].map(s => {
        const msg = s.querySelector('p.empty'), svg = s.querySelector('.chart svg');
        const marks = svg ? svg.querySelectorAll('.mark-rect path, .mark-line path, .mark-symbol path, '
                                                 + '.mark-shape path, .mark-area path').length : 0;
        return [s.id, msg ? 'msg:' + msg.textContent : svg ? (marks ? 'chart' : 'bare') : 'table'];
    }))""")


def test_a_chart_with_every_count_hidden_says_so_instead_of_bare_axes(browser, store, tmp_path):
    """Public, k larger than any count: every chart drew bare axes with a lone "0" tick (or, for the
    map, a legend reading NaN) and Vega warned "Infinite extent"; the countries chart said "No data
    yet." though the data were only hidden. Each is now a message naming k, in every language: "below k"
    for the programme's learners by gender, education and country (small categories merged, so a hidden
    count is below k), "below k or would help work out one" elsewhere (complementary suppression may
    hide counts of k or more; here none is, and the words must not tell: tests/test_dashboard_hidden_texts.py)."""
    big_k = 1000
    res = build_site(Lake(store[0]), tmp_path / "pub", lang="en", public=True, k=big_k)
    cid = courses_of(store[0])[0][0]
    v = Visit(browser, res.out_dir, width=1366, height=768)
    try:
        for lang, small, either in (("en", "are below 1000 and hidden", "or would help work out a count below 1000"),
                                    ("es", "son menores que 1000", "ayudaría a deducir una cifra menor que 1000"),
                                    ("pt", "são menores que 1000", "ajudaria a deduzir uma contagem menor que 1000")):
            for rel in (f"{lang}/index.html", course_page(res.out_dir, lang, cid).relative_to(res.out_dir).as_posix()):
                page = v.open(rel)
                states = _chart_states(page)
                assert "bare" not in states.values(), (rel, states)
                for iid in ("grades", "gender", "education", "age", "countries", "top_countries", "videos", "problems",
                            "enrol_mode"):
                    if iid in states:
                        merged = rel.endswith("index.html") and iid in ("gender", "education", "top_countries")
                        word, other = (small, either) if merged else (either, small)
                        assert states[iid].startswith("msg:") and word in states[iid], (rel, iid, states[iid])
                        assert other not in states[iid], (rel, iid, states[iid])
                if "map" in states:
                    assert states["map"].startswith("msg:") and "1000" in states["map"], states["map"]
                assert not any("No data yet" in s or "Sin datos" in s for s in states.values()), (rel, states)
                assert "NaN" not in page.inner_text("main"), rel
                page.close()
    finally:
        v.close()
    assert v.errors == [], v.errors  # no "Infinite extent" warning


def test_an_empty_chart_is_replaced_by_its_message():
    """Internal site: a course without activity drew an empty frame with "No data yet." under it; a
    store without tracking logs said "No data yet." for charts made from logs that never came."""
    from edx_engine.dashboard import charts as C
    from edx_engine.dashboard.build import Item, settle

    def items():
        return [Item("active_weekly", "t", "c", [], [], C.time_lines("t", [], "week", "n", None, "W", "N")),
                Item("grades", "t", "c", [], [{"g": "0.1", "n": 0}], C.vbar("t", [{"g": "0.1", "n": 0}], "g", "n", "G", "N")),
                Item("funnel", "t", "c", [], [{"s": "a", "n": 3}], C.hbar("t", [{"s": "a", "n": 3}], "s", "n", "S", "N"))]

    a, g, f = settle(items(), "en", False, 5, has_logs=True)
    assert (a.spec, a.empty) == (None, "No data yet.") and (g.spec, g.empty) == (None, "No data yet.")
    assert f.spec is not None and f.empty == ""
    a, g, f = settle(items(), "pt", False, 5, has_logs=False)
    assert "registro de atividade" in a.empty and g.empty == "Sem dados ainda."


def test_a_public_line_with_hidden_weeks_says_they_are_left_out():
    """A public course of 300 enrolments whose weeks were all under k but a few zeros was drawn as a
    flat line at 0: the caption now says that hidden weeks are left out (in every language)."""
    from edx_engine.dashboard import charts as C
    from edx_engine.dashboard.build import Item, settle

    rows = [{"week": "2026-09-07", "n": None}, {"week": "2026-09-14", "n": 0}, {"week": "2026-09-21", "n": 12}]
    for lang, words in (("en", "left out"), ("es", "no se dibujan"), ("pt", "não são desenhadas")):
        for rules in (None, [{"date": "2026-09-07", "label": "Start"}]):
            it = Item("enrol_mode", "t", "Cap.", [("week", "date"), ("n", "count")], rows,
                      C.time_lines("t", rows, "week", "n", None, "W", "N", rules=rules))
            settle([it], lang, True, 5)
            assert it.spec is not None and words in it.caption and "5" in it.caption, it.caption
        shown = Item("x", "t", "Cap.", [], rows[1:], C.time_lines("t", rows[1:], "week", "n", None, "W", "N"))
        assert settle([shown], lang, True, 5)[0].caption == "Cap."  # nothing hidden: nothing to say


def test_weekly_axes_tick_on_mondays_no_finer_than_weeks_and_months_never_repeat():
    """Weekly active learners ticked on Sundays (d3's weeks) though the weeks start on Mondays; two
    weekly points had 8 daily ticks; a five-month span read "Apr 2026, Apr 2026, May 2026" ..."""
    import datetime as dt

    import vl_convert

    from edx_engine.dashboard.charts import date_axis, time_lines

    def x_labels(rows, width=500):
        spec = time_lines("t", rows, "week", "n", None, "Week", "Learners")
        spec.update(width=width, height=200)
        spec["encoding"]["y"]["axis"] = None
        svg = vl_convert.vegalite_to_svg(spec)
        return [x for x in re.findall(r"<text[^>]*>([^<]*)</text>", svg) if x and x not in ("Week", "t")]

    two = [{"week": "2026-09-28", "n": 3}, {"week": "2026-10-05", "n": 4}]
    assert x_labels(two) == ["28 Sep", "05 Oct"]
    start = dt.date(2026, 9, 28)
    ten = [{"week": str(start + dt.timedelta(weeks=i)), "n": i} for i in range(11)]
    ticks = [dt.datetime.fromtimestamp(v / 1000, dt.timezone.utc).date() for v in date_axis(ten, "week")["values"]]
    assert ticks and all(d.weekday() == 0 for d in ticks) and len(ticks) <= 11
    months = [{"week": str(dt.date(2026, 4, 6) + dt.timedelta(weeks=i)), "n": i} for i in range(30)]
    labels = x_labels(months)
    assert len(labels) >= 3 and len(labels) == len(set(labels)), labels


def test_the_partial_weeks_of_tracking_logs_are_named(store):
    from edx_engine.dashboard.build import gather, overview_items

    sd = gather(Lake(store[0]), False, K, None)
    first, last = sql(store[0], "SELECT min(file_date), max(file_date) FROM _edx_event_files")[0]
    cap = {i.id: i.caption for i in overview_items(sd, "en")}["active_weekly"]
    if first.weekday() != 0:
        assert "Partial weeks" in cap and "the first" in cap, cap
    if last.weekday() != 6:
        assert "the last" in cap, cap


def test_long_course_names_legend_fits_a_phone_and_csv_keeps_them_whole(browser, site):
    """At 390 px the legend's two columns of 260 px cut off half the courses, and the programme charts'
    Data tables and CSVs carried names cut to 48 characters ("…"). The names are whole in the data;
    the legend is one column on a phone, each label cut to the width with its whole name as tooltip."""
    from edx_engine.dashboard import charts as C
    from edx_engine.dashboard.build import line_names
    from edx_engine.dashboard.data import Course

    names = [f"Curso {i}: gestión pública, evaluación de impacto y financiamiento del desarrollo sostenible"
             for i in range(8)]
    courses = [Course(f"course-v1:X+C{i}+1T2026", f"c{i}", n, None, None, None) for i, n in enumerate(names)]
    assert sorted(line_names(courses).values()) == sorted(names)  # whole, not "…"
    rows = [{"course": n, "week": w, "n": i + 1} for i, n in enumerate(names) for w in ("2026-09-28", "2026-10-05")]
    spec = C.time_lines("t", rows, "week", "n", "course", "Week", "Learners", "Course")
    html = site.out_dir / "legend-test.html"
    html.write_text('<!doctype html><meta charset="utf-8"><script src="static/vega.js"></script>'
                    '<div id="c" style="width:360px"></div><script>window.EDX = {done: false};'
                    f'vegaEmbed("#c", {json.dumps(spec)}, {{actions: false, renderer: "svg"}})'
                    '.then(() => { window.EDX.done = true; });</script>', "utf-8")
    v = Visit(browser, site.out_dir, width=390, height=844)
    try:
        page = v.open("legend-test.html")
        labels = page.evaluate("""() => { const r = document.querySelector('#c svg').getBoundingClientRect();
            return [...document.querySelectorAll('#c .role-legend-label text')].map(t => {
                const b = t.getBoundingClientRect(); return [t.textContent, b.left >= r.left - 1 && b.right <= r.right + 1]; }); }""")
        assert len(labels) == 8 and all(inside for _, inside in labels), labels
        assert all(text.endswith("…") for text, _ in labels), labels
        x_labels = page.evaluate("""() => [...document.querySelectorAll('#c .role-axis-label text')].map(t => t.getBoundingClientRect())
            .map(b => [b.left, b.right, b.top])""")
        label = page.locator("#c .role-legend-label text").nth(3)
        label.scroll_into_view_if_needed()
        b = label.bounding_box()
        page.mouse.move(b["x"] + 5, b["y"] + b["height"] / 2)
        page.wait_for_selector("#vg-tooltip-element.visible", timeout=5000)
        assert page.inner_text("#vg-tooltip-element") == names[3]
    finally:
        v.close()
        html.unlink()
    # no two axis labels on one line overlap
    same_line = sorted(x for x in x_labels if x[2] == x_labels[-1][2])
    assert all(a[1] <= b[0] for a, b in zip(same_line, same_line[1:])), same_line
    assert v.errors == [], v.errors


def test_the_week_month_switch_renames_the_heading_and_keeps_the_axis_title_inside(browser, site):
    """Choosing "Month" left the heading "per week"; with 4-digit month totals the y-axis title was cut
    off at the left (the layout was computed once, for the narrower weekly labels)."""
    from edx_engine.dashboard import charts as C

    v = Visit(browser, site.out_dir, width=1366, height=768)
    try:
        page = v.open("es/index.html")
        assert page.inner_text("#enrol_time-h") == "Inscripciones por semana"
        page.check("#enrol_time input >> nth=1")
        page.wait_for_function("document.getElementById('enrol_time-h').textContent == 'Inscripciones por mes'")
        page.check("#enrol_time input >> nth=0")
        page.wait_for_function("document.getElementById('enrol_time-h').textContent == 'Inscripciones por semana'")
        page.close()
        rows = [{"c": "a", "grain": "W", "date": "2026-09-28", "n": 3}, {"c": "a", "grain": "M", "date": "2026-09-01",
                                                                         "n": 123456}]
        grain = {"name": "grain", "value": "W", "bind": {"input": "radio", "options": ["W", "M"]}}
        spec = C.time_lines("t", rows, "date", "n", "c", "Date", "Enrolments", "C", params=[grain],
                            transform=[{"filter": "datum.grain == grain"}])
        html = site.out_dir / "switch-test.html"
        html.write_text('<!doctype html><meta charset="utf-8"><script src="static/vega.js"></script>'
                        '<div id="c" style="width:600px"></div><script>window.EDX = {done: false};'
                        f'vegaEmbed("#c", {json.dumps(spec)}, {{actions: false, renderer: "svg"}})'
                        '.then(r => { window.view = r.view; window.EDX.done = true; });</script>', "utf-8")
        page = v.open("switch-test.html")
        page.evaluate("view.signal('grain', 'M').runAsync().then(() => 1)")
        page.wait_for_timeout(300)
        left = page.evaluate("""() => { const svg = document.querySelector('#c svg').getBoundingClientRect();
            const t = [...document.querySelectorAll('#c .role-axis-title text')].find(x => x.textContent == 'Enrolments');
            return t.getBoundingClientRect().left - svg.left; }""")
        assert left >= 0, left
    finally:
        v.close()
        (site.out_dir / "switch-test.html").unlink(missing_ok=True)
    assert v.errors == [], v.errors


def test_small_things_serve_hint_health_columns_and_seconds(store, site, tmp_path):
    """The hint after `dashboard --data-dir X` left out --data-dir X; the health page's column "Course
    id" held names; a model built in 0.37 s read "0" seconds."""
    from edx_engine.dashboard.build import cell, health_items

    out = tmp_path / "s"
    r = CliRunner().invoke(app, ["dashboard", "--data-dir", str(store[0]), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert f"edx-engine dashboard serve --data-dir {store[0]} -o {out}" in " ".join(r.output.split())
    assert cell(0.37, "seconds", "en", False) == "0.37" and cell(0.37, "seconds", "es", False) == "0,37"
    d = page_data(site.out_dir / "en" / "health.html")["items"]
    cols = [c for c, _ in d["course_days"]["columns"]]
    assert cols[:2] == ["course_name", "course_id"]
    ids = {cid: name for cid, name in courses_of(store[0])}
    for row in d["course_days"]["rows"]:
        assert row["course_id"] in ids and row["course_name"] == ids[row["course_id"]]
    assert dict(d["models"]["columns"])["seconds"] == "seconds"


def test_top_countries_rank_countries_only_and_show_the_rest_after(site, public_site):
    """"Not stated" and "Other (small groups)" are not countries: they come after the ranked
    countries, never among them (an outside review saw "Other" ranked in the top 20)."""
    seen_other = 0
    for root in (site.out_dir, public_site.out_dir):
        for f in root.rglob("*.html"):
            d = PAGE_JSON.search(f.read_text("utf-8"))
            items = json.loads(d.group(1).replace("<\\/", "</"))["items"] if d else {}
            for iid in ("top_countries", "countries"):
                rows = items.get(iid, {}).get("rows", [])
                codes = [r.get("code") for r in rows]
                real = [r["learners"] for r in rows if r.get("code") not in ("unknown", "other")]
                assert real == sorted(real, reverse=True), (f, iid)
                tail = [c in ("unknown", "other") for c in codes]
                assert tail == sorted(tail), (f, iid, codes)  # every non-country after every country
                seen_other += sum(tail)
    assert seen_other, "no 'not stated' or 'other' row: this store proves nothing"


def test_videos_and_problems_carry_the_same_numbers_in_chart_table_and_csv(site, store):
    """The chart's labels numbered the videos 1, 2, 3 while the table's Order column said 1, 4, 6 (the
    place among every block of the course): an outside review could not match them."""
    data, _ = store
    checked = 0
    for cid, _name in courses_of(data):
        items = page_data(course_page(site.out_dir, "es", cid))["items"]
        for iid in ("videos", "problems"):
            rows = items[iid]["rows"]
            numbers = [r["position"] for r in rows if r["position"] is not None]
            assert numbers == list(range(1, len(numbers) + 1)), (cid, iid, numbers)
            labels = [r["label"] for r in items[iid]["spec"]["datasets"]["table"]]
            assert [lb.split(".", 1)[0] for lb in labels if lb[:1].isdigit()] == [str(n) for n in numbers]
            checked += len(numbers)
    assert checked > 4


def test_downloadable_csvs_start_with_a_utf8_bom_for_excel(site, store):
    """Excel opens a CSV without a byte-order mark in the system's code page: "Introducción" became
    "IntroducciÃ³n". Every CSV a page offers starts with the BOM and is otherwise the page's numbers."""
    data, _ = store
    files = sorted(site.out_dir.glob("*/data/*.csv"))
    assert len(files) > 20
    for f in files:
        assert f.read_bytes().startswith(b"\xef\xbb\xbf"), f
        assert not f.read_bytes()[3:].startswith(b"\xef\xbb\xbf"), f
    accented = [n for _, n in courses_of(data) if any(ord(ch) > 127 for ch in n)]
    text = "".join(f.read_text("utf-8-sig") for f in files if f.name.startswith("index-"))
    assert accented and all(n in text for n in accented), accented
    cid = courses_of(data)[0][0]
    html = course_page(site.out_dir, "es", cid)
    item, rows = next((k, v["rows"]) for k, v in page_data(html)["items"].items() if v["rows"])
    body = (html.parent.parent / "data" / f"course-{html.stem}-{item}.csv").read_text("utf-8-sig").splitlines()
    assert len(body) == len(rows) + 1 and not body[0].startswith("\ufeff")


# -- the period switch of a long history ------------------------------------------------------------------

ITEMS_OVER = """([id, field]) => { const out = [];  // [date, datum] of every mark drawn in chart ``id``
    (function walk(n) { if (!n) return;
      if (n.items) for (const it of n.items) {
        if (it.datum && it.datum[field] !== undefined && n.marktype !== 'group')
          out.push([new Date(it.datum[field]).toISOString().slice(0, 10), it.datum]);
        walk(it); } })(EDX.views[id].scenegraph().root);
    return out; }"""

BINDINGS = """id => [...document.querySelectorAll('#' + id + ' .vega-bind')]
    .map(b => [...b.querySelectorAll('.vega-bind-name, label')].map(x => x.textContent.trim()))"""
# ^ the switches under chart ``id``: [name, option, option]


def _window_of(store_dir: Path) -> tuple[dt.date, dt.date, dt.date]:
    """(first, since, last): the programme's first and latest week with SQL of its own, and the same
    day 12 months before the latest (the default window shows the weeks after it)."""
    (first, last), = sql(store_dir, "SELECT min(w), max(w) FROM (SELECT date_trunc('week', date)::DATE AS w "
                                    "FROM models.enrolment_daily WHERE date IS NOT NULL UNION ALL "
                                    "SELECT week::DATE FROM models.activity_weekly)")
    return first, last.replace(year=last.year - 1), last


def _ms(d: dt.date) -> int:
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc).timestamp() * 1000)


def _oldest_course(store_dir: Path) -> str:
    return sql(store_dir, "SELECT course_id FROM models.enrolment_daily WHERE date IS NOT NULL ORDER BY date LIMIT 1")[0][0]


def _cumulative(store_dir: Path, course_id: str, week: str) -> int:
    return sql(store_dir, "SELECT sum(enrollments) FROM models.enrolment_daily WHERE course_id = ? AND "
                          "date < ?::DATE + 7", [course_id, week])[0][0]


def test_a_long_history_opens_on_its_last_12_months_and_all_shows_it_whole(browser, site, store):
    """One course from 2015 stretched the programme's time axes over 11 years, the current courses
    squeezed at the right edge. The charts open on the last 12 months of the data (ending at its
    latest week, not today), the cumulative line keeps its true totals there, "All" shows the whole
    history, the caption says which, and the Data table keeps every week."""
    data = store[0]
    first, since, last = _window_of(data)
    assert (last - first).days > 15 * 31  # the store's 2015 course: the case this test is about
    names = dict(courses_of(data))
    oldest = _oldest_course(data)
    v = Visit(browser, site.out_dir)
    try:
        page = v.open("en/index.html")
        for cid in ("enrol_time", "enrol_cum", "active_weekly"):
            assert page.locator(f"#{cid} input[value=recent]").count() == (cid != "active_weekly"), cid
        for cid, field in (("enrol_time", "date"), ("enrol_cum", "week")):
            chart = f"#{cid}"
            assert page.is_checked(f"{chart} input[value=recent]")
            switches = page.evaluate(BINDINGS, cid)
            assert switches == [["Time grain", "Week", "Month"], ["Period", "Last 12 months", "All"]][cid == "enrol_cum":]
            assert page.evaluate(f"EDX.views['{cid}'].scale('x').domain().map(Number)") == [_ms(since), _ms(last)]
            drawn = page.evaluate(ITEMS_OVER, [cid, field])
            assert drawn and all(since < dt.date.fromisoformat(d) <= last for d, _ in drawn), cid
            assert "Shown: the last 12 months of the data" in page.inner_text(f"#{cid} .caption")
            # the Data table and the CSV keep every week
            rows = page_data(site.out_dir / "en" / "index.html")["items"][cid]["rows"]
            assert page.locator(f"{chart} table tbody tr").count() == len(rows)
            assert min(r[field] for r in rows) <= since.isoformat()
            csv_rows = (site.out_dir / "en" / "data" / f"index-{cid}.csv").read_text("utf-8").splitlines()
            assert len(csv_rows) == len(rows) + 1
        # the cumulative line starts the window at the true total, not at 0
        cum = page.evaluate(ITEMS_OVER, ["enrol_cum", "week"])
        start, value = min((d, x["cumulative"]) for d, x in cum if x["course"] == names[oldest])
        assert value == _cumulative(data, oldest, start) > 0

        page.check("#enrol_cum input[value=all]")
        page.wait_for_function("EDX.views['enrol_cum'].signal('period') === 'all'")
        assert page.evaluate("EDX.views['enrol_cum'].scale('x').domain().map(Number)")[0] == _ms(first)
        whole = page.evaluate(ITEMS_OVER, ["enrol_cum", "week"])
        assert min(d for d, _ in whole) == first.isoformat() and len(whole) > len(cum)
        assert "Shown: all the data" in page.inner_text("#enrol_cum .caption")
        assert "last 12 months" not in page.inner_text("#enrol_cum .caption")
        assert page.is_checked("#enrol_time input[value=recent]")  # each chart has its own switch
        page.check("#enrol_time input[value=all]")  # with months too
        page.check("#enrol_time input[value=Month]")
        page.wait_for_function("EDX.views['enrol_time'].signal('grain') === 'Month'")
        assert min(d for d, _ in page.evaluate(ITEMS_OVER, ["enrol_time", "date"])) == first.replace(day=1).isoformat()
        page.close()

        page = v.open("es/index.html")  # in Spanish
        assert page.evaluate(BINDINGS, "enrol_cum") == [["Período", "Últimos 12 meses", "Todo"]]
        assert "Se muestran los últimos 12 meses de los datos" in page.inner_text("#enrol_cum .caption")
        page.check("#enrol_cum input[value=all]")
        page.wait_for_function("document.getElementById('enrol_cum-period').textContent.includes('todos los datos')")
    finally:
        v.close()
    assert v.errors == [] and v.outside == [], (v.errors, v.outside)


def test_a_course_open_for_years_has_the_switch_and_its_markers_follow(browser, site, store):
    """The 2015 course's own page had the same 11-year axis (enrolments and forum posts): it gets the
    switch too; its start marker (2015) is drawn only with "All"."""
    data = store[0]
    cid = _oldest_course(data)
    start = sql(data, "SELECT min(date) FROM models.enrolment_daily WHERE course_id = ?", [cid])[0][0]
    rel = course_page(site.out_dir, "en", cid).relative_to(site.out_dir).as_posix()
    v = Visit(browser, site.out_dir)
    try:
        page = v.open(rel)
        assert page.is_checked("#enrol_mode input[value=recent]")
        labels = "[...document.querySelectorAll('#enrol_mode .chart text')].map(t => t.textContent)"
        assert "Start" not in page.evaluate(labels)
        page.check("#enrol_mode input[value=all]")
        page.wait_for_function(f"{labels}.includes('Start')")
        dates = [d for d, _ in page.evaluate(ITEMS_OVER, ["enrol_mode", "week"])]
        assert min(dates) == (start - dt.timedelta(days=start.weekday())).isoformat()  # its first week
    finally:
        v.close()
    assert v.errors == [], v.errors


def test_the_public_site_keeps_the_switch_and_its_numbers(public_site):
    """A public site has the weekly chart only (no months, no cumulative line): it gets the switch; the
    chart holds exactly the rows of its table (nothing more is published)."""
    d = page_data(public_site.out_dir / "en" / "index.html")["items"]
    spec = d["enrol_time"]["spec"]
    assert [p["name"] for p in spec["params"]] == ["period"] and "enrol_cum" not in d
    assert spec["datasets"]["table"] == d["enrol_time"]["rows"]


@pytest.fixture(scope="module")
def short_site(tmp_path_factory):
    """A programme of one current course: a few months of data."""
    root = tmp_path_factory.mktemp("short")
    generate(root / "pkg", SyntheticConfig(seed=5, courses=1, learners=40, days=2))
    data = root / "store"
    run_import(config.resolve(data_dir=str(data)), [root / "pkg"], quiet=True)
    build_duckdb(Lake(data), [], Params())
    return build_site(Lake(data), root / "site", lang="en")


def test_a_short_history_has_no_period_switch(browser, short_site):
    root = short_site.out_dir
    v = Visit(browser, root)
    try:
        for rel in ["en/index.html", *(p.relative_to(root).as_posix() for p in (root / "en" / "course").glob("*.html"))]:
            page = v.open(rel)
            assert page.locator("input[value=recent], input[value=all]").count() == 0, rel
            assert page.locator("[id$=-period]").count() == 0, rel
            assert page.locator("#enrol_time input").count() == (2 if rel == "en/index.html" else 0)  # Week/Month
            page.close()
    finally:
        v.close()
    assert v.errors == [], v.errors
