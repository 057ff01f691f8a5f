"""Benchmark: build the dashboard site on the models benchmark store and print the figures.

    .venv/bin/python benchmarks/bench_dashboard.py [--dir /tmp/edx-bench] [--reuse] [--public]
                                                   [--learners 100000] [--courses 20] [--events 20000000]

The store is the one of ``bench_models.py`` (generated with SQL, then ``build``); ``--reuse`` takes
a store (with built models) from an earlier run. Printed: seconds for the site (the first build also
writes the 0.9 MB Vega bundle, ~5 s of vl-convert start-up, reused by later builds), pages, files,
total size and the largest page (HTML + its CSV files; target: under 2 MB, the shared JS excepted).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from edx_engine.dashboard import build_site  # noqa: E402
from edx_engine.lake import Lake  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default="/tmp/edx-bench")
    ap.add_argument("--reuse", action="store_true", help="Reuse the store (and models) of an earlier run.")
    ap.add_argument("--public", action="store_true", help="Also time a --public build (small-cell suppression).")
    ap.add_argument("--learners", type=int, default=100_000)
    ap.add_argument("--courses", type=int, default=20)
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    root = Path(a.dir)
    if not a.reuse:
        import bench_models
        from edx_engine.models import Params, build_duckdb

        print(f"generating {a.learners:,} learners, {a.courses} courses, {a.events:,} events in {root} ...")
        bench_models.generate(root, a.learners, a.courses, a.events, a.threads)
        t = time.perf_counter()
        build_duckdb(Lake(root), [], Params(), threads=a.threads)
        print(f"models built in {time.perf_counter() - t:.1f} s")
    for public in (False, True) if a.public else (False,):
        for run in ("first", "again"):
            res = build_site(Lake(root), root / ("site-public" if public else "site"), public=public)
            print(f"{'public ' if public else ''}site ({run}): {res.seconds:.1f} s, {len(res.pages)} pages, "
                  f"{res.files} files, {res.bytes / 2**20:.1f} MB; largest page {res.largest_page[0]} "
                  f"{res.largest_page[1] / 2**20:.2f} MB")


if __name__ == "__main__":
    main()
