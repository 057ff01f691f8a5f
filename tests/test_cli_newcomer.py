"""What a newcomer following the README met (issue 10 §5): help text, errors, names, CSV for Excel,
Ctrl-C, status, stale models. In-process through typer's CliRunner where possible (fast), as a
real process where signals are the point."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from models_support import synthetic_store

from edx_engine.cli import app
from edx_engine.models import Params, build_duckdb

runner = CliRunner()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A small synthetic store with every model built (2 courses, 60 learners, 2 days)."""
    root = tmp_path_factory.mktemp("newcomer")
    lake, _ = synthetic_store(root, courses=2, learners=60, days=2, seed=7)
    build_duckdb(lake, [], Params())
    return lake


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def courses_of(lake) -> list[str]:
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        return [r[0] for r in con.execute("SELECT DISTINCT course_id FROM student_courseenrollment ORDER BY 1")
                .fetchall()]


def test_help_keeps_words_in_square_brackets():
    r = invoke("build", "--help")
    assert r.exit_code == 0
    assert "[courses]" in r.output  # rich markup used to swallow it: "else  of the config file"


def test_error_messages_keep_square_brackets(built, tmp_path, monkeypatch):
    monkeypatch.delenv("EDX_ENGINE_PSEUDONYM_SECRET", raising=False)
    monkeypatch.delenv("EDX_ENGINE_PSEUDONYM_SECRET_FILE", raising=False)
    r = invoke("export", "masterfile", "--anonymised", "-o", tmp_path / "m.csv", "--data-dir", built.root)
    assert r.exit_code == 1
    assert "[privacy] pseudonym_secret_file" in r.output


def test_unknown_course_is_an_error_with_close_matches(built, tmp_path):
    real = courses_of(built)[0]
    typo = real[:-2] + "X" + real[-1]
    out = tmp_path / "g.csv"
    r = invoke("report", "general", "--course", typo, "-o", out, "--data-dir", built.root)
    assert r.exit_code == 1
    assert f"unknown course {typo!r}" in r.output and real in r.output
    assert not out.exists()  # no empty file left behind
    r = invoke("report", "general", "--course", "NOPE", "-o", out, "--data-dir", built.root)
    assert r.exit_code == 1 and "unknown course 'NOPE'" in r.output
    r = invoke("report", "general", "--course", real, "-o", out, "--data-dir", built.root)
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(out.read_text("utf-8-sig"))))
    assert [row["course_id"] for row in rows] == [real]


def test_report_and_export_accept_each_others_names(built, tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert invoke("report", "general", "-o", a, "--data-dir", built.root).exit_code == 0
    r = invoke("report", "general_report", "-o", b, "--data-dir", built.root)
    assert r.exit_code == 0, r.output
    assert a.read_bytes() == b.read_bytes()
    p, q = tmp_path / "p.csv", tmp_path / "q.csv"
    r1 = invoke("export", "general", "--public", "-o", p, "--data-dir", built.root)
    r2 = invoke("export", "general_report", "--public", "-o", q, "--data-dir", built.root)
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    assert p.read_bytes() == q.read_bytes()


def test_output_to_a_directory_writes_the_default_name_inside_and_errors_leave_no_temp_file(built, tmp_path):
    """-o DIR: report and export both write NAME.FORMAT inside it (export used to crash with a traceback,
    report to fail naming its temp file and leave it behind); a path that cannot be written is one line
    naming it, and no *.tmp is left anywhere."""
    d = tmp_path / "out"
    d.mkdir()
    r = invoke("report", "general", "-o", d, "--data-dir", built.root)
    assert r.exit_code == 0, r.output
    r = invoke("export", "general", "--public", "-o", d, "--data-dir", built.root)
    assert r.exit_code == 0 and "Traceback" not in r.output, (r.output, r.exception)
    r = invoke("report", "general", "--format", "parquet", "-o", f"{tmp_path}/new/", "--data-dir", built.root)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in d.iterdir()) == ["general.csv", "general_report.csv",
                                                   "general_report.csv.meta.json"]
    assert (tmp_path / "new" / "general.parquet").is_file()
    # a new directory for export too: its -o was a Path, which drops the trailing "/" (it wrote a file "new2")
    r = invoke("export", "general", "--public", "-o", f"{tmp_path}/new2/", "--data-dir", built.root)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "new2" / "general_report.csv").is_file()
    taken = tmp_path / "taken"  # NAME.FORMAT inside it is a directory
    (taken / "general.csv").mkdir(parents=True)
    (taken / "general_report.csv").mkdir()
    for args in (("report", "general"), ("export", "general", "--public")):
        for target, why in ((taken, "it is a directory"), (d / "general.csv" / "z.csv", "is a file")):
            r = invoke(*args, "-o", target, "--data-dir", built.root)
            assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (args, r.output, r.exception)
            assert r.output.startswith("error: cannot write ") and why in r.output and ".tmp" not in r.output, r.output
    assert not list(tmp_path.rglob("*.tmp"))


