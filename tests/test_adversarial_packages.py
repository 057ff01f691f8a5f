"""Hostile package input (issue 11, item 8): symbolic links that leave a package directory, links
stored in a zip, zip members with '..' or absolute paths. Every input is generated here.

A link that leaves the package is refused unread and named on one line; nothing of its target
reaches the output or the store. Odd member paths are named in a warning and read from the zip
by their file name (nothing is ever written outside the store)."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from typer.testing import CliRunner

from edx_engine.cli import app
from edx_engine.ingest.sources import discover

from test_exports import CID, SLUG, enrolments, write

runner = CliRunner()
SECRET = "root:x:0:0:SECRET-LINE-4242:/root:/bin/bash"
PROFILE_HEADER = ("id\tuser_id\tname\tlanguage\tlocation\tmeta\tcourseware\tgender\tmailing_address\tyear_of_birth\t"
                  "level_of_education\tgoals\tallow_certificate\tcountry\tcity\tbio\tprofile_image_uploaded_at\n")


def import_cli(data: Path, *paths: Path):
    r = runner.invoke(app, ["import", *map(str, paths), "--data-dir", str(data)])
    return r, r.output  # stdout and stderr


def store_text(data: Path) -> str:
    """Every value of every Parquet file of the store and of every catalog table, as text."""
    parts = []
    for f in (data / "lake").rglob("*.parquet"):
        parts.append(str(pq.read_table(f).to_pylist()))
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        for (t,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall():
            parts.append(str(con.execute(f'SELECT * FROM "{t}"').fetchall()))
    return "\n".join(parts)


def count(data: Path, view: str) -> int:
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        return con.execute(f"SELECT count(*) FROM {view}").fetchone()[0]


def test_links_leaving_a_package_directory_are_refused_named_and_never_read(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    secret = outside / "passwd"
    secret.write_text(SECRET + "\n")  # a first line that would be quoted if it were parsed as a header
    (outside / "dir").mkdir()
    write(outside / "dir", "auth_userprofile", PROFILE_HEADER + "1\t101\t" + SECRET + "\t" + "\t" * 13 + "\n")
    pkg = tmp_path / "IDBx-2016-10-09"
    write(pkg, "student_courseenrollment", enrolments(3))
    (pkg / f"{SLUG}-auth_user-prod-analytics.sql").symlink_to(secret)  # an edX name, a file outside
    (pkg / "more").symlink_to(outside / "dir", target_is_directory=True)  # a folder outside
    (pkg / f"{SLUG}-certificates_generatedcertificate-prod-analytics.sql").symlink_to(tmp_path / "gone")  # broken
    inner = pkg / "data"
    inner.mkdir()
    (inner / "roles.txt").write_text("id\torg\tcourse_id\tuser_id\trole\n1\tIDBx\t" + CID + "\t101\tstaff\n")
    (pkg / f"{SLUG}-student_courseaccessrole-prod-analytics.sql").symlink_to(inner / "roles.txt")  # stays inside

    found = discover([pkg])
    assert len(found.refused) == 3
    assert any(f"{SLUG}-auth_user-prod-analytics.sql: a symbolic link to {secret}" in r for r in found.refused)
    assert any(str(pkg / "more") in r and "outside" in r for r in found.refused)
    assert any("broken symbolic link" in r for r in found.refused)
    labels = sorted(Path(s.label).name for s in found.sources)
    assert labels == [f"{SLUG}-student_courseaccessrole-prod-analytics.sql",
                      f"{SLUG}-student_courseenrollment-prod-analytics.sql"]

    data = tmp_path / "d"
    r, out = import_cli(data, pkg)
    assert r.exit_code == 2, out  # partial: something was refused
    refused_lines = [ln for ln in out.splitlines() if ln.startswith("refused ")]
    assert len(refused_lines) == 3, out  # one line each, naming the link
    assert any(f"{SLUG}-auth_user-prod-analytics.sql" in ln and str(secret) in ln for ln in refused_lines)
    assert "refused: 3 (named above)" in out
    assert "SECRET-LINE-4242" not in out  # the target is never opened, so never echoed
    assert count(data, f"student_courseenrollment WHERE course_id = '{CID}'") == 3
    assert count(data, "auth_user") == 0 and count(data, "auth_userprofile") == 0
    assert count(data, "student_courseaccessrole") == 1  # the link that stays inside is read
    assert "SECRET-LINE-4242" not in store_text(data)


def _zip_with(path: Path, members: list[tuple[str, bytes, bool]]) -> Path:
    """A zip whose members may have any name, some stored as symbolic links (Unix mode bits)."""
    with zipfile.ZipFile(path, "w") as z:
        for name, data, link in members:
            info = zipfile.ZipInfo(name, date_time=(2016, 10, 9, 0, 0, 0))
            info.create_system = 3
            info.external_attr = ((stat.S_IFLNK | 0o777) if link else (stat.S_IFREG | 0o644)) << 16
            z.writestr(info, data)
    return path


def test_zip_members_with_odd_paths_are_named_links_refused_nothing_written_outside(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    zpath = _zip_with(work / "IDBx-2016-10-09.zip", [
        (f"../../{SLUG}-student_courseenrollment-prod-analytics.sql", enrolments(2).encode(), False),
        ("/tmp/IDBx-IDB2x-1T2017-student_courseenrollment-prod-analytics.sql",
         enrolments(4, "course-v1:IDBx+IDB2x+1T2017").encode(), False),
        (f"IDBx-2016-10-09/{SLUG}-auth_user-prod-analytics.sql", b"/etc/passwd", True),
    ])
    found = discover([zpath])
    assert len(found.refused) == 1 and "auth_user" in found.refused[0] and "symbolic link" in found.refused[0]
    assert len(found.warnings) == 2
    assert any("'..'" in w and "../../" in w for w in found.warnings)
    assert any("absolute path" in w and ":/tmp/IDBx-IDB2x" in w for w in found.warnings)

    before = sorted(p for p in tmp_path.rglob("*"))
    tmp_before = set(os.listdir("/tmp"))
    data = tmp_path / "d"
    r, out = import_cli(data, zpath)
    assert r.exit_code == 2, out
    assert sum(ln.startswith("refused ") for ln in out.splitlines()) == 1
    assert sum(ln.startswith("warning ") for ln in out.splitlines()) == 2
    assert count(data, f"student_courseenrollment WHERE course_id = '{CID}'") == 2
    assert count(data, "student_courseenrollment WHERE course_id = 'course-v1:IDBx+IDB2x+1T2017'") == 4
    assert count(data, "auth_user") == 0
    # nothing written outside the data directory (not next to the zip, not in /tmp by member name)
    after = sorted(p for p in tmp_path.rglob("*") if data not in p.parents and p != data)
    assert after == before
    assert not {n for n in set(os.listdir("/tmp")) - tmp_before if "student_courseenrollment" in n}
    assert "/etc/passwd" not in store_text(data)
