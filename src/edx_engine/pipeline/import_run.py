"""One import run: find the files, import package members and event logs, optionally scrub.

This is the library entry point shared by the CLI (`edx-engine import`, `demo`) and the
daily sync; it holds the store's write lock for the whole run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..config import Settings
from ..decrypt import PassphraseError, gpg_session
from .. import _hooks as testhooks
from ..store.lake import Lake
from ..ingest.exports import FileResult, ImportSummary, PackageImporter
from ..ingest.sources import SourceError, discover


def import_paths(
    settings: Settings,
    paths: list[Path],
    package_date: str | None = None,
    scrub: bool = False,
    progress=None,
    on_file: Callable[[FileResult], None] | None = None,
    on_unknown: Callable[[str], None] | None = None,
    labels: dict[Path, str] | None = None,
    on_refused: Callable[[str], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_wait: Callable[[str], None] | None = None,
    jobs: int | None = None,
    spark: object | None = None,
    lake: Lake | None = None,
    collect: bool = True,
) -> tuple[ImportSummary | None, object | None]:
    """Import packages and event logs; returns (exports summary, events summary), either may be None.

    ``progress`` (a rich Progress) gets a bar for the database files and one per log file.
    ``labels`` names files for people (e.g. their S3 address instead of a download path);
    the label is what ``source_file`` columns, the quarantine and messages show.
    ``on_refused`` gets one line per file refused unread (a symbolic link leaving its package,
    a link stored in a zip), ``on_warning`` one per odd zip member path (read anyway).
    With ``scrub`` (or ``[privacy] scrub_on_import``), personal data is removed before the
    write lock is released, so no other import, build or sync ever works on it. Readers of
    the catalog can see the new files for the seconds between the import's commit and the
    scrub's; a crash in that window leaves them unscrubbed until the next ``scrub`` (which
    picks up every file not yet scrubbed).

    Encrypted files are decrypted through the run's own gpg-agents, after one passphrase
    check: a wrong or missing passphrase raises PassphraseError before any file is decrypted
    (what was imported without decryption is committed).

    Once the work has started, a catalog another program holds open (an analyst's DuckDB
    session) is waited for, up to ``[store] commit_wait_seconds`` (default 600), and ``on_wait``
    gets one line saying so; parsed work is never thrown away for a reader that closes in time.

    ``jobs`` > 1: that many log files are parsed at once in worker processes, each committed in
    turn (``pipeline.backfill``); ``spark`` (a SparkSession): one Spark task per log file, then one
    commit for them all. Either gives the same store as the default, one file after the other.

    ``lake``: the store object to use (a sync passes one for all its imports, so that the catalog is
    initialised once); ``collect=False`` leaves the unreferenced files to the caller, which must
    collect them before its command ends (a sync does once, after its last import).
    """
    from ..ingest.events_parse import EventLimits

    limits = EventLimits.from_config(settings.section("events"))  # a bad [events] value fails before any work
    wait = commit_wait_seconds(settings)
    lake = lake if lake is not None else Lake(settings.data_dir)
    found = discover(paths, package_date, labels=labels)
    for line in found.refused:  # links leaving a package, impossible dates in names: named, never read
        if on_refused:
            on_refused(line)
    for line in found.warnings:
        if on_warning:
            on_warning(line)
    if not found.sources:
        raise SourceError("nothing to import: " + ("every file found was refused (named above)" if found.refused
                          else "no edX package members or event logs found") + " in " + ", ".join(map(str, paths)))
    for u in found.unknown:
        if on_unknown:
            on_unknown(u)
    with gpg_session(settings.gpg()) as gpg, lake.writer():
        if gpg.session is not None and any(s.encrypted for s in found.sources):
            gpg.session.prepare()  # the key unlocks while the catalog is opened
        lake.init()  # a catalog open elsewhere fails here at once: nothing has been parsed yet
        lake.wait_seconds, lake.on_wait = wait, on_wait
        members = [s for s in found.sources if s.member]
        events = [s for s in found.sources if s.events]
        exports = None
        if members:
            task = progress.add_task("database files", total=len(members)) if progress is not None else None

            def file_read(result: FileResult) -> None:
                if task is not None:
                    progress.advance(task)

            exports = PackageImporter(lake, gpg, on_file=on_file, on_read=file_read).run(members)
            if exports.fatal:
                raise PassphraseError(exports.fatal)
            testhooks.pause("import-packages")  # crash tests: packages committed, logs not started
        ev = None
        if events:
            from ..ingest.events import import_events

            def event_file_done(result) -> None:
                if on_file:
                    on_file(result)
                testhooks.pause("events-file")  # crash tests: a log file committed, the next not started

            if spark is not None or (jobs or 1) > 1:
                from .backfill import import_events_parallel

                ev = import_events_parallel(lake, events, gpg, jobs=jobs, spark=spark, progress=progress,
                                            on_file=event_file_done, limits=limits)
            else:
                ev = import_events(lake, events, gpg, progress=progress, on_file=event_file_done, limits=limits)
            failure = gpg.session.failure if gpg.session is not None else None
            if failure:
                first = next((f.label for f in ev.failed), "event logs")
                raise PassphraseError(f"{first}: cannot decrypt: {failure}")
        from ..privacy.scrub import scrub as scrub_store, scrub_on_import_enabled

        if scrub or scrub_on_import_enabled(settings):
            scrub_store(lake, take_lock=False)
        if collect:
            lake.collect_unless_done()  # any killed writer's leftovers, even when every file was unchanged
    return exports, ev


COMMIT_WAIT_SECONDS = 600.0  # default of [store] commit_wait_seconds


def commit_wait_seconds(settings: Settings) -> float:
    """``[store] commit_wait_seconds``: how long a started import waits for a catalog held open
    elsewhere before it gives up (saying its parsed work was discarded)."""
    value = settings.section("store").get("commit_wait_seconds", COMMIT_WAIT_SECONDS)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        from ..config import ConfigError

        raise ConfigError(f"[store] commit_wait_seconds must be a number of seconds >= 0, not {value!r}")
    return float(value)
