"""The store's file mechanisms, each written once: atomic writes, the quarantine writer, file locks.

One durability rule for every file the store (or a download) makes: the bytes are written
under ``<name>.tmp``, flushed to disk (fsync), renamed over the final name, and the directory
is fsynced. A crash leaves either the old file or the new one, never a torn one; leftover
``.tmp`` files are unreferenced and go with the next ``Lake.collect_garbage``.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .catalog import QUARANTINE_COLUMNS


def tmp_path(path: Path) -> Path:
    """The temporary name ``path`` is written under before it is renamed into place."""
    return Path(path).with_name(Path(path).name + ".tmp")


def fsync_dir(d: Path) -> None:
    """Make a rename in ``d`` durable (best effort: some file systems refuse)."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def finish_atomic(tmp: Path, path: Path) -> Path:
    """Put a completely written ``tmp`` in place of ``path`` (fsync, rename, fsync directory)."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(Path(path).parent)
    return Path(path)


def write_atomic(path: Path, data: bytes | str | Callable[[Path], object]) -> Path:
    """Write ``path`` atomically: ``data`` (bytes or text), or ``data(tmp)`` writes the temporary
    file itself (a Parquet writer, a CSV writer ...). On any error the temporary file is removed
    and ``path`` is as before."""
    path = Path(path)
    tmp = tmp_path(path)
    try:
        if callable(data):
            data(tmp)
        else:
            with open(tmp, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
        return finish_atomic(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# -- swapping paths ---------------------------------------------------------------------------
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2  # <fcntl.h>, <linux/fs.h>


@lru_cache(maxsize=1)
def _renameat2() -> Callable[..., int] | None:
    import ctypes

    try:
        f = ctypes.CDLL(None, use_errno=True).renameat2  # glibc 2.28+ (Debian 10 on)
    except (OSError, AttributeError):
        return None
    f.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return f


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths (files or folders) in one step (Linux ``renameat2(RENAME_EXCHANGE)``):
    whoever looks at ``b`` sees its old or its new content, never nothing. False where the system
    or the file system cannot (the caller then renames in two steps)."""
    import ctypes
    import errno

    f = _renameat2()
    if f is None:
        return False
    if f(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


# -- quarantine ----------------------------------------------------------------------------------
if TYPE_CHECKING:
    import pyarrow.parquet as pq


@lru_cache(maxsize=1)
def quarantine_schema():
    """The Arrow schema of quarantine files (pyarrow is imported here, not with the module: every command
    imports this module for its lock, and pyarrow with numpy costs ~0.3 s to import)."""
    import pyarrow as pa

    schema = pa.schema([("kind", pa.string()), ("source_file", pa.string()), ("line", pa.int64()),
                        ("reason", pa.string()), ("raw", pa.binary()), ("imported_at", pa.timestamp("us"))])
    assert schema.names == list(QUARANTINE_COLUMNS)
    return schema


def __getattr__(name: str) -> Any:
    if name == "QUARANTINE_SCHEMA":  # its old name
        return quarantine_schema()
    raise AttributeError(name)


class QuarantineWriter:
    """Rejected lines of one source file, streamed to one Parquet file (``lake/quarantine/<kind>``).

    ``path_for`` gives the final path when the first line arrives (none: no file at all).
    ``add`` takes (line, reason, raw bytes) triples; ``close`` puts the file in place and
    returns its path (None if nothing was rejected); ``discard`` removes every trace."""

    def __init__(self, path_for: Callable[[], Path], kind: str, label: str, compression: str = "zstd"):
        self.path_for, self.kind, self.label, self.compression = path_for, kind, label, compression
        self.path: Path | None = None
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0
        self.now = int(time.time() * 1e6)

    def add(self, rejects: list[tuple[int, str, bytes]]) -> None:
        if not rejects:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = quarantine_schema()
        if self.writer is None:
            self.path = self.path_for()
            self.writer = pq.ParquetWriter(tmp_path(self.path), schema, compression=self.compression)
        n = len(rejects)
        self.writer.write_table(pa.table({
            "kind": pa.array([self.kind] * n, pa.string()),
            "source_file": pa.array([self.label] * n, pa.string()),
            "line": pa.array([r[0] for r in rejects], pa.int64()),
            "reason": pa.array([r[1] for r in rejects], pa.string()),
            "raw": pa.array([r[2] for r in rejects], pa.binary()),
            "imported_at": pa.array([self.now] * n, pa.int64()).cast(pa.timestamp("us")),
        }, schema=schema))
        self.rows += n

    def close(self) -> Path | None:
        if self.writer is None:
            return None
        self.writer.close()
        assert self.path is not None
        return finish_atomic(tmp_path(self.path), self.path)

    def discard(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:
                pass
            assert self.path is not None
            tmp_path(self.path).unlink(missing_ok=True)
            self.path.unlink(missing_ok=True)


# -- locks ---------------------------------------------------------------------------------------
# A process killed with SIGKILL, once reaped, can still hold its flock for a few milliseconds (seen right
# after a kill -9 and a wait for the killed process group: the lock was free again 40 us after a
# LOCK_NB attempt failed; the kernel may finish closing a dead process' files asynchronously). So "is
# the lock free?" is asked for this long before a command says another one is running.
KILLED_HOLDER_GRACE = 0.5


class LockBusy(Exception):
    """Another process holds the lock; ``holder`` is what it wrote in the lock file ("" if nothing)."""

    def __init__(self, path: Path, holder: str):
        super().__init__(f"{path} is held by another process" + (f" (pid {holder})" if holder else ""))
        self.path, self.holder = path, holder


@contextmanager
def file_lock(path: Path, wait: bool = False, timeout: float | None = None,
              record_pid: bool = False) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created 0600) for the block; released when the process
    dies, so a killed holder never blocks anyone. ``wait``: wait for it (up to ``timeout``
    seconds if given), else raise LockBusy after ``KILLED_HOLDER_GRACE`` seconds. ``record_pid``:
    write our pid in the file while holding it (``lock_holder`` reads it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    held = False
    try:
        if wait and timeout is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            grace = not wait  # "is it free?" asked for KILLED_HOLDER_GRACE seconds
            limit = KILLED_HOLDER_GRACE if grace else timeout
            deadline = None if limit is None else time.monotonic() + limit
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() > deadline:
                        raise LockBusy(path, os.pread(fd, 32, 0).decode(errors="replace").strip()) from None
                    time.sleep(0.02 if grace else 0.2)
        held = True
        if record_pid:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        if held and record_pid:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
        os.close(fd)


def lock_holder(path: Path) -> int | None:
    """The pid recorded by the process holding ``path`` (-1 if it wrote none), or None when free."""
    path = Path(path)
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = path.read_text().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
