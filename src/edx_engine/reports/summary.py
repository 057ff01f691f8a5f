"""What a fresh store holds, in figures: the demo's closing summary."""

from __future__ import annotations

from dataclasses import dataclass

from ..lake import Lake


@dataclass(frozen=True)
class StoreSummary:
    courses: int  # distinct courses with enrolments
    learners: int  # distinct enrolled users
    events: int  # rows of the events view
    rows_per_table: list[tuple[str, int]]  # imported rows per edX table, by name


def store_summary(lake: Lake) -> StoreSummary:
    """Counts read from the catalog, read-only (the store must have enrolments and events)."""
    with lake.connect(read_only=True) as con:
        courses, learners = con.execute("SELECT count(DISTINCT course_id), count(DISTINCT user_id) "
                                        "FROM student_courseenrollment").fetchone()
        counts = con.execute("SELECT table_name, sum(rows) FROM _edx_snapshots GROUP BY 1 ORDER BY 1").fetchall()
        nevents = con.execute("SELECT count(*) FROM events").fetchone()[0]
    return StoreSummary(courses, learners, nevents, counts)
