"""``sync`` parts that talk about S3 objects: the sync lock, the run's results, their messages.

The run itself (list, download, import, record) is ``edx_engine.pipeline.sync.Syncer``.

``sync``: bring the store up to date with edX's S3 buckets, one object at a time.

For each of the organisation's objects that the ledger has not imported (or that changed in
S3: other size or ETag) the steps are::

    listed ──download (.part, resumable)──► downloaded ──import (decrypt + load)──► imported
                                                   └──────────────► failed (reason kept; retried next sync)

An operator sets an object that can never be imported aside with ``edx-engine skip`` (state
``skipped``, any state but imported): syncs leave it alone (no download, import or failure, the
summary counts it) until edX replaces it (other size or ETag), which makes it an object to import
again; ``skip --undo`` gives it back its state, to be retried.

Each step is committed to the ledger only after it is durable, and the import itself is
atomic and idempotent (same bytes → "unchanged"), so a process killed at any point leaves a
state from which the next sync finishes the work without duplicating or losing rows.
Missed days are caught up by construction: everything listed and not imported is done.

Only one sync runs at a time (``<data_dir>/.sync.lock``, flock). The store's own write lock
is taken by each import; a concurrent ``edx-engine import`` makes the sync wait for it.
"""

from __future__ import annotations

import errno
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..store import files
from ..store.ledger import Entry
from .s3 import RemoteObject


class SyncBusy(Exception):
    """Another sync holds the sync lock."""


# -- the sync lock ---------------------------------------------------------------------------

def lock_path(data_dir: Path) -> Path:
    return Path(data_dir) / ".sync.lock"


def lock_holder(data_dir: Path) -> int | None:
    """The pid of the running sync, or None when no sync is running."""
    return files.lock_holder(lock_path(data_dir))


@contextmanager
def sync_lock(data_dir: Path, wait: bool = False, timeout: float | None = None) -> Iterator[None]:
    """One sync at a time per data directory (the store's file lock, holding our pid)."""
    data_dir = Path(data_dir)
    try:
        with files.file_lock(lock_path(data_dir), wait=wait, timeout=timeout, record_pid=True):
            yield
    except files.LockBusy as exc:
        raise SyncBusy(f"another sync is running (pid {exc.holder or 'unknown'}) on {data_dir}"
                       + ("" if wait else "; use --wait to wait for it")) from None


# -- results ---------------------------------------------------------------------------------

@dataclass
class Planned:
    obj: RemoteObject
    action: str  # download | import | retry
    reason: str  # new | changed | resume | pending import | failed before
    entry: Entry | None = None


@dataclass(frozen=True)
class SyncNote:
    """One line of a running sync for the front end, as plain text (no markup): ``level`` is
    "info", "warning" or "failure"; a failure's or warning's ``text`` starts with ``word`` (failed,
    gone, not downloaded, warning),
    which a terminal may colour. Only the CLI styles it."""

    text: str
    level: str = "info"
    word: str = ""


