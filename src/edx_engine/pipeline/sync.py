"""The daily sync run: list the bucket, download, decrypt and import each object, record it in
the ledger (see ``edx_engine.fetch.sync`` for the lock, the results and the state diagram).

This is where the stages meet: ``fetch`` talks to S3, ``pipeline.import_run`` decrypts and
imports, ``store`` keeps the ledger; ingest's results are read through their types
(``FileResult``, ``EventsFileResult``), the counts of unchanged files from the catalog.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from .. import _hooks as testhooks
from .. import interrupts
from ..config import Settings
from ..decrypt import DecryptError, gpg_session
from ..fetch.s3 import DownloadCorrupt, FetchError, ObjectChanged, RemoteObject, S3Error, S3Fetcher, local_path_for
from ..fetch.sync import (GIVE_UP_AFTER, Planned, SyncNote, SyncResult, _files_failed, _unlink, _url,  # noqa: F401
                          _without_object, failure_line)
from ..ingest.sources import SourceError
from ..store import catalog
from ..store.errors import is_disk_full
from ..store.lake import Lake, StoreBusy
from ..clock import now
from ..store.ledger import Entry, Ledger, describe_skip

if TYPE_CHECKING:  # the importers (pyarrow, numpy, ...) are loaded by the first import: a sync with
    # nothing new never loads them
    from ..ingest.events import EventsSummary
    from ..ingest.exports import ImportSummary

ImportFn = Callable[[Settings, list[Path], dict[Path, str]], tuple["ImportSummary | None", "EventsSummary | None"]]


def _changed(e: Entry, o: RemoteObject) -> bool:
    """The object in S3 is not the one the ledger recorded (other size or ETag)."""
    return e.size != o.size or (e.etag or "") != o.etag


class Syncer:
    def __init__(self, settings: Settings, fetcher: S3Fetcher, *, keep_downloads: bool = False,
                 import_fn: ImportFn | None = None, log: Callable[[SyncNote], None] | None = None,
                 progress=None, store_wait: float = 600.0):
        self.settings = settings
        self.fetcher = fetcher
        self.data_dir = Path(settings.data_dir)
        self.ledger = Ledger(self.data_dir)
        # one Lake for every import of the run: the catalog is initialised once, not per object
        self.lake = Lake(self.data_dir)
        self.downloads = self.data_dir / "downloads"
        self.keep_downloads = keep_downloads
        self.import_fn = import_fn or self._default_import
        self.log = log or (lambda note: None)  # gets a SyncNote per line worth showing
        self.progress = progress  # rich Progress or None
        self.store_wait = store_wait
        # attempts per object, as the ledger holds them: read once at listing, then kept in step with
        # every write (this process is the ledger's only writer while it holds the sync lock), which
        # spares a catalog connection per download and per import
        self._attempts: dict[tuple[str, str], int] = {}

    # -- planning ----------------------------------------------------------------------
    def plan(self, remote: list[RemoteObject], entries: dict[tuple[str, str], Entry]) -> list[Planned]:
        out = []
        for o in remote:
            e = entries.get((o.bucket, o.key))
            if e is None:
                out.append(Planned(o, "download", "new"))
            elif _changed(e, o):  # a skipped object too: edX replaced it, it may import now
                out.append(Planned(o, "download", "changed", e))
            elif e.state in ("imported", "skipped"):  # skipped: set aside by `edx-engine skip`
                continue
            elif e.state in ("downloaded", "failed") and e.local_path and (self.data_dir / e.local_path).exists():
                out.append(Planned(o, "import", "pending import" if e.state == "downloaded" else "failed before", e))
            else:
                out.append(Planned(o, "download", "failed before" if e.state == "failed" else "resume", e))
        return out

    @staticmethod
    def set_aside(remote: list[RemoteObject], entries: dict[tuple[str, str], Entry]) -> list[str]:
        """The listed objects that stay skipped (``edx-engine skip``; unchanged in S3): counted, not done."""
        return [_url(o) for o in remote if (e := entries.get((o.bucket, o.key))) is not None
                and e.state == "skipped" and not _changed(e, o)]

    def dry_run(self, only: str | None, since: str | None) -> SyncResult:
        t0 = time.perf_counter()
        res = SyncResult(dry_run=True)
        remote, res.skipped = self.fetcher.list(only, since)
        entries = self._entries_ro()
        res.listed = len(remote)
        res.plan = self.plan(remote, entries)
        res.set_aside = self.set_aside(remote, entries)
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
        # the entries are read before listing: this process is the ledger's only writer (sync lock)
        res.run_id, entries = self.ledger.begin(options or {"only": only, "since": since})
        status = "failed"
        ended = False
        try:
            try:
                remote, res.skipped = self.fetcher.list(only, since)
            except FetchError as exc:
                res.aborted = str(exc)
                status = "partial"
                return res
            testhooks.pause("list")
            res.listed = len(remote)
            res.plan = self.plan(remote, entries)
            res.set_aside = self.set_aside(remote, entries)
            self._record_listing(res, entries)
            self._record_gone(res, remote, entries, only, since)
            with self._gpg_session():
                self._work(res)
            status = res.status
            res.seconds, res.final_status = time.perf_counter() - t0, status
            with self.ledger.connect() as con:
                # any killed writer's leftovers, and every file this run's imports replaced (they do not
                # collect one by one), even with nothing to import; then the run's row, same connection
                self.lake.collect_garbage(con)
                self.ledger.end_run(res.run_id, status, res.counts(), res.one_line(), con)
            ended = True
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
            if not ended:
                try:
                    self.ledger.end_run(res.run_id, status, res.counts(), res.one_line())
                except Exception:
                    pass

    @contextmanager
    def _gpg_session(self) -> Iterator[None]:
        """One gpg session for every import of the run: its own no-cache agents and a single
        passphrase check (a wrong passphrase then fails each object at once, without gpg).
        The settings' gpg section is the one resolved by `config.Settings.gpg` (read once)."""
        base = self.settings
        with gpg_session(base.gpg()) as gpg:
            self.settings = base.with_gpg(gpg)
            try:
                yield
            finally:
                self.settings = base

    def _passphrase_failure(self) -> str | None:
        """The run's gpg session's verdict on the passphrase, once it is known wrong or missing."""
        session = getattr(self.settings.gpg(), "session", None)
        return getattr(session, "failure", None)

    def _fail_log(self, res: SyncResult, url: str, why: str, word: str = "failed") -> None:
        """One line per failure, as it happens (the CLI does not repeat it at the end)."""
        self.log(SyncNote(failure_line(word, url, _without_object(url, why)), "failure", word))
        res.reported.add(url)

    def _record_listing(self, res: SyncResult, entries: dict[tuple[str, str], Entry]) -> None:
        t = now()
        listed: list[Entry] = []  # written in one transaction (one catalog connection for the listing)
        for p in res.plan:
            o, e = p.obj, p.entry
            self._attempts[(o.bucket, o.key)] = 0 if p.reason in ("new", "changed") else (e.attempts if e else 0)
            if p.reason == "new":
                res.new += 1
                listed.append(Entry(o.bucket, o.key, o.kind, o.org, o.date, o.site, o.size, o.etag,
                                    o.last_modified, state="listed", first_seen=t, listed_at=t, run_id=res.run_id))
            elif p.reason == "changed":
                res.changed += 1
                self.log(SyncNote(f"changed in S3: {_url(o)} (size {e.size} → {o.size}, ETag {e.etag} → {o.etag})"
                                  + (f"; it was skipped ({describe_skip(e)}) and is imported again"
                                     if e.state == "skipped" else "")))
                if e.local_path:
                    _unlink(self.data_dir / e.local_path)
                listed.append(Entry(o.bucket, o.key, o.kind, o.org, o.date, o.site, o.size, o.etag,
                                    o.last_modified, state="listed", first_seen=e.first_seen, listed_at=t,
                                    imported_at=e.imported_at,  # a version imported before stays in the store
                                    changes=(e.changes or 0) + 1, run_id=res.run_id))
        if listed:
            self.ledger.upsert(*listed)

    def _record_gone(self, res: SyncResult, remote: list[RemoteObject], entries: dict[tuple[str, str], Entry],
                     only: str | None, since: str | None) -> None:
        """Objects the ledger still waits for that are no longer in the bucket: they can never be
        imported now. Each is reported once as failed (state ``gone``) and its partial download removed."""
        listed = {(o.bucket, o.key) for o in remote}
        for (bucket, key), e in entries.items():
            if (bucket, key) in listed or e.state in ("imported", "gone", "skipped"):
                continue  # skipped: the operator gave up on it, its deletion changes nothing
            if (only and e.kind != only) or (since and (e.date or "") < since):
                continue  # outside this run's listing: not known to be gone
            # a changed version that failed or waited: the one imported before it stays in the store
            msg = ("deleted from the bucket before its new version was imported; the version imported "
                   f"{e.imported_at:%Y-%m-%d} stays in the store" if e.imported_at else
                   "deleted from the bucket before it was imported")
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
            if res.passphrase:  # every import would fail alike: said once, by the run's summary
                msg = f"not imported: cannot decrypt: {res.passphrase}"
                res.pending.append((_url(o), msg))
                res.reported.add(_url(o))
                self.ledger.update(o.bucket, o.key, error=msg, run_id=res.run_id)
                continue
            if self.progress is not None:
                self.progress.update(ftask, description=f"import {o.name}")
            self._import(res, o, path, downloaded_now=p.action == "download")
            wrong = self._passphrase_failure()
            if wrong and not res.passphrase:
                res.passphrase = wrong
                res.aborted = (f"cannot decrypt: {wrong}; nothing encrypted is imported until the passphrase is "
                               "right (the downloads are kept for the next sync)")
            if self.progress is not None:
                self.progress.advance(ftask)

    def _download(self, res: SyncResult, o: RemoteObject, path: Path, task) -> bool | None:
        """True: downloaded; False: network gave up (stop downloading); None: this object failed."""
        on_bytes = (lambda n: self.progress.advance(task, n)) if self.progress is not None and task is not None else None
        attempts = self._attempts.get((o.bucket, o.key), 0) + 1
        self._attempts[(o.bucket, o.key)] = attempts

        def resumed(done: int, total: int) -> None:
            self.log(SyncNote(f"resuming download of {_url(o)}: {done} of {total} chunks already on disk"))

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
                interrupts.check()  # a gpg child stopped by the same Ctrl-C / SIGTERM: not the object's fault
                error = _without_object(_url(o), str(exc))
                exports = events = None
                break
            except ImportError as exc:
                error = f"cannot import {o.kind}: this version of edx-engine lacks the importer ({exc})"
                exports = events = None
                break
            except Exception as exc:  # an importer bug must not stop the other files
                interrupts.check()  # "Query interrupted": DuckDB's form of Ctrl-C / SIGTERM
                if is_disk_full(exc):
                    # the store's disk, not the object: the run stops, the object stays downloaded (not
                    # failed) and the next sync imports it; before, it was marked failed, and the ledger
                    # write that followed on the full disk was a traceback
                    raise
                error = f"import failed: {type(exc).__name__}: {exc}"
                exports = events = None
                break
        failures: list[str] = []
        unchanged: list[tuple[str, str | None]] = []  # (table, course) snapshots the catalog counts
        unchanged_logs: list[str] = []  # event sources, likewise
        if exports is not None:
            for f in exports.files:
                if f.status == "failed":
                    failures.append(f.message or f"{f.label}: failed")
                elif f.status == "loaded":
                    rows += f.rows
                    rejected += f.rejected
                elif f.status == "unchanged":
                    unchanged.append((f.table, f.course_id))
                else:
                    rejected += f.rejected
        if events is not None:
            for ef in events.files:
                if ef.status == "failed":
                    failures.append(ef.message or f"{ef.label}: failed")
                elif ef.status == "unchanged" and ef.source_key:
                    unchanged_logs.append(ef.source_key)
                else:
                    rows += ef.events
                    rejected += ef.rejected
        if unchanged or unchanged_logs:
            r = self._unchanged_rows(unchanged, unchanged_logs)
            rows += r[0]
            rejected += r[1]
        if failures and error is None:
            total = len(exports.files if exports is not None else []) + len(events.files if events is not None else [])
            error = _files_failed(_url(o), failures, total)
        testhooks.pause("imported")
        attempts = self._attempts.get((o.bucket, o.key), 0)
        if not downloaded_now:  # a download in this run already counted this attempt
            attempts += 1
        self._attempts[(o.bucket, o.key)] = attempts
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
        self.log(SyncNote(f"imported {_url(o)}: {rows:,} rows"
                          + (f", {rejected:,} rejected lines (see the quarantine view)" if rejected else "")))
        # what the import warned about (a re-delivered day that lost events, odd zip paths): as `import` says it
        for w in [*(exports.warnings if exports else []), *(events.warnings if events else [])]:
            res.warnings.append((_url(o), w))
            self.log(SyncNote(f"warning {w if w.startswith(_url(o)) else f'{_url(o)}: {w}'}", "warning", "warning"))
        for line in exports.notes if exports else []:
            self.log(SyncNote(f"note {_url(o)}: {line}"))

    def _default_import(self, settings: Settings, paths: list[Path], labels: dict[Path, str]
                        ) -> tuple[ImportSummary | None, EventsSummary | None]:
        """``import_paths`` on the run's Lake, without its collection (done once at the end of the run)."""
        from .import_run import import_paths

        return import_paths(settings, paths, labels=labels, lake=self.lake, collect=False)

    def _unchanged_rows(self, snapshots: list[tuple[str, str | None]], logs: list[str]) -> tuple[int, int]:
        """(rows, rejected lines) the catalog holds for files an import found unchanged, read through one
        connection (a package of unchanged members used to open the catalog once per member)."""
        rows = rejected = 0
        try:
            with self.ledger.connect() as con:
                counts = [catalog.snapshot_counts(con, t, c) for t, c in snapshots]
                counts += [catalog.event_file_counts(con, k) for k in logs]
        except Exception:
            return (0, 0)
        for r, j in counts:
            rows += r
            rejected += j
        return rows, rejected
