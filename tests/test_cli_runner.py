"""Every command's options and errors, in process through typer's CliRunner (fast: no subprocess).

Errors are one line ("error: ..."), exit 1 (2 for typer's own usage errors); the values a command
prints from a store are compared with the same figures read from the catalog directly."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
from pathlib import Path

import duckdb
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from edx_engine.cli import app
from store_support import small_store

ROOT = Path(__file__).resolve().parent.parent
# no setting may leak in from the environment of the person running the tests
CLEAN = {k: None for k in ("EDX_ENGINE_DATA_DIR", "EDX_ENGINE_CONFIG", "EDX_ENGINE_ORG", "EDX_ENGINE_STORE",
                           "EDX_ENGINE_GPG_PASSPHRASE", "EDX_ENGINE_GPG_PASSPHRASE_FILE", "GNUPGHOME",
                           "EDX_ENGINE_PSEUDONYM_SECRET", "EDX_ENGINE_PSEUDONYM_SECRET_FILE",
                           "EDX_ENGINE_PACKAGES_BUCKET", "EDX_ENGINE_EVENTS_BUCKET")}


def cli(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env={**CLEAN, "COLUMNS": "200", **(env or {})},
                              prog_name="edx-engine")


def _paths(cmd, path=()):
    found = [(path, cmd)]
    if hasattr(cmd, "list_commands"):
        ctx = cmd.context_class(cmd)
        for name in cmd.list_commands(ctx):
            found += _paths(cmd.get_command(ctx, name), path + (name,))
    return found


COMMANDS = _paths(get_command(app))
LEAVES = [p for p, c in COMMANDS if p and not hasattr(c, "list_commands")]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return small_store(tmp_path_factory.mktemp("cli_runner"))


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):  # no ./edx-engine.toml or ./courses.toml of the caller is read
    monkeypatch.chdir(tmp_path)


def one_error(res, code: int = 1) -> str:
    """The single `error:` line of a failed command (its message, without the prefix)."""
    assert res.exit_code == code, (res.exit_code, res.output)
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, res.output
    return lines[0][len("error: "):]


# -- help and usage ---------------------------------------------------------------------------

def test_every_command_is_registered():
    names = {p for p, _ in COMMANDS if p}
    assert {("import",), ("synthetic",), ("tables",), ("sql",), ("demo",), ("sync",), ("status",), ("skip",),
            ("courses",), ("build",), ("report",), ("scrub",), ("export",), ("locate-users",), ("run",), ("keys",),
            ("keys", "import"), ("dashboard",), ("dashboard", "serve")} == names


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p) or "edx-engine")
def test_help_lists_every_option(path):
    cmd = dict(COMMANDS)[path]
    res = cli(*path, "--help")
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"Usage: {' '.join(('edx-engine',) + path)} ")
    for param in cmd.params:  # the options as click knows them, each shown by --help
        for opt in param.opts + param.secondary_opts:
            if opt.startswith("-"):
                assert opt in res.output, (path, opt)


@pytest.mark.parametrize("path", LEAVES, ids=" ".join)
def test_unknown_option_is_a_usage_error(path):
    res = cli(*path, "--no-such-option")
    assert res.exit_code == 2
    assert "No such option: --no-such-option" in res.output


def test_run_takes_every_option_of_sync():
    params = {c: {o for p in cmd.params for o in p.opts + p.secondary_opts} for c, cmd in COMMANDS
              if c in (("sync",), ("run",))}
    assert params[("sync",)] < params[("run",)]
    assert params[("run",)] - params[("sync",)] == {"--build", "--no-build", "--dashboard", "--no-dashboard"}


def test_cli_reference_is_up_to_date():
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts" / "gen_cli_docs.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    text = gen.render()
    assert (ROOT / "docs" / "cli.md").read_text("utf-8") == text, "run `python scripts/gen_cli_docs.py`"
    for path, _ in COMMANDS:  # every command and subcommand has its section
        assert f"## `{' '.join(('edx-engine',) + path)}`\n" in text


# -- bad values, before any store is needed -----------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (("sql", "SELECT 1", "--format", "xml"), "unknown format 'xml' (use table, csv, json)"),
    (("sql", "SELECT 1", "--limit", "-1"), "--limit must be 0 or more"),
    (("report", "general", "--format", "xml"), "unknown format 'xml' (use csv, json, parquet)"),
    (("report", "general", "--public", "--k", "0"), "--k must be at least 1"),
    (("build", "--passing-grade", "1.5"), "passing grade must be between 0 and 1, got 1.5"),
    (("build", "--passing-grade", "-0.1"), "passing grade must be between 0 and 1, got -0.1"),
    (("build", "--passing-rule", "=="),
     "passing rule must be one of >=, > (at or above / above the mark), got '=='"),
    (("build", "--model", "nope"), "unknown model 'nope'; models: "),
    (("build", "--store", "mysql://x/y"),
     "unsupported store mysql://…: use postgresql://... (or nothing for the DuckDB catalog)"),
    (("sync", "--only", "both", "--org", "X"), "--only must be `events` or `packages`"),
    (("sync", "--since", "2026-13-01", "--org", "X"), "--since must be a date YYYY-MM-DD, not '2026-13-01'"),
    (("sync", "--since", "yesterday"), "--since must be a date YYYY-MM-DD, not 'yesterday'"),
    (("sync",), "no organisation: give --org (or EDX_ENGINE_ORG, or `org` in the config file's [sync] section)"),
    (("run", "--only", "logs", "--org", "X"), "--only must be `events` or `packages`"),
    (("run",), "no organisation: give --org"),
    (("export", "general", "-o", "x.csv"), "say what kind of shareable file: --anonymised"),
    (("build", "--config", "missing.toml"), "config file missing.toml does not exist"),
    (("synthetic", "--out", "p", "--vintage", "1999"), "vintage must be 2016, 2020 or 2024"),
    (("synthetic", "--out", "p", "--start", "2026-02-30"), "day is out of range for month"),
])
def test_bad_value_is_one_line(args, message):
    res = cli(*args, "--data-dir", "store") if args[0] != "synthetic" else cli(*args)
    assert one_error(res).startswith(message)


def test_report_unknown_name_lists_the_reports():
    res = cli("report", "nope", "--data-dir", "store")
    assert res.exit_code == 1
    assert "error: unknown report 'nope'; available reports:" in res.output
    assert "  general " in res.output and "  course " in res.output


def test_typed_options_are_checked_by_the_parser():
    for args in (("build", "--passing-grade", "high"), ("report", "general", "--k", "five"),
                 ("sync", "--retries", "many"), ("dashboard", "--k", "x"), ("dashboard", "serve", "--port", "x")):
        res = cli(*args)
        assert res.exit_code == 2 and "Invalid value" in res.output, args


def test_config_values_are_checked(tmp_path):
    (tmp_path / "bad.toml").write_text('[models]\npassing_grade = "high"\n[sync]\norg = "X"\nretries = "many"\n')
    assert one_error(cli("build", "--config", "bad.toml", "--data-dir", "s")) == \
        "passing grade must be a number, got 'high'"
    assert one_error(cli("sync", "--config", "bad.toml", "--data-dir", "s")) == \
        "invalid [sync] setting in the config file: invalid literal for int() with base 10: 'many'"
    (tmp_path / "broken.toml").write_text("[models\n")
    assert one_error(cli("tables", "--data-dir", "s", env={"EDX_ENGINE_CONFIG": "broken.toml"})).startswith(
        "broken.toml: invalid TOML: ")


def test_option_beats_environment_beats_config(tmp_path):
    (tmp_path / "c.toml").write_text('[sync]\norg = "FromFile"\nsince = "not a date"\n')
    # the config's bad `since` is read only when no option gives one
    assert one_error(cli("sync", "--config", "c.toml")) == "--since must be a date YYYY-MM-DD, not 'not a date'"
    res = cli("sync", "--config", "c.toml", "--since", "2026-01-40")
    assert one_error(res) == "--since must be a date YYYY-MM-DD, not '2026-01-40'"
    (tmp_path / "m.toml").write_text('[models]\npassing_grade = 3\nstore = "sqlite://x"\n')
    assert one_error(cli("build", "--config", "m.toml")) == "passing grade must be between 0 and 1, got 3.0"
    res = cli("build", "--config", "m.toml", "--passing-grade", "0.5", env={"EDX_ENGINE_STORE": "oracle://y"})
    assert one_error(res).startswith("unsupported store oracle://…:")


# -- missing store, missing files ---------------------------------------------------------------

def test_missing_store(tmp_path):
    assert one_error(cli("tables", "--data-dir", "none")) == "no store at none (run `edx-engine import` first)"
    assert one_error(cli("sql", "SELECT 1", "--data-dir", "none")) == \
        "no store at none (run `edx-engine import` or `edx-engine demo` first)"
    assert one_error(cli("dashboard", "serve", "--data-dir", "none")) == \
        f"no dashboard in {Path('none') / 'site'}: run `edx-engine dashboard` first"
    res = cli("status", "--data-dir", "none")
    assert res.exit_code == 0 and "no sync has run on none yet (run `edx-engine sync --org ORG`)" in res.output
    rep = json.loads(cli("status", "--data-dir", "none", "--json").output)
    assert rep["data_dir"] == "none" and rep["last_sync"] is None and rep["packages"] == [] and rep["pending"] == []


def test_missing_input_files(tmp_path):
    res = cli("import", "nothing-here.zip", "--data-dir", "d")
    assert res.exit_code == 1 and "nothing-here.zip" in one_error(res)
    res = cli("keys", "import", "no-key.asc", "--data-dir", "d")
    assert res.exit_code == 1 and "no-key.asc" in one_error(res)
    res = cli("keys", "import", "no-key.asc", "--data-dir", "d", "--passphrase-file", "no-pass.txt")
    assert one_error(res).startswith("cannot read passphrase file no-pass.txt")


# -- against a small real store -------------------------------------------------------------------

def test_tables_match_the_catalog(store):
    res = cli("tables", "--data-dir", str(store))
    assert res.exit_code == 0, res.output
    with duckdb.connect(str(store / "edx.duckdb"), read_only=True) as con:
        expected = con.execute("SELECT table_name, sum(rows) FROM _edx_snapshots GROUP BY 1").fetchall()
    assert expected
    for name, rows in expected:
        line = next(ln for ln in res.output.splitlines() if f" {name} " in ln)
        assert f"{rows:,}" in line


def test_sql_formats_match_duckdb(store):
    q = "SELECT user_id, course_id FROM student_courseenrollment ORDER BY 1, 2"
    with duckdb.connect(str(store / "edx.duckdb"), read_only=True) as con:
        expected = [[str(a), b] for a, b in con.execute(q).fetchall()]
    res = cli("sql", q, "--format", "csv", "--no-bom", "--data-dir", str(store))
    assert res.exit_code == 0, res.output
    rows = list(csv.reader(io.StringIO(res.stdout)))
    assert rows[0] == ["user_id", "course_id"] and rows[1:] == expected
    res = cli("sql", q, "--format", "json", "--limit", "3", "--data-dir", str(store))
    got = json.loads(res.stdout)
    assert [[str(r["user_id"]), r["course_id"]] for r in got] == expected[:3]


@pytest.mark.parametrize("query, message", [
    ("SELECT 1; SELECT 2", "`sql` runs exactly one statement (2 given)"),
    ("CREATE TABLE t (x INT)", "`sql` only runs queries (SELECT, DESCRIBE, SHOW, EXPLAIN ...), not CREATE; "
                               "use DuckDB itself to write files"),
    ("EXPLAIN ANALYZE COPY auth_user TO 'x.csv'", "`sql` only runs queries"),
    ("SELECT * FROM read_csv('/etc/passwd')", ""),
    ("SELECT * FROM no_such_table", "Catalog Error"),
])
def test_sql_refuses(store, query, message):
    assert one_error(cli("sql", query, "--data-dir", str(store))).startswith(message)


def test_report_unknown_course_and_output(store, tmp_path):
    res = cli("report", "general", "--course", "course-v1:Nobody+X+2000", "--data-dir", str(store))
    assert res.exit_code == 1 and "course-v1:Nobody+X+2000" in one_error(res)
    res = cli("report", "general", "--format", "json", "-o", "g.json", "--data-dir", str(store))
    assert res.exit_code == 0, res.output
    got = json.loads((tmp_path / "g.json").read_text())
    with duckdb.connect(str(store / "edx.duckdb"), read_only=True) as con:
        courses = sorted(r[0] for r in con.execute("SELECT DISTINCT course_id FROM student_courseenrollment").fetchall())
    assert sorted(r["course_id"] for r in got) == courses
    assert f"general: {len(got):,} row(s) -> g.json" in res.output


def test_status_coverage_matches_the_catalog(store):
    rep = json.loads(cli("status", "--json", "--data-dir", str(store)).output)
    with duckdb.connect(str(store / "edx.duckdb"), read_only=True) as con:
        expected = con.execute("SELECT course_id, max(package_date), count(*), sum(rows) FROM _edx_snapshots "
                               "WHERE course_id NOT LIKE 'org:%' GROUP BY 1 ORDER BY 1").fetchall()
    assert [(p["course_id"], p["latest_package"], p["tables"], p["rows"]) for p in rep["packages"]] == \
        [tuple(r) for r in expected]
    assert rep["last_sync"] is None and rep["imports"] and rep["imports"][0]["files"] > 0
