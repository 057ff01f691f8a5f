"""Incremental builds equal full builds under seeded random sequences of deliveries (issue 15).

test_incremental.py checks one hand-written sequence. Here each seed draws its own: new days, days
arriving late, days re-delivered with lines missing or withdrawn (empty), partial copies of a day under
another name (duplicates), days holding one course's events only, events of the neighbouring dates or of
the month before, a day whose events of one learner carry only a username, newer packages (more learners,
an unenrolment, a course team role given or taken back, two usernames swapped), a build of one model
alone before the build of all, builds with no change (nothing rebuilt), a change of the build parameters
or of the registry's pass mark, and a forced build in the middle. After every build, every model equals
a forced build of a copy of the same store with the same parameters, row for row (as
``test_incremental._assert_equals_full``), and the partitions listed are the files read.

A failure names the steps so far. ``EDX_RANDOM_SEEDS=100-140 EDX_RANDOM_STEPS=14`` runs other seeds.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import random
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest

from edx_engine.lake import Lake
from edx_engine.models import Params, build_duckdb
from edx_engine.models import definitions as D
from edx_engine.models.registry import CourseEntry
from incremental_support import import_into
from test_incremental import BUILT_AT, DAYS, START, _recorded_files_only, _tables, deliveries  # noqa: F401

POOL = 9  # event dates START .. START+POOL-1 a "new day" can bring (the synthetic logs hold DAYS of them)
SEEDS = [1, 2, 3]  # together they draw every operation (test_default_seeds_draw_every_operation)
STEPS = 10
if os.environ.get("EDX_RANDOM_SEEDS"):  # a search for more: EDX_RANDOM_SEEDS=1-40 EDX_RANDOM_STEPS=14
    a, _, b = os.environ["EDX_RANDOM_SEEDS"].partition("-")
    SEEDS = list(range(int(a), int(b or a) + 1))
    STEPS = int(os.environ.get("EDX_RANDOM_STEPS", STEPS))
OPS = ["new", "late", "fewer", "withdraw", "dups", "package", "one_course", "neighbours", "by_name",
       "early", "subset", "nochange"]


def _lines(data: bytes) -> list[bytes]:
    return gzip.decompress(data).splitlines(keepends=True) if data else []


def _shift(lines: list[bytes], day: str, new: str) -> list[bytes]:
    return [ln.replace(day.encode(), new.encode()) for ln in lines]


def _iso(d: dt.date) -> str:
    return d.isoformat()


@dataclass
class Run:
    """One seeded sequence on one store: what was delivered where, the parameters of the builds."""
    lake: Lake
    work: Path
    rng: random.Random
    first: dict[str, Path]
    second: dict[str, Path]
    params: Params = field(default_factory=lambda: Params(built_at=BUILT_AT))
    entries: list[CourseEntry] = field(default_factory=list)  # the course registry
    delivered: dict[str, Path] = field(default_factory=dict)  # pool date -> the file as the store has it
    extra: int = 0  # files delivered under other names
    package_day: dt.date = START + dt.timedelta(days=DAYS + 14)
    second_done: bool = False
    staff: list[tuple[str, int]] = field(default_factory=list)  # (course, user) given a role here
    log: list[str] = field(default_factory=list)

    # --- the material -----------------------------------------------------------------------------------
    def pool(self) -> list[str]:
        return [_iso(START + dt.timedelta(days=i)) for i in range(POOL)]

    def content(self, day: str) -> list[bytes]:
        """The lines of pool date ``day`` as first delivered: the synthetic log of that date (with its few
        events of the dates around), or past the synthetic days one of those days moved to ``day``."""
        if day in self.first:
            return _lines(self.first[day].read_bytes())
        i = (dt.date.fromisoformat(day) - START).days
        src = _iso(START + dt.timedelta(days=i % DAYS))
        return _shift([ln for ln in _lines(self.first[src].read_bytes()) if src.encode() in ln], src, day)

    def name(self, day: str) -> str:
        return self.first[_iso(START)].name.replace(_iso(START), day)

    def write(self, path: Path, lines: list[bytes]) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(b"".join(lines)))
        return path

    def courses(self) -> list[str]:
        with duckdb.connect(str(self.lake.catalog_path), read_only=True) as con:
            return [r[0] for r in con.execute("SELECT DISTINCT course_id FROM student_courseenrollment "
                                              "ORDER BY 1").fetchall()]

    # --- the steps ----------------------------------------------------------------------------------------
    def deliver(self, day: str, lines: list[bytes]) -> None:
        path = self.write(self.work / "logs" / day / self.name(day), lines)
        self.delivered[day] = path
        import_into(self.lake, path)

    def op_new(self) -> str:
        todo = [d for d in self.pool() if d not in self.delivered]
        if not todo:
            return self.op_fewer()
        self.deliver(todo[0], self.content(todo[0]))
        return f"new {todo[0]}"

    def op_late(self) -> str:
        todo = [d for d in self.pool() if d not in self.delivered]
        if len(todo) < 2:
            return self.op_new()
        day = self.rng.choice(todo[1:])
        self.deliver(day, self.content(day))
        return f"late {day}"

    def _some_delivered(self) -> str | None:
        full = sorted(d for d, p in self.delivered.items() if _lines(p.read_bytes()))
        return self.rng.choice(full) if full else None

    def op_fewer(self) -> str:
        day = self._some_delivered()
        if day is None:
            return self.op_new()
        lines = _lines(self.delivered[day].read_bytes())
        share = self.rng.choice([0.2, 0.5, 0.8])
        keep = [ln for ln in lines if self.rng.random() > share] or lines[:1]
        if len(keep) == len(lines):
            keep = lines[1:]
        self.write(self.delivered[day], keep)
        import_into(self.lake, self.delivered[day])
        return f"fewer {day} ({len(lines)} -> {len(keep)} lines)"

    def op_withdraw(self) -> str:
        day = self._some_delivered()
        if day is None:
            return self.op_new()
        self.write(self.delivered[day], [])
        import_into(self.lake, self.delivered[day])
        return f"withdraw {day}"

    def op_dups(self) -> str:
        """A copy of part of a delivered day (or of a day not delivered yet) under another file's name."""
        day = self.rng.choice(sorted(d for d in self.delivered if d in self.pool()) or self.pool())
        lines = _lines(self.delivered[day].read_bytes()) if day in self.delivered else self.content(day)
        lines = lines or self.content(day)
        part = [ln for i, ln in enumerate(lines) if i % 2 == self.rng.randrange(2)] or lines
        self.extra += 1
        import_into(self.lake, self.write(self.work / f"elsewhere{self.extra}" / self.name(day), part))
        return f"dups of {day} ({len(part)} lines)"

    def op_one_course(self) -> str:
        """A date (new, or one delivered again) holding the events of one course only."""
        courses = self.courses()
        course = self.rng.choice(courses)
        others = [c for c in courses if c != course]
        todo = [d for d in self.pool() if d not in self.delivered]
        day = self.rng.choice(todo or self.pool())
        lines = [ln for ln in self.content(day) if course.encode() in ln and not any(o.encode() in ln for o in others)]
        self.deliver(day, lines)
        return f"one course {course} on {day} ({len(lines)} lines)"

    def op_neighbours(self) -> str:
        """A file of date ``d`` whose events are of d-1, d and d+1 (lines of another day moved there)."""
        i = self.rng.randrange(1, POOL)
        day = START + dt.timedelta(days=i)
        src = _iso(START + dt.timedelta(days=self.rng.randrange(DAYS)))
        lines = [ln for ln in _lines(self.first[src].read_bytes()) if src.encode() in ln]
        out = []
        for ln in lines:
            to = _iso(day + dt.timedelta(days=self.rng.choice([-1, 0, 1])))
            out.append(ln.replace(src.encode(), to.encode()))
        self.extra += 1
        import_into(self.lake, self.write(self.work / f"neighbours{self.extra}" / self.name(_iso(day)), out))
        return f"neighbours of {_iso(day)} from {src} ({len(out)} lines)"

    def op_early(self) -> str:
        """A file of a date of the month before (a late delivery of old events): a new first month."""
        day = START - dt.timedelta(days=self.rng.randrange(2, 40))
        src = _iso(START + dt.timedelta(days=self.rng.randrange(DAYS)))
        lines = _shift([ln for ln in _lines(self.first[src].read_bytes()) if src.encode() in ln], src, _iso(day))
        self.extra += 1
        path = self.write(self.work / f"early{self.extra}" / self.name(_iso(day)), lines)
        self.delivered[f"early{self.extra}"] = path  # may be re-delivered or withdrawn later
        import_into(self.lake, path)
        return f"early {_iso(day)} from {src}"

    def op_by_name(self) -> str:
        """A day (delivered again, or new) whose events of one learner carry their username but no user id:
        attributed through auth_user (the only dates whose day models read it)."""
        day = self.rng.choice(sorted(d for d in self.delivered if d in self.pool()) or self.pool())
        lines = _lines(self.delivered[day].read_bytes()) if day in self.delivered else self.content(day)
        lines = lines or self.content(day)
        names = sorted({m.group(1) for ln in lines if (m := re.match(rb'\{"username":"([^"]+)"', ln))})
        name = self.rng.choice(names)
        lines = [re.sub(rb'"user_id":\d+', b'"user_id":null', ln) if ln.startswith(b'{"username":"' + name + b'"')
                 else ln for ln in lines]
        self.deliver(day, lines)
        return f"by name {name.decode()} on {day}"

    def _package(self, files: dict[str, str]) -> Path:
        self.package_day += dt.timedelta(days=7)
        pkg = self.work / "packages" / f"IDBx-{self.package_day}"
        pkg.mkdir(parents=True)
        for name, text in files.items():
            (pkg / name).write_text(text)
        import_into(self.lake, pkg)
        return pkg

    def op_package(self) -> str:
        kinds = ["unenrol", "role", "rename"] + ([] if self.second_done else ["second", "second"])
        kind = self.rng.choice(kinds)
        if kind == "second":
            self.second_done = True
            import_into(self.lake, self.second["package"])
            return "package: more learners and enrolments"
        if kind == "rename":
            return self.rename()
        with duckdb.connect(str(self.lake.catalog_path), read_only=True) as con:
            active = con.execute("SELECT course_id, user_id FROM events WHERE user_id IS NOT NULL AND course_id IS NOT "
                                 "NULL GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
            course, uid = self.rng.choice(active) if active else (self.courses()[0], 1)
            if kind == "unenrol":
                enr = con.execute("SELECT id, user_id, course_id, created, is_active, mode FROM "
                                  "student_courseenrollment WHERE course_id = ? ORDER BY id", [course]).fetchall()
            else:
                roles = con.execute("SELECT org, course_id, user_id, role FROM student_courseaccessrole "
                                    "WHERE course_id = ? ORDER BY user_id, role", [course]).fetchall()
        slug = course.split(":", 1)[-1].replace("+", "-").replace("/", "-")
        if kind == "unenrol":
            if not any(u == uid for _, u, *_ in enr):
                uid = self.rng.choice(enr)[1]
            enr = [(i, u, c, t, False if u == uid else a, m) for i, u, c, t, a, m in enr]
            self._package({f"{slug}-student_courseenrollment-prod-analytics.sql":
                           "id\tuser_id\tcourse_id\tcreated\tis_active\tmode\n" + "".join(
                               f"{i}\t{u}\t{c}\t{t:%Y-%m-%d %H:%M:%S}\t{int(a)}\t{m}\n" for i, u, c, t, a, m in enr)})
            return f"package: {uid} unenrols from {course}"
        mine = [(c, u) for c, u in self.staff if c == course]
        if mine and self.rng.random() < 0.5:  # a role taken back
            uid = mine[0][1]
            self.staff.remove((course, uid))
            roles = [r for r in roles if r[2] != uid]
            what = f"package: {uid} is no longer staff of {course}"
        else:
            self.staff.append((course, uid))
            roles = roles + [("IDBx", course, uid, "staff")]
            what = f"package: {uid} becomes staff of {course}"
        self._package({f"{slug}-student_courseaccessrole-prod-analytics.sql":
                       "org\tcourse_id\tuser_id\trole\n" + "".join(f"{o or ''}\t{c}\t{u}\t{r}\n" for o, c, u, r in roles)})
        return what

    def rename(self) -> str:
        """A package whose auth_user of one course swaps the usernames of two of its users (taken from the
        newest synthetic package imported): the events attributed through those names change hands."""
        src = (self.second if self.second_done else self.first)["package"]
        with zipfile.ZipFile(src) as z:
            members = sorted(n for n in z.namelist() if n.endswith("-auth_user-prod-analytics.sql"))
            member = self.rng.choice(members)
            rows = [ln.split("\t") for ln in z.read(member).decode().splitlines() if ln]
        head = rows[0]
        u = head.index("username")
        a, b = self.rng.sample(range(1, len(rows)), 2)
        rows[a][u], rows[b][u] = rows[b][u], rows[a][u]
        self._package({member.rsplit("/", 1)[1]: "".join("\t".join(r) + "\n" for r in rows)})
        return f"package: {rows[a][u]} and {rows[b][u]} swap usernames in {member.rsplit('/', 1)[1]}"

    def op_params(self) -> str:
        p = self.params
        choice = self.rng.choice(["grade", "staff", "rule", "registry"])
        if choice == "registry":  # one course's pass mark in the registry
            course = self.rng.choice(self.courses())
            self.entries = [CourseEntry(course, passing_grade=self.rng.choice([0.1, 0.4, 0.9]))]
            return f"registry {self.entries}"
        if choice == "grade":
            p = Params(passing_grade=self.rng.choice([g for g in (0.3, 0.5, 0.8) if g != p.passing_grade]),
                       include_staff=p.include_staff, passing_rule=p.passing_rule, built_at=BUILT_AT)
        elif choice == "staff":
            p = Params(passing_grade=p.passing_grade, include_staff=not p.include_staff,
                       passing_rule=p.passing_rule, built_at=BUILT_AT)
        else:
            p = Params(passing_grade=p.passing_grade, include_staff=p.include_staff,
                       passing_rule=">" if p.passing_rule == ">=" else ">=", built_at=BUILT_AT)
        self.params = p
        return f"params {p.fingerprint()}"

    # --- building and comparing ---------------------------------------------------------------------------
    def build(self, force: bool = False) -> dict[str, object]:
        res = build_duckdb(self.lake, self.entries, self.params, force=force, threads=1)
        return {m.name: m for m in res.models}

    def check(self, scratch: Path) -> dict[str, list[tuple]]:
        """Every model of the store equals a forced build of a copy of it with the same parameters."""
        incr = _tables(self.lake)
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(self.lake.root, scratch)
        copy = Lake(scratch)
        build_duckdb(copy, self.entries, self.params, force=True, threads=1)
        full = _tables(copy)
        bad = [n for n in D.MODELS if incr[n] != full[n]]
        if bad:
            n = bad[0]
            only_incr = [r for r in incr[n] if r not in full[n]][:5]
            only_full = [r for r in full[n] if r not in incr[n]][:5]
            pytest.fail(f"models {bad} differ from a full build after steps {self.log}; {n}: only in the "
                        f"incremental build {only_incr}, only in the full build {only_full}")
        _recorded_files_only(self.lake)
        return incr


def _plan(rng: random.Random) -> list[str]:
    """STEPS operations, one of them a parameter change and one a forced build (both in the middle); no
    operation twice until each has come (the default seeds together draw every one)."""
    ops: list[str] = []
    while len(ops) < STEPS - 2:
        ops += rng.sample(OPS, len(OPS))
    ops = ops[:STEPS - 2]
    ops.insert(rng.randrange(2, len(ops) - 2), "params")
    ops.insert(rng.randrange(3, len(ops) - 1), "full")
    return ops


def replay(run: Run, ops: list[str], scratch: Path) -> None:
    first = run.first
    days = run.pool()[:2]
    for d in days:
        run.delivered[d] = run.write(run.work / "logs" / d / run.name(d), run.content(d))
    import_into(run.lake, first["package"], *(run.delivered[d] for d in days))
    run.log.append(f"package and {days}")
    run.build()
    last = run.check(scratch)
    for op in ops:
        if op == "nochange":  # the package and a log imported again as they are: nothing changes
            day = run.rng.choice(sorted(run.delivered))
            import_into(run.lake, run.first["package"], run.delivered[day])
            built = run.build()
            run.log.append(f"build with no change (package and {day} imported again)")
            assert all(m.status == "unchanged" for m in built.values()), (
                f"rebuilt with no change after {run.log}: {[n for n, m in built.items() if m.status != 'unchanged']}")
            assert _tables(run.lake) == last
            continue
        if op == "full":
            run.log.append("build --full")
            run.build(force=True)
        elif op == "subset":  # a change, a build of one model (and what it reads), then of them all
            step = run.rng.choice([o for o in OPS if o not in ("subset", "nochange")])
            model = run.rng.choice(sorted(D.MODELS))
            run.log.append(f"{getattr(run, f'op_{step}')()}, build {model} alone")
            build_duckdb(run.lake, run.entries, run.params, [model], threads=1)
            run.build()
        else:
            run.log.append(getattr(run, f"op_{op}")())
            run.build()
        last = run.check(scratch)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_sequences_equal_full(deliveries, tmp_path, seed):  # noqa: F811
    _root, first, second = deliveries
    rng = random.Random(seed)
    run = Run(Lake(tmp_path / "store"), tmp_path / "work", rng, first, second)
    replay(run, _plan(rng), tmp_path / "full")


def test_default_seeds_draw_every_operation():
    drawn = set().union(*(_plan(random.Random(s)) for s in SEEDS))
    assert drawn == {*OPS, "params", "full"} or os.environ.get("EDX_RANDOM_SEEDS")
