"""Import of the weekly database package into the lake.

Each package member is a snapshot of one table for one course. A newer package
replaces the course's previous snapshot of that table; the same package imported
twice changes nothing (fingerprints match); an older package never replaces a newer
one. All new snapshots of a run become current in a single catalog transaction.
"""

from __future__ import annotations

import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import _hooks as testhooks
from .. import interrupts
from ..decrypt import DecryptError, GpgSettings, PassphraseError, gpg_session
from ..store import catalog
from ..store.files import QuarantineWriter, finish_atomic
from ..store.errors import DiskFull, disk_full_cause, is_disk_full
from ..store.lake import Lake, QuarantineFile, Snapshot
from ..names import course_slug, slug_matches
from ..schemas import TABLES, TableSchema, schema_for
from . import checks, documents
from .sources import Source
from .tsv import FileRejected, Header, Reject, locate_bad_utf8, output_schema, read_mysql_tsv
from .typing import arrow_type

# Files whose course id can be read from their content are imported first, so that the
# course id (not just the file-name slug, which loses '/', '+' and '.') is known for the rest.
_ORDER = {"course_structure": 0, "student_courseenrollment": 1, "courseware_studentmodule": 2}


def _import_order(table: str) -> int:
    """Files whose rows carry a course id (certificates, roles, forum, ...) come before those that do
    not (auth_user, auth_userprofile, user_id_map), so a package without an enrolment file still gives
    the latter their real course id."""
    if table in _ORDER:
        return _ORDER[table]
    schema = TABLES.get(table)
    if schema is None:
        return 10  # unknown tables last: every course id the package gives is known by then
    return 3 if schema.column("course_id") or schema.kind == "mongo" else 9


SET_ASIDE = "set aside"  # a file's status when another copy in its package holds its table (_one_of)
# A newer snapshot with this share of rows fewer (and at least SHRINK_MIN_ROWS) than the one it
# replaces, or none at all, is named in a warning (rows are kept: a package is a full dump, so a
# course's table hardly shrinks, except by learners' accounts being retired).
SHRINK_SHARE = 0.10
SHRINK_MIN_ROWS = 10
_UNTYPED = "untyped:"  # fingerprint prefix of an unknown table's snapshot: once typed, it is not "unchanged"


def _fingerprint(src: Source) -> str:
    return (_UNTYPED if src.member is not None and src.member.table not in TABLES else "") + src.fingerprint


