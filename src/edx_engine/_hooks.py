"""Seams for the crash tests: ``pause(stage)`` does nothing unless a test asks for it.

The pause points themselves live in the test suite (``tests/hooks.py``). They are loaded only
when ``EDX_ENGINE_TEST_PAUSE_AT`` (or ``EDX_ENGINE_TEST_SIGINT_AT``) is set, from the file ``EDX_ENGINE_TEST_HOOKS`` names
(default: ``tests/hooks.py`` of the source tree this package runs from, absent from an
installed wheel: then nothing happens). Stages are listed in tests/hooks.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

_impl: ModuleType | None = None


def _load() -> ModuleType | None:
    global _impl
    if _impl is None:
        import importlib.util

        path = Path(os.environ.get("EDX_ENGINE_TEST_HOOKS")
                    or Path(__file__).resolve().parents[2] / "tests" / "hooks.py")
        if not path.is_file():
            return None
        spec = importlib.util.spec_from_file_location("_edx_engine_test_hooks", path)
        if spec is None or spec.loader is None:
            return None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _impl = module
    return _impl


def pause(stage: str) -> None:
    """A named point where a crash test may stop this process (no-op in normal runs)."""
    if not (os.environ.get("EDX_ENGINE_TEST_PAUSE_AT") or os.environ.get("EDX_ENGINE_TEST_SIGINT_AT")):
        return
    impl = _load()
    if impl is not None:
        impl.pause(stage)
