"""Timestamps a table file can hold but no enrolment can have (0001-01-01, 9999-12-31): one such `created`
made `edx-engine dashboard` fail with a traceback (OverflowError past 9999-12-31) and, once that was
avoided, write a site of gigabytes (its enrolment charts zero-filled week by week over thousands of years).
``enrolment_daily`` counts such an enrolment on no day (``date`` NULL): the rest is unchanged."""

from __future__ import annotations

import zipfile

from edx_engine.dashboard.build import build_site
from edx_engine.models import Params, build_duckdb, read_model

from models_support import PARITY_PARAMS_AT, parity_entries, synthetic_store


def _with_dates(src, dst, dates: dict[int, bytes]) -> None:
    """A copy of the package ``src`` dated a week later, with ``created`` of enrolment rows replaced."""
    date = src.stem.split("-", 1)[1]
    later = "2026-10-10"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst / f"IDBx-{later}.zip", "w") as zo:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if "-student_courseenrollment-" in info.filename:
                lines = data.split(b"\n")
                i = lines[0].split(b"\t").index(b"created")
                for row, value in dates.items():
                    f = lines[row].split(b"\t")
                    f[i] = value
                    lines[row] = b"\t".join(f)
                data = b"\n".join(lines)
            zo.writestr(info.filename.replace(date, later), data)


def test_enrolment_dated_year_1_or_9999(tmp_path):
    from edx_engine.cli import run_import
    from edx_engine.config import resolve

    lake, manifest = synthetic_store(tmp_path, courses=1, learners=40, days=2, malformed=False)
    (tmp_path / "late").mkdir()
    _with_dates(next((tmp_path / "pkg").rglob("IDBx-*.zip")), tmp_path / "late",
                {1: b"0001-01-01 00:00:00", 2: b"9999-12-31 23:59:59.999999", 3: b"2030-01-01 00:00:00",
                 4: b"2026-10-12 00:30:00"})  # an export that ran past midnight: within the lag, kept
    exports, _ = run_import(resolve(data_dir=str(lake.root)), [tmp_path / "late"], quiet=True)
    assert not exports.failed and exports.rejected == 0
    build_duckdb(lake, parity_entries(manifest), Params(built_at=PARITY_PARAMS_AT, include_staff=True))
    days = read_model(lake, "enrolment_daily").to_pylist()
    dated = [r["date"] for r in days if r["date"] is not None]
    assert min(dated).year >= 2012 and max(dated).isoformat() == "2026-10-12"
    assert sum(r["enrollments"] for r in days if r["date"] is None) == 3  # counted, on no day
    with lake.connect(read_only=True) as con:
        assert sum(r["enrollments"] for r in days) == con.execute(
            "SELECT count(*) FROM student_courseenrollment WHERE package_date = '2026-10-10'").fetchone()[0]
    res = build_site(lake, tmp_path / "site")  # OverflowError: date value out of range
    size = sum(f.stat().st_size for f in (tmp_path / "site").rglob("*") if f.is_file())
    assert size < 20_000_000, (size, res)