def test_report_and_export_write_timestamps_alike(built, tmp_path, monkeypatch):
    """The same column read '2025-03-07 20:51:09' in a report and 2025-03-07 20:51:09.000000 in an export:
    both now write 'YYYY-MM-DD HH:MM:SS[.ffffff]' (docs/indicators.md)."""
    monkeypatch.setenv("EDX_ENGINE_PSEUDONYM_SECRET", "s3cret-for-tests-0123456789abcdef")
    r, e = tmp_path / "r.csv", tmp_path / "e.csv"
    assert invoke("report", "course_summary", "--public", "-o", r, "--data-dir", built.root).exit_code == 0
    assert invoke("export", "course_summary", "--public", "-o", e, "--data-dir", built.root).exit_code == 0
    assert r.read_bytes() == e.read_bytes()  # created_at is a timestamp
    for name, col in (("person_course", "first_event"), ("masterfile", "enrolled_at")):
        r, e = tmp_path / f"r-{name}.csv", tmp_path / f"e-{name}.csv"
        assert invoke("report", name, "-o", r, "--data-dir", built.root).exit_code == 0
        assert invoke("export", name, "--anonymised", "-o", e, "--data-dir", built.root).exit_code == 0
        rv, ev = ([row[col] for row in csv.DictReader(io.StringIO(f.read_text("utf-8-sig")))] for f in (r, e))
        assert sorted(rv) == sorted(ev) and any(rv), name
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?", v) for v in rv if v), rv[:3]


def test_report_says_how_many_rows_it_wrote(built, tmp_path):
    """'course: 1 row(s)' was printed for a course report of hundreds of lines (it counted the summary
    table): the line now counts what the file holds."""
    cid = courses_of(built)[0]
    for fmt in ("csv", "parquet", "json"):
        f = tmp_path / f"c.{fmt}"
        r = invoke("report", "course", "--course", cid, "--format", fmt, "-o", f, "--data-dir", built.root)
        assert r.exit_code == 0, r.output
        if fmt == "csv":
            n = len(f.read_text("utf-8-sig").splitlines()) - 1
        elif fmt == "parquet":
            n = pq.read_metadata(f).num_rows
        else:
            assert r.output.startswith("course: 1 course document(s) -> ") and len(json.loads(f.read_text())) == 1
            continue
        assert n > 20 and r.output.startswith(f"course: {n:,} row(s) -> "), (n, r.output)
    f = tmp_path / "g.csv"
    r = invoke("report", "general", "-o", f, "--data-dir", built.root)
    assert r.output.startswith(f"general: {len(f.read_text('utf-8-sig').splitlines()) - 1} row(s) -> "), r.output