def _header_names_ok(label: str):
    """Header check of an unknown table: its first line must be column names, or it is not a table."""
    import re

    def check(header: Header) -> None:
        names = [header.renamed.get(n, n) for n in header.names]  # as the file wrote them
        if len(names) > 1 and names[-1] == "":
            names.pop()  # a header ending in a tab
        bad = next((n for n in names if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", n)), None)
        if bad is not None or not names:
            raise FileRejected(f"{label}: line 1: no header of column names (first bad name {bad!r}); "
                               "an edX table file starts with one")
    return check


@dataclass
class FileResult:
    label: str
    table: str
    course_id: str | None
    status: str  # loaded | unchanged | older | failed | not exported (edX's export failed: a .failed file)
    #              | set aside (another copy of the package holds its table and course: PackageImporter._one_of)
    rows: int = 0
    rejected: int = 0
    message: str = ""
    extra_columns: list[str] = field(default_factory=list)
    renamed_columns: dict[str, str] = field(default_factory=dict)  # stored name -> the file's (tsv._stored_names)
    nbytes: int = 0
    unknown_table: bool = False  # a table the registry does not describe, kept as text
    warnings: list[str] = field(default_factory=list)  # implausible keys or user ids (rows kept)


@dataclass
class ImportSummary:
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    fatal: str | None = None  # why the run stopped before its other files (wrong passphrase)
    notes: list[str] = field(default_factory=list)  # worth knowing, not wrong (a course left out of a package)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files if f.status == "loaded")

    @property
    def rejected(self) -> int:
        return sum(f.rejected for f in self.files)

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def warnings(self) -> list[str]:
        return [w for f in self.files for w in f.warnings]

    @property
    def unknown_tables(self) -> list[str]:
        """Tables the registry does not describe that were kept as text (each once)."""
        return sorted({f.table for f in self.files if f.unknown_table and f.status in ("loaded", "unchanged")})

    @property
    def not_exported(self) -> list[FileResult]:
        """``.failed`` markers: edX's export of a table failed (not an error of this import)."""
        return [f for f in self.files if f.status == "not exported"]

    @property
    def partial(self) -> bool:
        return bool(self.failed) or self.rejected > 0

    @property
    def all_failed(self) -> bool:
        """Every file failed: nothing of the package could be used (a failure, not a partial import)."""
        return bool(self.files) and len(self.failed) == len(self.files)


class _SnapshotWriter:
    """Writes typed batches plus the constant columns to a Parquet file under a temporary name."""

    def __init__(self, path: Path, schema: pa.Schema, constants: dict[str, str | None]):
        self.path, self.tmp = path, path.with_name(path.name + ".tmp")
        self.schema, self.constants = schema, constants
        self.writer = pq.ParquetWriter(self.tmp, schema, compression="zstd")
        self.rows = 0

    def write(self, cols: dict[str, pa.Array], n: int) -> None:
        if n == 0:
            return
        arrays = []
        for f in self.schema:
            if f.name in cols:
                arrays.append(cols[f.name])
            else:
                arrays.append(pa.array([self.constants.get(f.name)] * n, f.type))
        self.writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        self.rows += n

    def close(self) -> None:
        self.writer.close()
        finish_atomic(self.tmp, self.path)

    def discard(self) -> None:
        try:
            self.writer.close()
        except Exception:
            pass
        self.tmp.unlink(missing_ok=True)


def _added(schema: TableSchema) -> list[tuple[str, pa.DataType]]:
    return [(n, pa.string()) for n in ("course_id", "org", "package_date", "source_file")]


def write_quarantine(lake: Lake, kind: str, key: str, label: str, rejects: list[Reject]) -> QuarantineFile:
    path = lake.quarantine_file(kind)
    writer = QuarantineWriter(lambda: path, kind, label)
    try:
        writer.add([(r.line, r.reason, r.raw) for r in rejects])
        writer.close()
    except BaseException:
        writer.discard()
        raise
    return QuarantineFile(key, kind, path, len(rejects))


class _Started:
    """A source whose decryption was started ahead of its turn (gpg runs until its pipe is full)."""

    def __init__(self, src: Source, gpg: GpgSettings):
        self._cm = src.open(gpg)
        self.stream = self._cm.__enter__()

    def __enter__(self) -> BinaryIO:
        return self.stream

    def __exit__(self, *exc) -> bool | None:
        return self._cm.__exit__(*exc)

    def abandon(self) -> None:
        """Not needed after all (the file turned out unchanged): stop its gpg."""
        try:
            self._cm.__exit__(_Abandoned, _Abandoned(), None)
        except Exception:  # noqa: BLE001 - only cleanup
            pass


class _Abandoned(BaseException):
    """Thrown into a started decryption to stop it."""


class PackageImporter:
    """Imports package members in a fixed order, one at a time (results do not depend on
    timing), while up to ``gpg.jobs`` later encrypted members are already being decrypted:
    starting gpg and unlocking the key (~0.45 s per member) overlaps with parsing. Each
    started member holds at most a pipe's worth of plaintext until its turn."""

    def __init__(self, lake: Lake, gpg: GpgSettings, on_file: Callable[[FileResult], None] | None = None,
                 on_read: Callable[[FileResult], None] | None = None):
        """``on_read``: after each file is read (progress); ``on_file``: with each file's final result,
        once the whole package is read (another copy of a table can still refuse a file read earlier)."""
        self.lake, self.gpg, self.on_file, self.on_read = lake, gpg, on_file, on_read
        self.slug_to_course: dict[str, str] = {}
        self._slug_reported: set[str] = set()
        self._ahead: dict[int, _Started] = {}
        self._current: dict[tuple[str, str], tuple] = {}  # (table, course) -> (package_date, fingerprint, path)
        self._by_fingerprint: dict[tuple[str, str, str], str] = {}  # (table, package_date, fingerprint) -> course
        self._cands: dict[tuple[str, str, str], list[_Claim]] = {}  # this run's written snapshots (see _run)
        self._reading: Source | None = None  # the member being read

    def run(self, sources: Iterable[Source]) -> ImportSummary:
        with gpg_session(self.gpg) as gpg:
            self.gpg = gpg
            try:
                return self._run(sources)
            except BaseException as exc:
                if not is_disk_full(exc):
                    raise
                raise self._disk_full(exc) from None
            finally:
                for started in self._ahead.values():
                    started.abandon()
                self._ahead.clear()

    def _run(self, sources: Iterable[Source]) -> ImportSummary:
        t0 = time.perf_counter()
        summary = ImportSummary()
        log: list[tuple] = []
        srcs = sorted((s for s in sources if s.member), key=lambda s: (s.package_date or "", _import_order(s.member.table)))
        # the snapshots as they are before this run (it commits once, at its end, under the write lock):
        # read once, not once per member (a catalog connection costs ~0.1 s), by the lake's init if it could
        rows = self.lake.snapshots_read_at_init()
        if rows is None:
            with self.lake.connect(read_only=False) as con:
                rows = catalog.current_snapshots(con)
        self._current = {(t, c): (d, f, p) for t, c, d, f, p in rows}
        self._by_fingerprint = {(t, d, f): c for t, c, d, f, _ in sorted(rows)}
        known = sorted({c for _, c, _, _, _ in rows})
        for cid in sorted(known, key=_is_real_course_id):  # real ids last: they win over bare slugs
            self.slug_to_course[course_slug(cid)] = cid
        jobs = self.gpg.session.jobs if self.gpg.session is not None else 1
        # (table, course, package date) -> every file of the run that holds it (its current snapshot
        # too, when a file is found unchanged): one of them, or none, becomes the snapshot
        cands: dict[tuple[str, str, str], list[_Claim]] = {}
        self._cands = cands
        for i, src in enumerate(srcs):
            self._start_ahead(srcs, i, jobs)
            self._reading = src
            try:
                result, snap, qfile = self._import_one(src)
            except PassphraseError as exc:  # every other file would fail alike: stop here
                summary.fatal = str(exc)
                result, snap, qfile = FileResult(src.label, src.member.table, None, "failed", message=str(exc)), None, None
            interrupts.check()  # an interrupt some library swallowed while this file was read
            if snap:
                cands.setdefault((snap.table, snap.course_id, snap.package_date), []).append(
                    _Claim(result, snap, qfile, snap.fingerprint, _site(src)))
            elif result.status == "unchanged" and result.course_id:
                # already the current snapshot: a different copy in the package must not replace it
                cands.setdefault((src.member.table, result.course_id, src.package_date or ""), []).append(
                    _Claim(result, None, None, _fingerprint(src), _site(src)))
            summary.files.append(result)
            if summary.fatal:
                break
            if self.on_read:
                self.on_read(result)
        kept = [c for key, group in cands.items() if (c := self._one_of(key, group)) is not None]
        if self.on_file:  # once each file's fate is known (a later copy can refuse an earlier one)
            for result in summary.files[:len(summary.files) - bool(summary.fatal)]:
                self.on_file(result)
        kept = self._without_superseded_slugs(kept)
        # the snapshots to commit and, in the same order, their files' results
        snapshots, results_of = [c.snap for c in kept], [c.result for c in kept]
        quarantine = [c.qfile for c in kept if c.qfile is not None]  # (those of copies set aside are deleted)
        self._shrink_warnings(kept)
        self._same_date_warnings(kept)
        self._reading = None
        summary.notes.extend(self._courses_left_out(srcs, summary.files))
        for i, lines in checks.snapshot_warnings(snapshots, self._current_users, self.lake.root / "tmp").items():
            results_of[i].warnings.extend(lines)
        for src, result in zip(srcs, summary.files):
            message = "; ".join(x for x in [result.message, *result.warnings] if x)
            log.append((src.label, result.table, result.course_id, src.package_date, result.status,
                        result.rows, result.rejected, message))
        interrupts.check()  # nothing of the package is committed once Ctrl-C was seen (Lake.transaction too)
        self.lake.commit(snapshots, quarantine, log)
        summary.seconds = time.perf_counter() - t0
        return summary

    def _disk_full(self, exc: BaseException) -> DiskFull:
        """The run's one line for a write the full disk refused, after deleting what the run wrote (the
        space goes back at once; the next run reads every member again). The package is all or
        nothing: no member is marked failed and none of it is committed, as the disk is not the
        input's fault (before, each member read after the disk filled was reported "failed: cannot
        read the file", and a package whose commit still fit went in without them)."""
        for group in self._cands.values():
            for c in group:
                if c.snap is not None:
                    self._discard(c.snap, c.qfile)
        self._cands = {}
        if isinstance(exc, DiskFull):  # the commit's (Lake.transaction): says what it could not write
            return exc
        what = f" while importing {self._reading.label}" if self._reading is not None else ""
        return DiskFull(f"{disk_full_cause(exc, what)}; nothing of the package was committed, the store "
                        f"{self.lake.root} is as before; free some space and run again")

    def _without_superseded_slugs(self, kept: list["_Claim"]) -> list["_Claim"]:
        """A copy whose course id fell back to the file-name slug (no row named the course: an empty
        copy) next to a copy of the same table whose rows name the real course: the latter holds it
        (its commit retires the slug key), so the former is set aside, not reported as loaded."""
        real = {(c.snap.table, c.snap.supersedes): c for c in kept if c.snap.supersedes}
        out = []
        for c in kept:
            holder = real.get((c.snap.table, c.snap.course_id))
            if holder is not None and holder is not c:
                self._set_aside(c, f"names no course; {holder.result.label} holds {c.snap.table} of "
                                   f"{holder.snap.course_id}")
            else:
                out.append(c)
        return out

    def _shrink_warnings(self, kept: list["_Claim"]) -> None:
        """A warning on each snapshot with far fewer rows than the one it replaces, the store's or an
        earlier package's of this run (a package is a full dump: a table file emptied or cut by the
        export replaces good data)."""
        last: dict[tuple[str, str], tuple[str, int]] = {}  # (table, course) -> (package date, rows)
        for c in sorted(kept, key=lambda c: c.snap.package_date):
            snap, key = c.snap, (c.snap.table, c.snap.course_id)
            before = last.get(key) or self._stored_rows(key)
            last[key] = (snap.package_date, snap.rows)
            if before is None or before[0] >= snap.package_date or before[1] == 0:
                continue
            lost = before[1] - snap.rows
            if snap.rows == 0 or lost > max(SHRINK_MIN_ROWS, SHRINK_SHARE * before[1]):
                c.result.warnings.append(
                    f"{snap.table} of {snap.course_id}: package {snap.package_date} holds {snap.rows:,} rows "
                    f"against {before[1]:,} in package {before[0]} ({lost / before[1]:.0%} fewer) and replaces "
                    "them; check the file")

    def _same_date_warnings(self, kept: list["_Claim"]) -> None:
        """A warning per package date on the files that replace a snapshot of the same package date
        imported before from a file with other content. The newest import wins (edX may re-deliver
        a corrected package under its date), but two different copies of one package should not
        take turns silently: the order of the imports would decide the data (helper-65)."""
        by_date: dict[str, list["_Claim"]] = {}
        for c in kept:
            cur = self._current.get((c.snap.table, c.snap.course_id))
            if cur and cur[0] == c.snap.package_date and cur[1] != c.snap.fingerprint \
                    and not _same_rows(self.lake.abs(cur[2]), c.snap.path):
                by_date.setdefault(c.snap.package_date, []).append(c)
        for pdate, claims in sorted(by_date.items()):
            first = claims[0]
            before = self._stored_source(self._current[(first.snap.table, first.snap.course_id)][2])
            first.result.warnings.append(
                f"package {pdate}: {len(claims)} file(s) replace snapshots of the same package imported before "
                f"from files with other content (first: {first.snap.table} of {first.snap.course_id}"
                + (f", before from {before}" if before else "") + "); if this is not edX's corrected "
                "re-delivery, import the right copy again")

    def _stored_source(self, path: str) -> str | None:
        """The source file a stored snapshot was made from (its constant ``source_file`` column)."""
        try:
            col = pq.ParquetFile(self.lake.abs(path)).read_row_group(0, columns=["source_file"]).column(0)
            return col[0].as_py() if len(col) else None
        except (OSError, pa.ArrowException, KeyError, IndexError):
            return None

    def _courses_left_out(self, srcs: list[Source], results: list[FileResult]) -> list[str]:
        """A note per package of the run, newer than the store's, that has no file of courses the
        package before it had. edX's exporter may leave out courses that ended long ago, so this is
        not an error; but a course missing by accident would otherwise go unnoticed: its last
        snapshot stays current, silently older than the others."""
        before = {c: d for (_, c), (d, _, _) in self._current.items() if _is_real_course_id(c)}
        latest = max(before.values(), default=None)
        in_run: dict[str, set[str]] = {}  # package date -> courses with a file in the run
        for src, r in zip(srcs, results):
            if src.package_date and r.course_id and _is_real_course_id(r.course_id):
                in_run.setdefault(src.package_date, set()).add(r.course_id)
        notes, prev = [], latest
        for date in sorted(d for d in in_run if latest is None or d > latest):
            had = in_run.get(prev) if prev in in_run else {c for c, d in before.items() if d == prev}
            gone = sorted((had or set()) - in_run[date])
            if gone:
                notes.append(f"package {date} has no file of {len(gone)} course(s) that package {prev} had, "
                             f"kept as of {prev}: {', '.join(gone)} (edX leaves out courses that ended long ago)")
            prev = date
        return notes

    def _stored_rows(self, key: tuple[str, str]) -> tuple[str, int] | None:
        cur = self._current.get(key)
        if not cur:
            return None
        try:
            return cur[0], pq.ParquetFile(self.lake.abs(cur[2])).metadata.num_rows
        except (OSError, pa.ArrowException):
            return None

    def _one_of(self, key: tuple[str, str, str], group: list["_Claim"]) -> "_Claim | None":
        """The file that becomes the snapshot of (table, course, package date) when several files of
        the run hold it (None: none is written; a file found unchanged stays the course's snapshot).

        * the same bytes: counted once;
        * an empty copy (a header only: an export with nothing to say for that site) gives way;
        * another site's copy (``prod`` and ``edge`` files of an org-level table) gives way to
          edx.org's (``prod``/``edx``), with a warning naming it: which one edX meant cannot be told;
        * copies of one site with other content (a copy in another folder): none is imported, and
          the course keeps its earlier snapshot (the last one used to replace the others silently);
          beside a copy already imported (found unchanged), a new one is refused."""
        table, course, date = key
        first: dict[str, _Claim] = {}
        for c in group:  # the same bytes twice: the first copy stands for both
            if c.fingerprint in first:
                self._set_aside(c, f"the same file as {first[c.fingerprint].result.label}")
            else:
                first[c.fingerprint] = c
        left = list(first.values())
        if len(left) > 1 and any(c.snap is None or c.snap.rows for c in left):
            for c in [c for c in left if c.snap is not None and c.snap.rows == 0]:
                full = next(o for o in left if o.snap is None or o.snap.rows)
                self._set_aside(c, f"no rows; {full.result.label} holds {table} of {course}")
                left.remove(c)
        stored = next((c for c in left if c.snap is None), None)  # the copy already imported, if any
        if len(left) > 1:
            site = (stored or min(left, key=lambda c: _site_rank(c.site))).site
            others = [c for c in left if c.site != site]
            left = [c for c in left if c.site == site]
            for c in others:
                note = (f"{table} of {course} is in files of two sites ({site}, {c.site}) of package {date} with "
                        f"different content: the {site} file is imported, {c.result.label} is not")
                self._set_aside(c, note)
                c.result.warnings.append(note)
        if len(left) > 1:
            why = f"{table} of {course} is in {len(left)} files of package {date} with different content"
            for c in left:
                if c is stored:
                    continue
                c.result.status, c.result.rows, c.result.rejected, c.result.warnings = "failed", 0, 0, []
                c.result.message = (f"{c.result.label}: {why} ({stored.result.label} is already imported); "
                                    "this one is not imported" if stored is not None else
                                    f"{c.result.label}: {why} (the others: "
                                    f"{', '.join(o.result.label for o in left if o is not c)}); none is imported")
                self._discard(c.snap, c.qfile)
            return None
        return left[0] if left and left[0].snap is not None else None

    def _set_aside(self, claim: "_Claim", why: str) -> None:
        """A copy not imported because another one of the package holds the table (not an error)."""
        r = claim.result
        r.status, r.rows, r.rejected, r.message, r.warnings = SET_ASIDE, 0, 0, why, []
        if claim.snap is not None:
            self._discard(claim.snap, claim.qfile)

    @staticmethod
    def _discard(snap: Snapshot, qfile: QuarantineFile | None) -> None:
        """Delete a written snapshot (and its rejected lines) that is not to be committed."""
        snap.path.unlink(missing_ok=True)
        if qfile is not None:
            qfile.path.unlink(missing_ok=True)

    # -- decryption ahead of parsing ------------------------------------------------------
    def _start_ahead(self, srcs: list[Source], i: int, jobs: int) -> None:
        """Start the decryption of the next encrypted members that will need it (at most ``jobs``).

        Only a guess made with what is known now: a member guessed wrongly is decrypted at its
        turn as usual, or its started gpg is stopped; the results never depend on the guess."""
        if jobs <= 1 or (self.gpg.session is not None and self.gpg.session.failure):
            return
        for j in range(i + 1, min(len(srcs), i + 1 + jobs)):
            src = srcs[j]
            if id(src) in self._ahead or not src.encrypted or not self._needs_decryption(src):
                continue
            try:
                self._ahead[id(src)] = _Started(src, self.gpg)
            except Exception:  # noqa: BLE001 - its turn will open it again and report the error
                return

    def _current_users(self, course_id: str, package_date: str) -> Path | None:
        """The store's auth_user file of a course when it is from the same package (for the checks)."""
        cur = self._current.get(("auth_user", course_id))
        return self.lake.abs(cur[2]) if cur and cur[0] == package_date else None

    def _needs_decryption(self, src: Source) -> bool:
        m = src.member
        assert m is not None
        if m.failed_export:
            return False
        course_id = None if (schema_for(m.table).column("course_id") and m.slug) else self._course_for(src)
        if course_id is not None:
            return self._skip_reason(m.table, course_id, src) is None
        return self._same_file_current(m.table, src) is None

    def _open(self, src: Source):
        """The member's plaintext: the decryption started ahead of time, else a new one."""
        started = self._ahead.pop(id(src), None)
        return started if started is not None else src.open(self.gpg)

    def _drop_ahead(self, src: Source) -> None:
        started = self._ahead.pop(id(src), None)
        if started is not None:
            started.abandon()

    # -- one file -------------------------------------------------------------------
    def _course_for(self, src: Source) -> str | None:
        m = src.member
        assert m is not None
        if m.slug is None:
            return f"org:{src.org}"
        return self.slug_to_course.get(m.slug)

    def _import_one(self, src: Source) -> tuple[FileResult, Snapshot | None, QuarantineFile | None]:
        m = src.member
        assert m is not None
        if m.failed_export:
            return self._not_exported(src), None, None
        schema = schema_for(m.table)
        # Rows that carry their course id are the authority; other tables use what the package said.
        course_id = None if (schema.column("course_id") and m.slug) else self._course_for(src)
        result = FileResult(src.label, m.table, course_id, "loaded", nbytes=src.size, unknown_table=not schema.known)
        if course_id is not None and (skip := self._skip_reason(m.table, course_id, src)):
            self._drop_ahead(src)
            result.status, result.message = skip
            return result, None, None
        if course_id is None and (same := self._same_file_current(m.table, src)):
            # already imported (its course id came from its rows): no need to decrypt it again
            self._drop_ahead(src)
            result.status, result.message, result.course_id = "unchanged", "already imported", same
            return result, None, None
        try:
            snap, rejects = self._parse(src, schema, course_id, result)
        except PassphraseError:
            interrupts.check()
            raise
        except (FileRejected, DecryptError) as exc:
            interrupts.check()  # a gpg child stopped by the same Ctrl-C fails its file: the interrupt wins
            result.status, result.message = "failed", str(exc)
            return result, None, None
        except Exception as exc:  # noqa: BLE001 - one unreadable file must not stop the package
            interrupts.check()  # Ctrl-C that DuckDB or pyarrow reported as an error is not a failed file
            if is_disk_full(exc):
                raise  # the store's disk, not the file: the whole run stops (run)
            result.status, result.message = "failed", _unreadable(src.label, exc)
            return result, None, None
        if snap is None:
            return result, None, None
        qkey = f"export:{m.table}:{snap.course_id}"
        qfile = write_quarantine(self.lake, "export", qkey, src.label, rejects)
        result.rows, result.rejected, result.course_id = snap.rows, len(rejects), snap.course_id
        if rejects:
            result.message = f"{len(rejects)} line(s) rejected, first: line {rejects[0].line}: {rejects[0].reason}"
        elif m.slug and snap.course_id == m.slug and m.slug not in self._slug_reported:
            self._slug_reported.add(m.slug)  # said once per course
            result.message = (f"course id of {m.slug} unknown: no course structure and no row names it; "
                              f"stored under the file-name slug {m.slug}")
        return result, snap, qfile

    def _same_file_current(self, table: str, src: Source) -> str | None:
        """The course of the current snapshot made from this very file (same bytes, same package)."""
        return self._by_fingerprint.get((table, src.package_date or "", _fingerprint(src)))

    def _skip_reason(self, table: str, course_id: str, src: Source) -> tuple[str, str] | None:
        cur = self._current.get((table, course_id))
        if not cur:
            return None
        pdate, fingerprint, _ = cur
        if pdate == src.package_date and fingerprint == _fingerprint(src):
            return "unchanged", "already imported"
        if pdate > (src.package_date or ""):
            return "older", f"package {src.package_date} is older than the current snapshot ({pdate})"
        return None

    def _parse(self, src: Source, schema: TableSchema, course_id: str | None, result: FileResult
               ) -> tuple[Snapshot | None, list[Reject]]:
        kind = schema.kind
        rejects: list[Reject] = []
        writer: _SnapshotWriter | None = None
        header_box: list[Header] = []
        reader = None  # the table reader (a generator): closed on an error, so that it stops its reading
        constants = {"org": src.org, "package_date": src.package_date, "source_file": src.label}

        def open_writer(cid: str, arrow_schema: pa.Schema) -> _SnapshotWriter:
            path = self.lake.table_file(schema.name, cid, src.package_date or "unknown")
            return _SnapshotWriter(path, arrow_schema, {**constants, "course_id": cid})

        nul_count: dict[str, int] = {}  # NUL characters removed from the values (tsv.read_mysql_tsv, documents)
        try:
            with self._open(src) as raw:
                if kind in ("sql", "csv"):
                    on_header = header_box.append
                    if not schema.known:
                        names_ok = _header_names_ok(src.label)
                        on_header = lambda h: (names_ok(h), header_box.append(h))  # noqa: E731
                    reader = (read_mysql_tsv(raw, src.label, schema, header_cb=on_header, counts=nul_count)
                              if kind == "sql" else documents.read_email_opt_in(raw, src.label))
                    from_rows = course_id is None or not schema.known
                    for cols, n, rej in reader:
                        rejects.extend(rej)
                        if writer is None and n:
                            course_id = course_id or self._course_from_rows(src, cols)
                            hdr = header_box[0] if header_box else Header(list(cols))
                            extra = [k for k in cols if schema.column(k) is None]
                            hdr.extra = extra
                            writer = open_writer(course_id, output_schema(schema, hdr, _added(schema)))
                        if from_rows and n:
                            _check_one_course(src.label, cols, course_id, src.member.slug if src.member else None)
                        if writer:
                            writer.write(cols, n)
                    if writer is None:  # header only: an empty snapshot is still a snapshot
                        hdr = header_box[0] if header_box else Header([])
                        course_id = course_id or self._fallback_course(src)
                        writer = open_writer(course_id, output_schema(schema, hdr, _added(schema)))
                    result.extra_columns = header_box[0].extra if header_box and schema.known else []
                    result.renamed_columns = header_box[0].renamed if header_box else {}
                elif kind == "json":
                    rows, cid = documents.read_course_structure(raw, src.label, nul_count)
                    if cid and src.member and src.member.slug:
                        self.slug_to_course[src.member.slug] = cid
                    course_id = cid or course_id or self._fallback_course(src)
                    writer = open_writer(course_id, _doc_schema(schema))
                    _write_rows(writer, rows)
                elif kind == "mongo":
                    for rows, rej in documents.read_forum(raw, src.label, nul_count):
                        rejects.extend(rej)
                        if writer is None:
                            course_id = course_id or next((r["course_id"] for r in rows if r.get("course_id")), None) \
                                or self._fallback_course(src)
                            writer = open_writer(course_id, _doc_schema(schema))
                        for r in rows:
                            r.pop("course_id", None)
                        _write_rows(writer, rows)
                    if writer is None:
                        writer = open_writer(course_id or self._fallback_course(src), _doc_schema(schema))
                elif kind == "tar":
                    rows = documents.read_course_content(raw, src.label)
                    writer = open_writer(course_id or self._fallback_course(src), _doc_schema(schema))
                    _write_rows(writer, rows)
        except FileRejected as exc:
            if reader is not None:
                reader.close()
            if writer:
                writer.discard()
            if "invalid UTF-8" in str(exc):
                with src.open(self.gpg) as again:
                    where = locate_bad_utf8(again)
                if where:
                    raise FileRejected(f"{src.label}: line {where[0]}: invalid UTF-8 bytes (byte {where[1]} of the line)") from None
            raise
        except BaseException:
            if reader is not None:
                reader.close()  # now, not when the traceback is freed (maybe at the interpreter's exit)
            if writer:
                writer.discard()
            raise
        assert writer is not None
        if nul_count.get("nuls"):
            result.warnings.append(f"{src.label}: {nul_count['nuls']:,} NUL character(s) removed from its values "
                                   "(edX's exporter removes them; PostgreSQL cannot store them)")
        # A course whose id we could not know earlier (no structure/enrolment): check skip now.
        if result.course_id is None and (skip := self._skip_reason(schema.name, writer.constants["course_id"], src)):
            writer.discard()
            result.status, result.message, result.course_id = *skip, writer.constants["course_id"]
            return None, []
        writer.close()
        cid = writer.constants["course_id"]
        slug = src.member.slug if src.member else None
        supersedes = slug if (slug and _is_real_course_id(cid)) else None
        testhooks.pause("package-file")  # interrupt tests: the snapshot written, its DuckDB checks not yet run
        if schema.keys:
            result.warnings += checks.key_warnings(writer.path, schema, writer.schema.names, src.label,
                                                   self.lake.root / "tmp")
        return Snapshot(schema.name, cid, src.org, src.package_date or "", writer.path, writer.rows, len(rejects),
                        _fingerprint(src), src.label, result.extra_columns, supersedes), rejects

    def _course_from_rows(self, src: Source, cols: dict[str, pa.Array]) -> str:
        """The course id written in the rows themselves (first non-empty ``course_id``)."""
        values = cols["course_id"].drop_null().to_pylist() if "course_id" in cols else []
        value = next((v for v in values if v), None)
        if value is None:
            return self._fallback_course(src)
        slug = src.member.slug if src.member else None
        if slug and course_slug(value) == slug:
            self.slug_to_course[slug] = value  # remembered for this course's files without a course_id
        return value

    def _not_exported(self, src: Source) -> FileResult:
        """A ``.failed`` marker: edX's exporter could not write this table (its file holds a traceback).
        Nothing to import; the course keeps its previous snapshot of the table, if any."""
        m = src.member
        assert m is not None
        course = self._course_for(src) or m.slug or f"org:{src.org}"
        return FileResult(src.label, m.table, course, "not exported",
                          message=f"edX's export of {m.table} for {course} failed (the package has "
                                  f"{m.name} instead of the data); the store keeps its previous {m.table} of that course")

    def _fallback_course(self, src: Source) -> str:
        m = src.member
        if m is None or m.slug is None:
            return f"org:{src.org}"
        return self.slug_to_course.get(m.slug, m.slug)


@dataclass
class _Claim:
    """The file of a package that holds a (table, course) so far; ``snap`` None: the store's current
    snapshot, from a file found unchanged."""

    result: FileResult
    snap: Snapshot | None
    qfile: QuarantineFile | None
    fingerprint: str
    site: str


def _site(src: Source) -> str:
    return (src.member.site if src.member is not None else "") or ""


def _site_rank(site: str) -> int:
    """Which site's file wins when two sites' files hold one table: edx.org's own first."""
    return 0 if site.lower() in ("prod", "edx") else 1


def _check_one_course(label: str, cols: dict[str, pa.Array], course_id: str | None, slug: str | None) -> None:
    """A course's table file holds that course only: rows naming another one (than the first row, or
    than the file's name) would put the snapshot under the wrong course, and the real course's
    previous snapshot would stay current too (its learners counted twice)."""
    if "course_id" not in cols:
        return
    values = [v for v in pc.unique(cols["course_id"].drop_null()).to_pylist() if v]
    others = [v for v in values if v != course_id]
    if others:
        raise FileRejected(f"{label}: rows name more than one course ({course_id}, {others[0]}); "
                           "a course's table file holds one course")
    if slug and (bad := next((v for v in values if not slug_matches(v, slug)), None)):
        raise FileRejected(f"{label}: rows are for course {bad} but the file name is for {slug}; "
                           "a course's table file holds its own course")


def _unreadable(label: str, exc: Exception) -> str:
    """One line for a file that failed in an unexpected way (corrupt zip member, odd document)."""
    if isinstance(exc, (zipfile.BadZipFile, zlib.error, EOFError)):
        return f"{label}: corrupt or truncated zip member ({exc})"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{label}: cannot read the file ({type(exc).__name__}{': ' + text if text else ''})"


def _same_rows(old: Path, new: Path) -> bool:
    """Whether two snapshots hold the same rows, whatever their source file: the same bytes
    arrive with other fingerprints from a zip (CRC-32), a folder (SHA-256) or encrypted. Read
    whole, streamed; only for a package date imported again from another file."""
    import duckdb

    sql = "SELECT count(*), sum(hash(t)::HUGEINT) FROM (SELECT * EXCLUDE (source_file) FROM read_parquet(?)) t"
    try:
        with duckdb.connect() as con:
            return con.execute(sql, [str(old)]).fetchone() == con.execute(sql, [str(new)]).fetchone()
    except duckdb.Error:  # a column set that differs (a table typed since), an unreadable file
        return False


def _is_real_course_id(course_id: str) -> bool:
    """True for ``course-v1:...`` and ``Org/Course/Run``; False for a bare file-name slug."""
    return ":" in course_id or "/" in course_id


def _doc_schema(schema: TableSchema) -> pa.Schema:
    fields = [pa.field(c.name, arrow_type(c.type)) for c in schema.columns]
    fields += [pa.field(n, t) for n, t in _added(schema) if schema.column(n) is None]
    return pa.schema(fields)


def _write_rows(writer: _SnapshotWriter, rows: list[dict]) -> None:
    if not rows:
        return
    names = [f.name for f in writer.schema if f.name not in writer.constants]
    cols = {n: pa.array([r.get(n) for r in rows], writer.schema.field(n).type) for n in names}
    writer.write(cols, len(rows))
