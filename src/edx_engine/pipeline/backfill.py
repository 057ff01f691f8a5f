"""Import many tracking-log files at once: parse them in parallel, commit on one writer.

    import_events_parallel(lake, sources, gpg, jobs=N)          # N worker processes
    import_events_parallel(lake, sources, gpg, spark=session)   # one Spark task per file

Both run the local import's own code (``ingest.events``): each worker parses one whole file with
``_stage_one`` (decrypt, gunzip, one DuckDB statement per block) and writes its Parquet parts and
quarantine file into the lake under fresh names, which nothing references yet. The driver then
commits the files **in the order they were given**, with ``_commit_in``, the very function the
sequential import uses, so ``_edx_event_files``, ``_edx_event_parts``, ``_edx_event_dups``, the
quarantine and the import log end up as a sequential import leaves them (duplicates across files
included: each commit recomputes the affected days' duplicates as it always did).

* Worker processes (``jobs``): each file is committed on its own as soon as it and every file
  before it are parsed, as the sequential import does (a crash keeps the files committed so far).
* Spark: all files are parsed first, then ONE transaction commits them all: a failure before
  it leaves the store as it was (the written parts are unreferenced, and collected at once).

Which files are new, unchanged or a replacement is decided on the driver with the sequential
import's rules, before and again at commit time; a file whose identity changed in between (an
earlier file of the run it would have been the same bytes as failed) is parsed on the driver then.
A task that Spark runs twice (retry, speculation) leaves unreferenced parts: collected too.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
import time
import zipimport
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .. import interrupts
from ..decrypt import GpgSettings, PassphraseError, gpg_session
from ..ingest import events as E
from ..ingest.events_parse import EventLimits
from ..ingest.sources import Source
from ..store import catalog, views
from ..store.lake import Lake


class BackfillError(Exception):
    """A parallel import failed as a whole (a Spark job, a worker process); nothing was committed
    by its failing part. One line, for the CLI."""


@dataclass(frozen=True)
class _Job:
    """What one worker needs to parse one file (sent to a forked process or a Spark task)."""

    root: str
    src: Source
    key: str
    gpg: GpgSettings  # no session; its repr hides the passphrase
    limits: EventLimits
    checked: bool = False  # the driver's session found the passphrase right: no probe in the worker
    session_keyring: bool = False  # ``gpg`` is the driver's session keyring: decrypt through it, no session


def default_jobs() -> int:
    """Worker processes for ``--jobs``: the usable cores."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def stage_job(job: _Job) -> E._Staged:
    """Parse one file in this process (a worker): its parts and quarantine file, uncommitted.

    The passphrase was checked on the driver; the worker decrypts through its own private agent."""
    t0 = time.perf_counter()
    engine = E._DuckEngine(0)  # one thread: the parallelism is one file per worker
    try:
        if not job.src.encrypted or job.session_keyring:  # (its agent unlocks the key in a millisecond)
            staged = E._stage_one(Lake(job.root), job.src, job.key, job.gpg, engine, job.limits)
        else:
            with gpg_session(job.gpg) as gpg:
                if job.checked:  # checked once, on the driver: no second S2K unlock per file
                    gpg.session.mark_checked()  # type: ignore[union-attr]
                staged = E._stage_one(Lake(job.root), job.src, job.key, gpg, engine, job.limits)
    finally:
        engine.close()
    staged.res.seconds = time.perf_counter() - t0
    return staged


# -- planning -------------------------------------------------------------------------------------
@dataclass
class _Item:
    src: Source
    key: str = ""
    origin: str = ""
    staged: E._Staged | None = None  # None: decided at commit time (unchanged, or parsed then)
    failed: str = ""  # set on the driver before any parse (wrong passphrase)


def _open_store(lake: Lake) -> E._Sources:
    """The sequential import's preparation: catalog tables, the event views, the known sources."""
    lake.init()
    with lake.connect() as con:
        E.ensure_catalog(con)
        if not con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name='events'").fetchone()[0]:
            con.execute("BEGIN TRANSACTION")
            views.event_views(con, str(lake.root.resolve()))
            con.execute("COMMIT")
        return E._Sources(con)