def test_csv_has_a_bom_for_excel_unless_told_not_to(built, tmp_path):
    with_bom, without = tmp_path / "e1.csv", tmp_path / "e2.csv"
    assert invoke("report", "enrolment", "-o", with_bom, "--data-dir", built.root).exit_code == 0
    assert invoke("report", "enrolment", "-o", without, "--no-bom", "--data-dir", built.root).exit_code == 0
    assert with_bom.read_bytes().startswith(b"\xef\xbb\xbf")
    assert not without.read_bytes().startswith(b"\xef\xbb\xbf")
    assert with_bom.read_bytes()[3:] == without.read_bytes()
    e1, e2 = tmp_path / "x1.csv", tmp_path / "x2.csv"
    assert invoke("export", "course_summary", "--public", "-o", e1, "--data-dir", built.root).exit_code == 0
    assert invoke("export", "course_summary", "--public", "-o", e2, "--no-bom", "--data-dir",
                  built.root).exit_code == 0
    assert e1.read_bytes() == b"\xef\xbb\xbf" + e2.read_bytes()
    r = invoke("report", "general", "-o", "-", "--data-dir", built.root)  # stdout: for programs, no BOM
    assert r.exit_code == 0 and r.stdout.startswith('"course_id"')


def test_status_shows_imports_made_with_import(built):
    r = invoke("status", "--data-dir", built.root)
    assert r.exit_code == 0, r.output
    with duckdb.connect(str(built.catalog_path), read_only=True) as con:
        files = con.execute("SELECT count(*) FROM _edx_import_log").fetchone()[0]
    shown = [ln for ln in r.output.splitlines() if ln.startswith("import ")]
    assert shown and sum(int(ln.split(": ")[1].split(" ")[0]) for ln in shown) == files


def test_status_calls_a_killed_sync_interrupted(tmp_path):
    """The ledger says `running` but no process holds the sync lock (kill -9): shown as interrupted."""
    from edx_engine.ledger import Ledger

    data = tmp_path / "d"
    ledger = Ledger(data)
    ledger.init()
    ledger.start_run({"org": "IDBx"})
    r = invoke("status", "--data-dir", data)
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.output.splitlines() if ln.startswith("last sync:"))
    assert "interrupted" in line and "running" not in line


def test_ctrl_c_is_one_line_and_exit_130(tmp_path):
    """SIGINT while an import reads its input: no traceback, exit 130, nothing committed."""
    fifo = tmp_path / "idbx-edx-events-2026-10-01.log"
    os.mkfifo(fifo)
    data = tmp_path / "d"
    proc = subprocess.Popen([sys.executable, "-m", "edx_engine", "import", str(fifo), "--data-dir", str(data)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with open(fifo, "w") as w:  # blocks until the import opens it: the handler is in place by then
        w.write('{"event_type": "x", "time": "2026-10-01T10:00:00+00:00", "context": {}}\n')
        w.flush()
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted"), err
    if (data / "edx.duckdb").exists():
        with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
            assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 0


def test_report_labels_translate_codes_and_keep_counts(built, tmp_path):
    """--labels: codes become the dashboard's labels (f -> Mujer/Woman...); every count stays the same."""
    from collections import Counter

    from edx_engine.dashboard.labels import label

    codes, es = tmp_path / "codes.csv", tmp_path / "es.csv"
    assert invoke("report", "demographics", "-o", codes, "--data-dir", built.root).exit_code == 0
    r = invoke("report", "demographics", "--labels", "es", "-o", es, "--data-dir", built.root)
    assert r.exit_code == 0, r.output
    a = list(csv.DictReader(io.StringIO(codes.read_text("utf-8-sig"))))
    b = list(csv.DictReader(io.StringIO(es.read_text("utf-8-sig"))))
    assert [x["user_id"] for x in a] == [x["user_id"] for x in b]
    for x, y in zip(a, b):
        assert y["gender"] == label("gender", x["gender"] or None, "es")
        assert y["level_of_education"] == label("level_of_education", x["level_of_education"] or None, "es")
    assert Counter(x["gender"] for x in a if x["gender"] == "f") == Counter(
        {"f": sum(1 for y in b if y["gender"] == label("gender", "f", "es"))})
    assert "Mujer" in {y["gender"] for y in b} or "f" not in {x["gender"] for x in a}
    bad = invoke("report", "demographics", "--labels", "fr", "-o", tmp_path / "x.csv", "--data-dir", built.root)
    assert bad.exit_code == 1 and "unknown language" in bad.output
