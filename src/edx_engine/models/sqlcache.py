"""Compiled model SQL, kept between builds (issue 10: test-suite time; issue 15: the daily job's fixed cost).

Importing ibis, building a model's Ibis expression and compiling it to SQL (sqlglot) costs more than
DuckDB running it on a small store, and none of it depends on the data: a model compiled against
*placeholder* inputs (TEMP VIEWs ``__edx_in_<name>`` that models/build.py points at the real inputs on
every build) gives SQL that depends only on

- the definitions' code (``_code_version`` in build.py), the model's name;
- the parameters that enter the SQL (``Params.fingerprint()`` when the model uses them);
- the schemas (column names and DuckDB types) of the placeholder inputs, read from DuckDB;
- the versions of ibis, sqlglot and duckdb.

That is the key; the value is the SQL text. ``built_at`` (course_summary) is not in the key: such a
model is compiled with two sentinel timestamps, and when the two texts differ by one timestamp literal
only, the entry is a template whose marker is replaced by the build's ``built_at`` written the way ibis
wrote the sentinels (``template``).

Entries live in a process-wide dict and on disk, one small JSON file per key, under
``$EDX_ENGINE_SQL_CACHE`` or ``<data-dir>/cache/model-sql/`` (beside ``lake/``, so the garbage
collector, which walks only ``lake/``, leaves it alone). An entry holds no path: a copied or moved
store's cache stays right. A file that cannot be read is ignored (and rewritten); a directory that
cannot be written is ignored: a build never fails because of the cache. This module imports neither
ibis nor sqlglot (their versions come from the installed distributions' metadata).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

ENV = "EDX_ENGINE_SQL_CACHE"
FORMAT = 1  # of the files; part of the key
MARKER = "\x00built_at\x00"  # where built_at goes in a template (never in SQL text)
# Two built_at values whose fields (year .. second) all differ from each other and between the two, so
# that each number of the literal maps to one field. Microseconds stay 0, as in Params' default.
SENTINELS = (dt.datetime(1987, 6, 5, 4, 3, 2), dt.datetime(2034, 11, 28, 21, 47, 39))
FIELDS = ("year", "month", "day", "hour", "minute", "second")


@dataclass
class Stats:
    """What this process's builds did (read by the tests)."""
    hits: int = 0
    misses: int = 0
    compiles: int = 0  # Ibis expressions compiled to SQL (models/build.py counts)


stats = Stats()
_memory: dict[str, "Entry"] = {}


@dataclass(frozen=True)
class Entry:
    """SQL text, or (``built_at`` a format string) a template with MARKER where the literal goes."""
    sql: str
    built_at: str | None = None

    def render(self, built_at: dt.datetime) -> str:
        if self.built_at is None:
            return self.sql
        return self.sql.replace(MARKER, self.built_at.format(**{f: getattr(built_at, f) for f in FIELDS}))

    def valid(self) -> bool:
        return self.sql.count(MARKER) == (0 if self.built_at is None else 1)


@functools.lru_cache(maxsize=1)
def versions() -> tuple[str, str, str]:
    """ibis, sqlglot and duckdb versions, from package metadata (no import of ibis or sqlglot)."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("ibis-framework", "sqlglot", "duckdb"):
        try:
            out.append(version(dist))
        except PackageNotFoundError:
            out.append("?")
    return tuple(out)  # type: ignore[return-value]


def make_key(code: str, model: str, params: str, schemas: list) -> str:
    """Hash of everything the SQL of ``model`` depends on (see the module docstring)."""
    blob = json.dumps([FORMAT, code, versions(), model, params, schemas], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def cache_dir(data_dir: Path) -> Path:
    """``$EDX_ENGINE_SQL_CACHE`` if set (and not blank), else ``<data-dir>/cache/model-sql``."""
    env = os.environ.get(ENV, "").strip()
    return Path(env) if env else Path(data_dir) / "cache" / "model-sql"


class SqlCache:
    """The entries under one directory, behind the process-wide dict."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)

    def get(self, key: str) -> Entry | None:
        entry = _memory.get(key) or self._read(key)
        if entry is None:
            stats.misses += 1
            return None
        stats.hits += 1
        _memory[key] = entry
        return entry

    def put(self, key: str, entry: Entry) -> None:
        """Keep ``entry`` (in memory always; on disk when the directory can be written)."""
        _memory[key] = entry
        body = json.dumps({"format": FORMAT, "key": key, "sql": entry.sql, "built_at": entry.built_at})
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{key}.", suffix=".tmp")
        except OSError:
            return
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(body)
            os.replace(tmp, self.dir / f"{key}.json")  # unique temporary name: concurrent writers are safe
        except OSError:
            Path(tmp).unlink(missing_ok=True)

    def _read(self, key: str) -> Entry | None:
        """The entry on disk, or None when missing or unreadable (torn, edited, another format)."""
        try:
            data = json.loads((self.dir / f"{key}.json").read_text(encoding="utf-8"))
            entry = Entry(data["sql"], data["built_at"])
            ok = (data["format"] == FORMAT and data["key"] == key and isinstance(entry.sql, str)
                  and isinstance(entry.built_at, (str, type(None))) and entry.valid())
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return entry if ok else None


def clear_memory() -> None:
    """Forget the process-wide entries (tests: make the next build read the disk)."""
    _memory.clear()


def template(sql_a: str, sql_b: str) -> Entry | None:
    """The entry for a model compiled with ``SENTINELS[0]`` (``sql_a``) and ``SENTINELS[1]`` (``sql_b``).

    Identical texts: built_at does not enter the SQL. Otherwise the texts must differ in one place
    whose numbers are the sentinels' fields (each at most once, same text around them): that place
    becomes MARKER and its form a format string. Anything else (two literals, a form with other
    numbers) gives None: such a model is not cached. The caller checks the result against a compile
    with the real value before keeping it."""
    if sql_a == sql_b:
        return Entry(sql_a)
    i = len(os.path.commonprefix([sql_a, sql_b]))
    j = len(os.path.commonprefix([sql_a[i:][::-1], sql_b[i:][::-1]]))
    while i > 0 and sql_a[i - 1].isdigit():  # whole numbers only
        i -= 1
    while j > 0 and sql_a[len(sql_a) - j].isdigit():
        j -= 1
    form = _form(sql_a[i:len(sql_a) - j], sql_b[i:len(sql_b) - j])
    if form is None:
        return None
    return Entry(sql_a[:i] + MARKER + sql_a[len(sql_a) - j:], form)


def _form(mid_a: str, mid_b: str) -> str | None:
    """Format string (fields year .. second) writing SENTINELS[0] as ``mid_a`` and [1] as ``mid_b``."""
    pa_, pb = re.split(r"(\d+)", mid_a), re.split(r"(\d+)", mid_b)
    if len(pa_) != len(pb) or pa_[0::2] != pb[0::2]:
        return None
    out, used = [], set()
    for k, (a, b) in enumerate(zip(pa_, pb)):
        if k % 2 == 0 or a == b:
            out.append(a.replace("{", "{{").replace("}", "}}"))
            continue
        field = next((f for f in FIELDS if int(a) == getattr(SENTINELS[0], f)
                      and int(b) == getattr(SENTINELS[1], f)), None)
        if field is None or field in used:
            return None
        used.add(field)
        spec = f"{{{field}:0{len(a)}d}}" if len(a) > 1 and a.startswith("0") else f"{{{field}}}"
        if spec.format(**{field: int(a)}) != a or spec.format(**{field: int(b)}) != b:
            return None
        out.append(spec)
    return "".join(out) if used else None
