"""``sync``: bring the store up to date with edX's S3 buckets, one object at a time.

For each of the organisation's objects that the ledger has not imported (or that changed in
S3: other size or ETag) the steps are::

    listed ──download (.part, resumable)──► downloaded ──import (decrypt + load)──► imported
                                                   └──────────────► failed (reason kept; retried next sync)

Each step is committed to the ledger only after it is durable, and the import itself is
atomic and idempotent (same bytes → "unchanged"), so a process killed at any point leaves a
state from which the next sync finishes the work without duplicating or losing rows.
Missed days are caught up by construction: everything listed and not imported is done.

Only one sync runs at a time (``<data_dir>/.sync.lock``, flock). The store's own write lock
is taken by each import; a concurrent ``edx-engine import`` makes the sync wait for it.
"""

from __future__ import annotations

import dataclasses
import errno
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from rich.markup import escape

from ..config import Settings
from ..decrypt import DecryptError, GpgSettings, gpg_session
from ..store import files
from ..store.ledger import Entry, Ledger, now
from .. import _hooks as testhooks
from .s3 import (DownloadCorrupt, FetchError, ObjectChanged, RemoteObject, S3Error, S3Fetcher, local_path_for)


class SyncBusy(Exception):
    """Another sync holds the sync lock."""


@dataclass
class SyncSettings(Settings):
    """Settings whose GPG settings were resolved once (the passphrase is read a single time)."""

    fixed_gpg: GpgSettings | None = None

    def gpg(self) -> GpgSettings:
        return self.fixed_gpg if self.fixed_gpg is not None else super().gpg()

    @classmethod
    def of(cls, base: Settings, gnupghome: str | None, gpg: GpgSettings) -> "SyncSettings":
        fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(Settings)}
        fields["gnupghome"] = gnupghome
        return cls(**fields, fixed_gpg=gpg)


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
    reported: set[str] = field(default_factory=set)  # objects whose failure was logged as it happened
    plan: list[Planned] = field(default_factory=list)
    seconds: float = 0.0
    aborted: str | None = None  # why the run stopped early (network down, listing failed)
    dry_run: bool = False
    final_status: str | None = None  # as recorded in _edx_sync_runs (a run that raised is "failed")

    @property
    def status(self) -> str:
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
                    f"{len(self.plan) - len(dl)} to import again), nothing changed")
        label = "interrupted" if self.aborted == "interrupted" else (self.final_status or self.status)
        s = (f"sync {label}: {self.listed} objects listed, {self.new} new, {self.changed} changed, "
             f"{self.downloaded} downloaded ({_mb(self.bytes)}), {self.imported} imported "
             f"({self.rows:,} rows, {self.rejected:,} rejected), {len(self.failed)} failed, "
             f"{len(self.pending)} pending, {self.seconds:.1f} s")
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
        why = why[:start].rstrip() + "…" + why[len(why) - (room - 1 - start):].lstrip()
    return head + why


def _without_object(url: str, message: str) -> str:
    """A member's message without the object's address in front (the line names it already)."""
    return message[len(url) + 1:].lstrip() if message.startswith(url + ":") else message


def _files_failed(url: str, failures: list[str], total: int) -> str:
    first = [_without_object(url, f) for f in failures[:3]]
    more = f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
    return f"{len(failures)} of {total} files failed: " + "; ".join(first) + more


# -- the sync --------------------------------------------------------------------------------

ImportFn = Callable[[Settings, list[Path], dict[Path, str]], tuple]