def _plan(lake: Lake, sources: list[Source], gpg: GpgSettings) -> tuple[list[_Item], list[int], E._Sources]:
    """Each file's key as the sequential import would give it, assuming the files before it load;
    returns the items, the indexes of the files to parse and the store's sources as read before the
    plan (the committer starts from them: the caller holds the write lock, so they are still the
    catalog's, and a second read would cost another catalog connection)."""
    known = _open_store(lake)
    before = E._Sources.__new__(E._Sources)
    before.by_key = dict(known.by_key)
    items, todo = [], []
    for i, src in enumerate(sources):
        key, origin, same, _how = known.identify(src)
        item = _Item(src, key, origin)
        items.append(item)
        if same is not None and src.fingerprint and same.fingerprint == src.fingerprint:
            continue  # unchanged (decided again at commit time)
        if src.encrypted and gpg.session is not None:
            try:
                gpg.session.check(gpg, src.head, src.label)
            except PassphraseError as exc:
                item.failed = E._failure_message(src.label, exc)
                continue
        todo.append(i)
        known.loaded(key, origin, src)
    return items, todo, before


# -- workers --------------------------------------------------------------------------------------
_FORKED_JOBS: list[_Job] = []  # read by forked workers: Source openers are closures, not picklable


_IN_JOB = False  # in a worker: whether it is parsing a file (else it waits for one)


