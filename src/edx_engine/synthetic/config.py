"""Configuration and manifest of a synthetic edX delivery."""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class SyntheticConfig:
    org: str = "IDBx"
    seed: int = 0
    courses: int = 3
    learners: int = 200  # enrolments per course (learners are shared between courses)
    days: int = 7
    events_per_learner: float = 40  # avg tracking events per active learner per course, whole period
    studentmodule_per_learner: float = 15  # avg studentmodule rows per active learner per course
    start: _dt.date = _dt.date(2026, 10, 1)  # first event day
    package_date: _dt.date | None = None  # default: start + days
    encrypt_to: str | None = None  # gpg recipient; when set every file gets .gpg
    gnupghome: str | None = None
    malformed: bool = True
    events: bool = True
    package: bool = True
    site: str = "prod"  # database package site (prod|edge); events site is "edx" for prod, "edge" for edge
    # None: today's layout; 2016 | 2020 | 2024: that era's package variants (synthetic/vintage.py)
    vintage: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.start, str):
            self.start = _dt.date.fromisoformat(self.start)
        if isinstance(self.package_date, str):
            self.package_date = _dt.date.fromisoformat(self.package_date)
        if self.courses < 1 or self.learners < 1 or self.days < 0:
            raise ValueError("courses and learners must be >= 1, days >= 0")
        if "-" in self.org or "/" in self.org:
            raise ValueError("org must not contain '-' or '/'")
        if self.site not in ("prod", "edge"):
            raise ValueError("site must be prod or edge")
        if isinstance(self.vintage, str):
            self.vintage = int(self.vintage)
        if self.vintage is not None and self.vintage not in (2016, 2020, 2024):
            raise ValueError("vintage must be 2016, 2020 or 2024")

    @property
    def effective_package_date(self) -> _dt.date:
        return self.package_date or (self.start + _dt.timedelta(days=self.days))

    @property
    def events_site(self) -> str:
        return "edx" if self.site == "prod" else "edge"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["start"] = self.start.isoformat()
        d["package_date"] = self.effective_package_date.isoformat()
        return d


@dataclass
class CourseInfo:
    course_id: str
    slug: str
    display_name: str
    start: str
    end: str
    chapters: int
    blocks: int
    old_style: bool


@dataclass
class Manifest:
    """What a generation wrote. All paths are relative to the output directory (POSIX)."""

    org: str
    package_date: str
    seed: int
    start: str
    days: int
    site: str
    encrypted: bool
    config: dict[str, Any] = field(default_factory=dict)
    courses: list[CourseInfo] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # every data file written (manifest.json excluded)
    package: dict[str, Any] | None = None  # {path, folder, members: [member names as in the zip]}
    # [{table, course_id (None for org-level), rows, member}] - VALID data rows (header and malformed lines excluded)
    row_counts: list[dict[str, Any]] = field(default_factory=list)
    # [{file, member, table, course_id, line, reason}] - package files; `file` is the zip path, `member` the zip
    # member; line numbers are 1-based and count the header as line 1
    malformed: list[dict[str, Any]] = field(default_factory=list)
    # [{table, course_id, member}] - `.failed` markers written instead of a table (vintage 2020)
    failed_exports: list[dict[str, Any]] = field(default_factory=list)
    # [{file, date, lines, valid_events, malformed: [{line, reason}], duplicated_from_previous_day,
    #   duplicated_into_next_day, unique_events}]
    events_files: list[dict[str, Any]] = field(default_factory=list)
    staff_user_ids: list[int] = field(default_factory=list)
    known_personal_values: dict[str, list[str]] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)

    # convenience -------------------------------------------------------------------------------
    def rows(self, table: str, course_id: str | None = None) -> int:
        for r in self.row_counts:
            if r["table"] == table and r["course_id"] == course_id:
                return r["rows"]
        raise KeyError((table, course_id))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=indent)

    def write(self, path: Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Manifest":
        d = dict(d)
        d["courses"] = [CourseInfo(**c) for c in d.get("courses", [])]
        return cls(**d)

    @classmethod
    def load(cls, path: Path) -> "Manifest":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
