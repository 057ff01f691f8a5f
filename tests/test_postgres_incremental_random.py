"""The random sequences of test_incremental_random, shorter, built into a real PostgreSQL server (issue 15).

After every PostgreSQL build (incremental, or forced in the middle), every model in PostgreSQL equals a
forced DuckDB build of a copy of the same store with the same parameters, row for row (test_postgres_models
holds the two engines' full builds equal).
"""

from __future__ import annotations

import os
import random
import shutil

import pytest

from edx_engine.lake import Lake
from edx_engine.models import build_duckdb, build_postgres, read_model
from edx_engine.models import definitions as D
from conftest import new_pg_database
from incremental_support import import_into
from models_support import engine_rows
from test_incremental import deliveries  # noqa: F401
from test_incremental_random import OPS, Run

SEEDS = [21]  # fewer lines, one course, by name, a package, an early date, a withdrawal
STEPS = 8
if os.environ.get("EDX_RANDOM_SEEDS"):  # a search for more, as in test_incremental_random
    a, _, b = os.environ["EDX_RANDOM_SEEDS"].partition("-")
    SEEDS = list(range(int(a), int(b or a) + 1))
    STEPS = int(os.environ.get("EDX_RANDOM_STEPS", STEPS))


def _check(run: Run, url: str, scratch) -> None:
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(run.lake.root, scratch)
    copy = Lake(scratch)
    build_duckdb(copy, run.entries, run.params, force=True, threads=1)
    bad = {}
    for n in D.MODELS:
        pg, full = engine_rows(read_model(run.lake, n, store=url)), engine_rows(read_model(copy, n))
        if pg != full:
            bad[n] = ([r for r in pg if r not in full][:3], [r for r in full if r not in pg][:3])
    assert not bad, f"PostgreSQL differs from a full build after steps {run.log}: {bad}"


@pytest.mark.parametrize("seed", SEEDS)
def test_random_sequence_on_postgresql(deliveries, pg_server, tmp_path, seed):  # noqa: F811
    pg_url = new_pg_database(pg_server)  # a database for each seed
    _root, first, second = deliveries
    rng = random.Random(seed)
    run = Run(Lake(tmp_path / "store"), tmp_path / "work", rng, first, second)
    ops = rng.sample([o for o in OPS if o not in ("nochange", "subset")], STEPS - 2)  # (a build ends with no change)
    ops.insert(rng.randrange(1, len(ops)), "params")
    ops.insert(rng.randrange(2, len(ops)), "full")
    days = run.pool()[:2]
    for d in days:
        run.delivered[d] = run.write(run.work / "logs" / d / run.name(d), run.content(d))
    import_into(run.lake, first["package"], *(run.delivered[d] for d in days))
    run.log.append(f"package and {days}")
    build_postgres(run.lake, pg_url, run.entries, run.params)
    _check(run, pg_url, tmp_path / "full")
    for op in ops:
        if op == "full":
            run.log.append("build --full")
        else:
            run.log.append(getattr(run, f"op_{op}")())
        build_postgres(run.lake, pg_url, run.entries, run.params, force=op == "full")
        _check(run, pg_url, tmp_path / "full")
    built = build_postgres(run.lake, pg_url, run.entries, run.params)
    assert all(m.status == "unchanged" for m in built.models), run.log