def _worker_init() -> None:
    """A worker dies with the import that forked it (killed or not): no orphan goes on writing
    parts into a store another writer has since taken over. Ctrl-C (the terminal's, or the
    driver's passing on its own) stops the file it parses; a worker waiting for a file only
    remembers it (a KeyboardInterrupt there would kill it with a traceback), and the file it
    gets next stops at its first block."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    signal.signal(signal.SIGINT, _worker_sigint)
    # systemd's stop sends SIGTERM to every process of the group: a waiting worker must not die with
    # a traceback (the CLI's handler, inherited by fork, raises), which could leave the pool hung (helper-71)
    signal.signal(signal.SIGTERM, _worker_sigint)


def _worker_sigint(signum, frame) -> None:
    interrupts.note()
    if _IN_JOB:
        raise KeyboardInterrupt


def _stage_forked(i: int) -> E._Staged:
    global _IN_JOB
    _IN_JOB = True
    try:
        interrupts.check()  # Ctrl-C arrived while this worker waited: do not start another file
        return stage_job(_FORKED_JOBS[i])
    finally:
        _IN_JOB = False


def _interrupt_workers(pool: ProcessPoolExecutor) -> None:
    """Pass Ctrl-C on to the workers (a SIGINT sent to the driver alone, by ``kill -INT`` or a
    service manager, would let each finish its whole file first: tens of seconds on a big day)."""
    import signal

    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            os.kill(proc.pid, signal.SIGINT)
        except (ProcessLookupError, PermissionError):
            pass


def _local_results(jobs: list[_Job], workers: int) -> Iterator[E._Staged]:
    """Staged files in the given order, parsed by ``workers`` forked processes."""
    global _FORKED_JOBS
    _FORKED_JOBS = jobs
    pool = ProcessPoolExecutor(max_workers=max(1, min(workers, len(jobs))),
                               mp_context=multiprocessing.get_context("fork"), initializer=_worker_init)
    futures: list[Future] = []
    given = 0
    try:
        futures = [pool.submit(_stage_forked, i) for i in range(len(jobs))]
        for f in futures:
            staged = f.result()
            given += 1
            yield staged
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt) or interrupts.seen():
            _interrupt_workers(pool)
        pool.shutdown(wait=True, cancel_futures=True)
        for f in futures[given:]:  # parsed, never handed out: delete now (the collector would too)
            if f.done() and not f.cancelled() and f.exception() is None:
                f.result().discard()
        raise
    finally:
        pool.shutdown(wait=True)
        _FORKED_JOBS = []


class _StaticZipImporter(zipimport.zipimporter):
    """A zip importer that does not read its archive again when import caches are invalidated."""

    def invalidate_caches(self) -> None:
        pass


def static_zip_importers() -> None:
    """Stop this Python worker of Spark from reading pyspark.zip's directory before every task.

    PySpark's worker calls ``importlib.invalidate_caches()`` before each task (``setup_spark_files``),
    and on Python 3.11 a zip importer then reads its whole archive's directory again: ~30 ms of CPU per
    task for pyspark.zip (3 MB), i.e. per event file of an import on Spark. The archives on the
    worker's path do not change while it lives; its zip importers (those made later too) keep the
    directory they read. Once per process; a no-op outside zip imports."""
    if getattr(sys, "_edx_static_zip", False):
        return
    for key, finder in list(sys.path_importer_cache.items()):
        if type(finder) is zipimport.zipimporter:
            sys.path_importer_cache[key] = _StaticZipImporter(key)  # from zipimport's directory cache
    sys.path_hooks[:] = [_StaticZipImporter if h is zipimport.zipimporter else h for h in sys.path_hooks]
    sys._edx_static_zip = True  # type: ignore[attr-defined]


def _spark_results(spark: Any, jobs: list[_Job]) -> list[E._Staged]:
    """Every file parsed by its own Spark task (``mapInArrow`` over one id per partition); the
    results come back pickled, in the given order."""
    import pyarrow as pa

    if not jobs:
        return []

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        static_zip_importers()
        for batch in batches:
            ids = batch.column(0).to_pylist()
            out = [pickle.dumps(stage_job(jobs[i])) for i in ids]
            yield pa.RecordBatch.from_arrays([pa.array(ids, pa.int64()), pa.array(out, pa.binary())],
                                             names=["i", "staged"])

    n = len(jobs)
    sc = _spark_context(spark)
    group = f"edx-engine-import-{os.getpid()}-{time.monotonic_ns()}"
    if sc is not None:
        sc.setJobGroup(group, "edx-engine import", interruptOnCancel=False)
    try:
        rows = spark.range(0, n, 1, n).mapInArrow(run, "i long, staged binary").collect()
    except Exception as exc:  # noqa: BLE001 - Py4J / PythonException: one line, the store untouched
        if sc is not None:
            _wait_for_tasks(sc, group)
        text = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        last = next((ln for ln in reversed(text) if "Error" in ln or "Exception" in ln), text[-1] if text else "")
        raise BackfillError(f"the Spark import failed, nothing was committed: {type(exc).__name__}: "
                            f"{last.strip()[:500]}") from None
    finally:
        if sc is not None:  # the thread's later jobs (a build on the same session) are not in the group
            for key in ("spark.jobGroup.id", "spark.job.description", "spark.job.interruptOnCancel"):
                sc.setLocalProperty(key, None)
    staged = {int(r["i"]): pickle.loads(r["staged"]) for r in rows}
    if sorted(staged) != list(range(n)):
        raise BackfillError(f"the Spark import returned {len(staged)} of {n} files; nothing was committed")
    return [staged[i] for i in range(n)]


def _spark_context(spark: Any) -> Any:
    """The session's SparkContext (None for Spark Connect, which has none on the client)."""
    try:
        return spark.sparkContext
    except Exception:  # noqa: BLE001 - Connect: PySparkNotImplementedError / attribute errors
        return None


def _wait_for_tasks(sc: Any, group: str, timeout: float = 120.0) -> None:
    """After a failed job: wait until none of the group's tasks still runs. Spark fails the action as
    soon as one task fails, while the other tasks of the stage run on to their end and write their
    parts; collected before that, those parts would stay behind (seen once in the tests)."""
    tracker = sc.statusTracker()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stages = [sid for jid in tracker.getJobIdsForGroup(group) if (job := tracker.getJobInfo(jid))
                  for sid in job.stageIds]
        if not any((info := tracker.getStageInfo(sid)) and info.numActiveTasks > 0 for sid in stages):
            return
        time.sleep(0.05)


