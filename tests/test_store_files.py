"""store/files.py: the one atomic writer, the one quarantine writer, the one file lock."""

from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest

from edx_engine.store.files import LockBusy, QuarantineWriter, file_lock, lock_holder, write_atomic


def test_write_atomic_replaces_whole_or_not_at_all(tmp_path):
    p = tmp_path / "meta.json"
    write_atomic(p, '{"a": 1}')
    assert p.read_text() == '{"a": 1}'
    write_atomic(p, b"second")
    assert p.read_bytes() == b"second"

    def half_then_fail(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("disk went away")

    with pytest.raises(RuntimeError):
        write_atomic(p, half_then_fail)
    assert p.read_bytes() == b"second"  # the old file, untouched
    assert sorted(x.name for x in tmp_path.iterdir()) == ["meta.json"]  # no .tmp left behind


def test_quarantine_writer_streams_rows_in_the_quarantine_layout(tmp_path):
    target = tmp_path / "q.parquet"
    w = QuarantineWriter(lambda: target, "events", "s3://b/log.gz")
    w.add([(3, "bad json", b"{x"), (7, "too long", b"y" * 5)])
    w.add([(9, "bad time", b"z")])
    assert w.close() == target and w.rows == 3
    t = pq.read_table(target).to_pylist()
    assert [(r["line"], r["reason"], r["raw"], r["kind"], r["source_file"]) for r in t] == [
        (3, "bad json", b"{x", "events", "s3://b/log.gz"), (7, "too long", b"yyyyy", "events", "s3://b/log.gz"),
        (9, "bad time", b"z", "events", "s3://b/log.gz")]
    assert pq.read_schema(target).names == ["kind", "source_file", "line", "reason", "raw", "imported_at"]

    none = QuarantineWriter(lambda: tmp_path / "never.parquet", "events", "x")
    none.add([])
    assert none.close() is None and not (tmp_path / "never.parquet").exists()


def test_file_lock_is_exclusive_and_names_its_holder(tmp_path):
    lock = tmp_path / ".sync.lock"
    assert lock_holder(lock) is None
    with file_lock(lock, record_pid=True):
        assert lock_holder(lock) == os.getpid()
        with pytest.raises(LockBusy) as busy:
            with file_lock(lock):  # another open file description: flock refuses it
                pass
        assert busy.value.holder == str(os.getpid())
        with pytest.raises(LockBusy):
            with file_lock(lock, wait=True, timeout=0.3):
                pass
    assert lock_holder(lock) is None
    with file_lock(lock, wait=True, timeout=1):  # free again
        pass


def test_a_lock_released_a_moment_later_is_not_called_busy(tmp_path):
    """Without ``wait`` the lock is still asked for KILLED_HOLDER_GRACE seconds: a killed holder's flock can
    outlive its reaping by a few milliseconds, and the command run right after a kill -9 must not say
    that another one is running (test_faults runs such commands at once). Held longer, it is busy."""
    import subprocess
    import sys
    import time

    from edx_engine.store.files import KILLED_HOLDER_GRACE

    lock = tmp_path / ".lock"
    hold = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(float(sys.argv[2]))")
    for seconds, busy in ((0.1, False), (KILLED_HOLDER_GRACE + 1.5, True)):
        p = subprocess.Popen([sys.executable, "-c", hold, str(lock), str(seconds)], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline() == "held\n"
        t0 = time.monotonic()
        if busy:
            with pytest.raises(LockBusy):
                with file_lock(lock):
                    pass
            assert KILLED_HOLDER_GRACE <= time.monotonic() - t0 < KILLED_HOLDER_GRACE + 1.0
        else:
            with file_lock(lock):
                assert time.monotonic() - t0 < KILLED_HOLDER_GRACE
        p.kill()
        p.wait()
        p.stdout.close()