@dataclass
class SyncResult:
    run_id: str | None = None
    listed: int = 0
    new: int = 0
    changed: int = 0
    downloaded: int = 0
    imported: int = 0
    unchanged: int = 0
    rows: int = 0
    rejected: int = 0
    bytes: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (s3 url, reason)
    pending: list[tuple[str, str]] = field(default_factory=list)  # not finished, will be retried
    skipped: list[str] = field(default_factory=list)  # keys that are not edX's names for this org
    # objects of the listing an operator set aside (`edx-engine skip`, ledger state skipped), unchanged in S3
    set_aside: list[str] = field(default_factory=list)
    reported: set[str] = field(default_factory=set)  # objects whose failure was logged as it happened
    plan: list[Planned] = field(default_factory=list)
    seconds: float = 0.0
    aborted: str | None = None  # why the run stopped early (network down, listing failed)
    dry_run: bool = False
    final_status: str | None = None  # as recorded in _edx_sync_runs (a run that raised is "failed")
    passphrase: str | None = None  # the passphrase is wrong or missing: nothing encrypted can be imported
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (s3 url, warning) of imported objects

    @property
    def status(self) -> str:
        if self.passphrase:
            return "failed"
        return "partial" if (self.failed or self.pending or self.aborted or self.rejected) else "ok"

    def counts(self) -> dict[str, int]:
        return {"listed": self.listed, "new": self.new + self.changed, "downloaded": self.downloaded,
                "imported": self.imported, "failed": len(self.failed), "pending": len(self.pending),
                "rows": self.rows, "rejected": self.rejected, "bytes": self.bytes}

    def one_line(self) -> str:
        if self.dry_run:
            dl = [p for p in self.plan if p.action == "download"]
            return (f"sync (dry run): {self.listed} objects listed, {len(self.plan)} to do "
                    f"({len(dl)} to download, {_mb(sum(p.obj.size for p in dl))}; "
                    f"{len(self.plan) - len(dl)} to import again)"
                    + (f", {len(self.set_aside)} skipped" if self.set_aside else "") + ", nothing changed")
        label = "interrupted" if self.aborted == "interrupted" else (self.final_status or self.status)
        s = (f"sync {label}: {self.listed} objects listed, {self.new} new, {self.changed} changed, "
             f"{self.downloaded} downloaded ({_mb(self.bytes)}), {self.imported} imported "
             f"({self.rows:,} rows, {self.rejected:,} rejected), {len(self.failed)} failed, "
             f"{len(self.pending)} pending, "
             + (f"{len(self.set_aside)} skipped, " if self.set_aside else "") + f"{self.seconds:.1f} s")
        if self.warnings:
            s += f", {len(self.warnings)} warning(s)"
        if self.aborted and self.aborted != "interrupted":
            s += f"; stopped early: {self.aborted}"
        return s


GIVE_UP_AFTER = 3  # consecutive objects that fail to download before the run stops downloading


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _url(o: RemoteObject | Entry) -> str:
    return f"s3://{o.bucket}/{o.key}"


LINE_MAX = 199  # a failure line names the object and the cause in under 200 characters


def failure_line(word: str, url: str, why: str) -> str:
    """``<word> <url>: <why>`` in at most LINE_MAX characters (the ledger keeps the whole reason).

    The object's address is not repeated inside the reason, and a long reason loses its middle:
    its start names the file, its end says why (e.g. "gave up after 4 attempts")."""
    head = f"{word} {url}: "
    why = " ".join(why.replace(f"downloading {url}", "download").split())
    room = max(40, LINE_MAX - len(head))
    if len(why) > room:
        start = (room - 1) * 2 // 5
        left, right = why[:start], why[len(why) - (room - 1 - start):]
        # cut between words where one is near (within 15 characters), not inside one
        if " " in left[-15:] and not why[start:start + 1].isspace():
            left = left[:left.rindex(" ")]
        if " " in right[:15] and not why[len(why) - len(right) - 1:][:1].isspace():
            right = right[right.index(" ") + 1:]
        why = left.rstrip() + " … " + right.lstrip()
    return head + why


def _without_object(url: str, message: str) -> str:
    """A member's message without the object's address in front (the line names it already)."""
    return message[len(url) + 1:].lstrip() if message.startswith(url + ":") else message


def _files_failed(url: str, failures: list[str], total: int) -> str:
    first = [_without_object(url, f) for f in failures[:3]]
    more = f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
    return f"{len(failures)} of {total} files failed: " + "; ".join(first) + more


# -- the sync --------------------------------------------------------------------------------

def _unlink(p: Path) -> None:
    try:
        p.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:  # pragma: no cover
        if exc.errno != errno.ENOENT:
            raise


def __getattr__(name: str):
    """compatibility alias: ``Syncer`` moved to edx_engine.pipeline.sync (for code that imports it from here)."""
    if name == "Syncer":
        import importlib

        return importlib.import_module("edx_engine.pipeline.sync").Syncer
    raise AttributeError(name)
