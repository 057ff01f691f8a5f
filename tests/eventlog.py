"""Hand-written tracking logs for tests: server problem_check events (one per learner, IP and second), video events."""

from __future__ import annotations

import gzip
import json
from pathlib import Path


def tracking_event(username: str, user_id, course_id: str, ip: str, n: int) -> dict:
    """A server problem_check event at second ``n`` after 10:00 on 2026-10-20."""
    return {"username": username, "event_source": "server", "event_type": "problem_check", "name": "problem_check",
            "time": f"2026-10-20T10:{n // 60:02d}:{n % 60:02d}+00:00", "event": {"problem_id": "p"},
            "context": {"course_id": course_id, "org_id": "IDBx", "user_id": user_id, "path": "/event"},
            "page": None, "ip": ip, "agent": "Mozilla/5.0", "host": "courses.edx.org", "session": "s",
            "referer": "", "accept_language": "en"}


def video_event(username: str, user_id, course_id: str, event_type: str, video: str, time: str) -> dict:
    """A video event at ``time`` (ISO, UTC): from the browser player (``play_video``, ``complete_video``,
    ``load_video``: the payload a JSON string, as edX logs it) or, for an ``edx.video.*`` type, from the
    mobile app (``name`` = ``event_type``, the payload an object)."""
    mobile = event_type.startswith("edx.video.")
    payload = {"id": video, "currentTime": 0, "code": "mobile" if mobile else "yt"}
    return {"username": username, "event_source": "mobile" if mobile else "browser", "event_type": event_type,
            "name": event_type if mobile else None, "time": time,
            "event": payload if mobile else json.dumps(payload),
            "context": {"course_id": course_id, "org_id": "IDBx", "user_id": user_id, "path": "/event"},
            "page": None, "ip": "10.0.0.1", "agent": "Mozilla/5.0", "host": "courses.edx.org", "session": "s",
            "referer": "", "accept_language": "en"}


def write_day(root: Path, events: list[dict], day: str = "2026-10-20") -> Path:
    """Write ``events`` as edX's daily log file under ``root`` (bucket layout); returns ``root``."""
    d = root / "edx-course-data" / "idbx" / "edx" / "events" / day[:4]
    d.mkdir(parents=True, exist_ok=True)
    with gzip.open(d / f"idbx-edx-events-{day}.log.gz", "wt", encoding="utf-8") as f:
        for ev in events:
            f.write(json.dumps(ev) + "\n")
    return root


def learners_store(tmp: Path, exclude_staff: bool = False) -> tuple[Path, object, list[tuple]]:
    """A store from a small synthetic package without tracking logs, and its learners.

    Returns (data dir, settings, rows of (user_id, username, course_id, profile country)).
    """
    import duckdb

    from edx_engine import config
    from edx_engine.cli import run_import
    from edx_engine.synthetic import SyntheticConfig, generate

    generate(tmp / "pkg", SyntheticConfig(seed=0, courses=2, learners=60, days=3, events=False))
    data = tmp / "store"
    settings = config.resolve(data_dir=str(data))
    run_import(settings, [tmp / "pkg"], quiet=True)
    staff = "WHERE NOT coalesce(TRY_CAST(u.is_staff AS BOOLEAN), false) " if exclude_staff else ""
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT DISTINCT p.user_id, u.username, e.course_id, p.country FROM auth_userprofile p "
            "JOIN auth_user u ON u.id = p.user_id JOIN student_courseenrollment e ON e.user_id = p.user_id "
            f"{staff}ORDER BY p.user_id, e.course_id").fetchall()
    return data, settings, rows
