"""Lake.collect_garbage: every lake file its bookkeeping table does not list goes, with the folders it
leaves empty; listed files, the folders holding them and the top folders stay. The expected set is
written out by hand for a small tree."""

from __future__ import annotations

import os
from pathlib import Path

from edx_engine.store import catalog
from edx_engine.store.lake import Lake


def _files(root: Path) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root / "lake") for f in fs}


def _dirs(root: Path) -> set[str]:
    return {os.path.relpath(os.path.join(d, x), root) for d, xs, _ in os.walk(root / "lake") for x in xs}


def test_collect_removes_unlisted_files_and_the_folders_they_leave_empty(tmp_path: Path):
    lake = Lake(tmp_path)
    lake.init()
    tree = {
        "lake/model_parts/learner_day/date=2025-01-01/a.parquet": True,   # listed
        "lake/model_parts/learner_day/date=2025-01-01/b.parquet": False,  # replaced: same folder
        "lake/model_parts/learner_day/date=2025-01-02/c.parquet": False,  # its folder empties
        "lake/model_parts/person_course/course_id=X/deep/d.parquet": False,  # two levels empty
        "lake/model_parts/person_course/course_id=Y/e.parquet": True,     # listed, one level down
        "lake/model_parts/person_course/course_id=Y/f.parquet.tmp": False,  # a killed writer's temp file
        "lake/model_parts/loose.parquet": False,                          # directly under the top folder
    }
    for rel in tree:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "lake/model_parts/empty/already").mkdir(parents=True)  # an empty folder tree goes too
    listed = [rel for rel, keep in tree.items() if keep]
    with lake.writer(), lake.connect() as con:
        catalog.ensure(con, catalog.MODELS)
        for i, rel in enumerate(listed):  # one path stored with a redundant './': still the same file
            stored = rel if i else "./" + rel
            con.execute("INSERT INTO _edx_model_parts (model, part, path) VALUES ('m', ?, ?)", [str(i), stored])
        removed = lake.collect_garbage(con)
    assert removed == len(tree) - len(listed)
    assert _files(tmp_path) >= set(listed)
    assert not (_files(tmp_path) & {rel for rel, keep in tree.items() if not keep})
    kept_dirs = {d for d in _dirs(tmp_path) if d.startswith("lake/model_parts")}
    assert kept_dirs == {"lake/model_parts", "lake/model_parts/learner_day",
                         "lake/model_parts/learner_day/date=2025-01-01", "lake/model_parts/person_course",
                         "lake/model_parts/person_course/course_id=Y"}
    # a second run finds nothing more
    with lake.writer(), lake.connect() as con:
        assert lake.collect_garbage(con) == 0


def test_collect_leaves_a_folder_alone_when_a_listed_path_is_outside_the_store(tmp_path: Path):
    """A bookkeeping table that lists an absolute path elsewhere (a store built in another folder):
    what is referenced here cannot be told, so nothing under that folder is deleted."""
    lake = Lake(tmp_path / "store")
    lake.init()
    stray = tmp_path / "store/lake/model_parts/m/x.parquet"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"x")
    with lake.writer(), lake.connect() as con:
        catalog.ensure(con, catalog.MODELS)
        con.execute("INSERT INTO _edx_model_parts (model, part, path) VALUES ('m', '1', ?)",
                    [str(tmp_path / "elsewhere/lake/model_parts/m/y.parquet")])
        assert lake.collect_garbage(con) == 0
    assert stray.exists()
