"""Daily tracking-log files: gzip JSON lines, one file per processing day.

Events are planned as sessions (per learner, per course, per day) plus single events
(enrolments, certificates, forum posts, anonymous page views). Sessions are generated in
start-time order and their events pass through a heap so each file is written in time order
while only about one hour of events is held in memory.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import random
from collections import deque
from pathlib import Path
from urllib.parse import quote, urlencode

import orjson

try:  # fast gzip
    from isal import isal_zlib as _zlib
except Exception:  # pragma: no cover
    import zlib as _zlib

from . import _vocab as V
from .tables import forum_posts
from .world import DAY, TF, Block, Course, Enrolment, World, hex_id, rng_for, uuid_hex

HOST = "courses.edx.org"
BASE = "https://" + HOST
PAGEVIEW_EVENT = '{"POST": {}, "GET": {}}'
HOUR_W = [6, 5, 4, 2.5, 1.5, 1, 0.8, 0.7, 0.8, 1, 1.5, 2.5, 3.5, 4.5, 5, 5, 5, 4.5, 4.5, 4.5, 4.5, 5, 5.5, 6]
HOUR_CUM = list(itertools.accumulate(HOUR_W))
MALFORMED_KINDS = ("truncated_json", "not_json", "invalid_utf8", "missing_time")
dumps = orjson.dumps


class DayWriter:
    def __init__(self, path: Path) -> None:
        self.f = open(path, "wb")
        self.z = _zlib.compressobj(1, _zlib.DEFLATED, 31)
        self.buf: list[bytes] = []
        self.lines = 0

    def write(self, line: bytes) -> int:
        self.buf.append(line)
        self.lines += 1
        if len(self.buf) >= 2000:
            self.flush()
        return self.lines

    def flush(self) -> None:
        if self.buf:
            self.f.write(self.z.compress(b"\n".join(self.buf) + b"\n"))
            self.buf.clear()

    def close(self) -> None:
        self.flush()
        self.f.write(self.z.flush())
        self.f.close()


class Ctx:
    """Per-course precomputed strings."""

    def __init__(self, c: Course, org: str) -> None:
        self.c = c
        self.cid = c.course_id
        self.org = org
        self.url = f"/courses/{c.course_id}/"
        self.seq_urls = {}
        for s in c.seqs:
            self.seq_urls[s.key] = f"{self.url}courseware/{s.chapter.hex}/{s.hex}/"
        self.video_ids = {}
        for v in c.videos:
            self.video_ids[v.key] = (f"i4x-{org}-{c.code}-video-{v.hex}" if c.old else v.hex)
        self.modules = {b.key: {"display_name": b.display_name, "usage_key": b.key} for b in c.blocks}


def _problem_path(ctx: Ctx, b: Block, action: str) -> str:
    if ctx.c.old:
        return f"{ctx.url}modx/{b.key}/{action}"
    return f"{ctx.url}xblock/{b.key}/handler/xmodule_handler/{action}"


def _qs(b: Block, answers: dict) -> str:
    pairs = []
    for k, v in answers.items():
        if isinstance(v, list):
            pairs.extend((f"input_{k}[]", x) for x in v)
        else:
            pairs.append((f"input_{k}", v))
    return urlencode(pairs)


class Gen:
    def __init__(self, world: World) -> None:
        self.world = world
        self.cfg = world.cfg
        self.ctx = {c.idx: Ctx(c, self.cfg.org) for c in world.courses}
        self.known_ips: list[str] = []

    # -- one event ----------------------------------------------------------------------------
    def ev(self, S: dict, t: float, source: str, etype: str, event, name: str | None = None, page=None,
           module: Block | None = None, path: str = "/event", referer: str = "") -> tuple[float, bytes]:
        ctx: Ctx = S["ctx"]
        rng: random.Random = S["rng"]
        c = ctx.c
        context = {"course_id": ctx.cid, "org_id": ctx.org, "user_id": S["uid"], "path": path,
                   "course_user_tags": {}}
        if module is not None:
            context["module"] = ctx.modules[module.key]
        if S["mobile"]:
            tstr = TF.iso(t, "Z")
            context["application"] = {"name": "edx.mobileapp.android", "version": "4.0.0"}
            context["client"] = {"library": {"name": "analytics-android", "version": "4.10.4"}}
            context["received_at"] = TF.iso(t + 2.5, "Z")
            context["component"] = "videoplayer"
        else:
            tstr = TF.iso(t)
            if c.old:
                r = rng.random()
                if r < 0.02:
                    tstr = tstr[:-6]  # naive
                elif r < 0.3 and (source == "browser" or etype.startswith("/courses/")):
                    del context["course_id"]  # old events: derive from page / URL event_type
        d = {"username": S["username"], "event_source": source, "event_type": etype}
        if not c.old or rng.random() < 0.5:
            d["name"] = name or etype
        d["time"] = tstr
        d["event"] = event
        d["context"] = context
        d["page"] = page
        d["ip"] = S["ip"]
        d["agent"] = S["agent"]
        d["host"] = HOST
        d["session"] = S["session"]
        d["referer"] = referer
        d["accept_language"] = S["lang"]
        return t, dumps(d)

    def session_state(self, e: Enrolment | None, ctx: Ctx, rng: random.Random, mobile: bool = False) -> dict:
        if e is None:
            country = rng.choice(["CO", "MX", "PE", "AR", "BR", ""])
            pref = V.IP_PREFIXES[country]
            return {"ctx": ctx, "rng": rng, "uid": "", "username": "", "mobile": False,
                    "ip": f"{rng.choice(pref)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                    "agent": rng.choice(V.AGENTS), "session": "", "lang": "es-419,es;q=0.9"}
        u = e.user
        ip = u.ips[0] if len(u.ips) == 1 or rng.random() < 0.7 else u.ips[1]
        if len(self.known_ips) < 5 and ip not in self.known_ips:
            self.known_ips.append(ip)
        return {"ctx": ctx, "rng": rng, "uid": u.id, "username": u.username, "mobile": mobile, "ip": ip,
                "agent": u.mobile_agent if mobile else u.agent, "session": "" if mobile else hex_id(rng),
                "lang": u.lang, "e": e}

    # -- sessions -----------------------------------------------------------------------------
    def session(self, e: Enrolment, t: float, n: int, rng: random.Random) -> list:
        ctx = self.ctx[e.course.idx]
        c = ctx.c
        mobile = e.user.mobile_agent is not None and c.videos and rng.random() < 0.4
        S = self.session_state(e, ctx, rng, mobile)
        out: list = []
        if mobile:
            vids = c.videos
            reach = max(1, int(len(vids) * min(1.0, e.n_sm * 1.15 / len(c.touch))) + 1)
            while len(out) < n:
                v = vids[rng.randrange(min(reach, len(vids)))]
                t = self.video(S, v, t, out, n, page=None, mobile=True)
            return out
        seqs = c.seqs
        reach = max(1, int(len(seqs) * min(1.0, e.n_sm * 1.15 / len(c.touch))) + 1)
        si = rng.randrange(min(reach, len(seqs)))
        ev = self.ev
        referer = BASE + "/dashboard"
        while len(out) < n:
            seq = seqs[si]
            surl = ctx.seq_urls[seq.key]
            out.append(ev(S, t, "server", surl, PAGEVIEW_EVENT, page=None, path=surl, referer=referer))
            t += rng.expovariate(1 / 4.0) + 0.3
            page = BASE + surl
            nvert = len(seq.children)
            for vi, vert in enumerate(seq.children):
                if len(out) >= n:
                    break
                vpage = f"{page}{vi + 1}?activate_block_id={quote(vert.key, safe='')}"
                if vi:
                    nav = "seq_next" if rng.random() < 0.8 else "seq_goto"
                    nm = "edx.ui.lms.sequence.next_selected" if nav == "seq_next" else "edx.ui.lms.sequence.tab_selected"
                    out.append(ev(S, t, "browser", nav, dumps({"old": vi, "new": vi + 1, "current_tab": vi,
                                                               "tab_count": nvert, "id": seq.key,
                                                               "widget_placement": "top"}).decode(),
                                  name=nm, page=vpage, referer=page))
                    t += rng.expovariate(1 / 8.0) + 0.5
                for b in vert.children:
                    if len(out) >= n:
                        break
                    if b.category == "video":
                        t = self.video(S, b, t, out, n, page=vpage)
                    elif b.category == "problem":
                        t = self.problem(S, b, t, out, vpage)
                    elif b.category == "discussion" and rng.random() < 0.3:
                        out.append(ev(S, t, "browser", "edx.forum.thread.viewed" if False else "edx.ui.lms.link_clicked",
                                      {"current_url": vpage, "target_url": f"{BASE}{ctx.url}discussion/forum/"},
                                      page=vpage, referer=page))
                        t += rng.expovariate(1 / 20.0)
                    else:
                        t += rng.expovariate(1 / 60.0)
            if rng.random() < 0.15 and len(out) < n:
                # a visit to the progress page, or back to the previous sequential
                p = f"{ctx.url}progress"
                out.append(ev(S, t, "server", p, PAGEVIEW_EVENT, path=p, referer=page))
                t += rng.expovariate(1 / 20.0)
            referer = page
            if si + 1 < len(seqs) and rng.random() < 0.8:
                si += 1
            elif si and rng.random() < 0.5:
                si -= 1
                out.append(ev(S, t, "browser", "seq_prev", dumps({"old": 1, "new": 1, "current_tab": 1, "tab_count": nvert,
                                                                  "id": seq.key, "widget_placement": "bottom"}).decode(),
                              name="edx.ui.lms.sequence.previous_selected", page=page, referer=referer))
        out = out[: max(1, n - 1)]
        out.append(ev(S, t + rng.expovariate(1 / 30.0), "browser", "page_close", "", page=page, referer=referer))
        return out

    def video(self, S: dict, b: Block, t: float, out: list, n: int, page, mobile: bool = False) -> float:
        rng = S["rng"]
        ctx: Ctx = S["ctx"]
        vid = ctx.video_ids[b.key]
        dur = b.extra["duration"]
        code = "mobile" if mobile else b.extra["youtube"]
        pos = 0.0 if rng.random() < 0.7 else round(rng.uniform(0, dur * 0.8), 3)
        ev = self.ev
        ref = page or ""

        def emit(etype: str, name: str, payload: dict) -> None:
            if mobile:
                out.append(ev(S, t, "mobile", name, payload, name=name, module=b))
            else:
                out.append(ev(S, t, "browser", etype, dumps(payload).decode(), name=name, page=page, module=b,
                              referer=ref))

        emit("load_video", "edx.video.loaded", {"id": vid, "code": code})
        t += rng.uniform(0.5, 6)
        emit("play_video", "edx.video.played", {"id": vid, "currentTime": pos, "code": code})
        while len(out) < n:
            watch = rng.expovariate(1 / 90.0)
            t += watch
            pos = min(dur, pos + watch)
            if pos >= dur - 1:
                emit("stop_video", "edx.video.stopped", {"id": vid, "currentTime": dur, "code": code})
                if rng.random() < 0.8:
                    emit("complete_video", "edx.video.completed", {"id": vid, "currentTime": dur, "code": code})
                break
            r = rng.random()
            if r < 0.45:
                emit("pause_video", "edx.video.paused", {"id": vid, "currentTime": round(pos, 3), "code": code})
                t += rng.expovariate(1 / 20.0)
                if rng.random() < 0.5:
                    break
                emit("play_video", "edx.video.played", {"id": vid, "currentTime": round(pos, 3), "code": code})
            elif r < 0.75:
                new = round(rng.uniform(0, dur), 3)
                emit("seek_video", "edx.video.position.changed",
                     {"id": vid, "old_time": round(pos, 3), "new_time": new, "type": "onSlideSeek", "code": code})
                pos = new
            elif r < 0.85:
                emit("speed_change_video", "speed_change_video",
                     {"id": vid, "current_time": round(pos, 3), "old_speed": "1.0",
                      "new_speed": rng.choice(["1.25", "1.50", "2.0", "0.75"]), "code": code})
            elif r < 0.9 and not mobile:
                emit("show_transcript", "edx.video.transcript.shown", {"id": vid, "currentTime": round(pos, 3), "code": code})
            else:
                break
        return t + rng.uniform(1, 10)

    def problem(self, S: dict, b: Block, t: float, out: list, page: str) -> float:
        rng = S["rng"]
        ctx: Ctx = S["ctx"]
        ev = self.ev
        x = b.extra
        v = x["variants"][rng.randrange(6)]
        answers = v["answers"]
        if rng.random() < 0.1:
            out.append(ev(S, t, "browser", "problem_show", dumps({"problem": b.key}).decode(),
                          name="edx.problem.show" if False else "problem_show", page=page, module=b, referer=page))
            t += rng.uniform(2, 30)
        t += rng.expovariate(1 / 45.0) + 3
        qs = _qs(b, answers)
        out.append(ev(S, t, "browser", "problem_check", qs, page=page, module=b, referer=page))
        t += rng.uniform(0.1, 0.9)
        grade = v["grade"]
        mg = x["max_grade"]
        sub = {}
        for inp, k in zip(x["inputs"], x["kinds"]):
            a = answers[inp]
            sub[inp] = {"question": b.display_name, "answer": a if not isinstance(a, list) else ", ".join(a),
                        "response_type": {"choice": "multiplechoiceresponse", "checkbox": "choiceresponse",
                                          "text": "stringresponse", "numerical": "numericalresponse"}[k],
                        "input_type": {"choice": "choicegroup", "checkbox": "checkboxgroup",
                                       "text": "textline", "numerical": "formulaequationinput"}[k],
                        "correct": v["correct"][inp], "variant": "", "group_label": ""}
        payload = {"problem_id": b.key, "attempts": v["attempts"], "grade": grade, "max_grade": mg,
                   "success": "correct" if grade == mg else "incorrect", "answers": answers,
                   "correct_map": v["cmap"], "state": {"seed": 1, "done": v["attempts"] > 1, "correct_map": {},
                                                       "student_answers": {}, "input_state": {i: {} for i in x["inputs"]}},
                   "submission": sub}
        out.append(ev(S, t, "server", "problem_check", payload, module=b,
                      path=_problem_path(ctx, b, "problem_check"), referer=page))
        t += rng.uniform(0.05, 0.5)
        html = (f'<div class="problem"><div><p>{b.display_name}</p><span class="status '
                f'{"correct" if grade == mg else "incorrect"}" id="status_{x["inputs"][0]}"></span></div></div>')
        out.append(ev(S, t, "browser", "problem_graded", [qs, html], page=page, module=b, referer=page))
        if not ctx.c.old:
            tx = uuid_hex(rng)
            out.append(ev(S, t + 0.01, "server", "edx.grades.problem.submitted",
                          {"user_id": str(S["uid"]), "course_id": ctx.cid, "problem_id": b.key,
                           "event_transaction_id": tx, "event_transaction_type": "edx.grades.problem.submitted",
                           "weighted_earned": grade, "weighted_possible": mg},
                          module=b, path=_problem_path(ctx, b, "problem_check"), referer=page))
            if rng.random() < 0.5:
                e = S["e"]
                out.append(ev(S, t + 0.2, "server", "edx.grades.course.grade_calculated",
                              {"user_id": S["uid"], "course_id": ctx.cid, "course_version": ctx.c.version,
                               "course_edited_timestamp": TF.iso(ctx.c.start - 10 * DAY),
                               "event_transaction_id": tx, "event_transaction_type": "edx.grades.problem.submitted",
                               "percent_grade": round(e.grade * rng.uniform(0.8, 1.0), 2),
                               "letter_grade": "Pass" if e.grade >= 0.6 else "",
                               "grading_policy_hash": ctx.c.policy_hash},
                              path=_problem_path(ctx, b, "problem_check"), referer=page))
        if grade < mg and rng.random() < 0.15:
            t += rng.uniform(5, 40)
            out.append(ev(S, t, "browser", "problem_reset", qs, page=page, module=b, referer=page))
            out.append(ev(S, t + 0.2, "server", "reset_problem",
                          {"problem_id": b.key, "old_state": {"attempts": v["attempts"], "student_answers": answers},
                           "new_state": {"attempts": v["attempts"], "student_answers": {}}},
                          module=b, path=_problem_path(ctx, b, "problem_reset"), referer=page))
        return t + rng.uniform(2, 20)

    # -- single events ------------------------------------------------------------------------
    def single(self, kind: str, data, t: float, rng: random.Random) -> list:
        if kind == "anon":
            ctx = self.ctx[data]
            S = self.session_state(None, ctx, rng)
            p = f"{ctx.url}about"
            return [self.ev(S, t, "server", p, PAGEVIEW_EVENT, path=p,
                            referer=rng.choice(["https://www.google.com/", "https://www.edx.org/", ""]))]
        e: Enrolment = data[0]
        ctx = self.ctx[e.course.idx]
        S = self.session_state(e, ctx, rng)
        cid = ctx.cid
        if kind in ("activated", "deactivated", "mode_changed"):
            name = f"edx.course.enrollment.{kind}"
            mode = e.mode if kind != "activated" or e.mode_changed_at is None else "audit"
            out = [self.ev(S, t, "server", name, {"course_id": cid, "user_id": e.user.id, "mode": mode},
                           path="/api/enrollment/v1/enrollment" if kind != "deactivated" else "/change_enrollment",
                           referer=f"{BASE}{ctx.url}about" if kind == "activated" else f"{BASE}/dashboard")]
            if kind == "mode_changed":
                out.insert(0, self.ev(S, t - 40, "server", "edx.course.enrollment.upgrade.succeeded",
                                      {"course_id": cid, "user_id": e.user.id, "mode": "verified"},
                                      path="/api/commerce/v1/baskets/", referer=f"{BASE}/dashboard"))
            return out
        if kind == "certificate":
            k = e.cert
            return [self.ev(S, t, "server", "edx.certificate.created",
                            {"user_id": e.user.id, "course_id": cid, "certificate_id": k["verify_uuid"],
                             "certificate_url": f"{BASE}/certificates/{k['verify_uuid']}",
                             "enrollment_mode": k["mode"], "generation_mode": "batch"},
                            path="/certificates/generate", referer="")]
        if kind == "forum":
            p = data[1]
            topic = p["commentable_id"]
            th = p if p["kind"] == "thread" else p["thread"]
            base = {"commentable_id": topic, "category_id": topic, "category_name": "General" if topic == "course" else
                    "Foro del módulo", "body": p["body"][:2000], "truncated": False, "anonymous": False,
                    "anonymous_to_peers": False, "user_forums_roles": ["Student"], "user_course_roles": [],
                    "id": p["id"], "options": {"followed": True},
                    "url": f"{BASE}{ctx.url}discussion/forum/{topic}/threads/{th['id']}"}
            if p["kind"] == "thread":
                base.update({"title": p["title"], "title_truncated": False, "thread_type": p["thread_type"],
                             "group_id": None})
                name, path = "edx.forum.thread.created", f"{ctx.url}discussion/{topic}/threads/create"
            elif p["kind"] == "response":
                base["discussion"] = {"id": th["id"]}
                name, path = "edx.forum.response.created", f"{ctx.url}discussion/threads/{th['id']}/reply"
            else:
                base["discussion"] = {"id": th["id"]}
                base["response"] = {"id": p["parent"]["id"]}
                name, path = "edx.forum.comment.created", f"{ctx.url}discussion/comments/{p['parent']['id']}/reply"
            return [self.ev(S, t, "server", name, base, path=path, referer=base["url"])]
        raise ValueError(kind)


# ---------------------------------------------------------------------------------------------
# Planning and writing
# ---------------------------------------------------------------------------------------------


def _plan(world: World) -> list[list[tuple]]:
    """Per day: [(start_t, seq, kind, data, n)] sorted by start."""
    cfg = world.cfg
    days = cfg.days
    w0 = world.window_start
    plan: list[list[tuple]] = [[] for _ in range(days)]
    seq = itertools.count()
    end = min(world.window_end, world.snapshot)

    def day_of(t: float) -> int:
        return int((t - w0) // DAY)

    for c in world.courses:
        rng = rng_for(cfg, "plan", c.idx)
        for e in c.enrolments:
            if e.kind == "active" and e.created >= w0 and e.created < end:
                d = day_of(e.created)
                if 0 <= d < days:
                    plan[d].append((e.created, next(seq), "activated", (e,), 1))
            if e.deactivated_at is not None and w0 <= e.deactivated_at < end:
                plan[day_of(e.deactivated_at)].append((e.deactivated_at, next(seq), "deactivated", (e,), 1))
            if e.mode_changed_at is not None and w0 <= e.mode_changed_at < end:
                plan[day_of(e.mode_changed_at)].append((e.mode_changed_at, next(seq), "mode_changed", (e,), 2))
            if e.cert and e.kind == "active" and w0 <= e.cert["created"] < end:
                plan[day_of(e.cert["created"])].append((e.cert["created"], next(seq), "certificate", (e,), 1))
            n = e.n_events
            if not n:
                continue
            first_day = max(0, day_of(e.created)) if e.created >= w0 else 0
            avail = days - first_day
            if avail <= 0:
                continue
            k = min(avail, 1 + int(rng.expovariate(1 / max(0.5, avail * 0.3))))
            chosen = rng.sample(range(first_day, days), k) if k < avail else list(range(first_day, days))
            weights = [rng.random() + 0.2 for _ in chosen]
            tot = sum(weights)
            left = n
            for j, (d, wgt) in enumerate(zip(chosen, weights)):
                cnt = left if j == len(chosen) - 1 else min(left, round(n * wgt / tot))
                left -= cnt
                while cnt > 0:
                    s = min(cnt, max(3, int(rng.expovariate(1 / 22.0)) + 3))
                    if cnt - s < 3:
                        s = cnt
                    cnt -= s
                    day0 = w0 + d * DAY
                    lo = e.created + 30 if d == first_day and e.created >= w0 else day0
                    h = bisect.bisect_right(HOUR_CUM, rng.random() * HOUR_CUM[-1])
                    st = day0 + h * 3600 + rng.random() * 3600
                    if st < lo:
                        st = rng.uniform(lo, day0 + DAY - 1)
                    if st >= end:
                        continue
                    plan[d].append((st, next(seq), "session", (e,), s))
        for p in forum_posts(world, c):
            if w0 <= p["t"] < end:
                plan[day_of(p["t"])].append((p["t"], next(seq), "forum", (p["enrolment"], p), 1))
        # anonymous about-page views: ~1% of the course's events
        tot = sum(e.n_events for e in c.enrolments)
        n_anon = max(1, tot // 100) if tot else 0
        for _ in range(n_anon):
            t = rng.uniform(w0, end) if end > w0 else w0
            d = day_of(t)
            if 0 <= d < days:
                plan[d].append((t, next(seq), "anon", c.idx, 1))
    for p in plan:
        p.sort()
    return plan


def events_path(out_dir: Path, cfg, date) -> Path:
    org = cfg.org.lower()
    return out_dir / "edx-course-data" / org / cfg.events_site / "events" / f"{date.year:04d}" / \
        f"{org}-{cfg.events_site}-events-{date.isoformat()}.log.gz"


def write_events(world: World, out_dir: Path) -> tuple[list[Path], list[dict], Gen]:
    import datetime as _dt

    cfg = world.cfg
    gen = Gen(world)
    plan = _plan(world)
    files: list[Path] = []
    entries: list[dict] = []
    prev_tail: list[bytes] = []
    w0 = world.window_start
    for d in range(cfg.days):
        date = cfg.start + _dt.timedelta(days=d)
        path = events_path(out_dir, cfg, date)
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = rng_for(cfg, "events", d)
        mrng = rng_for(cfg, "malformed", d)
        w = DayWriter(path)
        for line in prev_tail:
            w.write(line)
        dups = len(prev_tail)
        starters = plan[d]
        planned = sum(s[4] for s in starters)
        n_bad = (max(4, planned // 1000) if planned >= 40 else max(1, min(4, planned // 10))) if cfg.malformed else 0
        bad_at = sorted(mrng.sample(range(dups + 1, dups + planned + 2), n_bad)) if n_bad else []
        bad_at.reverse()  # pop from the end
        bad_records: list[dict] = []
        kinds = itertools.cycle(MALFORMED_KINDS)
        last_valid: list[bytes] = [b""]
        valid = dups
        day_end = w0 + (d + 1) * DAY
        tail = deque(maxlen=8)

        def put(line: bytes) -> None:
            nonlocal valid
            while bad_at and bad_at[-1] <= w.lines + 1:
                bad_at.pop()
                kind = next(kinds)
                w.write(_malformed(kind, last_valid[0] or line, mrng))
                bad_records.append({"line": w.lines, "reason": kind})
            w.write(line)
            last_valid[0] = line
            tail.append(line)
            valid += 1

        heap: list = []
        push = heapq.heappush
        pop = heapq.heappop
        hseq = itertools.count()
        for st, _s, kind, data, n in starters:
            while heap and heap[0][0] < st:
                put(pop(heap)[2])
            if kind == "session":
                evs = gen.session(data[0], st, n, rng)
            else:
                evs = gen.single(kind, data, st, rng)
            for t, line in evs:
                if t < day_end and t >= w0 + d * DAY:
                    push(heap, (t, next(hseq), line))
        while heap:
            put(pop(heap)[2])
        while bad_at:  # positions beyond the end: append
            bad_at.pop()
            kind = next(kinds)
            w.write(_malformed(kind, last_valid[0] or b'{"username": "", "event_type": "x"}', mrng))
            bad_records.append({"line": w.lines, "reason": kind})
        w.close()
        n_dup_next = 0
        if d + 1 < cfg.days and tail:
            n_dup_next = min(len(tail), rng.randint(2, 5))
            prev_tail = list(tail)[-n_dup_next:]
        else:
            prev_tail = []
        files.append(path)
        entries.append({"file": path.relative_to(out_dir).as_posix(), "date": date.isoformat(), "lines": w.lines,
                        "valid_events": valid, "unique_events": valid - dups, "malformed": bad_records,
                        "duplicated_from_previous_day": dups, "duplicated_into_next_day": n_dup_next})
    return files, entries, gen


def _malformed(kind: str, line: bytes, rng: random.Random) -> bytes:
    if kind == "truncated_json":
        return line[: max(10, len(line) // 2)]
    if kind == "not_json":
        return (f"2026-10-01 {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:17,118 ERROR 2317 [tracking] "
                f"logger.py:41 - UnicodeEncodeError while emitting event").encode()
    if kind == "invalid_utf8":
        i = line.find(b'"agent":"')
        if i < 0:
            return b'{"username": "x\xff\xfe", "event_type": "bad\xc3("}'
        i += 9
        return line[:i] + b"Mozilla/5.0 (Linux; Android 9; Se\xf1or Tel\xe9fono \xff\xfe) " + line[i:]
    if kind == "missing_time":
        try:
            d = orjson.loads(line)
            d.pop("time", None)
            return orjson.dumps(d)
        except Exception:
            return b'{"username": "", "event_type": "page_close", "event": ""}'
    raise ValueError(kind)
