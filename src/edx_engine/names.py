"""File-name grammar: what a file found in an edX delivery is.

Database package members are named ``{org}-{course}-{run}-{table}-{site}-analytics.sql``;
course and run may contain ``-``, so names are split from the right on known table
names, never on ``-``. Matching is case-insensitive on the organisation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date
from urllib.parse import unquote

from .schemas import TABLES

SITES = ("prod", "edge", "edx", "patches")  # seen; any other word is accepted too

# The site part of a member name: ``prod``, ``edge``, ``edx``, ``patches`` or any other word, and
# the compound forms of old packages (``prod-edge``); words hold no ``_`` (a table name always does).
_SITE = r"(?P<site>[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*?)"
_SQL_TABLES = sorted((t for t, s in TABLES.items() if s.kind == "sql"), key=len, reverse=True)
_SQL_RE = re.compile(
    r"^(?P<slug>.+)-(?P<table>" + "|".join(map(re.escape, _SQL_TABLES)) + r")-" + _SITE + r"-analytics\.sql$"
)
# A table edX added that the registry does not describe yet: a Django table name (``app_model``,
# lower case, with at least one ``_``), kept as an untyped table named after it.
_ANY_SQL_RE = re.compile(r"^(?P<slug>.+)-(?P<table>[a-z][a-z0-9]*_[a-z0-9_]*)-" + _SITE + r"-analytics\.sql$")
_STRUCTURE_RE = re.compile(r"^(?P<slug>.+)-course_structure-" + _SITE + r"-analytics\.json$")
_CONTENT_RE = re.compile(r"^(?P<slug>.+)-course-" + _SITE + r"-(?:analytics|replica)\.xml\.tar\.gz$")
# ``{course}-{site}.mongo``: the site cannot be told from the course's last part unless it is a known one.
_MONGO_RE = re.compile(r"^(?P<slug>.+)-(?P<site>prod|edge|edx|patches)\.mongo$")
_OPTIN_RE = re.compile(r"^(?P<org>[^-]+)-email_opt_in-" + _SITE + r"-analytics\.csv$")
_FAILED = ".failed"  # edX's exporter leaves ``{file}.failed`` (a traceback) when a table's export failed
# Names that are not free for an unknown table's view: the store's own views and bookkeeping.
_RESERVED_VIEWS = re.compile(r"^(_.*|events.*|quarantine|user_location.*|models)$")
_PACKAGE_RE = re.compile(r"^(?P<org>.+)-(?P<date>\d{4}-\d{2}-\d{2})\.zip(\.gpg)?$")
_EVENTS_RE = re.compile(
    r"^(?P<org>.+?)(?:-(?P<site>edx|edge))?-events-(?P<date>\d{4}-\d{2}-\d{2})\.log(?P<gz>\.gz)?(?P<gpg>\.gpg)?$"
)
_DATE_DIR_RE = re.compile(r"^(?P<org>.+)-(?P<date>\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True)
class PackageFile:
    """A member of a weekly database package, identified from its name."""

    name: str  # base name without .gpg
    table: str  # schema name: auth_user, ..., course_structure, forum, course_content, email_opt_in
    slug: str | None  # course id with separators replaced by '-' (None for org-level files)
    site: str
    org: str | None = None
    encrypted: bool = False
    unknown: bool = False  # a table the registry does not describe: imported untyped (all text)
    failed_export: bool = False  # ``{name}.failed``: edX's export of this table failed (no data)


@dataclass(frozen=True)
class EventsFile:
    name: str
    org: str
    site: str
    date: str
    gzipped: bool
    encrypted: bool


def strip_gpg(name: str) -> tuple[str, bool]:
    if name.lower().endswith(".gpg"):
        return name[:-4], True
    return name, False


def parse_package_member(filename: str) -> PackageFile | None:
    """Identify a database package member by its base name; None when it is not one.

    ``{name}.failed`` markers are members too (``failed_export``); a ``-{table}-{site}-analytics.sql``
    whose table the registry does not know is one (``unknown``) unless its name is reserved."""
    name, encrypted = strip_gpg(filename.rsplit("/", 1)[-1])
    if name.endswith(_FAILED):
        found = parse_package_member(name[: -len(_FAILED)])
        return replace(found, name=name, encrypted=encrypted, failed_export=True) if found else None
    if m := _SQL_RE.match(name):
        return PackageFile(name, m["table"], m["slug"], m["site"], m["slug"].split("-", 1)[0], encrypted)
    if m := _STRUCTURE_RE.match(name):
        return PackageFile(name, "course_structure", m["slug"], m["site"], m["slug"].split("-", 1)[0], encrypted)
    if m := _CONTENT_RE.match(name):
        return PackageFile(name, "course_content", m["slug"], m["site"], m["slug"].split("-", 1)[0], encrypted)
    if m := _OPTIN_RE.match(name):
        return PackageFile(name, "email_opt_in", None, m["site"], m["org"], encrypted)
    if m := _MONGO_RE.match(name):
        return PackageFile(name, "forum", m["slug"], m["site"], m["slug"].split("-", 1)[0], encrypted)
    if m := _ANY_SQL_RE.match(name):
        known = m["table"] in TABLES  # added to the registry since this module was loaded
        if known or unknown_table_name_ok(m["table"]):
            return PackageFile(name, m["table"], m["slug"], m["site"], m["slug"].split("-", 1)[0], encrypted,
                               unknown=not known)
    return None


def unknown_table_name_ok(table: str) -> bool:
    """Whether an unknown table may have a catalog view of its own name (not the store's own views)."""
    return bool(re.fullmatch(r"[a-z][a-z0-9_]{0,62}", table)) and table not in TABLES \
        and not _RESERVED_VIEWS.match(table)


def is_date(text: str) -> bool:
    """Whether ``text`` is a day of the calendar as YYYY-MM-DD."""
    try:
        date.fromisoformat(text)
        return True
    except ValueError:
        return False


def parse_package_name(filename: str) -> tuple[str, str] | None:
    """``IDBx-2016-10-09.zip`` (or the folder ``IDBx-2016-10-09``) -> (org, date); None for another
    name, or one whose date is not a day of the calendar (``bad_name_date``)."""
    base = filename.rstrip("/").rsplit("/", 1)[-1]
    m = _PACKAGE_RE.match(base) or _DATE_DIR_RE.match(base)
    return (m["org"], m["date"]) if m and is_date(m["date"]) else None


def parse_events_name(filename: str) -> EventsFile | None:
    base = filename.rsplit("/", 1)[-1]
    m = _EVENTS_RE.match(base)
    if not m or not is_date(m["date"]):
        return None
    return EventsFile(base, m["org"], m["site"] or "edx", m["date"], bool(m["gz"]), bool(m["gpg"]))


def bad_name_date(filename: str) -> str | None:
    """The date of a package, package folder or tracking-log name that is not a day of the calendar
    (``IDBx-2026-02-30.zip``, ``idbx-edx-events-2026-13-01.log.gz``), else None. Such a name is
    refused: its date would decide which snapshot is newest, or hold the events of no day."""
    base = filename.rstrip("/").rsplit("/", 1)[-1]
    m = _PACKAGE_RE.match(base) or _DATE_DIR_RE.match(base) or _EVENTS_RE.match(base)
    return m["date"] if m and not is_date(m["date"]) else None


def course_slug(course_id: str) -> str:
    """``course-v1:IDBx+IDB1x+2T2016`` or ``IDBx/IDB1x/2T2016`` -> ``IDBx-IDB1x-2T2016``."""
    cid = course_id.split(":", 1)[1] if course_id.startswith("course-v1:") else course_id
    return re.sub(r"[/+.]", "-", cid)


_TRUNCATED = re.compile(r"-[0-9a-f]{32}$")  # edX's exporter cuts over-long names and adds an md5


def _loose(text: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "-", text.lower()).strip("-")


def slug_matches(course_id: str, slug: str) -> bool:
    """Whether a file-name slug (``Org-Num-Run``, ``Org-Num-Run-ccx-3``) can be ``course_id``'s.

    Loose on purpose: separators, case and the exporter's substitutions of other characters are
    ignored; a truncated name (md5 suffix) matches when the course's slug starts with its kept part."""
    cid = course_id.split(":", 1)[1] if re.match(r"^(course|ccx)-v1:", course_id) else course_id
    want, have = _loose(cid), _loose(slug)
    if _TRUNCATED.search(slug):
        return want.startswith(_loose(_TRUNCATED.sub("", slug)))
    return want == have


def path_slug(course_id: str) -> str:
    """A filesystem-safe, collision-free name for a course id (for lake paths)."""
    return re.sub(r"[^A-Za-z0-9_.-]", lambda m: f"~{ord(m.group()):02x}", course_id)


def course_id_from_usage_key(key: str) -> str | None:
    """Course id from a block usage key, in the course-id form the key uses."""
    if key.startswith("block-v1:"):
        body = key[len("block-v1:"):].split("+type@", 1)[0]
        return "course-v1:" + body
    if key.startswith("i4x://"):
        parts = key[len("i4x://"):].split("/")
        if len(parts) >= 4 and parts[2] == "course":
            return f"{parts[0]}/{parts[1]}/{parts[3]}"
    return None


# A course id in a URL path: ``course-v1:...`` (its ':' and '+' may be percent-encoded), or the
# old ``Org/Course/Run`` form, whose segments are restricted to the characters edX allowed in
# them, so that a percent-encoded new-form id is never read as three old-form segments. The same
# pattern is used by the SQL of the DuckDB engine (``events_duck``): one definition.
COURSE_IN_URL = r"/courses/(course-v1(?::|%3[Aa])[^/?#]+|[A-Za-z0-9_.~-]+/[A-Za-z0-9_.~-]+/[A-Za-z0-9_.~-]+)"
_COURSE_IN_URL = re.compile(COURSE_IN_URL)


# Any opaque key in a URL, as Studio (the authoring site) writes them: ``/course/course-v1:...``,
# ``/settings/details/course-v1:...``, ``/container/block-v1:...``, ``/xblock/block-v1:...``, CCX
# keys. Read after the decoding, the course is the first three ``+`` parts of the key (plus the
# ``ccx@N`` part of a CCX key). Used by both engines (``course_id_from_url`` and ``course_in_url_sql``).
KEY_IN_URL = r"(?:^|[^A-Za-z0-9_-])((?:ccx-block|block|course|ccx)-v1(?::|%3[Aa])[A-Za-z0-9_.~%+@:-]+)"
COURSE_OF_KEY = r"^(?:course|block)-v1:([^+@/]+\+[^+@/]+\+[^+@/]+)"
CCX_OF_KEY = r"^ccx(?:-block)?-v1:([^+@/]+\+[^+@/]+\+[^+@/]+\+ccx@[0-9]+)"
_KEY_IN_URL = re.compile(KEY_IN_URL)
_COURSE_OF_KEY = re.compile(COURSE_OF_KEY)
_CCX_OF_KEY = re.compile(CCX_OF_KEY)


def course_id_from_url(url: str | None) -> str | None:
    """Course id from a page URL or a URL event_type (``/courses/<id>/courseware/...``), else from any
    course/block/CCX key in it (Studio's ``/course/course-v1:...``, ``/container/block-v1:...``),
    percent-decoded (``course-v1%3AOrg%2BX%2BRun`` -> ``course-v1:Org+X+Run``)."""
    if not url:
        return None
    m = _COURSE_IN_URL.search(url)
    if m:
        cid = m.group(1)
        return unquote(cid) if "%" in cid else cid
    m = _KEY_IN_URL.search(url)
    if not m:
        return None
    key = unquote(m.group(1)) if "%" in m.group(1) else m.group(1)
    if c := _CCX_OF_KEY.match(key):
        return "ccx-v1:" + c.group(1)
    if c := _COURSE_OF_KEY.match(key):
        return "course-v1:" + c.group(1)
    return None


def course_in_url_sql(expr: str) -> str:
    """DuckDB SQL of ``course_id_from_url(expr)`` (the same patterns), NULL when none."""
    key = f"url_decode(nullif(regexp_extract({expr}, '{KEY_IN_URL}', 1), ''))"
    return (f"coalesce(nullif(url_decode(regexp_extract({expr}, '{COURSE_IN_URL}', 1)), ''), "
            f"'ccx-v1:' || nullif(regexp_extract({key}, '{CCX_OF_KEY}', 1), ''), "
            f"'course-v1:' || nullif(regexp_extract({key}, '{COURSE_OF_KEY}', 1), ''))")
