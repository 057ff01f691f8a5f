"""Writers for the members of a weekly database package (TSV .sql, JSON, .mongo, CSV)."""

from __future__ import annotations

import base64
import csv
import hashlib
import itertools
import json
from pathlib import Path
from typing import Callable, Iterable

import orjson

from ..schemas import TABLES
from . import _vocab as V
from .vintage import TRACEBACK, UNKNOWN_HEADERS, Layout, layout as vintage_layout, unknown_rows
from .world import DAY, TF, Course, Enrolment, World, hex_id, rng_for, tsv

FLUSH = 20000


class Recorder:
    """Collects row counts and malformed-line records while files are written."""

    def __init__(self) -> None:
        self.counts: list[dict] = []  # {table, course_id, rows, name}
        self.malformed: list[dict] = []  # {name, table, course_id, line, reason}
        self.failed: list[dict] = []  # {table, course_id, name}: .failed markers written instead


def member_name(slug_or_org: str, table: str, site: str) -> str:
    if table == "course_structure":
        return f"{slug_or_org}-course_structure-{site}-analytics.json"
    if table == "forum":
        return f"{slug_or_org}-{site}.mongo"
    if table == "email_opt_in":
        return f"{slug_or_org}-email_opt_in-{site}-analytics.csv"
    return f"{slug_or_org}-{table}-{site}-analytics.sql"


def _write_tsv(path: Path, table: str, lines: Iterable[str], lay: Layout | None = None,
               header: Iterable[str] | None = None) -> int:
    """Header + lines (in the vintage's layout); returns the number of data lines."""
    lay = lay or Layout()
    n = 0
    buf: list[str] = []
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("\t".join(header if header is not None else lay.header(table)) + "\n")
        for line in lines:
            buf.append(line if header is not None else lay.line(table, line))
            if len(buf) >= FLUSH:
                f.write("\n".join(buf) + "\n")
                n += len(buf)
                buf.clear()
        if buf:
            f.write("\n".join(buf) + "\n")
            n += len(buf)
    return n


