"""Benchmark: the joint small-cell suppression of the course tables, with and without the bounds check.

    .venv/bin/python benchmarks/bench_suppress.py [--dir /tmp/edx-bench-suppress] [--repeat 3]
                                                  [--shapes 3x120,10x150,2x3000] [--k 5]

For each shape (courses x learners) a synthetic delivery is generated, imported and its models built
(once; reused by later runs in the same --dir). Then ``suppress_course_tables`` (course_summary,
course_breakdown and age bands as one system: what every public output publishes) runs ``--repeat``
times each way, interleaved: the baseline without the interval check (``bounds=False``: equations
and linear algebra only) and with it (the default). Printed: medians of CPU seconds and wall
seconds, the ratio, and the hidden cells of each. Timings are never a test's pass/fail.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def store(root: Path, courses: int, learners: int) -> Path:
    """A built store of this shape under ``root`` (made once)."""
    from edx_engine import config
    from edx_engine.cli import run_import
    from edx_engine.lake import Lake
    from edx_engine.models import Params, build_duckdb
    from edx_engine.synthetic import SyntheticConfig, generate

    data = root / f"{courses}x{learners}" / "store"
    if not (data / ".built").exists():
        generate(data.parent / "pkg", SyntheticConfig(seed=7, courses=courses, learners=learners, days=1))
        run_import(config.resolve(data_dir=str(data)), [data.parent / "pkg"], quiet=True)
        build_duckdb(Lake(data), [], Params(), names=["course_breakdown", "course_summary"])
        (data / ".built").touch()
    return data


def run_once(summary, breakdown, k: int, bounds: bool) -> tuple[float, float, int]:
    from edx_engine.privacy import suppress as S

    original = S.protect
    S.protect = lambda *a, **kw: original(*a, **{**kw, "bounds": bounds})  # the module calls it by name
    try:
        c0, w0 = time.process_time(), time.perf_counter()
        s, b, ages = S.suppress_course_tables(summary, breakdown, k)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    finally:
        S.protect = original
    hidden = b.column("learners").null_count + ages.column("learners").null_count
    hidden += sum(1 for v in s.column("suppressed").to_pylist() if v for _ in v.split(";"))
    return cpu, wall, hidden


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default="/tmp/edx-bench-suppress")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--shapes", default="3x120,10x150,2x3000")
    ap.add_argument("--k", type=int, default=5)
    a, _ = ap.parse_known_args()  # (run.py passes every benchmark the same arguments)
    import duckdb

    print("shape | cells | hidden before -> after | CPU-s before -> after (x) | wall s before -> after")
    for shape in a.shapes.split(","):
        courses, learners = (int(x) for x in shape.split("x"))
        data = store(Path(a.dir), courses, learners)
        with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
            breakdown = con.execute("SELECT * FROM models.course_breakdown").to_arrow_table()
            summary = con.execute("SELECT * FROM models.course_summary").to_arrow_table()
        runs: dict[bool, list[tuple[float, float, int]]] = {False: [], True: []}
        run_once(summary, breakdown, a.k, True)  # warm-up: imports (highspy, numpy's LAPACK)
        for _ in range(a.repeat):
            for bounds in (False, True):
                runs[bounds].append(run_once(summary, breakdown, a.k, bounds))
        cpu = {b: statistics.median(r[0] for r in runs[b]) for b in runs}
        wall = {b: statistics.median(r[1] for r in runs[b]) for b in runs}
        hid = {b: runs[b][0][2] for b in runs}
        print(f"{shape} | {breakdown.num_rows} | {hid[False]} -> {hid[True]} | {cpu[False]:.2f} -> {cpu[True]:.2f} "
              f"({cpu[True] / max(cpu[False], 1e-9):.2f}) | {wall[False]:.2f} -> {wall[True]:.2f}", flush=True)


if __name__ == "__main__":
    main()
