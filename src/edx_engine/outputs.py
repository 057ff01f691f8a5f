"""Where ``-o PATH`` of ``report`` and ``export`` writes, and writing it without leaving a temp file.

``-o`` naming an existing directory (or ending in ``/``) means "the default file name in that
directory": ``report general -o out/`` writes ``out/general.csv``, ``export masterfile --anonymised
-o share`` writes ``share/masterfile.csv``. A file is written to ``<file>.tmp`` and renamed, so a
reader never sees half a file; on any error the temp file is deleted and the error names the
file asked for, not the temp file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


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
