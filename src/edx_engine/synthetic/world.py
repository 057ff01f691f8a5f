"""The synthetic world: courses (with their structure), learners and enrolments.

Everything is derived from ``random.Random`` instances seeded with strings built from the
configuration seed, so the same configuration always yields the same world.
Times are UTC epoch seconds (floats) internally.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import hashlib
import itertools
import json
import math
import random
import unicodedata
from dataclasses import dataclass, field

from ..names import course_slug
from . import _vocab as V
from .config import SyntheticConfig

UTC = _dt.timezone.utc
DAY = 86400


def rng_for(cfg: SyntheticConfig, *parts: object) -> random.Random:
    return random.Random(":".join(map(str, (cfg.seed, cfg.org) + parts)))


def epoch(d: _dt.date | _dt.datetime) -> float:
    if isinstance(d, _dt.datetime):
        return d.replace(tzinfo=UTC).timestamp() if d.tzinfo is None else d.timestamp()
    return _dt.datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()


# ---------------------------------------------------------------------------------------------
# Formatting helpers
# ---------------------------------------------------------------------------------------------

_ESC = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\0": "\\0"})


def tsv(v: object) -> str:
    """One value as MySQL batch output writes it."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, str):
        return v.translate(_ESC)
    return str(v)


class TimeFmt:
    """Fast UTC formatting of epoch seconds with a per-day prefix cache."""

    def __init__(self) -> None:
        self._sql: dict[int, str] = {}
        self._iso: dict[int, str] = {}

    def _day(self, day: int) -> _dt.date:
        return _dt.date(1970, 1, 1) + _dt.timedelta(days=day)

    def sql(self, t: float, frac: bool = False) -> str:
        """``YYYY-MM-DD HH:MM:SS`` or with ``.ffffff``."""
        day, rem = divmod(t, DAY)
        day = int(day)
        p = self._sql.get(day)
        if p is None:
            p = self._sql[day] = self._day(day).isoformat() + " "
        s = int(rem)
        h, s = divmod(s, 3600)
        m, s = divmod(s, 60)
        if frac:
            return f"{p}{h:02d}:{m:02d}:{s:02d}.{int((rem - int(rem)) * 1e6):06d}"
        return f"{p}{h:02d}:{m:02d}:{s:02d}"

    def iso_prefix(self, day: int) -> str:
        p = self._iso.get(day)
        if p is None:
            p = self._iso[day] = self._day(day).isoformat() + "T"
        return p

    def iso(self, t: float, suffix: str = "+00:00") -> str:
        day, rem = divmod(t, DAY)
        s = int(rem)
        us = int((rem - s) * 1e6)
        h, s = divmod(s, 3600)
        m, s = divmod(s, 60)
        if us:
            return f"{self.iso_prefix(int(day))}{h:02d}:{m:02d}:{s:02d}.{us:06d}{suffix}"
        return f"{self.iso_prefix(int(day))}{h:02d}:{m:02d}:{s:02d}{suffix}"


TF = TimeFmt()


def ascii_fold(s: str) -> str:
    return unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode().lower()


def hex_id(rng: random.Random, n: int = 32) -> str:
    return f"{rng.getrandbits(n * 4):0{n}x}"


def uuid_hex(rng: random.Random) -> str:
    h = hex_id(rng)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


# ---------------------------------------------------------------------------------------------
# Courses
# ---------------------------------------------------------------------------------------------


class Block:
    __slots__ = ("key", "hex", "category", "display_name", "children", "metadata", "chapter", "seq",
                 "vert_pos", "graded", "extra", "course")

    def __init__(self, course: "Course", key: str, hex_: str, category: str, display_name: str) -> None:
        self.course = course
        self.key = key
        self.hex = hex_
        self.category = category
        self.display_name = display_name
        self.children: list[Block] = []
        self.metadata: dict = {"display_name": display_name}
        self.chapter: Block | None = None
        self.seq: Block | None = None
        self.vert_pos = 0
        self.graded = False
        self.extra: dict = {}


