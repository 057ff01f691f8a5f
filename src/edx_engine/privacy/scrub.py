"""``edx-engine scrub``: irreversible removal of personal data from the store.

Every Parquet file the catalog references is rewritten without its personal data:

- package snapshots (``_edx_snapshots``): the columns the schema registry flags as personal
  (``schemas.personal_columns()``) are set to NULL;
- tracking-log files (``_edx_event_parts``, else every file under ``lake/events``): ``username``,
  ``ip``, ``agent``, ``session`` set to NULL; personal keys (``body``, ``email``... in any case or
  spelling: ``personal_key``) removed from the ``event`` and ``context`` JSON; usernames in URL
  paths and personal query-string values replaced wherever a URL can sit (``name`` included);
  ``user_id`` back-filled from ``username`` (via auth_user) *before* the username goes, so that
  reports attribute the same events as before;
- quarantine files (``_edx_quarantine_files``): the raw bytes of rejected lines set to NULL;
- built models (``_edx_models``, and the partitions of ``_edx_model_parts``: person_course is kept by
  course): identifying columns such as ``username`` set to NULL.

Columns are kept (all NULL, same type) rather than dropped, so every view, model and query
that names them stays valid. New files are written under new names, the catalog switches to
them in one transaction (with a row per file in ``_edx_scrub_log``), then the old files are
deleted: nothing personal is left in the lake (a scrub killed on the way leaves files the catalog
does not reference: ``Lake.collect_garbage``, at the start of the next scrub and the end of any
writing command, deletes them). Packages imported later bring personal data
back: run ``scrub`` again (files already scrubbed are skipped) or set
``[privacy] scrub_on_import = true``.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import _hooks as testhooks
from .. import clock
from ..store import catalog
from ..store.lake import Lake
from ..schemas import personal_columns, personal_in

# Tracking-log columns that identify a person or a device.
EVENT_PERSONAL = ("username", "ip", "agent", "session")
# Keys removed, at any depth, from the `event` JSON payload: free text (forum posts, searches,
# notes), names and e-mails, the learner an instructor acted on, certificate uuids (they form the
# public certificate URL, which shows the name) and the parameters of logged requests.
EVENT_JSON_KEYS = ("body", "title", "query", "search_text", "note_text", "user_message", "content",
                   "username", "email", "full_name", "name_on_certificate", "student", "certificate_id",
                   "certificate_url", "POST", "GET")
# Other personal keys (identifiers of a person or a device, as in the columns), and key
# endings: a key is compared case- and separator-insensitively (``Email``, ``user_email``,
# ``emailAddress``, ``e-mail`` are all e-mail addresses), at any depth of `event` and `context`.
EVENT_JSON_EXTRA_KEYS = ("mail", "first_name", "last_name", "password", "ip", "ip_address", "agent", "user_agent")
PERSONAL_KEY_ENDINGS = ("email", "emailaddress", "username", "fullname")
# Keys removed only from some event types (elsewhere they mean something else: seq_goto's old/new).
EVENT_TYPE_JSON_KEYS = {"edx.user.settings.changed": ("old", "new"), "edx.user.settings.viewed": ("old", "new"),
                        "edx.team.changed": ("old", "new"), "edx.team.created": ("name", "description")}
EVENT_JSON_COLUMNS = ("event", "event_text", "context")
# Tracking-log columns holding URLs or JSON, where a username can sit in a path
# (/u/<username>, /api/user/v1/accounts/<username>): that segment is replaced. Server events
# put the requested URL in `name` and `event_type` too.
EVENT_URL_COLUMNS = ("event_type", "name", "page", "referer", "path", "context", "event", "event_text")
USER_IN_URL = r"(/u/|/accounts/|/users/|/profile/|/user_profile/)[^/?#\"\\\s]+"
USER_IN_URL_REPLACEMENT = r"\1(removed)"
# Query-string parameters whose value is removed (same key matching as the JSON keys), in
# every URL-bearing column and inside the JSON: ?email=...&name=... -> ?email=(removed)&name=(removed).
QUERY_EXTRA_KEYS = ("name", "user", "q", "search", "first_name", "last_name")
# Reasons of rejected lines quote the bad value (possibly an e-mail in the wrong column).
QUOTED_VALUE = r": '.*' is not a valid"
QUOTED_VALUE_REPLACEMENT = ": (value removed) is not a valid"
# Scrub rules change: files scrubbed by an older version are scrubbed again (v3: `context`,
# `name`, query strings, keys in any spelling).
SCRUB_VERSION = "v3"
# Quarantine: the raw line is personal (it is a row of auth_user, a tracking event...).
QUARANTINE_PERSONAL = ("raw",)
# Columns of derived tables (models, geo) that identify a person. `name` is NOT here: in the
# models it is the course's name.
DERIVED_PERSONAL = ("username", "email", "full_name", "first_name", "last_name", "ip", "ip_address", "agent",
                    "session", "mailing_address", "location", "city", "bio", "goals", "author_username",
                    "download_url", "verify_uuid", "download_uuid")

# Catalog bookkeeping tables that reference lake files: (table, kind, label column).
FILE_SETS = (
    ("_edx_snapshots", "table", "table_name"),
    ("_edx_quarantine_files", "quarantine", "kind"),
    ("_edx_event_parts", "events", None),
    ("_edx_models", "models", "name"),
    ("_edx_model_parts", "models", "model"),  # partitioned models: person_course (username) is kept by course
)



class ScrubError(Exception):
    pass


def norm_key(key: str) -> str:
    """A key without case and separators: ``user_Email`` and ``e-mail`` compare as words do."""
    return re.sub(r"[^0-9a-z]", "", key.lower())


PERSONAL_KEYS = frozenset(norm_key(k) for k in EVENT_JSON_KEYS + EVENT_JSON_EXTRA_KEYS)
QUERY_KEYS = PERSONAL_KEYS | frozenset(norm_key(k) for k in QUERY_EXTRA_KEYS)


def personal_key(key: str, extra: frozenset = frozenset()) -> bool:
    """Whether a JSON key names personal data (``extra``: normalised keys of the event type)."""
    n = norm_key(key)
    return n in PERSONAL_KEYS or n in extra or n.endswith(PERSONAL_KEY_ENDINGS)


def _loose(word: str) -> str:
    """A regex matching a normalised key in any case with any separators between its letters."""
    return "[^a-zA-Z0-9\"\\\\&=?#]*".join(re.escape(c) for c in word)


def _alternation(words) -> str:
    return "|".join(_loose(w) for w in sorted(words, key=lambda w: (-len(w), w)))


# A JSON key that may be personal (a superset: the parsed JSON decides), escaped or not.
PERSONAL_KEY_RE = (r'(?i)"(?:' + _alternation(PERSONAL_KEYS) + r'|[^"\\]*(?:' + _alternation(PERSONAL_KEY_ENDINGS)
                   + r'))\\*"\s*:')
# A query parameter with a personal key, or whose value holds an e-mail address (@ or %40).
QUERY_PARAM = (r'(?i)([?&;#](?:' + _alternation(QUERY_KEYS) + r'|[^=&#?\s"\\]*(?:' + _alternation(PERSONAL_KEY_ENDINGS)
               + r'))=)[^&#\s"\\]*')
# (an address: local part, @, a dotted domain; block ids such as type@problem+block@x are not)
QUERY_EMAIL = (r'(?i)([?&;#][^=&#?\s"\\]*=)[^&#\s"\\]*?[a-z0-9._%+-]+(?:@|%40)[a-z0-9-]+(?:\.[a-z0-9-]+)*'
               r'\.[a-z]{2,}[^&#\s"\\]*')
QUERY_REPLACEMENT = r"\1(removed)"
# Values where USER_IN_URL or a query parameter may match (a superset, one scan).
URL_PREFILTER = r'/u/|/accounts/|/users/|/profile/|/user_profile/|[?&;#][^=&#?\s"\\]*='


def table_personal_columns(table: str) -> list[str]:
    """Personal columns of an edX table, as the schema registry flags them."""
    return list(personal_columns().get(table, []))


@dataclass
class FilePlan:
    kind: str  # table | quarantine | events | models | loose-events
    name: str  # table / model name, quarantine kind, "events"
    bookkeeping: str | None
    stored_path: str  # as stored in the bookkeeping table
    path: Path
    rows: int
    columns: list[str]  # columns to set to NULL (present in the file)
    json_columns: list[str]  # columns whose JSON loses its personal keys
    values: dict[str, int] = field(default_factory=dict)  # non-null values per column that will be removed
    scrubbed: bool = False  # already scrubbed (listed in _edx_scrub_log)

    @property
    def to_remove(self) -> int:
        return sum(self.values.values())

    @property
    def needed(self) -> bool:
        """Not scrubbed yet and something in it to remove: a value in a personal column, or JSON
        that may hold personal keys. A file whose personal columns are all empty (no rows; a model
        built from a scrubbed store) needs nothing: --dry-run, --check and scrub all skip it."""
        return not self.scrubbed and (self.to_remove > 0 or bool(self.json_columns))


@dataclass
class ScrubResult:
    plans: list[FilePlan]
    dry_run: bool
    seconds: float = 0.0
    backfilled_user_ids: int = 0
    located: bool = False

    @property
    def todo(self) -> list[FilePlan]:
        return [p for p in self.plans if p.needed]

    def by_table(self) -> list[tuple[str, str, int, int, list[str], int]]:
        """(kind, name, files, rows, columns, values removed) for the files to scrub."""
        agg: dict[tuple[str, str], list] = {}
        for p in self.todo:
            a = agg.setdefault((p.kind, p.name), [0, 0, [], 0])
            a[0] += 1
            a[1] += p.rows
            a[2] += [c for c in p.columns + [f"{j} (JSON free-text keys)" for j in p.json_columns]
                     if c not in a[2]]
            a[3] += p.to_remove
        return [(k, n, *v) for (k, n), v in sorted(agg.items())]

    def one_line(self) -> str:
        files = len(self.todo)
        rows = sum(p.rows for p in self.todo)
        verb = "would scrub" if self.dry_run else "scrubbed"
        done = sum(p.scrubbed for p in self.plans)
        empty = len(self.plans) - files - done
        skipped = ", ".join(([f"{done} already scrubbed"] if done else [])
                            + ([f"{empty} whose personal columns are empty"] if empty else []))
        return (f"{verb} {files} file(s), {rows:,} rows, {sum(p.to_remove for p in self.todo):,} personal values"
                + (f" ({skipped})" if skipped else "") + f", {self.seconds:.1f} s")


# -- planning ---------------------------------------------------------------------------------------

def _table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name=? AND schema_name='main'",
                            [name]).fetchone()[0])


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [r[0] for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name=? "
                                      "AND schema_name='main'", [table]).fetchall()]


def _resolve(lake: Lake, stored: str) -> Path:
    p = Path(stored)
    return p if p.is_absolute() else lake.root / p


def _non_null(path: Path, columns: list[str]) -> tuple[int, dict[str, int]]:
    """Rows of a Parquet file and non-null values per column (from the footer statistics)."""
    meta = pq.ParquetFile(path).metadata
    idx = {meta.schema.column(i).path.split(".")[0]: i for i in range(meta.num_columns)}
    out: dict[str, int] = {}
    for c in columns:
        i = idx.get(c)
        if i is None:
            continue
        n = 0
        for g in range(meta.num_row_groups):
            rg = meta.row_group(g)
            st = rg.column(i).statistics
            nulls = st.null_count if (st is not None and st.has_null_count) else 0
            n += rg.num_rows - nulls
        out[c] = n
    return meta.num_rows, out


def _plan_file(kind: str, name: str, bookkeeping: str | None, stored: str, path: Path) -> FilePlan | None:
    if not path.exists():
        return None
    names = set(pq.read_schema(path).names)
    if kind == "table":  # unknown tables and columns: all personal until the registry describes them
        wanted = personal_in(name, pq.read_schema(path).names)
        json_cols: list[str] = []
    elif kind == "quarantine":
        wanted = list(QUARANTINE_PERSONAL)
        json_cols = ["reason"] if "reason" in names else []  # the quoted bad value is removed
    elif kind in ("events", "loose-events"):
        wanted = list(EVENT_PERSONAL)
        json_cols = [c for c in EVENT_JSON_COLUMNS if c in names]
    else:
        wanted = list(DERIVED_PERSONAL)
        json_cols = []
    cols = [c for c in wanted if c in names]
    if not cols and not json_cols:
        return None  # nothing personal in this file
    rows, values = _non_null(path, cols)
    return FilePlan(kind, name, bookkeeping, stored, path, rows, cols, json_cols, values)


def plan(lake: Lake, con: duckdb.DuckDBPyConnection) -> list[FilePlan]:
    """Every lake file with personal data, and what scrubbing it means."""
    plans: list[FilePlan] = []
    seen: set[Path] = set()
    done: set[str] = set()
    if _table_exists(con, "_edx_scrub_log"):
        done = {r[0] for r in con.execute("SELECT path FROM _edx_scrub_log WHERE json_keys LIKE ?",
                                          [SCRUB_VERSION + ":%"]).fetchall()}
    for table, kind, label in FILE_SETS:
        if not _table_exists(con, table) or "path" not in _columns(con, table):
            continue
        lab = label if label and label in _columns(con, table) else f"'{kind}'"
        for stored, name in con.execute(f"SELECT DISTINCT path, {lab} FROM {table} WHERE path IS NOT NULL "
                                        f"ORDER BY 2, 1").fetchall():
            path = _resolve(lake, stored)
            p = _plan_file(kind, str(name), table, stored, path)
            if p is None:
                continue
            seen.add(path.resolve())
            p.scrubbed = stored in done and p.to_remove == 0
            plans.append(p)
    # Tracking-log files the catalog does not list (a catalog older than `_edx_event_parts`; else
    # left by a killed writer: listed so that --check sees them, deleted by `collect_garbage`).
    ev_dir = lake.lake_dir / "events"
    if ev_dir.exists():
        for f in sorted(ev_dir.rglob("*.parquet")):
            if f.resolve() in seen:
                continue
            stored = lake.rel(f)
            p = _plan_file("loose-events", "events", None, stored, f)
            if p is not None:
                p.scrubbed = stored in done and p.to_remove == 0
                plans.append(p)
    return plans


# -- rewriting ----------------------------------------------------------------------------------------

def _strip(obj, keys: frozenset):
    """``obj`` without personal keys (``personal_key``; ``keys``: the event type's own) at any
    depth, JSON-encoded strings of objects included."""
    if isinstance(obj, dict):
        return {k: _strip(v, keys) for k, v in obj.items() if not personal_key(k, keys)}
    if isinstance(obj, list):
        return [_strip(v, keys) for v in obj]
    if isinstance(obj, str) and obj[:1] in ("{", "["):
        try:
            inner = orjson.loads(obj)
        except orjson.JSONDecodeError:
            return obj
        if isinstance(inner, (dict, list)):
            return orjson.dumps(_strip(inner, keys)).decode()
    return obj


def _strip_json_text(s: str | None, keys: frozenset) -> str | None:
    try:
        obj = orjson.loads(s) if s is not None else None
    except orjson.JSONDecodeError:
        return s  # not JSON (event_text): free text is not parsed
    if not isinstance(obj, (dict, list, str)):
        return s
    new = _strip(obj, keys)
    return s if new == obj else orjson.dumps(new).decode()


def _has_key(storage: pa.Array, keys) -> pa.Array | None:
    hit = None
    for k in keys:
        for pattern in (f'"{k}"', f'\\"{k}\\"'):  # JSON-encoded strings hold the key escaped: \"body\"
            m = pc.match_substring(storage, pattern)
            hit = m if hit is None else pc.or_(hit, m)
    return hit


def _has_personal_key(storage: pa.Array) -> pa.Array:
    """Rows whose JSON may hold a personal key (RE2 in C++; only these are parsed in Python)."""
    return pc.match_substring_regex(storage, PERSONAL_KEY_RE)


def _text_storage(arr: pa.Array) -> tuple[pa.Array | None, Callable[[pa.Array], pa.Array]]:
    """(the string storage of ``arr`` or None if it is not text, a function wrapping new storage
    back into ``arr``'s type). Covers pyarrow's JSON type and ours, both extension types."""
    ext = isinstance(arr.type, pa.BaseExtensionType)
    storage = arr.storage if ext else arr
    if not pa.types.is_string(storage.type) and not pa.types.is_large_string(storage.type):
        return None, lambda a: a
    return storage, (lambda new: pa.ExtensionArray.from_storage(arr.type, new)) if ext else (lambda new: new)


def _strip_json(arr: pa.Array, event_type: pa.Array | None = None) -> pa.Array:
    """Remove personal keys (``personal_key``; EVENT_TYPE_JSON_KEYS for their event types) from JSON text."""
    storage, wrap = _text_storage(arr)
    if storage is None:
        return arr
    hit = _has_personal_key(storage)
    typed = None
    if event_type is not None:
        typed = pc.fill_null(pc.is_in(event_type, value_set=pa.array(list(EVENT_TYPE_JSON_KEYS))), False)
        extra = _has_key(storage, sorted({k for ks in EVENT_TYPE_JSON_KEYS.values() for k in ks}))
        hit = pc.or_(hit, pc.and_(typed, extra))
    if not pc.any(hit).as_py():
        return arr
    base: frozenset = frozenset()
    per_type = {t: frozenset(norm_key(k) for k in ks) for t, ks in EVENT_TYPE_JSON_KEYS.items()}
    types = event_type.to_pylist() if event_type is not None else [None] * len(storage)
    return wrap(pa.array([_strip_json_text(v, per_type.get(t, base)) if f else v
                          for v, f, t in zip(storage.to_pylist(), pc.fill_null(hit, False).to_pylist(), types)],
                         storage.type))


def _replace_regex(arr: pa.Array, pattern: str, replacement: str) -> pa.Array:
    storage, wrap = _text_storage(arr)
    return arr if storage is None else wrap(pc.replace_substring_regex(storage, pattern, replacement))


def _scrub_urls(arr: pa.Array) -> pa.Array:
    """Usernames in URL paths and personal query-string values, wherever a URL can sit.

    One scan finds the values that may hold either (most JSON and many URLs hold neither); the
    three replacements run on those only."""
    storage, wrap = _text_storage(arr)
    if storage is None:
        return arr
    hit = pc.fill_null(pc.match_substring_regex(storage, URL_PREFILTER), False)
    if not pc.any(hit).as_py():
        return arr
    sub = pc.filter(storage, hit)
    for pattern, replacement in ((USER_IN_URL, USER_IN_URL_REPLACEMENT), (QUERY_PARAM, QUERY_REPLACEMENT),
                                 (QUERY_EMAIL, QUERY_REPLACEMENT)):
        sub = pc.replace_substring_regex(sub, pattern, replacement)
    return wrap(pc.replace_with_mask(storage, hit, sub))


def _backfill(user_id: pa.Array, username: pa.Array, user_map: tuple[pa.Array, pa.Array]) -> tuple[pa.Array, int]:
    keys, ids = user_map
    if len(keys) == 0 or user_id.null_count == 0:
        return user_id, 0
    idx = pc.index_in(username, value_set=keys)
    mapped = pc.take(ids, idx).cast(user_id.type)
    out = pc.coalesce(user_id, mapped)
    return out, user_id.null_count - out.null_count


def _new_path(path: Path) -> Path:
    stem = re.sub(r"\.s[0-9a-f]{8}$", "", path.stem)
    return path.with_name(f"{stem}.s{uuid.uuid4().hex[:8]}.parquet")


def rewrite(p: FilePlan, dst: Path, user_map: tuple[pa.Array, pa.Array] | None = None) -> int:
    """Write ``p.path`` to ``dst`` without its personal data; returns the user ids back-filled."""
    tmp = dst.with_name(dst.name + ".tmp")
    pf = pq.ParquetFile(p.path)
    schema = pf.schema_arrow
    null_cols, json_cols = set(p.columns), set(p.json_columns)
    backfill = (user_map is not None and p.kind in ("events", "loose-events")
                and "user_id" in schema.names and "username" in schema.names)
    filled = 0
    events = p.kind in ("events", "loose-events")
    writer = pq.ParquetWriter(tmp, schema, compression="zstd")
    try:
        for batch in pf.iter_batches(batch_size=65_536, use_threads=True):
            arrays = []
            for i, f in enumerate(schema):
                a = batch.column(i)
                if backfill and f.name == "user_id":
                    a, n = _backfill(a, batch.column(schema.get_field_index("username")), user_map)
                    filled += n
                if f.name in null_cols:
                    a = pa.nulls(len(a), f.type)
                elif p.kind == "quarantine" and f.name in json_cols:
                    a = _replace_regex(a, QUOTED_VALUE, QUOTED_VALUE_REPLACEMENT)
                elif f.name in json_cols:
                    a = _strip_json(a, batch.column(schema.get_field_index("event_type"))
                                    if "event_type" in schema.names else None)
                if events and f.name in EVENT_URL_COLUMNS:
                    a = _scrub_urls(a)
                arrays.append(a)
            writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
        writer.close()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dst)
    except BaseException:
        try:
            writer.close()
        except Exception:
            pass
        tmp.unlink(missing_ok=True)
        raise
    return filled


def _username_map(con: duckdb.DuckDBPyConnection) -> tuple[pa.Array, pa.Array]:
    """username -> user id from auth_user (usernames that map to exactly one id)."""
    try:
        t = con.execute("SELECT username, min(id) AS id FROM auth_user WHERE username IS NOT NULL AND username <> '' "
                        "AND id IS NOT NULL GROUP BY 1 HAVING count(DISTINCT id) = 1").arrow()
    except duckdb.Error:
        return pa.array([], pa.string()), pa.array([], pa.int64())
    if isinstance(t, pa.RecordBatchReader):
        t = t.read_all()
    return t.column("username").combine_chunks(), t.column("id").combine_chunks()


# -- the command ---------------------------------------------------------------------------------------

def scrub(lake: Lake, dry_run: bool = False, take_lock: bool = True, locate: bool = True,
          on_file: Callable[[FilePlan], None] | None = None) -> ScrubResult:
    """Remove personal data from every file of the store (see the module docstring).

    ``locate``: run ``locate-users`` first when tracking logs still hold IP addresses, so the
    IP-derived country survives the removal of the IPs. ``take_lock=False`` when the caller
    already holds ``lake.writer()`` (e.g. an import with ``privacy.scrub_on_import``).
    """
    if not lake.catalog_path.exists():
        raise ScrubError(f"no store at {lake.root} (run `edx-engine import` first)")
    t0 = time.perf_counter()
    if take_lock and not dry_run:
        with lake.writer():
            return _scrub(lake, dry_run, locate, on_file, t0)
    return _scrub(lake, dry_run, locate, on_file, t0)


def _scrub(lake: Lake, dry_run: bool, locate: bool, on_file, t0: float) -> ScrubResult:
    if not dry_run:
        lake.collect_garbage()  # leftovers of a killed writer (a scrub's new files...) are not the store's
    with lake.connect(read_only=dry_run) as con:
        plans = plan(lake, con)
        result = ScrubResult(plans, dry_run)
        todo = result.todo
        if dry_run or not todo:
            result.seconds = time.perf_counter() - t0
            return result
        ip_left = any(p.values.get("ip") for p in todo if p.kind in ("events", "loose-events"))
        user_map = _username_map(con)
    if locate and ip_left:
        from .. import geo

        geo.locate_users(lake, take_lock=False)
        result.located = True
    written: list[tuple[FilePlan, Path]] = []
    try:
        for p in todo:
            if p.bookkeeping is None:  # not referenced by path in the catalog: replace in place
                dst = p.path
            else:
                dst = _new_path(p.path)
            result.backfilled_user_ids += rewrite(p, dst, user_map)
            written.append((p, dst))
            testhooks.pause("scrub-file")
            if on_file:
                on_file(p)
        now = clock.now(whole_seconds=True)
        testhooks.pause("scrub-commit")
        with lake.connect() as con:
            catalog.ensure(con, catalog.SCRUB)
            con.execute("BEGIN TRANSACTION")
            try:
                for p, dst in written:
                    new_stored = p.stored_path if dst == p.path else _stored_like(lake, p.stored_path, dst)
                    if p.bookkeeping is not None:
                        catalog.repoint(con, p.bookkeeping, p.stored_path, new_stored)
                    keys = f"{SCRUB_VERSION}:" + (",".join(EVENT_JSON_KEYS + EVENT_JSON_EXTRA_KEYS)
                                                  if p.json_columns else "")
                    catalog.log_scrub(con, kind=p.kind, name=p.name, path=new_stored, old_path=p.stored_path,
                                      columns=",".join(p.columns), json_keys=keys, rows=p.rows,
                                      values_removed=p.to_remove, at=now)
                # first-reject messages quote bad values too
                catalog.redact_import_log(con, QUOTED_VALUE, QUOTED_VALUE_REPLACEMENT)
                lake.refresh_views(con)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
    except BaseException:
        for p, dst in written:  # the catalog still references the old files: drop the new ones
            if dst != p.path:
                dst.unlink(missing_ok=True)
        raise
    testhooks.pause("scrub-committed")
    for p, dst in written:  # irreversible: the old files go
        if dst != p.path:
            p.path.unlink(missing_ok=True)
    lake.collect_garbage()  # (a kill before this point: the next writing command deletes them)
    result.seconds = time.perf_counter() - t0
    return result


def _stored_like(lake: Lake, old: str, new: Path) -> str:
    return str(new) if Path(old).is_absolute() else lake.rel(new)


def status(lake: Lake) -> dict[str, int]:
    """Files and personal values not scrubbed yet (0/0 = the store holds no personal data)."""
    if not lake.catalog_path.exists():
        return {"files": 0, "values": 0}
    with lake.connect(read_only=True) as con:
        todo = ScrubResult(plan(lake, con), dry_run=True).todo  # the files --dry-run lists
    return {"files": len(todo), "values": sum(p.to_remove for p in todo)}


def scrub_on_import_enabled(settings) -> bool:
    """``[privacy] scrub_on_import = true`` in the config file, or EDX_ENGINE_SCRUB_ON_IMPORT=1."""
    env = os.environ.get("EDX_ENGINE_SCRUB_ON_IMPORT")
    if env is not None:
        return env.strip().lower() in ("1", "true", "yes", "on")
    return bool(settings.section("privacy").get("scrub_on_import", False))