# -- commit ---------------------------------------------------------------------------------------
class _Committer:
    """Commits files in order with the sequential import's rules (unchanged, replaced, failed)."""

    def __init__(self, lake: Lake, gpg: GpgSettings, limits: EventLimits, con=None,
                 known: E._Sources | None = None) -> None:
        self.lake, self.gpg, self.limits, self.con = lake, gpg, limits, con
        if known is None:
            known = _open_store(lake) if con is None else E._Sources(con)
        self.known = known
        self.engine: E._DuckEngine | None = None

    def one(self, item: _Item) -> E.EventsFileResult:
        src = item.src
        key, origin, same, how = self.known.identify(src)
        if same is not None and src.fingerprint and same.fingerprint == src.fingerprint:
            if item.staged is not None:
                item.staged.discard()
            res = E.EventsFileResult(src.label, "unchanged", source_key=key, message="already imported" + (
                f" (the same bytes, from {same.label})" if same.label != src.label else ""))
            self._log(src, res, (key, origin) if how == "legacy" else None)
            return res
        if item.failed:
            res = E.EventsFileResult(src.label, "failed", source_key=key, message=item.failed)
            self._log(src, res)
            return res
        staged = item.staged
        if staged is None or staged.res.source_key != key:  # planned otherwise: parse it here
            if staged is not None:
                staged.discard()
            staged = self._stage_here(src, key)
        res = staged.res
        if res.disk_full:  # the lake's disk: the run stops, the file is not recorded as failed
            raise E.disk_full_error(self.lake, res)
        if res.status == "failed":
            self._log(src, res)
            return res
        try:
            if self.con is None:
                res.duplicates = E._commit(self.lake, src, key, origin, staged.parts, staged.qpath, res.rejected, res)
            else:
                res.duplicates = E._commit_in(self.lake, self.con, src, key, origin, staged.parts, staged.qpath,
                                              res.rejected, res, refresh=False)
        except BaseException:
            staged.discard()
            raise
        if res.status == "loaded":  # (a cut copy of a file already imported is refused at its commit)
            self.known.loaded(key, origin, src)
        return res

    def _stage_here(self, src: Source, key: str) -> E._Staged:
        if self.engine is None:
            self.engine = E._DuckEngine(0)
        return E._stage_one(self.lake, src, key, self.gpg, self.engine, self.limits)

    def _log(self, src: Source, res: E.EventsFileResult, adopt: tuple[str, str] | None = None) -> None:
        if self.con is None:
            E._log(self.lake, src, res, adopt=adopt)
            return
        E._log(self.lake, src, res, self.con)
        if adopt is not None:
            catalog.set_event_origin(self.con, adopt[0], adopt[1])

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()


