"""Benchmark: import of a weekly database package with >= 1 million courseware_studentmodule rows.

Measures, in the same run:
  ours      `edx-engine import <zip>` (Arrow streaming TSV reader -> typed Parquet + DuckDB catalog)
  baseline  the naive loader: Python `csv` module + row inserts (executemany) into DuckDB
  sqlite    the same naive loader into SQLite (a much faster insert target, for perspective)

Each measurement runs in its own subprocess (so peak RSS is its own) and is repeated;
medians are printed. The naive DuckDB loader is far too slow to run on every row, so it
runs on a sample of the studentmodule file and its rate is extrapolated (printed as such).
Timings never decide pass/fail of the test suite.

    python benchmarks/bench_exports.py [--learners 25000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"


def run_child(code: str) -> dict:
    """Run Python code in a fresh process; it prints a JSON dict; we add its peak RSS."""
    wrapper = code + textwrap.dedent("""
        import resource, json as _j
        _r['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(_j.dumps(_r))
    """)
    r = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True)
    if r.returncode not in (0, 2):
        raise SystemExit(f"benchmark child failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def ensure_package(learners: int) -> Path:
    pkg = OUT / f"exports-{learners}"
    if not (pkg / "manifest.json").exists():
        print(f"generating package ({learners} learners x 4 courses) ...", flush=True)
        from edx_engine.synthetic import SyntheticConfig, generate

        generate(pkg, SyntheticConfig(courses=4, learners=learners, studentmodule_per_learner=12, days=1,
                                      events=False))
    return next((pkg / "course-data").glob("*.zip"))


OURS = """
import time, tempfile, shutil
from edx_engine.config import resolve
from edx_engine.cli import run_import
d = tempfile.mkdtemp()
t = time.perf_counter()
ex, _ = run_import(resolve(data_dir=d), [__import__('pathlib').Path({zip!r})], quiet=True)
_r = {{'seconds': time.perf_counter() - t, 'rows': ex.rows}}
shutil.rmtree(d)
"""

NAIVE = """
import csv, io, time, zipfile, {module}
csv.field_size_limit(1 << 30)
z = zipfile.ZipFile({zip!r})
name = next(n for n in z.namelist() if n.endswith('courseware_studentmodule-prod-analytics.sql'))
con = {connect}
t = time.perf_counter()
with z.open(name) as f:
    reader = csv.reader(io.TextIOWrapper(f, 'utf-8', newline='\\n'), delimiter='\\t', quoting=csv.QUOTE_NONE)
    header = next(reader)
    con.execute('CREATE TABLE sm (' + ', '.join(c + ' VARCHAR' for c in header) + ')')
    sql = 'INSERT INTO sm VALUES (' + ', '.join('?' * len(header)) + ')'
    batch, n = [], 0
    for row in reader:
        if len(row) != len(header):
            continue
        batch.append([None if v == 'NULL' else v for v in row])
        n += 1
        if len(batch) == 1000:
            con.executemany(sql, batch); batch = []
        if n >= {limit}:
            break
    if batch:
        con.executemany(sql, batch)
con.commit() if hasattr(con, 'commit') else None
_r = {{'seconds': time.perf_counter() - t, 'rows': n}}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--learners", type=int, default=25000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sample", type=int, default=20000, help="rows loaded by the naive DuckDB baseline")
    args = ap.parse_args()
    zpath = ensure_package(args.learners)
    with zipfile.ZipFile(zpath) as z:
        mb = sum(i.file_size for i in z.infolist()) / 1e6
        sm_rows = sum(1 for n in z.namelist() if "courseware_studentmodule" in n for _ in [0])
    manifest = json.loads((zpath.parent.parent / "manifest.json").read_text())
    sm_rows = sum(r["rows"] for r in manifest["row_counts"] if r["table"] == "courseware_studentmodule")
    print(f"package: {zpath.name}, {mb:.0f} MB of TSV/JSON, {sm_rows:,} courseware_studentmodule rows")

    ours = [run_child(OURS.format(zip=str(zpath))) for _ in range(args.repeat)]
    tmp = tempfile.mkdtemp()
    naive_duck = [run_child(NAIVE.format(module="duckdb", zip=str(zpath), limit=args.sample,
                                         connect=f"duckdb.connect({tmp + f'/n{i}.duckdb'!r})"))
                  for i in range(args.repeat)]
    naive_sqlite = [run_child(NAIVE.format(module="sqlite3", zip=str(zpath), limit=10**12,
                                           connect=f"sqlite3.connect({tmp + f'/s{i}.db'!r})"))
                    for i in range(args.repeat)]

    def med(rs, key):
        return statistics.median(r[key] for r in rs)

    ours_rps = med(ours, "rows") / med(ours, "seconds")
    duck_rps = statistics.median(r["rows"] / r["seconds"] for r in naive_duck)
    sqlite_rps = statistics.median(r["rows"] / r["seconds"] for r in naive_sqlite)
    print(f"\n{'loader':<46} {'median s':>9} {'rows/s':>12} {'MB/s':>7} {'peak RSS':>9}")
    print(f"{'ours: edx-engine import (all tables, typed)':<46} {med(ours, 'seconds'):>9.2f} {ours_rps:>12,.0f} "
          f"{mb / med(ours, 'seconds'):>7.1f} {max(r['peak_rss_mb'] for r in ours):>7.0f}MB")
    print(f"{'baseline: csv + DuckDB row inserts (sample)':<46} {med(naive_duck, 'seconds'):>9.2f} {duck_rps:>12,.0f} "
          f"{'':>7} {max(r['peak_rss_mb'] for r in naive_duck):>7.0f}MB")
    print(f"{'perspective: csv + SQLite row inserts (1 table)':<46} {med(naive_sqlite, 'seconds'):>9.2f} "
          f"{sqlite_rps:>12,.0f} {'':>7} {max(r['peak_rss_mb'] for r in naive_sqlite):>7.0f}MB")
    print(f"\nratio ours / baseline (DuckDB inserts, extrapolated from {args.sample:,} rows): {ours_rps / duck_rps:,.1f}x "
          f"(target >= 10x)")
    print(f"ratio ours / csv + SQLite inserts: {ours_rps / sqlite_rps:,.1f}x")
    print(f"peak RSS of our import: {max(r['peak_rss_mb'] for r in ours):.0f} MB (target < 1024 MB)")


if __name__ == "__main__":
    main()
