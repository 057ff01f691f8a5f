"""Model parameters from the command line and the config file's ``[models]`` section, validated once.

The CLI turns a `ParamsError` into one line; the library never sees an invalid pass mark or rule."""

from __future__ import annotations

import os
import re
from typing import Any, Mapping
from urllib.parse import quote, unquote

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
    """The PostgreSQL store address (option > EDX_ENGINE_STORE > ``[models] store``), or None for DuckDB: a
    ``postgresql://`` (or ``postgres://``) URL or a libpq keyword/value string (``host=... dbname=...``) that
    libpq can read. A refused address is named as `mask_store` shows it (no password, nothing of an address
    libpq cannot read)."""
    url = pick(option, STORE_ENV, section, "store", blank_is_unset=True)
    if not url:
        return None
    m = _SCHEME.match(url)
    if m and m.group(1).lower() not in _PG_SCHEMES:
        raise ParamsError(f"unsupported store {mask_store(url)}: use postgresql://... (or nothing for the DuckDB "
                          f"catalog)")
    if not m and "=" not in url:
        raise ParamsError("unsupported store (not a postgresql:// URL nor host=... dbname=... keywords; the address "
                          "is not shown): use postgresql://... (or nothing for the DuckDB catalog)")
    kw = _keywords(url)
    if kw is None:
        raise ParamsError(f"the store address {mask_store(url)} cannot be read: {_parse_error(url)}")
    if any("@" in kw.get(k, "") for k in ("host", "hostaddr", "port", "dbname")):
        raise ParamsError(f"the store address {mask_store(url)} cannot be read: an '@' or '/' in the user name or "
                          f"password must be written %40 or %2F (or keep the password in ~/.pgpass or PGPASSWORD)")
    return url


def _parse_error(address: str) -> str:
    """libpq's complaint about an address it cannot read, without the fragments it quotes from it."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        conninfo_to_dict(address)
    except Exception as exc:
        return re.sub(r'"[^"]*"', '"…"', str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    return "unknown error"


# --- the store address in messages -------------------------------------------------------------------------------
# A store address can carry a password (``postgresql://user:pw@host/db``, ``?password=pw``, the libpq keyword form
# ``host=h password=pw``). Every message, log line and error that shows it goes through `mask_store` (the address
# as it may be printed) or `hide_store` (a text, such as a driver's error message, with the address and its
# passwords masked).

_SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.-]*)://")
_PG_SCHEMES = ("postgresql", "postgres")
_HIDDEN = "***"
UNSHOWN = "(store address not shown)"


def _keywords(address: str) -> dict[str, str] | None:
    """libpq's own reading of ``address`` (URL or keyword/value), or None when libpq cannot parse it."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        return {k: str(v) for k, v in conninfo_to_dict(address).items()}
    except Exception:  # any parse error: the caller shows nothing of the address
        return None


_SECRET_KEYS = ("password", "sslpassword")  # libpq's keywords whose value is a secret


def _mask_query(query: str) -> str:
    """A URL's query (after ``?``) with the value of each ``password=`` / ``sslpassword=`` parameter as ``***``
    (a value runs to the next ``&``: libpq reads ``#`` as part of it, not as a fragment)."""
    parts = []
    for item in query.split("&"):
        key, eq, _ = item.partition("=")
        parts.append(f"{key}={_HIDDEN}" if eq and unquote(key).strip().lower() in _SECRET_KEYS else item)
    return "&".join(parts)


def _url_parts(rest: str) -> tuple[str, int, str | None]:
    """A URL after ``scheme://`` as (everything before the query, the index of the ``@`` ending the user part in
    it or -1, the query or None). The query starts at the first ``?`` and is never searched for the ``@``: an
    ``@`` in a query value (``?user=a@b``, ``?password=Pa@ss``) is not the user part's. The ``@`` is the last one
    of the authority (up to the first ``/`` or ``#``), else the last one before the query: a password holding an
    unencoded ``/`` or ``#`` (which libpq cannot read as a password: the address is refused) still ends there."""
    head, q_mark, query = rest.partition("?")
    auth = re.split(r"[/#]", head, maxsplit=1)[0]
    at = auth.rfind("@")
    if at < 0:
        at = head.rfind("@")
    return head, at, query if q_mark else None


def mask_store(address: str | None) -> str:
    """``address`` as it may be printed: passwords (in the user part, ``password=`` / ``sslpassword=`` query
    parameters or keywords) as ``***``; an address libpq cannot read shows only its scheme (or nothing). Every
    password `_secrets` finds in ``address`` is then masked wherever it is left (`_hide_secrets`), whatever
    the reading that let it through."""
    if not address:
        return UNSHOWN
    m = _SCHEME.match(address)
    if m:
        scheme = m.group(1)
        if scheme.lower() not in _PG_SCHEMES or _keywords(address) is None:
            return f"{scheme}://…"
        head, at, query = _url_parts(address[m.end():])
        user, host = ("", head) if at < 0 else (head[:at], head[at + 1:])
        if ":" in user:
            user = user.split(":", 1)[0] + ":" + _HIDDEN
        shown = f"{user}{'@' if at >= 0 else ''}{host}" + ("" if query is None else "?" + _mask_query(query))
        return f"{scheme}://{_hide_secrets(shown, address)}"
    kw = _keywords(address)
    if not kw or "=" not in address:
        return UNSHOWN
    return _hide_secrets(" ".join(f"{k}={_HIDDEN if k in _SECRET_KEYS else _kw_value(v)}" for k, v in kw.items()),
                         address)


def _kw_value(v: str) -> str:
    return v if v and not re.search(r"[\s'\\]", v) else "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _secrets(address: str) -> set[str]:
    """Every password ``address`` holds, as written and decoded, however libpq or a reader splits it."""
    found: set[str] = set()
    kw = _keywords(address)
    for key in _SECRET_KEYS:
        if kw and kw.get(key):
            found.add(kw[key])
    m = _SCHEME.match(address)
    if m:
        rest = address[m.end():]
        head, at, _ = _url_parts(rest)
        ends = {at, rest.split("/", 1)[0].find("@")}  # ours; libpq's: the first '@' before a '/'
        for end in ends:
            if end >= 0 and ":" in rest[:end]:
                found.add(rest[:end].split(":", 1)[1])
    for _, value in re.findall(r"(?i)(?:^|[?&\s])((?:ssl)?password)\s*=\s*('[^']*'|[^&\s]*)", address):
        found.add(value.strip("'"))
    if not m and not kw:  # a keyword string libpq could not read: whatever follows password= is secret
        found.update(re.findall(r"(?i)password\s*=\s*(.*)$", address))
    more = set()
    for s in found:
        more.update({unquote(s), quote(s, safe="")})
        more.update(p for p in re.split(r"[@/\s?#]", s) if len(p) >= 4)  # the pieces a reader may split it into
    return {s for s in found | more if s}


def _hide_secrets(text: str, address: str) -> str:
    """``text`` with every password of ``address`` replaced by ``***`` (a short one only where it stands alone)."""
    for s in sorted(_secrets(address), key=len, reverse=True):
        if len(s) >= 4:
            text = text.replace(s, _HIDDEN)
        else:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(s)}(?![A-Za-z0-9])", _HIDDEN, text)
    return text


def hide_store(text: str, address: str | None) -> str:
    """``text`` (a message, a driver's error) with ``address`` shown as `mask_store` shows it and every password
    it holds replaced by ``***`` wherever it appears (a short one only where it stands alone)."""
    if not address or not text:
        return text
    return _hide_secrets(text.replace(address, mask_store(address)), address)
