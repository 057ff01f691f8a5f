"""Read-only questions about a store, answered as plain values (the CLI prints them).

`collect_status`: the sync ledger, the recent imports and the data coverage per course;
`table_summary`: rows per table; `disk_report`: the store's size and the free space beside it.
No stage is imported: the caller says which sync is running."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path
from typing import Any

from .errors import CatalogBusy, LedgerBusy
from .lake import Lake
from .ledger import Ledger

RUN_COLUMNS = ("run_id", "pid", "started_at", "ended_at", "status", "summary")


def table_summary(lake: Lake) -> list[tuple[str, int, int, str, int]]:
    """(table, courses, rows, latest package date, rejected lines) per imported table, by name."""
    with lake.connect(read_only=True) as con:
        return con.execute("SELECT table_name, count(*) AS courses, sum(rows) AS rows, max(package_date), "
                           "sum(rejected) FROM _edx_snapshots GROUP BY 1 ORDER BY 1").fetchall()


def collect_status(data_dir: Path, running_pid: int | None = None) -> dict[str, Any]:
    """Everything `edx-engine status` shows, as JSON-ready values.

    ``running_pid``: the process holding the sync lock now (None: no sync runs); a run the ledger
    still calls running while no process holds the lock was killed, and is shown as interrupted."""
    ledger = Ledger(data_dir, lock_timeout=30)
    report: dict[str, Any] = {"data_dir": str(data_dir), "running_pid": running_pid, "last_sync": None,
                              "last_ok_sync": None, "states": {}, "pending": [], "failed": [], "packages": [],
                              "events": [], "event_files": {}, "skipped": [], "disk": disk_report(data_dir)}
    if not ledger.path.exists():
        return report
    with ledger.connect(read_only=True) as con:  # one connection for every question (each is ~30 ms)
        if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name='_edx_ledger'").fetchone()[0]:
            # a store filled by `import` only: its imports and coverage
            report["packages"] = _package_coverage(con)
            report["events"] = _events(data_dir)
            report["imports"] = _recent_imports(con)
            return report
        report["last_sync"] = _last_run(con, "")
        report["last_ok_sync"] = _last_run(con, "WHERE status='ok' ")
        report["states"] = {f"{k}/{s}": n for k, s, n in con.execute(
            "SELECT kind, state, count(*) FROM _edx_ledger GROUP BY 1, 2 ORDER BY 1, 2").fetchall()}
        for state, dest in (("failed", "failed"), ("pending", "pending")):
            where = "state IN ('failed', 'gone')" if state == "failed" else "state IN ('listed', 'downloaded')"
            report[dest] = [dict(zip(("url", "state", "attempts", "error", "since"), row)) for row in con.execute(
                f"SELECT 's3://' || bucket || '/' || key, state, attempts, error, coalesce(failed_at, listed_at) "
                f"FROM _edx_ledger WHERE {where} ORDER BY object_date, key").fetchall()]
        report["skipped"] = ledger.skipped(con)  # set aside by `edx-engine skip`: who, when, why
        report["packages"] = _package_coverage(con)
        report["events"] = _events(data_dir)
        report["event_files"] = _event_days(con)
        report["imports"] = _recent_imports(con)
    last = report["last_sync"]
    if last and last["status"] == "running" and not running_pid:
        # the ledger still says running, but no process holds the sync lock: it was killed
        last["status"] = "interrupted"
        last["summary"] = last["summary"] or f"process {last['pid']} ended without finishing (killed or crashed)"
    return report


def _event_days(con) -> dict[str, Any]:
    """The days of tracking logs the store holds (``_edx_event_files``, as the dashboard's data-health
    page reads them), not the ledger's objects: a day's second copy (edge, a re-delivery refused as
    cut short) is not a second day, and a day whose last object failed is still held (helper-70)."""
    import duckdb

    try:
        days = [str(r[0]) for r in con.execute("SELECT DISTINCT file_date FROM _edx_event_files "
                                               "WHERE file_date IS NOT NULL").fetchall()]
    except duckdb.CatalogException:  # a store made before tracking logs had a table (any other error is one)
        days = []
    return {"imported": len(days), "first_day": min(days) if days else None,
            "last_day": max(days) if days else None, "missing_days": missing_days(days)}


def _last_run(con, where: str) -> dict[str, Any] | None:
    r = con.execute(f"SELECT {', '.join(RUN_COLUMNS)} FROM _edx_sync_runs {where}"
                    f"ORDER BY started_at DESC LIMIT 1").fetchone()
    return dict(zip(RUN_COLUMNS, r)) if r else None


def _events(data_dir: Path) -> list[dict[str, str]]:
    """Coverage per course from the events view, through the store's own connection: a store moved or copied
    since its views were made is re-pointed first (the ledger's plain connection read the old place's files,
    or, with those gone, found no day and said nothing)."""
    lake = Lake(data_dir)
    lake.wait_seconds = 30  # a commit holding the catalog is waited for, as by the ledger's connection
    try:
        con = lake.connect(read_only=True)
    except CatalogBusy:
        raise LedgerBusy(f"the catalog {lake.catalog_path} is locked by another process") from None
    with con:
        return [{"course_id": c, "first_day": str(a), "last_day": str(b)} for c, a, b in events_coverage(con)]


def events_coverage(con) -> list[tuple]:
    """(course_id, first event day, last event day) from the events view, when there is one."""
    try:
        cols = {r[0]: r[1] for r in con.execute("DESCRIBE events").fetchall()}
    except Exception:
        return []
    if "course_id" not in cols:
        return []
    day = next((c for c in ("event_date", "day", "date") if c in cols), None)
    expr = day or next((f"CAST({c} AS DATE)" for c in ("time", "event_time", "timestamp") if c in cols), None)
    if expr is None:
        return []
    try:
        return con.execute(f"SELECT course_id, min({expr}), max({expr}) FROM events "
                           f"WHERE course_id IS NOT NULL AND course_id <> '' GROUP BY 1 ORDER BY 1").fetchall()
    except Exception:
        return []


def missing_days(dates: list[str]) -> list[str]:
    """The days between the first and the last of ``dates`` that are not among them (ISO strings)."""
    if not dates:
        return []
    ds = sorted({dt.date.fromisoformat(d) for d in dates})
    have = set(ds)
    gaps, d = [], ds[0]
    while d <= ds[-1]:
        if d not in have:
            gaps.append(d.isoformat())
        d += dt.timedelta(days=1)
    return gaps


def _package_coverage(con) -> list[dict]:
    if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name='_edx_snapshots'").fetchone()[0]:
        return []
    return [dict(zip(("course_id", "latest_package", "tables", "rows"), row)) for row in con.execute(
        "SELECT course_id, max(package_date), count(*), sum(rows) FROM _edx_snapshots "
        "WHERE course_id NOT LIKE 'org:%' GROUP BY 1 ORDER BY 1").fetchall()]


def _recent_imports(con, limit: int = 5) -> list[dict]:
    """The latest imports by any command (`import`, `sync`, `demo`), one entry per minute they ran."""
    try:
        rows = con.execute(
            "SELECT date_trunc('minute', logged_at) AS at, count(*), "
            "count(*) FILTER (WHERE status = 'loaded'), count(*) FILTER (WHERE status = 'failed'), "
            "coalesce(sum(rows) FILTER (WHERE status = 'loaded'), 0), "
            "coalesce(sum(rejected) FILTER (WHERE status = 'loaded'), 0) "
            "FROM _edx_import_log GROUP BY 1 ORDER BY 1 DESC LIMIT ?", [limit]).fetchall()
    except Exception:  # a store with no import yet
        return []
    keys = ("at", "files", "loaded", "failed", "rows", "rejected")
    return [dict(zip(keys, r)) for r in rows]


# The parts of a store, as `status` sizes them: (name, path under the data directory); the rest is "other".
DISK_PARTS = (("events", "lake/events"), ("tables", "lake/tables"), ("models", "lake/models"),
              ("models", "lake/model_parts"), ("quarantine", "lake/quarantine"), ("downloads", "downloads"),
              ("site", "site"))
# Kept free beyond what the next night's largest writes need (the catalog's checkpoint, a day of logs,
# temporary files): a margin, not a measurement.
DISK_MARGIN = 1 << 30


def _tree_bytes(path: Path, parts: dict[str, str] | None = None) -> dict[str, int]:
    """Bytes of the regular files under ``path`` (symbolic links not followed; vanished files skipped), in
    one walk: by part for the directories ``parts`` names (path -> part), the rest under ``""``."""
    total: dict[str, int] = {"": 0}
    stack = [(str(path), "")]
    while stack:
        where, part = stack.pop()
        try:
            entries = os.scandir(where)
        except OSError:  # gone or unreadable: a concurrent garbage collection, a permission
            continue
        with entries:
            for e in entries:
                try:
                    if e.is_dir(follow_symlinks=False):
                        stack.append((e.path, (parts or {}).get(e.path, part)))
                    elif e.is_file(follow_symlinks=False):
                        total[part] = total.get(part, 0) + e.stat(follow_symlinks=False).st_size
                except OSError:
                    continue
    return total


def disk_report(data_dir: Path) -> dict[str, Any] | None:
    """The store's size by part, the free space on its file system, and whether that is too little for
    the next night. ``need``: the models plus the package tables plus ``DISK_MARGIN``, because a full
    rebuild writes every model anew, and a package every course's tables anew, before the old files
    go. None when the data directory does not exist."""
    root = Path(data_dir)
    if not root.is_dir():
        return None
    sizes = _tree_bytes(root, {os.path.join(str(root), rel): name for name, rel in DISK_PARTS})
    parts = {name: sizes.get(name, 0) for name, _ in DISK_PARTS}
    parts["other"] = sizes[""]  # the catalog, the ledger, caches, views
    total = sum(parts.values())
    usage = shutil.disk_usage(root)
    need = parts["models"] + parts["tables"] + DISK_MARGIN
    return {"store_bytes": total, "parts": parts, "free_bytes": usage.free, "disk_bytes": usage.total,
            "need_bytes": need, "low": usage.free < need}


def disk_warning(disk: dict[str, Any] | None) -> str | None:
    """One line for a store whose file system has less free space than the next night may need."""
    if not disk or not disk["low"]:
        return None
    return (f"warning: only {human_bytes(disk['free_bytes'])} free on the store's file system; the next import "
            f"and build may need about {human_bytes(disk['need_bytes'])} (a package's tables and a full "
            "rebuild of the models are written before the old files go, plus a margin of "
            f"{human_bytes(DISK_MARGIN)}): free some space or move the data directory")


def human_bytes(n: int) -> str:
    """1023 B, 4.2 MB, 1.5 GB (powers of 1024, as `du -h` and `df -h` show them)."""
    x = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if x < 1024 or unit == "TB":
            return f"{int(x)} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    raise AssertionError("unreachable")
