"""Hand-written tracking logs for tests: one server event per (learner, IP, second)."""

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


def write_day(root: Path, events: list[dict], day: str = "2026-10-20") -> Path:
    """Write ``events`` as edX's daily log file under ``root`` (bucket layout); returns ``root``."""
    d = root / "edx-course-data" / "idbx" / "edx" / "events" / day[:4]
    d.mkdir(parents=True, exist_ok=True)
    with gzip.open(d / f"idbx-edx-events-{day}.log.gz", "wt", encoding="utf-8") as f:
        for ev in events:
            f.write(json.dumps(ev) + "\n")
    return root
