"""The day after, on a store made by ``models_support.synthetic_store``: a new day of logs arrives and an
old day is re-delivered with lines missing (issue 15 on PostgreSQL and Spark). The dates each step
changes are read from the importer's bookkeeping, not from the build under test."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import duckdb


def logs_by_date(pkg: Path) -> dict[str, Path]:
    """The synthetic delivery's tracking logs by the date in their name."""
    return {p.name.rsplit("-events-", 1)[1][:10]: p for p in sorted(pkg.rglob("*-events-*.log.gz"))}


def moved_day(src: Path, day: str, new: str, out: Path) -> Path:
    """A log of date ``new`` made from the lines of date ``day`` of log ``src`` (their dates replaced:
    other events, other times, so none is a duplicate of an imported one)."""
    lines = [ln.replace(day.encode(), new.encode()) for ln in gzip.decompress(src.read_bytes()).splitlines(True)
             if day.encode() in ln]
    dst = out / src.name.replace(src.name.rsplit("-events-", 1)[1][:10], new)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(gzip.compress(b"".join(lines)))
    return dst


def redeliver(path: Path, keep) -> Path:
    """The same file delivered again with only the lines ``keep(index)`` accepts."""
    lines = gzip.decompress(path.read_bytes()).splitlines(True)
    path.write_bytes(gzip.compress(b"".join(x for i, x in enumerate(lines) if keep(i))))
    return path


def import_logs(lake, *paths: Path) -> None:
    from edx_engine.decrypt import GpgSettings
    from edx_engine.ingest.events import import_events
    from edx_engine.ingest.sources import discover

    with lake.writer():
        import_events(lake, discover(list(paths)).sources, GpgSettings())


def day_state(lake) -> dict[str, tuple]:
    """Per event date, its parts and excluded duplicates, from the importer's bookkeeping."""
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        parts = con.execute("SELECT CAST(event_date AS VARCHAR), list((source_key, path, rows) ORDER BY path) "
                            "FROM _edx_event_parts GROUP BY 1").fetchall()
        dups = dict(con.execute("SELECT CAST(event_date AS VARCHAR), list((source_key, line) "
                                "ORDER BY source_key, line) FROM _edx_event_dups GROUP BY 1").fetchall())
    return {d: (p, dups.get(d)) for d, p in parts}


def day_after(lake, pkg: Path, work: Path) -> set[str]:
    """Import a new day (two days after the last: the day between stays missing) and re-deliver the
    second day with a third of its lines gone; returns the event dates these changed."""
    logs = logs_by_date(pkg)
    last = max(logs)
    new = (dt.date.fromisoformat(last) + dt.timedelta(days=2)).isoformat()
    before = day_state(lake)
    import_logs(lake, moved_day(logs[last], last, new, work / "new"), redeliver(logs[sorted(logs)[1]],
                                                                                 lambda i: i % 3 != 0))
    after = day_state(lake)
    assert new in after and set(after) >= set(before)
    return {d for d, s in after.items() if before.get(d) != s}


def month_of(day: str) -> str:
    return dt.date.fromisoformat(day).replace(day=1).isoformat()


def import_into(lake, *paths: Path) -> None:
    """Import packages and tracking logs with the library's importers (no CLI): the incremental tests'
    way of making a store step by step."""
    from edx_engine.decrypt import GpgSettings
    from edx_engine.ingest.events import import_events
    from edx_engine.ingest.exports import PackageImporter
    from edx_engine.ingest.sources import discover

    with lake.writer():
        lake.init()
        srcs = discover(list(paths)).sources
        pkgs = [s for s in srcs if not s.events]
        if pkgs:
            assert not PackageImporter(lake, GpgSettings()).run(pkgs).failed
        logs = [s for s in srcs if s.events]
        if logs:
            import_events(lake, logs, GpgSettings())
