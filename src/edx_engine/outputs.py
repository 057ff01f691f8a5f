"""Files written by ``report`` and ``export``: where ``-o PATH`` writes, writing it without leaving a
temp file, and how a CSV writes its values (one format for both commands).

``-o`` naming an existing directory (or ending in ``/``) means "the default file name in that
directory": ``report general -o out/`` writes ``out/general.csv``, ``export masterfile --anonymised
-o share`` writes ``share/masterfile.csv``. A file is written to ``<file>.tmp`` and renamed, so a
reader never sees half a file; on any error the temp file is deleted and the error names the
file asked for, not the temp file.

In a CSV, a timestamp is ``YYYY-MM-DD HH:MM:SS`` (UTC wall time, no ``T``, no ``Z``), with
``.ffffff`` only when it has fractions of a second; a date is ``YYYY-MM-DD`` (``csv_ready``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc


class OutputError(Exception):
    """The output file cannot be written (one line, naming the file)."""


def is_directory(path: str | os.PathLike) -> bool:
    """``-o path`` names a directory: an existing one, or any path ending in a separator."""
    s = os.fspath(path)
    return Path(s).is_dir() or s.endswith(("/", os.sep))


def output_file(path: str | os.PathLike, default_name: str) -> Path:
    """``path`` as the file to write: ``default_name`` inside it if it is a directory."""
    return Path(path) / default_name if is_directory(path) else Path(path)


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` then rename ``tmp`` to ``path``; the temp file never survives an error.
    OS errors become ``OutputError`` naming ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise OutputError(describe(path, exc)) from exc
        raise


def describe(path: Path, exc: OSError) -> str:
    """'cannot write PATH: reason' for an OS error met while writing ``path``."""
    if isinstance(exc, IsADirectoryError) or path.is_dir():
        why = "it is a directory"
    elif isinstance(exc, (NotADirectoryError, FileExistsError)):
        why = "a part of its path is a file, not a directory"
    else:
        why = exc.strerror or str(exc)
    return f"cannot write {path}: {why}"


def csv_ready(t: pa.Table) -> pa.Table:
    """``t`` with its timestamps as text, 'YYYY-MM-DD HH:MM:SS[.ffffff]' (Python's
    ``isoformat(sep=" ")``); everything else as pyarrow's CSV writer writes it."""
    if not any(pa.types.is_timestamp(f.type) for f in t.schema):
        return t
    cols = []
    for f, c in zip(t.schema, t.columns):
        if pa.types.is_timestamp(f.type):
            if f.type.tz is None:  # vectorised: microseconds, ".000000" left out as isoformat does
                text = pc.cast(pc.cast(c, pa.timestamp("us"), safe=False), pa.string())
                c = pc.replace_substring_regex(text, r"\.000000$", "")
            else:
                c = pa.array([None if v is None else v.isoformat(sep=" ") for v in c.to_pylist()], pa.string())
        cols.append(c)
    return pa.table(cols, names=t.column_names)