@dataclass
class Course:
    idx: int
    org: str
    code: str
    run: str
    old: bool
    title: str
    start: float
    end: float
    course_id: str = ""
    slug: str = ""
    blocks: list[Block] = field(default_factory=list)
    root: Block | None = None
    chapters: list[Block] = field(default_factory=list)
    seqs: list[Block] = field(default_factory=list)
    touch: list[Block] = field(default_factory=list)  # blocks that get studentmodule rows, course order
    videos: list[Block] = field(default_factory=list)
    problems: list[Block] = field(default_factory=list)
    discussions: list[Block] = field(default_factory=list)
    version: str = ""
    policy_hash: str = ""
    enrolments: list["Enrolment"] = field(default_factory=list)

    def key(self, category: str, name: str) -> str:
        if self.old:
            return f"i4x://{self.org}/{self.code}/{category}/{name}"
        return f"block-v1:{self.org}+{self.code}+{self.run}+type@{category}+block@{name}"

    def structure(self) -> dict:
        out = {}
        for b in self.blocks:
            out[b.key] = {"category": b.category, "children": [c.key for c in b.children], "metadata": b.metadata}
        return out

    @property
    def url(self) -> str:
        return f"/courses/{self.course_id}/"


def _iso_z(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_course(cfg: SyntheticConfig, idx: int) -> Course:
    rng = rng_for(cfg, "course", idx)
    if idx < len(V.COURSE_DEFS):
        code, title = V.COURSE_DEFS[idx]
    else:
        code, title = f"CURSO{idx + 1}x", f"Curso de desarrollo {idx + 1}: temas selectos"
    old = cfg.courses >= 2 and idx == 0
    w0 = epoch(cfg.start)
    if old:
        run = "2T2015"
        start = epoch(_dt.date(2015, 4, 15))
        end = w0 + 400 * DAY  # archived, self-paced: still open
    else:
        run = V.NEW_RUNS[(idx - 1) % len(V.NEW_RUNS)] if idx else V.NEW_RUNS[0]
        start = w0 - rng.randint(20, 120) * DAY
        end = start + rng.randint(60, 160) * DAY
        if end < w0 + cfg.days * DAY:
            end = w0 + cfg.days * DAY + 30 * DAY
    c = Course(idx, cfg.org, code, run, old, title, start, end)
    c.course_id = f"{cfg.org}/{code}/{run}" if old else f"course-v1:{cfg.org}+{code}+{run}"
    c.slug = course_slug(c.course_id)
    c.version = hex_id(rng, 24)
    c.policy_hash = hashlib.sha1(f"{c.course_id}:{cfg.seed}".encode()).hexdigest()[:27] + "="
    root_key = f"i4x://{cfg.org}/{code}/course/{run}" if old else c.key("course", "course")
    root = Block(c, root_key, run if old else "course", "course", title)
    root.metadata.update({"start": _iso_z(start), "end": _iso_z(end), "language": "es",
                          "self_paced": old, "course_image": "images_course_image.jpg"})
    c.root = root
    c.blocks.append(root)

    spl = max(1.0, cfg.studentmodule_per_learner)
    n_chap = max(5, min(60, math.ceil(3.5 * spl / 15))) + rng.randint(0, 2)
    pcount = itertools.count(1)

    def new(cat: str, name: str) -> Block:
        h = hex_id(rng)
        b = Block(c, c.key(cat, h), h, cat, name)
        c.blocks.append(b)
        return b

    for ci in range(n_chap):
        ch_title = V.CHAPTER_TITLES[ci % len(V.CHAPTER_TITLES)]
        ch = new("chapter", f"Módulo {ci + 1}: {ch_title}" if ci else f"Módulo 0: {ch_title}")
        ch.metadata["start"] = _iso_z(start + ci * 7 * DAY)
        ch.chapter = ch
        root.children.append(ch)
        c.chapters.append(ch)
        c.touch.append(ch)
        n_seq = rng.randint(2, 4)
        for si in range(n_seq):
            graded = si == n_seq - 1 and ci > 0
            st = "Evaluación del módulo" if graded else V.SEQ_TITLES[rng.randrange(len(V.SEQ_TITLES) - 1)]
            sq = new("sequential", f"Lección {ci}.{si + 1}: {st}")
            sq.chapter, sq.seq, sq.graded = ch, sq, graded
            sq.metadata.update({"start": ch.metadata["start"], "graded": graded,
                                "format": ("Examen final" if ci == n_chap - 1 else "Tarea") if graded else None,
                                "due": _iso_z(start + (ci + 2) * 7 * DAY + 86399) if graded else None})
            ch.children.append(sq)
            c.seqs.append(sq)
            c.touch.append(sq)
            for vi in range(rng.randint(1, 3)):
                vt = new("vertical", f"Unidad {vi + 1}")
                vt.chapter, vt.seq, vt.vert_pos = ch, sq, vi + 1
                sq.children.append(vt)
                kinds = ["problem", "problem"] if graded else rng.choice(
                    [["video", "html"], ["video", "problem"], ["html", "problem", "problem"], ["video"],
                     ["html", "discussion"], ["video", "problem", "discussion"], ["openassessment"] if ci > 1 else ["html"]])
                for k in kinds:
                    if k == "video":
                        b = new("video", V.VIDEO_TITLES[rng.randrange(len(V.VIDEO_TITLES))])
                        b.extra = {"duration": rng.randint(120, 900),
                                   "youtube": "".join(rng.choice("abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ0123456789-_") for _ in range(11))}
                        b.metadata.update({"youtube_id_1_0": b.extra["youtube"], "download_video": True})
                        c.videos.append(b)
                    elif k == "problem":
                        n = next(pcount)
                        b = new("problem", f"{V.PROBLEM_TITLES[rng.randrange(len(V.PROBLEM_TITLES))]} {n}")
                        b.graded = graded
                        b.metadata.update({"weight": 1.0 if graded else None, "max_attempts": rng.choice([1, 2, 3, None]),
                                           "showanswer": "finished", "rerandomize": "never"})
                        _problem_setup(b, rng)
                        c.problems.append(b)
                    elif k == "html":
                        b = new("html", V.HTML_TITLES[rng.randrange(len(V.HTML_TITLES))])
                    elif k == "discussion":
                        b = new("discussion", "Foro de discusión")
                        did = hex_id(rng)
                        b.extra = {"discussion_id": did}
                        b.metadata.update({"discussion_id": did, "discussion_category": ch_title,
                                           "discussion_target": st})
                        c.discussions.append(b)
                    else:
                        b = new("openassessment", "Tarea entre pares: propuesta de proyecto")
                        b.metadata.update({"submission_due": sq.metadata.get("due")})
                    b.chapter, b.seq, b.vert_pos = ch, sq, vi + 1
                    vt.children.append(b)
                    if k in ("video", "problem", "openassessment") or (k == "html" and rng.random() < 0.1):
                        c.touch.append(b)
    return c


_TEXT_ANSWERS = ["La respuesta es \"b\"\nporque el indicador mide resultados",
                 "3,5 %", "línea de base\tmeta", "ver C:\\datos\\tabla.xlsx", "Não sei", "impacto"]


def _problem_setup(b: Block, rng: random.Random) -> None:
    """Input ids and a few precomputed learner states (TSV-escaped JSON) for a problem."""
    if b.course.old:
        base = f"i4x-{b.course.org}-{b.course.code}-problem-{b.hex}"
    else:
        base = b.hex
    n_inputs = rng.choice([1, 1, 1, 2, 3])
    kinds = [rng.choice(["choice", "choice", "checkbox", "text", "numerical"]) for _ in range(n_inputs)]
    inputs = [f"{base}_{i + 2}_1" for i in range(n_inputs)]
    variants = []
    for v in range(6):
        attempts = 1 + (v % 3)
        answers, correct = {}, {}
        for inp, k in zip(inputs, kinds):
            ok = rng.random() < 0.65
            if k == "choice":
                answers[inp] = f"choice_{rng.randint(0, 3)}"
            elif k == "checkbox":
                answers[inp] = sorted({f"choice_{rng.randint(0, 4)}" for _ in range(rng.randint(1, 3))})
            elif k == "numerical":
                answers[inp] = f"{rng.randint(1, 99) / 10}"
            else:
                answers[inp] = _TEXT_ANSWERS[rng.randrange(len(_TEXT_ANSWERS))]
            correct[inp] = ok
        cmap = {i: {"hint": "", "hintmode": None, "correctness": "correct" if correct[i] else "incorrect",
                    "msg": "", "answervariable": None, "npoints": None, "queuestate": None} for i in inputs}
        grade = sum(correct.values())
        state = {"seed": 1, "input_state": {i: {} for i in inputs}, "done": True, "attempts": attempts,
                 "correct_map": cmap, "student_answers": answers,
                 "score": {"raw_earned": grade, "raw_possible": n_inputs}}
        variants.append({"attempts": attempts, "answers": answers, "correct": correct, "grade": grade,
                         "state_tsv": tsv(json.dumps(state, ensure_ascii=False)), "cmap": cmap})
    b.extra = {"inputs": inputs, "kinds": kinds, "max_grade": n_inputs, "variants": variants}


# ---------------------------------------------------------------------------------------------
# Learners and enrolments
# ---------------------------------------------------------------------------------------------


class User:
    __slots__ = ("id", "username", "first", "last", "email", "country", "culture", "gender", "yob", "edu",
                 "date_joined", "last_login", "is_staff", "active", "profile_id", "ips", "agent", "mobile_agent",
                 "lang", "hash_id", "name", "rows", "langs", "enrolments", "optin")

    def __init__(self) -> None:
        self.enrolments: list[Enrolment] = []
        self.rows: dict[str, str] = {}


class Enrolment:
    __slots__ = ("id", "user", "course", "created", "mode", "is_active", "kind", "n_sm", "n_events",
                 "deactivated_at", "mode_changed_at", "cert", "grade", "anon_id")

    def __init__(self, user: User, course: Course) -> None:
        self.user, self.course = user, course
        self.deactivated_at: float | None = None
        self.mode_changed_at: float | None = None
        self.cert: dict | None = None
        self.grade = 0.0
        self.n_events = 0


def _weighted(rng: random.Random, items: list, weights: list[float]):
    cum = list(itertools.accumulate(weights))
    return items[bisect.bisect_right(cum, rng.random() * cum[-1])]


MODES_NEW = (["audit", "verified", "honor", "professional", "no-id-professional", "credit", "masters"],
             [62, 28, 4, 1.5, 1, 1.5, 2])
MODES_OLD = (["honor", "audit", "verified", "professional"], [70, 15, 14, 1])
EDU = (["m", "b", "p", "a", "hs", "jhs", "el", "none", "other", "p_se", "p_oth", "", None],
       [30, 32, 5, 3, 10, 1.5, 0.7, 0.5, 2, 0.6, 0.6, 8, 6])
GENDER = (["f", "m", "o", "", None], [44, 44, 1, 6, 5])
CERT_STATUSES = ["downloadable", "notpassing", "audit_passing", "audit_notpassing", "generating", "regenerating",
                 "deleting", "deleted", "error", "restricted", "unavailable", "unverified", "honor_passing",
                 "invalidated"]
CERT_W = [36, 34, 12, 6, 0.5, 0.5, 0.3, 0.3, 0.5, 0.3, 2, 1, 2, 0.3]


@dataclass
class World:
    cfg: SyntheticConfig
    courses: list[Course]
    users: list[User]  # users that appear somewhere (sorted by id)
    staff: list[User]
    window_start: float
    window_end: float
    snapshot: float


def build_world(cfg: SyntheticConfig) -> World:
    courses = [build_course(cfg, i) for i in range(cfg.courses)]
    rng = rng_for(cfg, "users")
    w0 = epoch(cfg.start)
    w1 = w0 + cfg.days * DAY
    snapshot = epoch(cfg.effective_package_date)
    hi = min(w1, snapshot) - 3600
    pool_n = cfg.learners if cfg.courses == 1 else max(cfg.learners, int(cfg.learners * cfg.courses / 1.35))
    n_staff = max(2, min(6, 2 + cfg.learners // 2000))
    c_names = [c[0] for c in V.COUNTRIES]
    c_w = [c[1] for c in V.COUNTRIES]
    c_cult = {c[0]: c[2] for c in V.COUNTRIES}
    taken: set[str] = set()
    users: list[User] = []
    uid = 4_100_000 + rng.randrange(10_000)
    pid = 3_900_000 + rng.randrange(10_000)
    for i in range(pool_n + n_staff):
        u = User()
        uid += rng.randint(1, 40)
        pid += rng.randint(1, 40)
        u.id, u.profile_id = uid, pid
        u.is_staff = i >= pool_n
        u.country = "US" if u.is_staff and i % 2 else ("CO" if u.is_staff else _weighted(rng, c_names, c_w))
        u.culture = c_cult[u.country]
        u.first = rng.choice(V.FIRST[u.culture])
        u.last = rng.choice(V.LAST[u.culture])
        if u.culture in ("es",) and rng.random() < 0.5:
            u.last += " " + rng.choice(V.LAST["es"])
        u.name = f"{u.first} {u.last}"
        r = rng.random()
        if r < 0.02:
            u.name = f"{u.last}, {u.first}"
        elif r < 0.03:
            u.name = f'{u.first} "{rng.choice(["Pepe", "Tata", "Nando", "Lulú"])}" {u.last}'
        elif r < 0.05:
            u.name = u.name.upper()
        base = ascii_fold(u.first.split()[0][0] + u.last.split()[0]).replace("'", "")
        base = "".join(ch for ch in base if ch.isalnum()) or "user"
        uname = base if rng.random() < 0.3 else f"{base}{rng.randint(1, 9999)}"
        while uname in taken:
            uname = f"{base}{rng.randint(1, 99999)}"
        if rng.random() < 0.05:
            uname = uname.capitalize() + "_" + rng.choice(["edx", "co", "mx", "2026"])
            while uname in taken:
                uname += str(rng.randint(0, 9))
        taken.add(uname)
        u.username = uname
        dom = "iadb.org" if u.is_staff else rng.choice(V.EMAIL_DOMAINS)
        u.email = f"{ascii_fold(u.first.split()[0])}.{ascii_fold(u.last.split()[0]).replace(' ', '')}{u.id % 1000}@{dom}"
        u.email = u.email.replace("'", "")
        u.gender = _weighted(rng, *GENDER)
        r = rng.random()
        u.yob = None if r < 0.07 else (1900 if r < 0.075 else (2015 if r < 0.078 else rng.randint(1950, 2006)))
        u.edu = _weighted(rng, *EDU)
        u.active = u.is_staff or rng.random() > 0.01
        pref = V.IP_PREFIXES.get(u.country) or V.IP_PREFIXES[""]
        u.ips = [f"{rng.choice(pref)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}" for _ in range(rng.choice([1, 1, 2]))]
        u.agent = rng.choice(V.AGENTS)
        u.mobile_agent = rng.choice(V.MOBILE_AGENTS) if rng.random() < 0.25 else None
        u.lang = rng.choice(V.ACCEPT_LANGUAGE[u.culture])
        u.hash_id = hashlib.md5(f"hash:{cfg.seed}:{cfg.org}:{u.id}".encode()).hexdigest()
        u.langs = ["es"] if u.culture == "es" else [u.culture]
        if rng.random() < 0.3:
            u.langs.append("en")
        u.optin = rng.random() < 0.6
        users.append(u)
    pool, staff = users[:pool_n], users[pool_n:]

    # enrolments
    eid = itertools.count(52_000_000 + rng.randrange(100_000), 1)
    for c in courses:
        crng = rng_for(cfg, "enrol", c.idx)
        lo = max(c.start - 60 * DAY, epoch(_dt.date(2015, 3, 1)))
        members = sorted(crng.sample(range(pool_n), min(cfg.learners, pool_n)))
        modes = MODES_OLD if c.old else MODES_NEW
        in_window_p = 0.03 if c.old else 0.08
        ens = []
        for j, ui in enumerate(members):
            e = Enrolment(pool[ui], c)
            if crng.random() < in_window_p and hi > w0:
                e.created = crng.uniform(w0, hi)
            else:
                e.created = crng.uniform(lo, min(w0, hi))
            e.mode = _weighted(crng, *modes)
            ens.append(e)
        for u in staff:
            e = Enrolment(u, c)
            e.created = c.start - crng.uniform(60, 120) * DAY
            e.mode = "honor" if c.old else "audit"
            ens.append(e)
        ens.sort(key=lambda e: e.created)
        for e in ens:
            e.id = next(eid)
            u = e.user
            r = crng.random()
            if e.created >= w0 or u.is_staff:
                e.kind = "active"
            elif not u.active or r < 0.07:
                e.kind = "ghost"
            elif r < 0.12:
                e.kind = "unenrolled"
            else:
                e.kind = "active"
            e.is_active = e.kind != "unenrolled"
            if e.kind == "unenrolled" and crng.random() < 0.4 and hi > w0:
                e.deactivated_at = crng.uniform(w0, hi)
            if e.kind == "active" and e.mode == "verified" and crng.random() < 0.1 and hi > max(w0, e.created):
                e.mode_changed_at = crng.uniform(max(w0, e.created + 60), hi)
            if e.kind == "ghost":
                e.n_sm = 0
            else:
                e.n_sm = max(1, min(len(c.touch), round(crng.gammavariate(1.3, cfg.studentmodule_per_learner / 1.3))))
            if e.kind == "active" and cfg.events_per_learner > 0:
                e.n_events = max(1, round(crng.gammavariate(0.8, cfg.events_per_learner / 0.8)))
                if u.is_staff:
                    e.n_events = max(1, e.n_events // 3)
            frac = e.n_sm / len(c.touch)
            e.grade = round(min(1.0, max(0.0, frac * crng.uniform(0.5, 1.1))), 2) if e.kind != "ghost" else 0.0
            e.anon_id = hashlib.md5(f"anon:{cfg.seed}:{u.id}:{c.course_id}".encode()).hexdigest()
            u.enrolments.append(e)
        c.enrolments = ens
        _certificates(cfg, c, crng, hi)

    # date_joined / last_login and precomputed rows
    appearing = [u for u in users if u.enrolments]
    lp_id = itertools.count(200_000 + rng.randrange(1000))
    for u in appearing:
        first = min(e.created for e in u.enrolments)
        u.date_joined = max(epoch(_dt.date(2013, 6, 1)), first - rng.uniform(0, 40) * DAY)
        if any(e.kind == "active" and e.n_events for e in u.enrolments):
            u.last_login = rng.uniform(max(w0, first), max(max(w0, first) + 1, hi))
        elif u.active and rng.random() < 0.9:
            u.last_login = rng.uniform(first, min(first + 20 * DAY, hi))
        else:
            u.last_login = None
        _user_rows(u, rng)
        u.rows["student_languageproficiency"] = [f"{next(lp_id)}\t{u.profile_id}\t{code}" for code in u.langs]
    appearing.sort(key=lambda u: u.id)
    return World(cfg, courses, appearing, staff, w0, w1, snapshot)


def _certificates(cfg: SyntheticConfig, c: Course, rng: random.Random, hi: float) -> None:
    forced = list(CERT_STATUSES) if c.idx == 0 else []
    for e in c.enrolments:
        if e.kind == "ghost" or e.user.is_staff or rng.random() > (0.6 if c.old else 0.4):
            continue
        status = forced.pop(0) if forced else _weighted(rng, CERT_STATUSES, CERT_W)
        mode = e.mode
        if status.startswith("audit_"):
            mode = "audit"
        elif status == "honor_passing":
            mode = "honor"
        elif status == "downloadable" and mode == "audit":
            mode = "verified" if not c.old else "honor"
        grade = e.grade
        if status in ("downloadable", "audit_passing", "honor_passing"):
            grade = max(grade, round(rng.uniform(0.6, 1.0), 2))
        elif status in ("notpassing", "audit_notpassing"):
            grade = min(grade, round(rng.uniform(0.0, 0.59), 2))
        e.grade = grade
        created = rng.uniform(max(e.created, hi - 60 * DAY), hi) if rng.random() < 0.85 else \
            rng.uniform(max(e.created, epoch(cfg.start)), hi)
        created = max(created, e.created + 3600)
        if created > hi:
            created = hi
        e.cert = {"status": status, "mode": mode, "grade": grade, "created": created,
                  "modified": min(hi, created + rng.choice([0, 0, 120, 86400])),
                  "verify_uuid": hex_id(rng), "download_uuid": hex_id(rng) if status == "downloadable" else "",
                  "key": hex_id(rng) if status == "downloadable" else "",
                  "distinction": rng.random() < 0.05 and status == "downloadable",
                  "error_reason": "Error generando el PDF: timeout" if status == "error" else ""}


def _user_rows(u: User, rng: random.Random) -> None:
    """auth_user, auth_userprofile and user_id_map lines (identical in every course file)."""
    TFs = TF.sql
    pw = "" if rng.random() < 0.5 else f"pbkdf2_sha256$260000${hex_id(rng, 12)}${hex_id(rng, 22)}="
    date_joined = TFs(u.date_joined, frac=rng.random() < 0.5)
    last_login = TFs(u.last_login, frac=True) if u.last_login else None
    user_vals = [u.id, u.username, u.first, u.last, u.email, pw, u.is_staff, u.active, False,
                 last_login, date_joined, "", "", "", "", "", None, "", "", 0, 0, 0]
    u.rows["auth_user"] = "\t".join(tsv(v) for v in user_vals)
    r = rng.random()
    meta = "" if r < 0.55 else ("{}" if r < 0.75 else (
        json.dumps({"session_id": None}) if r < 0.85 else json.dumps(
            {"6002x_exit_response": {"rating": ["Excelente"], "comments": "Muy bueno, \"realmente\" útil"}},
            ensure_ascii=False) if r < 0.95 else json.dumps({"old_emails": [[f"old{u.id}@hotmail.com",
                                                                               "2016-03-01T12:00:00Z"]]})))
    city = rng.choice(V.CITIES[u.country]) if u.country in V.CITIES and rng.random() < 0.4 else ""
    goals = rng.choice(V.GOALS) if rng.random() < 0.35 else ("" if rng.random() < 0.7 else None)
    bio = rng.choice(V.BIOS) if rng.random() < 0.05 else None
    mailing = rng.choice(V.MAILING) if rng.random() < 0.05 else (None if rng.random() < 0.7 else "")
    location = rng.choice(V.LOCATIONS) if rng.random() < 0.05 else ""
    language = "" if rng.random() < 0.8 else rng.choice(["Español", "español", "Português", "es"])
    prof_vals = [u.profile_id, u.id, u.name, language, location, meta, "course.xml", u.gender, mailing, u.yob,
                 u.edu, goals, True, u.country, city, bio, None]
    u.rows["auth_userprofile"] = "\t".join(tsv(v) for v in prof_vals)
    u.rows["user_id_map"] = f"{u.hash_id}\t{tsv(u.id)}\t{tsv(u.username)}"