# -- the run --------------------------------------------------------------------------------------
def import_events_parallel(lake: Lake, sources: list[Source], gpg: GpgSettings, jobs: int | None = None,
                           spark: Any = None, progress: Any = None, limits: EventLimits | None = None,
                           on_file: Callable[[E.EventsFileResult], None] | None = None) -> E.EventsSummary:
    """Import tracking-log files, parsing ``jobs`` files at once (worker processes), or one file
    per Spark task when ``spark`` (a SparkSession) is given; same results as ``import_events``.

    The caller holds the store's write lock. On any failure, nothing uncommitted stays behind."""
    limits = limits or EventLimits()
    if spark is None and E.ENGINE == "msgspec":  # that engine runs its own worker processes
        return E.import_events(lake, sources, gpg, progress=progress, limits=limits, on_file=on_file)
    t0 = time.perf_counter()
    summary = E.EventsSummary()
    items, todo, known = _plan(lake, sources, gpg)
    # forked workers decrypt through the driver's session keyring (made by _plan's passphrase check);
    # Spark tasks, which may run elsewhere, through the keyring
    keyring = gpg.session.keyring if gpg.session is not None and spark is None else None
    if keyring is not None:
        plain_gpg = GpgSettings(gnupghome=str(keyring.home), passphrase=keyring.passphrase, jobs=1)
    else:
        plain_gpg = GpgSettings(gnupghome=gpg.gnupghome, passphrase=gpg.passphrase, jobs=1)
    checked = bool(gpg.session is not None and gpg.session.checked)
    job_list = [_Job(str(lake.root), items[i].src, items[i].key, plain_gpg, limits, checked, keyring is not None)
                for i in todo]
    overall = (progress.add_task("event files", total=max(1, sum(s.size for s in sources)), unit="B")
               if progress is not None else None)
    try:
        if spark is not None:
            _run_spark(lake, gpg, limits, spark, items, todo, job_list, summary, progress, overall)
        else:
            _run_local(lake, gpg, limits, jobs or default_jobs(), items, todo, job_list, summary, progress,
                       overall, on_file, known)
    except BaseException:
        lake.collect_garbage()  # every part written but not committed (the caller holds the lock)
        raise
    lake.collect_garbage()  # the parts that re-delivered files replaced (the sequential import does it per file)
    if spark is not None and on_file is not None:
        for res in summary.files:
            on_file(res)
    summary.seconds = time.perf_counter() - t0
    return summary


def _advance(progress: Any, overall: Any, src: Source) -> None:
    if progress is not None:
        progress.advance(overall, max(0, src.size))


def _run_local(lake: Lake, gpg: GpgSettings, limits: EventLimits, workers: int, items: list[_Item], todo: list[int],
               job_list: list[_Job], summary: E.EventsSummary, progress: Any, overall: Any,
               on_file: Callable[[E.EventsFileResult], None] | None, known: E._Sources | None = None) -> None:
    """Worker processes parse; each file commits on its own, in order, once it is parsed."""
    results = _local_results(job_list, workers) if job_list else iter(())
    committer = _Committer(lake, gpg, limits, known=known)
    try:
        pending = iter(todo)
        nxt = next(pending, None)
        for i, item in enumerate(items):
            if i == nxt:
                item.staged = next(results)
                nxt = next(pending, None)
            res = committer.one(item)
            summary.files.append(res)
            _advance(progress, overall, item.src)
            if on_file is not None:
                on_file(res)
    finally:
        committer.close()
        if hasattr(results, "close"):
            results.close()


def _run_spark(lake: Lake, gpg: GpgSettings, limits: EventLimits, spark: Any, items: list[_Item], todo: list[int],
               job_list: list[_Job], summary: E.EventsSummary, progress: Any, overall: Any) -> None:
    """Spark tasks parse every file; then one transaction commits them all."""
    for i, staged in zip(todo, _spark_results(spark, job_list)):
        items[i].staged = staged
    E.testhooks.pause("events-commit")  # fault tests: every file's parts written, none referenced yet
    with lake.transaction(f"commit {len(items)} event file(s) parsed on Spark") as con:
        committer = _Committer(lake, gpg, limits, con)
        try:
            for item in items:
                summary.files.append(committer.one(item))
                _advance(progress, overall, item.src)
        finally:
            committer.close()
        lake.refresh_views(con)


def spark_for_import(master: str = "local[*]", remote: str | None = None) -> Any:
    """A Spark session whose Python workers run this interpreter (they import edx_engine)."""
    import sys

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from ..models.build import BuildError

    try:
        from ..models.spark import spark_session

        return spark_session(master, remote)
    except (BuildError, ModuleNotFoundError) as exc:  # no pyspark, no Java, no Connect client
        text = str(exc).replace("--engine spark needs", "import --engine spark needs")
        raise BackfillError(text) from None


__all__ = ["BackfillError", "default_jobs", "import_events_parallel", "spark_for_import", "stage_job"]
