"""Run every benchmark in this folder (bench_*.py), one after the other: `python benchmarks/run.py`."""

import subprocess
import sys
from pathlib import Path

for bench in sorted(Path(__file__).parent.glob("bench_*.py")):
    print(f"\n=== {bench.name} ===", flush=True)
    subprocess.run([sys.executable, str(bench), *sys.argv[1:]], check=False)
