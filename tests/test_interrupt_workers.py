"""Ctrl-C during a tracking-log import stops within a block, not at the end of the file.

Found by hand on a 345 MB day (400,000 lines, 4 such days in one `import`): a Ctrl-C from the
terminal took 5-7 s to end the command, a SIGINT sent to the importing process alone (``kill -INT``,
a service manager) 18-22 s, because (1) DuckDB reports the interrupt as ``Query interrupted``, which
the worker took for an unreadable file before going on with the next file queued to it, and (2) the
driver waited for its worker processes to finish their whole files without passing the signal on."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest

import edx_engine.ingest.events as E
from edx_engine import interrupts
from edx_engine.ingest import events_duck as D
from edx_engine.decrypt import GpgSettings
from edx_engine.ingest.events_parse import EventLimits
from edx_engine.ingest.sources import discover
from edx_engine.pipeline import backfill
from edx_engine.store.lake import Lake

from test_events import ev, line


def _busy_or_interrupt(job):
    """Worker stand-in for ``stage_job``: the ``busy`` file parses for a minute; the ``stop`` file
    waits until ``busy`` started, then is interrupted the way a terminal's Ctrl-C interrupts one worker."""
    if job.key == "busy":
        Path(job.marker).write_text(str(os.getpid()))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.01)
        return SimpleNamespace(discard=lambda: None)  # a staged file
    while not Path(job.marker).exists():
        time.sleep(0.01)
    raise KeyboardInterrupt


def test_the_driver_passes_ctrl_c_on_to_its_workers(tmp_path, monkeypatch):
    """One worker interrupted, the other in the middle of a long file: the import ends in seconds (the
    driver sent SIGINT to its workers), not when the other file is done (a minute)."""
    monkeypatch.setattr(backfill, "stage_job", _busy_or_interrupt)  # the forked workers inherit it
    marker = str(tmp_path / "busy-started")
    jobs = [SimpleNamespace(key="stop", marker=marker), SimpleNamespace(key="busy", marker=marker)]
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        list(backfill._local_results(jobs, 2))
    assert Path(marker).exists()  # the busy worker had started its file
    assert time.monotonic() - t0 < 20


def test_a_worker_takes_ctrl_c_that_duckdb_reported_as_an_error_for_an_interrupt_not_a_failed_file(tmp_path, monkeypatch):
    """Ctrl-C during a block's statement in a worker process: DuckDB's client runs the handler and raises
    ``InterruptException`` ("Query interrupted", a duckdb.Error). The worker used to return the file as
    failed and go on parsing the next file queued to it; now it ends the file with KeyboardInterrupt."""
    monkeypatch.setattr(D, "BLOCK_BYTES", 64 << 10)  # many blocks: small blocks of small reads
    monkeypatch.setattr(E._Plain, "CHUNK", 4 << 10)
    real_parse, calls = D.DuckParser.parse, []

    def parse(self, block, rejects):
        calls.append(block.first)
        if len(calls) == 3:
            interrupts.note()  # what the CLI's handler does before DuckDB swallows its KeyboardInterrupt
            raise duckdb.InterruptException("INTERRUPT Error: Interrupted!")
        return real_parse(self, block, rejects)

    monkeypatch.setattr(D.DuckParser, "parse", parse)
    body = b"".join(line(ev(session=str(i), agent="x" * 500 + str(i))) + b"\n" for i in range(3000))
    (tmp_path / "in").mkdir()
    day = tmp_path / "in" / "idbx-edx-events-2016-10-12.log.gz"
    day.write_bytes(gzip.compress(body))
    lake = Lake(tmp_path / "d")
    with lake.writer():
        lake.init()
    (src,) = [s for s in discover([day]).sources if s.events]
    job = backfill._Job(str(lake.root), src, "k", GpgSettings(), EventLimits())
    try:
        with pytest.raises(KeyboardInterrupt):
            backfill.stage_job(job)
    finally:
        interrupts.reset()
    assert len(calls) == 3
    assert not list((lake.root / "lake" / "events").rglob("*.parquet"))  # its parts removed