class Syncer:
    def __init__(self, settings: Settings, fetcher: S3Fetcher, *, keep_downloads: bool = False,
                 import_fn: ImportFn | None = None, log: Callable[[str], None] | None = None,
                 progress=None, store_wait: float = 600.0):
        self.settings = settings
        self.fetcher = fetcher
        self.data_dir = Path(settings.data_dir)
        self.ledger = Ledger(self.data_dir)
        self.downloads = self.data_dir / "downloads"
        self.keep_downloads = keep_downloads
        self.import_fn = import_fn or _default_import
        self.log = log or (lambda msg: None)
        self.progress = progress  # rich Progress or None
        self.store_wait = store_wait

    # -- planning ----------------------------------------------------------------------
    def plan(self, remote: list[RemoteObject], entries: dict[tuple[str, str], Entry]) -> list[Planned]:
        out = []
        for o in remote:
            e = entries.get((o.bucket, o.key))
            if e is None:
                out.append(Planned(o, "download", "new"))
            elif e.size != o.size or (e.etag or "") != o.etag:
                out.append(Planned(o, "download", "changed", e))
            elif e.state == "imported":
                continue
            elif e.state in ("downloaded", "failed") and e.local_path and (self.data_dir / e.local_path).exists():
                out.append(Planned(o, "import", "pending import" if e.state == "downloaded" else "failed before", e))
            else:
                out.append(Planned(o, "download", "failed before" if e.state == "failed" else "resume", e))
        return out

    def dry_run(self, only: str | None, since: str | None) -> SyncResult:
        t0 = time.perf_counter()
        res = SyncResult(dry_run=True)
        remote, res.skipped = self.fetcher.list(only, since)
        entries = self._entries_ro()
        res.listed = len(remote)
        res.plan = self.plan(remote, entries)
        res.seconds = time.perf_counter() - t0
        return res

    def _entries_ro(self) -> dict[tuple[str, str], Entry]:
        if not self.ledger.exists():
            return {}
        with self.ledger.connect(read_only=True) as con:
            return self.ledger.entries(con)

    # -- running -----------------------------------------------------------------------
    def run(self, only: str | None = None, since: str | None = None, options: dict | None = None) -> SyncResult:
        t0 = time.perf_counter()
        res = SyncResult()
        self.ledger.init()
        res.run_id = self.ledger.start_run(options or {"only": only, "since": since})
        status = "failed"
        try:
            try:
                remote, res.skipped = self.fetcher.list(only, since)
            except FetchError as exc:
                res.aborted = str(exc)
                status = "partial"
                return res
            testhooks.pause("list")
            res.listed = len(remote)
            entries = self.ledger.entries()
            res.plan = self.plan(remote, entries)
            self._record_listing(res, entries)
            self._record_gone(res, remote, entries, only, since)
            with self._gpg_session():
                self._work(res)
            from ..store.lake import Lake

            Lake(self.data_dir).collect_garbage()  # any killed writer's leftovers, even with nothing to import
            status = res.status
            return res
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                status, res.aborted = "interrupted", "interrupted"
            else:
                status, res.aborted = "failed", res.aborted or f"{type(exc).__name__}: {exc}"
            raise
        finally:
            res.seconds = time.perf_counter() - t0
            res.final_status = status
            try:
                self.ledger.end_run(res.run_id, status, res.counts(), res.one_line())
            except Exception:
                pass

    @contextmanager
    def _gpg_session(self) -> Iterator[None]:
        """One gpg session for every import of the run: its own no-cache agents and a single
        passphrase check (a wrong passphrase then fails each object at once, without gpg)."""
        base = self.settings
        if not isinstance(base, SyncSettings) or base.fixed_gpg is None:
            yield
            return
        with gpg_session(base.fixed_gpg) as gpg:
            self.settings = SyncSettings.of(base, base.gnupghome, gpg)
            try:
                yield
            finally:
                self.settings = base

    def _fail_log(self, res: SyncResult, url: str, why: str, word: str = "failed") -> None:
        """One line per failure, as it happens (the CLI does not repeat it at the end)."""
        line = failure_line(word, url, _without_object(url, why))
        self.log(f"[red]{word}[/]" + escape(line[len(word):]))
        res.reported.add(url)

    def _record_listing(self, res: SyncResult, entries: dict[tuple[str, str], Entry]) -> None:
        t = now()
        for p in res.plan:
            o, e = p.obj, p.entry
            if p.reason == "new":
                res.new += 1
                self.ledger.upsert(Entry(o.bucket, o.key, o.kind, o.org, o.date, o.site, o.size, o.etag,
                                         o.last_modified, state="listed", first_seen=t, listed_at=t,
                                         run_id=res.run_id))
            elif p.reason == "changed":
                res.changed += 1
                self.log(f"changed in S3: {_url(o)} (size {e.size} → {o.size}, ETag {e.etag} → {o.etag})")
                if e.local_path:
                    _unlink(self.data_dir / e.local_path)
                self.ledger.upsert(Entry(o.bucket, o.key, o.kind, o.org, o.date, o.site, o.size, o.etag,
                                         o.last_modified, state="listed", first_seen=e.first_seen, listed_at=t,
                                         changes=(e.changes or 0) + 1, run_id=res.run_id))

    def _record_gone(self, res: SyncResult, remote: list[RemoteObject], entries: dict[tuple[str, str], Entry],
                     only: str | None, since: str | None) -> None:
        """Objects the ledger still waits for that are no longer in the bucket: they can never be
        imported now. Each is reported once as failed (state ``gone``) and its partial download removed."""
        listed = {(o.bucket, o.key) for o in remote}
        for (bucket, key), e in entries.items():
            if (bucket, key) in listed or e.state in ("imported", "gone"):
                continue
            if (only and e.kind != only) or (since and (e.date or "") < since):
                continue  # outside this run's listing: not known to be gone
            msg = "deleted from the bucket before it was imported"
            self.ledger.update(bucket, key, state="gone", error=msg, failed_at=now(), run_id=res.run_id)
            res.failed.append((_url(e), msg))
            self._fail_log(res, _url(e), msg, "gone")
            dest = local_path_for(self.downloads, e)
            for f in (dest, dest.with_name(dest.name + ".part"), dest.with_name(dest.name + ".part.json")):
                _unlink(f)

    def _work(self, res: SyncResult) -> None:
        task = None
        if self.progress is not None:
            total = sum(p.obj.size for p in res.plan if p.action == "download")
            task = self.progress.add_task(f"download {total / 1e6:,.1f} MB", total=total or 1)
            ftask = self.progress.add_task(f"{len(res.plan)} objects", total=len(res.plan) or 1)
        network_down: str | None = None
        consecutive = 0  # objects in a row that S3 would not serve even after retries
        for p in res.plan:
            o = p.obj
            path = local_path_for(self.downloads, o)
            if self.progress is not None:
                self.progress.update(ftask, description=f"{p.action} {o.name}")
            if p.action == "download":
                if network_down:
                    msg = f"not downloaded: {network_down}"
                    res.pending.append((_url(o), msg))
                    self.ledger.update(o.bucket, o.key, error=msg, run_id=res.run_id)
                    continue
                ok = self._download(res, o, path, task)
                if ok is None:
                    continue
                if ok is False:
                    # One object that keeps failing must not hold back the others (every day, as the
                    # order is fixed); several in a row mean S3 itself is unreachable.
                    consecutive += 1
                    if consecutive >= GIVE_UP_AFTER:
                        network_down = res.pending[-1][1]
                        res.aborted = f"S3 unreachable: {network_down}"
                    continue
                consecutive = 0
            if self.progress is not None:
                self.progress.update(ftask, description=f"import {o.name}")
            self._import(res, o, path, downloaded_now=p.action == "download")
            if self.progress is not None:
                self.progress.advance(ftask)

    def _download(self, res: SyncResult, o: RemoteObject, path: Path, task) -> bool | None:
        """True: downloaded; False: network gave up (stop downloading); None: this object failed."""
        on_bytes = (lambda n: self.progress.advance(task, n)) if self.progress is not None and task is not None else None
        entry = self.ledger.get(o.bucket, o.key)
        attempts = (entry.attempts if entry else 0) + 1

        def resumed(done: int, total: int) -> None:
            self.log(f"resuming download of {_url(o)}: {done} of {total} chunks already on disk")

        try:
            sha = self.fetcher.download(o, path, on_bytes=on_bytes, on_resume=resumed)
        except FetchError as exc:
            msg = str(exc)
            self.ledger.update(o.bucket, o.key, error=msg, attempts=attempts, run_id=res.run_id)
            res.pending.append((_url(o), msg))
            self._fail_log(res, _url(o), msg, "not downloaded")
            return None if isinstance(exc, ObjectChanged) else False
        except DownloadCorrupt as exc:
            msg = f"{exc} (will download again next sync)"
            self.ledger.update(o.bucket, o.key, error=msg, attempts=attempts, run_id=res.run_id)
            res.pending.append((_url(o), msg))
            self._fail_log(res, _url(o), msg, "not downloaded")
            return None
        except S3Error as exc:
            msg = str(exc)
            self.ledger.update(o.bucket, o.key, state="failed", error=msg, attempts=attempts, failed_at=now(),
                               run_id=res.run_id)
            res.failed.append((_url(o), msg))
            self._fail_log(res, _url(o), msg)
            return None
        testhooks.pause("downloaded")
        self.ledger.update(o.bucket, o.key, state="downloaded", sha256=sha, downloaded_at=now(), error=None,
                           local_path=str(path.relative_to(self.data_dir)), attempts=attempts, run_id=res.run_id)
        res.downloaded += 1
        res.bytes += o.size
        return True

    def _import(self, res: SyncResult, o: RemoteObject, path: Path, downloaded_now: bool) -> None:
        from ..ingest.sources import SourceError
        from ..store.lake import StoreBusy

        testhooks.pause("import")
        error: str | None = None
        rows = rejected = 0
        deadline = time.monotonic() + self.store_wait
        while True:
            try:
                # rows and quarantine name the object by its S3 address, not the download path
                exports, events = self.import_fn(self.settings, [path], {path: f"s3://{o.bucket}/{o.key}"})
                break
            except StoreBusy as exc:
                if time.monotonic() > deadline:
                    msg = f"{exc}; the import will be retried next sync"
                    self.ledger.update(o.bucket, o.key, error=msg, run_id=res.run_id)
                    res.pending.append((_url(o), msg))
                    return
                time.sleep(1.0)
            except (SourceError, DecryptError) as exc:
                error = _without_object(_url(o), str(exc))
                exports = events = None
                break
            except ImportError as exc:
                error = f"cannot import {o.kind}: this version of edx-engine lacks the importer ({exc})"
                exports = events = None
                break
            except Exception as exc:  # an importer bug must not stop the other files
                error = f"import failed: {type(exc).__name__}: {exc}"
                exports = events = None
                break
        failures: list[str] = []
        if exports is not None:
            for f in exports.files:
                if f.status == "failed":
                    failures.append(f.message or f"{f.label}: failed")
                elif f.status == "loaded":
                    rows += f.rows
                    rejected += f.rejected
                elif f.status == "unchanged":
                    r = self._snapshot_rows(f.table, f.course_id)
                    rows += r[0]
                    rejected += r[1]
                else:
                    rejected += f.rejected
        if events is not None:
            for f in getattr(events, "files", []) or []:
                st = getattr(f, "status", "loaded")
                if st == "failed":
                    failures.append(getattr(f, "message", "") or f"{getattr(f, 'label', path)}: failed")
                elif st == "unchanged" and getattr(f, "source_key", None):
                    r = self._event_file_rows(f.source_key)
                    rows += r[0]
                    rejected += r[1]
                else:
                    rows += int(getattr(f, "events", 0) or 0)
                    rejected += int(getattr(f, "rejected", 0) or 0)
        if failures and error is None:
            total = len(exports.files if exports is not None else []) + len(getattr(events, "files", None) or [])
            error = _files_failed(_url(o), failures, total)
        testhooks.pause("imported")
        entry = self.ledger.get(o.bucket, o.key)
        attempts = (entry.attempts or 0) if entry else 0
        if not downloaded_now:  # a download in this run already counted this attempt
            attempts += 1
        t = now()
        rel = str(path.relative_to(self.data_dir))
        if error:
            self.ledger.update(o.bucket, o.key, state="failed", error=error, failed_at=t, rows=rows, rejected=rejected,
                               attempts=attempts, local_path=rel if path.exists() else None, run_id=res.run_id)
            res.failed.append((_url(o), error))
            self._fail_log(res, _url(o), error)
            return
        keep = self.keep_downloads
        self.ledger.update(o.bucket, o.key, state="imported", error=None, decrypted_at=t, imported_at=t, rows=rows,
                           rejected=rejected, attempts=attempts, local_path=rel if keep else None, run_id=res.run_id)
        if not keep:
            _unlink(path)
        res.imported += 1
        res.rows += rows
        res.rejected += rejected
        self.log(f"imported {_url(o)}: {rows:,} rows" + (f", {rejected:,} rejected lines (see the quarantine view)"
                                                           if rejected else ""))

    def _event_file_rows(self, key: str) -> tuple[int, int]:
        try:
            with self.ledger.connect() as con:
                r = con.execute("SELECT rows, rejected FROM _edx_event_files WHERE source_key=?", [key]).fetchone()
            return (int(r[0] or 0), int(r[1] or 0)) if r else (0, 0)
        except Exception:
            return (0, 0)

    def _snapshot_rows(self, table: str, course_id: str | None) -> tuple[int, int]:
        try:
            with self.ledger.connect() as con:
                r = con.execute("SELECT rows, rejected FROM _edx_snapshots WHERE table_name=? AND course_id=?",
                                [table, course_id]).fetchone()
            return (int(r[0] or 0), int(r[1] or 0)) if r else (0, 0)
        except Exception:
            return (0, 0)


def _default_import(settings: Settings, paths: list[Path], labels: dict[Path, str]):
    from ..ingest.run import import_paths

    return import_paths(settings, paths, labels=labels)


def _unlink(p: Path) -> None:
    try:
        p.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:  # pragma: no cover
        if exc.errno != errno.ENOENT:
            raise
