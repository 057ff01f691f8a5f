"""Model parameters from the command line and the config file's ``[models]`` section, validated once.

The CLI turns a `ParamsError` into one line; the library never sees an invalid pass mark or rule."""

from __future__ import annotations

import os
from typing import Any, Mapping

from ..config import pick
from .definitions import DEFAULT_PASSING_RULE, PASSING_RULES, Params

DEFAULT_PASSING_GRADE = 0.65
STORE_ENV = "EDX_ENGINE_STORE"


class ParamsError(ValueError):
    """An invalid model parameter or store URL; the message is one line for the user."""


def params_from(section: Mapping[str, Any], passing_grade: float | None = None, include_staff: bool | None = None,
                passing_rule: str | None = None) -> Params:
    """Option > ``[models]`` setting > default, for the pass mark, staff and passing rule."""
    pg = pick(passing_grade, None, section, "passing_grade", DEFAULT_PASSING_GRADE)
    try:
        pg = float(pg)
    except (TypeError, ValueError):
        raise ParamsError(f"passing grade must be a number, got {pg!r}") from None
    if not 0 <= pg <= 1:
        raise ParamsError(f"passing grade must be between 0 and 1, got {pg}")
    staff = include_staff if include_staff is not None else bool(section.get("include_staff", False))
    rule = pick(passing_rule, None, section, "passing_rule", DEFAULT_PASSING_RULE, blank_is_unset=True)
    if rule not in PASSING_RULES:
        raise ParamsError(f"passing rule must be one of {', '.join(PASSING_RULES)} (at or above / above the mark), "
                          f"got {rule!r}")
    return Params(passing_grade=pg, include_staff=staff, passing_rule=rule)


def store_url(section: Mapping[str, Any], option: str | None = None) -> str | None:
    """The PostgreSQL store URL (option > EDX_ENGINE_STORE > ``[models] store``), or None for DuckDB."""
    url = pick(option, STORE_ENV, section, "store", blank_is_unset=True)
    if url and not (url.startswith("postgresql://") or url.startswith("postgres://")):
        raise ParamsError(f"unsupported store {url!r}: use postgresql://... (or nothing for the DuckDB catalog)")
    return url or None
