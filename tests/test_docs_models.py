"""docs/indicators.md documents every column of every model.

Analysts look a column up in docs/indicators.md: each model has one section, a heading that names it in
backticks (``## Course registry (`courses`)``, ``### `video_summary` ``), running to the next heading (a
subsection is another model's), with a table whose first cell names the columns it defines in backticks.
The columns checked are those of the models a real build writes (``store_support.small_store``: the
synthetic package imported and ``build`` run with the CLI), so a column added to a definition without
its line in the doc, or a line left for a column that is gone, fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from edx_engine.models.definitions import MODELS
from store_support import small_store

DOC = Path(__file__).resolve().parents[1] / "docs" / "indicators.md"
# Columns a section may name that the model does not have: added by the outputs, not by the build.
OUTPUT_ONLY = {"course_summary": {"suppressed"}}


def sections(text: str) -> dict[str, list[str]]:
    """Model name -> the sections (text) whose heading names it in backticks."""
    lines = text.splitlines()
    heads = [(i, m.group(1)) for i, line in enumerate(lines) if (m := re.match(r"#{1,6} (.*)", line))]
    out: dict[str, list[str]] = {}
    for n, (i, title) in enumerate(heads):
        end = heads[n + 1][0] if n + 1 < len(heads) else len(lines)
        for name in re.findall(r"`(\w+)`", title):
            out.setdefault(name, []).append("\n".join(lines[i:end]))
    return out


def documented(section: str) -> set[str]:
    """The names in backticks of the first cell of each table row (header and rule rows left out)."""
    out: set[str] = set()
    for line in section.splitlines():
        cells = line.split("|")
        if line.startswith("| ") and len(cells) > 2 and not set(cells[1].strip()) <= set("-: "):
            out |= set(re.findall(r"`(\w+)`", cells[1]))
    return out


def problems(text: str, columns: dict[str, list[str]]) -> list[str]:
    """What the doc ``text`` gets wrong about the models' ``columns``: [] when every model has one
    section naming exactly its columns."""
    found = sections(text)
    out = []
    for model, cols in columns.items():
        secs = found.get(model, [])
        if len(secs) != 1:
            out.append(f"{model}: {len(secs)} sections name it in their heading (one wanted)")
            continue
        names = documented(secs[0])
        out += [f"{model}.{c}: not in its section" for c in cols if c not in names]
        out += [f"{model}.{c}: documented, but the model has no such column" for c in sorted(names)
                if c not in cols and c not in OUTPUT_ONLY.get(model, set())]
    return out


@pytest.fixture(scope="module")
def columns(tmp_path_factory) -> dict[str, list[str]]:
    """Every model of the built synthetic store -> its columns (DESCRIBE models.<name>)."""
    store = small_store(tmp_path_factory.mktemp("docs-models"))
    with duckdb.connect(str(store / "edx.duckdb"), read_only=True) as con:
        built = sorted(r[0] for r in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE schema_name = 'models'").fetchall())
        assert built == sorted(MODELS), "the build wrote other models than definitions.py defines"
        return {m: [r[0] for r in con.execute(f"DESCRIBE models.{m}").fetchall()] for m in built}


def test_every_column_of_every_model_is_documented_in_its_section(columns):
    assert len(columns) == len(MODELS) > 20
    assert problems(DOC.read_text("utf-8"), columns) == []


def test_the_check_fails_when_a_line_of_the_doc_is_removed_or_a_column_renamed(columns):
    """The check above is not vacuous: removing one column's name, one model's table row, or a model's
    heading from the doc is reported, and so is a documented column that the model no longer has."""
    text = DOC.read_text("utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `completion_rate` |"))
    assert problems(text.replace(row + "\n", ""), columns) == ["video_summary.completion_rate: not in its section"]
    row = next(line for line in text.splitlines() if line.startswith("| `total` |"))
    assert problems(text.replace(row, row.replace("`total`", "total")), columns) == [
        "general_report.total: not in its section"]
    assert problems(text.replace("### `problem_summary`\n", "### Problems\n"), columns) == [
        "problem_summary: 0 sections name it in their heading (one wanted)"]
    renamed = {**columns, "general_report": [("lost" if c == "failed" else c) for c in columns["general_report"]]}
    assert problems(text, renamed) == ["general_report.lost: not in its section",
                                       "general_report.failed: documented, but the model has no such column"]
    # a column of one model documented only in another model's section does not count
    row = next(line for line in text.splitlines() if line.startswith("| `first_attempt_correct_rate` |"))
    assert "problem_summary.first_attempt_correct_rate: not in its section" in problems(
        text.replace(row + "\n", ""), columns)
