"""IP address -> country, offline, and ``edx-engine locate-users``.

The IP database is the one embedded in the ``iptocc`` wheel: Regional Internet Registry
(RIR) delegation data, i.e. the country a block of addresses is *registered* to (agrees with
commercial geolocation for ~95% of IPv4 addresses). No file is downloaded and no network is
used at run time. Its name and date (package version; build date of the wheel, the data being
refreshed for every release) are recorded with every result.

``locate_users`` writes two tables to the store (Parquet under ``lake/geo``, views in the
catalog, bookkeeping ``_edx_geo``):

- ``user_location``: one row per learner and course (enrolments, plus learners seen in a
  course's events): ``profile_country`` (auth_userprofile.country, ISO 3166-1 alpha-2, from
  the newest package), ``ip_country`` (the country most of the learner's located events
  come from, over *all* their events and IPs; ties -> alphabetical), ``country`` = profile else IP,
  ``source`` (profile | ip | NULL), ``ip_events`` (events whose IP was located), ``ip_db``,
  ``ip_db_date``, ``located_at``;
- ``user_location_summary``: per course, learners located from the profile, from IP, not
  locatable; staff accounts (global staff, and the course's staff roles) are not counted, as in
  every report.

Once the IPs are scrubbed, a new run keeps each learner's previous IP-derived country.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import json
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from . import clock
from .schemas import COURSE_STAFF_ROLES
from .store import catalog, views
from .store.files import write_atomic
from .store.lake import Lake

LOCATION_SCHEMA = pa.schema([
    ("course_id", pa.string()), ("user_id", pa.int64()), ("profile_country", pa.string()),
    ("ip_country", pa.string()), ("country", pa.string()), ("source", pa.string()), ("ip_events", pa.int64()),
    ("ip_db", pa.string()), ("ip_db_date", pa.string()), ("located_at", pa.timestamp("s")),
])
SUMMARY_SCHEMA = pa.schema([
    ("course_id", pa.string()), ("learners", pa.int64()), ("from_profile", pa.int64()), ("from_ip", pa.int64()),
    ("not_locatable", pa.int64()), ("ip_db", pa.string()), ("ip_db_date", pa.string()),
    ("located_at", pa.timestamp("s")),
])

class GeoError(Exception):
    pass


# -- the IP database ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class IpDatabase:
    name: str
    date: str | None
    licence: str


@functools.lru_cache(maxsize=1)
def ip_database() -> IpDatabase:
    """Name and date of the embedded IP database."""
    try:
        from importlib import metadata

        import iptocc  # noqa: F401
    except ImportError:
        raise GeoError("IP geolocation needs the iptocc package: pip install 'iptocc>=3.3'") from None
    dist = metadata.distribution("iptocc")
    date = None
    for f in dist.files or []:
        if str(f).endswith(".cyclonedx.json"):
            try:
                ts = json.loads(Path(dist.locate_file(f)).read_text("utf-8"))["metadata"]["timestamp"]
                date = ts[:10]
            except (OSError, KeyError, ValueError):
                pass
    return IpDatabase(f"iptocc {dist.version} (RIR delegation data embedded in the wheel)", date,
                      "iptocc: MIT OR Apache-2.0; data: public RIR delegation statistics")


def normalise_ip(value: str | None) -> str | None:
    """A public IP address as text, or None (empty, malformed, private, loopback...). For a
    forwarded list ("client, proxy1, proxy2") the first public address counts."""
    if not value:
        return None
    for part in str(value).split(","):
        s = part.strip().strip("[]")
        if s.count(":") == 1 and "." in s:  # "1.2.3.4:port"
            s = s.split(":")[0]
        try:
            ip = ipaddress.ip_address(s)
        except ValueError:
            continue
        if ip.is_global:
            return str(ip)
    return None


def lookup(ips: Iterable[str | None]) -> list[str | None]:
    """ISO 3166-1 alpha-2 country of each address (None when unknown)."""
    ip_database()
    from iptocc import country_code

    ips = list(ips)
    norm = [normalise_ip(i) for i in ips]
    todo = [n for n in norm if n]
    found = dict(zip(todo, country_code(todo))) if todo else {}
    return [found.get(n) if n else None for n in norm]


@functools.lru_cache(maxsize=1)
def _iso_codes() -> frozenset[str]:
    import pycountry

    return frozenset(c.alpha_2 for c in pycountry.countries)


def valid_country(code: str | None) -> str | None:
    """An ISO 3166-1 alpha-2 code (upper case) or None for empty / unknown values."""
    if code is None:
        return None
    c = str(code).strip().upper()
    if c == "UK":
        c = "GB"
    return c if c in _iso_codes() else None


def country_name(code: str | None) -> str | None:
    import pycountry

    c = valid_country(code)
    return pycountry.countries.get(alpha_2=c).name if c else None


# -- locate-users -------------------------------------------------------------------------------------------

@dataclass
class LocateResult:
    rows: int
    learners: int
    from_profile: int
    from_ip: int
    not_locatable: int
    distinct_ips: int
    ip_db: IpDatabase
    summary: pa.Table
    seconds: float = 0.0

    def one_line(self) -> str:
        return (f"located {self.learners:,} learner(s): {self.from_profile:,} from the profile, {self.from_ip:,} from "
                f"IP, {self.not_locatable:,} not locatable ({self.distinct_ips:,} distinct IPs; {self.ip_db.name}, "
                f"data {self.ip_db.date or 'date unknown'}), {self.seconds:.1f} s")


def _exists(con: duckdb.DuckDBPyConnection, name: str, schema: str = "main") -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name=? AND schema_name=?",
                            [name, schema]).fetchone()[0]
                or con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name=? AND schema_name=?",
                               [name, schema]).fetchone()[0])


def _cols(con: duckdb.DuckDBPyConnection, name: str) -> set[str]:
    return {r[0] for r in con.execute(f'DESCRIBE SELECT * FROM "{name}"').fetchall()}


def _previous(lake: Lake, con: duckdb.DuckDBPyConnection) -> dict[int, tuple[str, str, str, int]]:
    if not _exists(con, "_edx_geo"):
        return {}
    row = con.execute("SELECT path FROM _edx_geo WHERE name='user_location'").fetchone()
    if not row or not (lake.root / row[0]).exists():
        return {}
    t = pq.read_table(lake.root / row[0], columns=["user_id", "ip_country", "ip_db", "ip_db_date", "ip_events"])
    out = {}
    for u, c, db, d, n in zip(*(t.column(i).to_pylist() for i in range(5))):
        if c and u is not None:
            out[u] = (c, db, d, n)
    return out


def locate_users(lake: Lake, take_lock: bool = True, now: dt.datetime | None = None) -> LocateResult:
    if not lake.catalog_path.exists():
        raise GeoError(f"no store at {lake.root} (run `edx-engine import` first)")
    if take_lock:
        with lake.writer():
            return _locate(lake, now)
    return _locate(lake, now)


def _staff(con) -> dict[str | None, set[int]]:
    """Staff accounts, as the models count them: ``None`` -> global staff (their newest auth_user
    row says is_staff), course id -> accounts with a staff role in that course."""
    out: dict[str | None, set[int]] = defaultdict(set)
    if _exists(con, "auth_user") and "is_staff" in _cols(con, "auth_user"):
        out[None] = {u for (u,) in con.execute(
            "SELECT id FROM (SELECT id, is_staff, row_number() OVER (PARTITION BY id ORDER BY package_date DESC "
            "NULLS LAST, course_id) AS rn FROM auth_user WHERE id IS NOT NULL) WHERE rn = 1 AND is_staff").fetchall()}
    if _exists(con, "student_courseaccessrole") and {"role", "user_id", "course_id"} <= _cols(con, "student_courseaccessrole"):
        roles = ", ".join(f"'{r}'" for r in COURSE_STAFF_ROLES)
        for course, uid in con.execute(
                "SELECT DISTINCT course_id, user_id FROM student_courseaccessrole WHERE user_id IS NOT NULL "
                f"AND lower(trim(role)) IN ({roles})").fetchall():
            out[course].add(uid)
    return out


def _locate(lake: Lake, now: dt.datetime | None) -> LocateResult:
    t0 = time.perf_counter()
    db = ip_database()
    now = (now or clock.now()).replace(tzinfo=None, microsecond=0)
    with lake.connect(read_only=True) as con:
        profile = {u: c for u, c in con.execute(
            "SELECT user_id, country FROM (SELECT user_id, country, row_number() OVER (PARTITION BY user_id "
            "ORDER BY package_date DESC NULLS LAST, course_id) AS rn FROM auth_userprofile "
            "WHERE user_id IS NOT NULL) WHERE rn = 1").fetchall()}
        pairs = set(con.execute("SELECT DISTINCT course_id, user_id FROM student_courseenrollment "
                                "WHERE user_id IS NOT NULL AND course_id IS NOT NULL").fetchall())
        ip_rows: list[tuple] = []
        if _exists(con, "events") and {"ip", "user_id", "course_id"} <= _cols(con, "events"):
            has_un = "username" in _cols(con, "events")
            umap = ("LEFT JOIN (SELECT username AS m_username, min(id) AS m_id FROM auth_user "
                    "WHERE username IS NOT NULL AND username <> '' GROUP BY 1 HAVING count(DISTINCT id) = 1) m "
                    "ON e.user_id IS NULL AND e.username = m.m_username") if has_un else ""
            uid = "coalesce(e.user_id, m.m_id)" if has_un else "e.user_id"
            ip_rows = con.execute(
                f"SELECT {uid} AS uid, e.course_id, e.ip, count(*) AS n FROM events e {umap} "
                f"WHERE e.ip IS NOT NULL AND e.ip <> '' GROUP BY ALL HAVING uid IS NOT NULL").fetchall()
        previous = _previous(lake, con)
        staff = _staff(con)
    ips = sorted({r[2] for r in ip_rows})
    cc = dict(zip(ips, lookup(ips)))
    votes: dict[int, Counter] = defaultdict(Counter)
    for uid, course, ip, n in ip_rows:
        if course:
            pairs.add((course, uid))
        c = cc.get(ip)
        if c:
            votes[uid][c] += n
    ip_country: dict[int, tuple[str, str, str | None, int]] = {}
    for uid, counter in votes.items():
        best = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        ip_country[uid] = (best, db.name, db.date, sum(counter.values()))
    for uid, prev in previous.items():  # IPs scrubbed since: keep what was derived from them
        ip_country.setdefault(uid, prev)

    rows = {k: [] for k in LOCATION_SCHEMA.names}
    summary: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    learners: dict[int, str] = {}
    for course, uid in sorted(pairs, key=lambda p: (str(p[0]), p[1])):
        pc_ = valid_country(profile.get(uid))
        ipc = ip_country.get(uid)
        country, source = (pc_, "profile") if pc_ else ((ipc[0], "ip") if ipc else (None, None))
        for k, v in zip(LOCATION_SCHEMA.names, (course, uid, pc_, ipc[0] if ipc else None, country, source,
                                                 ipc[3] if ipc else 0, ipc[1] if ipc else None,
                                                 ipc[2] if ipc else None, now)):
            rows[k].append(v)
        s = summary[course]  # (a course of staff only still has its row)
        if uid not in staff[None] and uid not in staff[course]:  # staff are not counted, as in every report
            s[0] += 1
            s[{"profile": 1, "ip": 2, None: 3}[source]] += 1
        learners[uid] = source or ""
    loc = pa.table(rows, schema=LOCATION_SCHEMA)
    courses = sorted(summary)
    summ = pa.table({
        "course_id": courses, "learners": [summary[c][0] for c in courses],
        "from_profile": [summary[c][1] for c in courses], "from_ip": [summary[c][2] for c in courses],
        "not_locatable": [summary[c][3] for c in courses], "ip_db": [db.name] * len(courses),
        "ip_db_date": [db.date] * len(courses), "located_at": [now] * len(courses),
    }, schema=SUMMARY_SCHEMA)
    _store(lake, {"user_location": loc, "user_location_summary": summ}, db, now)
    vals = list(learners.values())
    return LocateResult(loc.num_rows, len(learners), vals.count("profile"), vals.count("ip"), vals.count(""),
                        len(ips), db, summ, time.perf_counter() - t0)


def _store(lake: Lake, tables: dict[str, pa.Table], db: IpDatabase, now: dt.datetime) -> None:
    d = lake.lake_dir / "geo"
    d.mkdir(parents=True, exist_ok=True)
    new: dict[str, Path] = {}
    for name, t in tables.items():
        p = d / f"{name}-{uuid.uuid4().hex[:12]}.parquet"
        write_atomic(p, lambda tmp, t=t: pq.write_table(t, tmp, compression="zstd"))
        new[name] = p
    with lake.connect() as con:
        catalog.ensure(con, catalog.GEO)
        con.execute("BEGIN TRANSACTION")
        try:
            for name, p in new.items():
                catalog.replace_geo(con, name, lake.rel(p), tables[name].num_rows, db.name, db.date, now)
            views.geo_views(con, lake.root)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            for p in new.values():
                p.unlink(missing_ok=True)
            raise
    lake.collect_garbage()  # the replaced tables, and any writer's leftovers (under the lock)