def write_package_files(world: World, staging: Path, rec: Recorder) -> list[str]:
    """Write every member into ``staging``; returns member base names in write order."""
    cfg = world.cfg
    lay = vintage_layout(cfg.vintage, cfg.site)
    site = lay.site
    names: list[str] = []
    ids = {
        "sm": itertools.count(180_000_000, 1),
        "cert": itertools.count(9_000_000, 1),
        "anon": itertools.count(30_000_000, 1),
        "pcg": itertools.count(60_000_000, 1),
        "psg": itertools.count(70_000_000, 1),
        "team": itertools.count(1_000, 1),
        "tm": itertools.count(20_000, 1),
    }
    mal_course = 0  # malformed studentmodule line goes into the first course's file
    for c in world.courses:
        users = sorted({e.user.id: e.user for e in c.enrolments}.values(), key=lambda u: u.id)
        ens = c.enrolments  # sorted by id (creation order)

        def emit(table: str, lines: Iterable[str], count_table: bool = True) -> None:
            name = member_name(c.slug, table, site)
            if (c.idx, table) in lay.failed:  # edX's exporter failed on this one: a traceback instead
                (staging / f"{name}.failed").write_text(TRACEBACK, encoding="utf-8")
                names.append(f"{name}.failed")
                rec.failed.append({"table": table, "course_id": c.course_id, "name": f"{name}.failed"})
                return
            n = _write_tsv(staging / name, table, lines, lay)
            names.append(name)
            rec.counts.append({"table": table, "course_id": c.course_id, "rows": n, "name": name})

        emit("auth_user", (u.rows["auth_user"] for u in users))
        emit("auth_userprofile", (u.rows["auth_userprofile"] for u in users))
        emit("user_id_map", (u.rows["user_id_map"] for u in users))
        emit("student_courseenrollment", (_enrol_line(e, c) for e in ens))
        emit("certificates_generatedcertificate", _cert_lines(c, ids["cert"]))
        # studentmodule (with the malformed line)
        name = member_name(c.slug, "courseware_studentmodule", site)
        inject = cfg.malformed and c.idx == mal_course
        n, bad = _write_studentmodule(world, c, staging / name, ids["sm"], inject)
        names.append(name)
        rec.counts.append({"table": "courseware_studentmodule", "course_id": c.course_id, "rows": n, "name": name})
        for line, reason in bad:
            rec.malformed.append({"name": name, "table": "courseware_studentmodule", "course_id": c.course_id,
                                  "line": line, "reason": reason})
        emit("student_anonymoususerid",
             (f"{next(ids['anon'])}\t{e.user.id}\t{e.anon_id}\t{c.course_id}" for e in ens))
        emit("user_api_usercoursetag", _tag_lines(world, c))
        emit("student_languageproficiency", (l for u in users for l in u.rows["student_languageproficiency"]))
        emit("grades_persistentcoursegrade", _pcg_lines(world, c, ids["pcg"]))
        emit("grades_persistentsubsectiongrade", _psg_lines(world, c, ids["psg"]))
        teams, members = _teams(world, c, ids["team"], ids["tm"])
        emit("teams", teams)
        emit("teams_membership", members)
        if lay.unknown_table:  # a table the registry does not describe
            t = lay.unknown_table
            name = member_name(c.slug, t, site)
            n = _write_tsv(staging / name, t, unknown_rows(t, ens, c.course_id, TF.sql), header=UNKNOWN_HEADERS[t])
            names.append(name)
            rec.counts.append({"table": t, "course_id": c.course_id, "rows": n, "name": name})
        # structure
        name = member_name(c.slug, "course_structure", site)
        (staging / name).write_text(json.dumps(c.structure(), ensure_ascii=False, indent=2), encoding="utf-8")
        names.append(name)
        rec.counts.append({"table": "course_structure", "course_id": c.course_id, "rows": len(c.blocks), "name": name})
        # forum
        name = member_name(c.slug, "forum", site)
        docs = forum_posts(world, c)
        with open(staging / name, "wb") as f:
            for d in docs:
                f.write(orjson.dumps(d["doc"]) + b"\n")
        names.append(name)
        rec.counts.append({"table": "forum", "course_id": c.course_id, "rows": len(docs), "name": name})
    # organisation-level opt-in
    name = member_name(cfg.org, "email_opt_in", site)
    n = 0
    with open(staging / name, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(TABLES["email_opt_in"].column_names)
        rng = rng_for(cfg, "optin")
        for c in world.courses:
            for e in c.enrolments:
                u = e.user
                set_at = "" if rng.random() < 0.1 else TF.sql(e.created + rng.uniform(0, 5))
                opted = u.optin if set_at else True
                w.writerow([u.id, u.username, u.email, u.name, c.course_id, "True" if opted else "False", set_at])
                n += 1
    names.append(name)
    rec.counts.append({"table": "email_opt_in", "course_id": None, "rows": n, "name": name})
    return names


def _enrol_line(e: Enrolment, c: Course) -> str:
    return f"{e.id}\t{e.user.id}\t{c.course_id}\t{TF.sql(e.created, frac=not c.old)}\t{1 if e.is_active else 0}\t{e.mode}"


def _cert_lines(c: Course, ids) -> Iterable[str]:
    certs = sorted((e for e in c.enrolments if e.cert), key=lambda e: e.cert["created"])
    for e in certs:
        k = e.cert
        url = f"https://courses.edx.org/certificates/{k['verify_uuid']}" if k["status"] == "downloadable" else ""
        name = e.user.name if k["status"] != "unavailable" else ""
        vals = [next(ids), e.user.id, url, f"{k['grade']:.2f}" if k["grade"] else "0.0", c.course_id, k["key"],
                k["distinction"], k["status"], k["verify_uuid"], k["download_uuid"], name,
                TF.sql(k["created"], frac=not c.old), TF.sql(k["modified"], frac=not c.old), k["error_reason"],
                k["mode"]]
        yield "\t".join(tsv(v) for v in vals)


_ORA_STATE = tsv(json.dumps({"has_saved": True, "saved_response": json.dumps(
    {"parts": [{"text": "Mi propuesta:\nmejorar el transporte público en Quito \"con datos\""}]},
    ensure_ascii=False)}, ensure_ascii=False))


def _write_studentmodule(world: World, c: Course, path: Path, ids, inject: bool) -> tuple[int, list]:
    cfg = world.cfg
    rng = rng_for(cfg, "studentmodule", c.idx)
    touch = c.touch
    nt = len(touch)
    cid = c.course_id
    hi = min(world.window_end, world.snapshot) - 60
    frac = not c.old
    sql = TF.sql
    rr = rng.random
    ri = rng.randrange
    planned = sum(e.n_sm for e in c.enrolments)
    bad_at = (planned // 2 + 1) if inject and planned else -1
    bad: list = []
    n = 0
    line_no = 1
    buf: list[str] = []
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("\t".join(TABLES["courseware_studentmodule"].column_names) + "\n")
        for e in c.enrolments:
            k = e.n_sm
            if not k:
                continue
            L = min(nt, int(k * 1.15) + 1)
            idxs = sorted(rng.sample(range(L), k)) if L > k else range(k)
            uid = e.user.id
            t0 = max(e.created, c.start)
            step = max(60.0, (hi - t0) / (k + 1))
            for j, bi in enumerate(idxs):
                b = touch[bi]
                cat = b.category
                grade = maxg = "NULL"
                if cat == "problem":
                    x = b.extra
                    if rr() < 0.12:
                        state = '{"seed": 1, "input_state": {}}' if rr() < 0.5 else '{"seed": 1}'
                    else:
                        v = x["variants"][ri(6)]
                        state = v["state_tsv"]
                        grade = str(v["grade"]) if rr() < 0.9 else f"{v['grade'] * 0.5:g}"
                        maxg = str(x["max_grade"])
                elif cat == "video":
                    p = ri(b.extra["duration"])
                    state = f'{{"saved_video_position": "00:{p // 60:02d}:{p % 60:02d}"}}'
                    if rr() < 0.2:
                        state = state[:-1] + ', "speed": 1.5}'
                elif cat == "sequential":
                    state = f'{{"position": {1 + ri(len(b.children))}}}'
                elif cat == "chapter":
                    state = f'{{"position": {1 + ri(len(b.children))}}}'
                elif cat == "openassessment":
                    state = _ORA_STATE
                else:
                    state = "{}"
                created = t0 + step * (j + rr())
                if created > hi:
                    created = hi - rr() * 60
                modified = created + rr() * step * 2
                if modified > hi:
                    modified = hi
                buf.append(f"{next(ids)}\t{cat}\t{b.key}\t{uid}\t{state}\t{grade}\t{sql(created, frac)}\t"
                           f"{sql(modified, frac)}\t{maxg}\tna\t{cid}")
                n += 1
                if n == bad_at:
                    # a row cut short: too few fields
                    buf.append(f"{next(ids)}\tproblem\t{b.key}\t{uid}\t{{\"seed\": 1, \"inp")
                    bad.append((line_no + len(buf), "too_few_fields"))
                if len(buf) >= FLUSH:
                    f.write("\n".join(buf) + "\n")
                    line_no += len(buf)
                    buf.clear()
        if buf:
            f.write("\n".join(buf) + "\n")
    return n, bad


def _tag_lines(world: World, c: Course) -> Iterable[str]:
    if c.old:
        return
    rng = rng_for(world.cfg, "tags", c.idx)
    for e in c.enrolments:
        if e.kind != "ghost" and rng.random() < 0.3:
            yield f"{e.user.id}\t{c.course_id}\txblock.partition_service.partition_{1000 + c.idx}\t{rng.randint(0, 1)}"
            if rng.random() < 0.3:
                yield f"{e.user.id}\t{c.course_id}\tcohort\tGrupo {rng.choice('ABC')}"


def _pcg_lines(world: World, c: Course, ids) -> Iterable[str]:
    frac = not c.old
    edited = TF.sql(c.start - 10 * DAY, frac)
    for e in c.enrolments:
        if e.kind == "ghost":
            continue
        passed = e.grade >= 0.6
        created = TF.sql(max(e.created, c.start) + 3600, frac)
        mod_t = (e.cert["created"] if e.cert else world.window_start) - 1800
        mod_t = max(mod_t, max(e.created, c.start) + 3601)
        mod = TF.sql(mod_t, frac)
        yield (f"{next(ids)}\t{e.user.id}\t{c.course_id}\t{edited}\t{c.version}\t{c.policy_hash}\t"
               f"{e.grade:.2f}\t{'Pass' if passed else ''}\t{mod if passed else 'NULL'}\t{created}\t{mod}")


def _psg_lines(world: World, c: Course, ids) -> Iterable[str]:
    frac = not c.old
    rng = rng_for(world.cfg, "psg", c.idx)
    edited = TF.sql(c.start - 10 * DAY, frac)
    graded = [(i, b) for i, b in enumerate(c.touch) if b.category == "sequential" and b.graded]
    for e in c.enrolments:
        if e.kind == "ghost":
            continue
        reach = int(e.n_sm * 1.15) + 1
        for i, b in graded:
            if i >= reach:
                break
            possible = float(sum(p.extra["max_grade"] for v in b.children for p in v.children if p.category == "problem")) or 1.0
            earned = round(possible * min(1.0, e.grade * rng.uniform(0.7, 1.3)), 1)
            t = max(e.created, c.start) + rng.uniform(1, 30) * DAY
            t = min(t, world.snapshot - 7200)
            vbh = base64.b64encode(hashlib.sha1(f"{b.key}{c.version}".encode()).digest()).decode()
            yield (f"{next(ids)}\t{e.user.id}\t{c.course_id}\t{b.key}\t{edited}\t{c.version}\t{earned}\t{possible}\t"
                   f"{earned}\t{possible}\t{TF.sql(t, frac)}\t{TF.sql(t + 5, frac)}\t{TF.sql(t + 60, frac)}\t{vbh}")


def _teams(world: World, c: Course, team_ids, member_ids) -> tuple[list[str], list[str]]:
    if c.old:
        return [], []
    rng = rng_for(world.cfg, "teams", c.idx)
    n = max(2, min(40, len(c.enrolments) // 60))
    teams = []
    rows = []
    for i in range(n):
        tid = next(team_ids)
        country = rng.choice(["CO", "MX", "PE", "BR", "", "AR"])
        name = f"Equipo {i + 1} – {rng.choice(['Andes', 'Caribe', 'Pacífico', 'Amazonía', 'Río de la Plata'])}"
        t = c.start + rng.uniform(1, 20) * DAY
        teams.append([tid, f"equipo-{i + 1}-{hex_id(rng, 8)}", name, t, country])
        desc = "Equipo para discutir el proyecto final.\nTodos bienvenidos" if i % 3 == 0 else "Grupo de estudio"
        rows.append([tid, teams[-1][1], name, c.course_id, f"topic_{i % 3}", TF.sql(t, True), desc, country,
                     "pt" if country == "BR" else "es", hex_id(rng), TF.sql(t + 10 * DAY, True), 0])
    sizes = [0] * n
    members = []
    for e in c.enrolments:
        if e.kind == "active" and not e.user.is_staff and rng.random() < 0.1:
            k = rng.randrange(n)
            sizes[k] += 1
            t = max(e.created, teams[k][3]) + rng.uniform(0, 3) * DAY
            t = min(t, world.snapshot - 3600)
            members.append(f"{next(member_ids)}\t{e.user.id}\t{teams[k][0]}\t{TF.sql(t, True)}\t{TF.sql(t + 3600, True)}")
    for r, s in zip(rows, sizes):
        r[-1] = s
    return ["\t".join(tsv(v) for v in r) for r in rows], members


# ---------------------------------------------------------------------------------------------
# Forum
# ---------------------------------------------------------------------------------------------


def _oid(t: float, rng) -> str:
    return f"{int(t):08x}{hex_id(rng, 16)}"


def _mdate(t: float, rng) -> dict:
    ms = int(t * 1000)
    if rng.random() < 0.5:
        return {"$date": ms}
    return {"$date": TF.iso(ms // 1000, "")[:19] + f".{ms % 1000:03d}Z"}


def forum_posts(world: World, c: Course) -> list[dict]:
    """Forum documents of a course (cached): [{doc, t, kind, enrolment, thread, parent, ...}] sorted by time."""
    cached = getattr(c, "_forum", None)
    if cached is not None:
        return cached
    cfg = world.cfg
    rng = rng_for(cfg, "forum", c.idx)
    authors = [e for e in c.enrolments if e.kind == "active"]
    posts: list[dict] = []
    if not authors:
        c._forum = posts
        return posts
    w0 = world.window_start
    hi = min(world.window_end, world.snapshot) - 60
    topics = [d.extra["discussion_id"] for d in c.discussions] + ["course"]
    n_threads = max(3, int(0.12 * len(authors)))
    for _ in range(n_threads):
        e = rng.choice(authors)
        lo = max(e.created, c.start) + 600
        if rng.random() < 0.2 and hi > max(lo, w0):
            t = rng.uniform(max(lo, w0), hi)
        else:
            t = rng.uniform(lo, max(lo + 1, min(w0, hi)))
        tid = _oid(t, rng)
        topic = rng.choice(topics)
        title = rng.choice(V.FORUM_TITLES)
        thread = {"kind": "thread", "t": t, "enrolment": e, "id": tid, "commentable_id": topic,
                  "title": title, "body": rng.choice(V.FORUM_BODIES), "thread_type": rng.choice(["discussion", "discussion", "question"])}
        posts.append(thread)
        responses = []
        for _r in range(int(rng.expovariate(1 / 1.5))):
            ra = rng.choice(authors)
            rt = max(t, ra.created) + rng.expovariate(1 / (1.5 * DAY))
            if rt >= hi:
                continue
            resp = {"kind": "response", "t": rt, "enrolment": ra, "id": _oid(rt, rng), "thread": thread,
                    "commentable_id": topic, "body": rng.choice(V.FORUM_BODIES), "parent": None}
            responses.append(resp)
            posts.append(resp)
            if rng.random() < 0.3:
                ca = rng.choice(authors)
                ct = max(rt, ca.created) + rng.expovariate(1 / (0.5 * DAY))
                if ct < hi:
                    posts.append({"kind": "comment", "t": ct, "enrolment": ca, "id": _oid(ct, rng), "thread": thread,
                                  "commentable_id": topic, "body": rng.choice(V.FORUM_BODIES), "parent": resp})
        mine = [p for p in posts[-(len(responses) * 2 + 1):] if p.get("thread") is thread]
        thread["comment_count"] = len(mine)
        thread["last"] = max([p["t"] for p in mine] + [t])
    posts.sort(key=lambda p: p["t"])
    for p in posts:
        e = p["enrolment"]
        u = e.user
        upc = int(rng.expovariate(0.7))
        votes = {"up": [], "down": [], "up_count": upc, "down_count": 0, "count": upc, "point": upc}
        created = _mdate(p["t"], rng)
        author_id = str(u.id) if rng.random() < 0.9 else u.id
        if p["kind"] == "thread":
            last = p["last"]
            doc = {"_id": {"$oid": p["id"]}, "votes": votes, "visible": True, "abuse_flaggers": [],
                   "historical_abuse_flaggers": [], "thread_type": p["thread_type"], "context": "course",
                   "comment_count": p["comment_count"], "at_position_list": [], "title": p["title"], "body": p["body"],
                   "course_id": c.course_id, "commentable_id": p["commentable_id"], "_type": "CommentThread",
                   "endorsed": False, "anonymous": False, "anonymous_to_peers": False, "closed": False,
                   "author_id": author_id, "author_username": u.username, "updated_at": created,
                   "created_at": created, "last_activity_at": _mdate(last, rng), "pinned": rng.random() < 0.03}
        else:
            doc = {"_id": {"$oid": p["id"]}, "votes": votes, "visible": True, "abuse_flaggers": [],
                   "historical_abuse_flaggers": [],
                   "parent_ids": [{"$oid": p["parent"]["id"]}] if p["parent"] else [], "at_position_list": [],
                   "body": p["body"], "course_id": c.course_id, "_type": "Comment",
                   "endorsed": rng.random() < 0.05, "anonymous": False, "anonymous_to_peers": False,
                   "author_id": author_id, "comment_thread_id": {"$oid": p["thread"]["id"]},
                   "author_username": u.username,
                   "sk": f"{p['parent']['id']}-{p['id']}" if p["parent"] else p["id"],
                   "updated_at": created, "created_at": created}
            if p["parent"]:
                doc["parent_id"] = {"$oid": p["parent"]["id"]}
        p["doc"] = doc
    c._forum = posts
    return posts
