"""Keep pandas out of the commands that never use it.

DuckDB 1.5 compares every bound query parameter with ``pandas.NaT`` and imports pandas (with
numpy) to do so the first time: 0.3 to 0.5 s of CPU in a process that never touches a DataFrame
(`status`, an import, a sync: about a third of `status`). The CLI hides pandas while a command
runs (``hide``, then ``allow`` when it ends); DuckDB then treats it as not installed. Code that
needs pandas (the Spark paths) calls ``allow`` first. Nothing outside a CLI command is affected: a notebook or a
program using the library sees pandas as usual.

DuckDB 2.0 no longer imports pandas for parameters; remove this module when the lock moves to it
(its PostgreSQL extension is not on PyPI for 2.0 yet).
"""

from __future__ import annotations

import importlib.abc
import sys


class _HidePandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by edx_engine.pandas_guard: call "
                                      f"edx_engine.pandas_guard.allow() before the code that needs it)",
                                      name=name)
        return None


_FINDER = _HidePandas()


def hide() -> None:
    """Make ``import pandas`` fail, unless pandas is imported already (then nothing is gained)."""
    if "pandas" not in sys.modules and _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def allow() -> None:
    """Let pandas be imported again (idempotent)."""
    while _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


def is_hidden() -> bool:
    return _FINDER in sys.meta_path
