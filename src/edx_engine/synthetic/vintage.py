"""Package vintages: how edX's weekly package looked in different years (``SyntheticConfig.vintage``).

The generator writes every table in one base layout (the columns below); a vintage rewrites
headers and rows to that year's layout, so that tests import each variant partners receive
(edx-package-details.md §1-2). Eras are approximate; what each one changes:

| | 2016 | 2020 | 2024 |
|---|---|---|---|
| site suffix of the members | ``prod`` | ``edx`` | ``patches`` (any word is read) |
| user_id_map header | ``hash_id,id,username`` | same | ``hash_id,user_id,username`` (since Oct 2022) |
| auth_userprofile | ``SELECT *``: allow_certificate, no state | ``SELECT *``: allow_certificate, state | explicit list: no allow_certificate; state, phone_number |
| auth_user.password | Django hashes (``sha1$``) | hashes or empty | always empty |
| a table the registry lacks | verify_student_verificationstatus | django_comment_client_role_users | credit_crediteligibility (usernames) |
| ``.failed`` marker | - | first course's grades_persistentsubsectiongrade | - |
| e-mail opt-in | inside the package | inside the package | own zip ``email-opt-in/{org}-{date}.zip`` |
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..schemas import TABLES

VINTAGES = (2016, 2020, 2024)

# auth_userprofile as the generator writes it (DOC's SELECT * layout).
_PROFILE = ("id", "user_id", "name", "language", "location", "meta", "courseware", "gender", "mailing_address",
            "year_of_birth", "level_of_education", "goals", "allow_certificate", "country", "city", "bio",
            "profile_image_uploaded_at")
_STATES = {"US": "CA", "MX": "CMX", "CO": "DC", "BR": "SP"}  # a region per country, else NULL

TRACEBACK = ("Traceback (most recent call last):\n  File \"exporter/main.py\", line 212, in run_task\n"
             "OperationalError: (2013, 'Lost connection to MySQL server during query')\n")


def base_columns(table: str) -> list[str]:
    """Columns of the generator's own rows for ``table``."""
    return list(_PROFILE) if table == "auth_userprofile" else TABLES[table].column_names


@dataclass(frozen=True)
class Layout:
    """How one vintage writes the package; ``None`` vintage = the generator's base layout."""

    vintage: int | None = None
    site: str = "prod"
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)  # table -> header (file order)
    renamed: dict[str, dict[str, str]] = field(default_factory=dict)  # table -> {base name: header name}
    password: str = "as-generated"  # as-generated | hashed | empty
    unknown_table: str | None = None
    failed: tuple[tuple[int, str], ...] = ()  # (course index, table) whose export "failed"
    optin_zip: bool = False

    def header(self, table: str) -> list[str]:
        cols = list(self.columns.get(table, base_columns(table)))
        ren = self.renamed.get(table, {})
        return [ren.get(c, c) for c in cols]

    def line(self, table: str, line: str) -> str:
        """A base-layout TSV line rewritten to this vintage's columns (values are TSV-escaped,
        so a tab only ever separates fields)."""
        if table not in self.columns and table != "auth_user":
            return line
        values = dict(zip(base_columns(table), line.split("\t")))
        if table == "auth_user":
            values["password"] = self._password(values)
        if table == "auth_userprofile":
            values.update(_profile_extras(values))
        return "\t".join(values.get(c, "NULL") for c in self.columns.get(table, base_columns(table)))

    def _password(self, values: dict[str, str]) -> str:
        if self.password == "empty":
            return ""
        if self.password == "hashed":
            digest = hashlib.sha1(f"pw:{values['id']}".encode()).hexdigest()
            return f"sha1${digest[:5]}${digest}"
        return values["password"]


def _profile_extras(values: dict[str, str]) -> dict[str, str]:
    """state and phone_number of a profile, from its user id and country (tests recompute them)."""
    uid = int(values["user_id"])
    return {"state": _STATES.get(values.get("country", ""), "NULL"),
            "phone_number": f"+1 555 {uid % 10000:04d}" if uid % 7 == 0 else ""}


def expected_state(country: str) -> str | None:
    return _STATES.get(country)


def expected_phone(user_id: int) -> str:
    return f"+1 555 {user_id % 10000:04d}" if user_id % 7 == 0 else ""


def layout(vintage: int | None, site: str = "prod") -> Layout:
    if vintage is None:
        return Layout(None, site)
    if vintage == 2016:
        return Layout(2016, "prod", password="hashed", unknown_table="verify_student_verificationstatus")
    if vintage == 2020:
        return Layout(2020, "edx", columns={"auth_userprofile": _PROFILE + ("state",)},
                      unknown_table="django_comment_client_role_users",
                      failed=((0, "grades_persistentsubsectiongrade"),))
    if vintage == 2024:
        explicit = tuple(c for c in _PROFILE if c != "allow_certificate") + ("state", "phone_number")
        return Layout(2024, "patches", columns={"auth_userprofile": explicit},
                      renamed={"user_id_map": {"id": "user_id"}}, password="empty",
                      unknown_table="credit_crediteligibility", optin_zip=True)
    raise ValueError(f"vintage must be one of {', '.join(map(str, VINTAGES))}")


# Unknown tables: header and one line per enrolment (``e`` an Enrolment, ``c`` its Course).
UNKNOWN_HEADERS = {
    "verify_student_verificationstatus": ("timestamp", "status", "course_id", "checkpoint_location", "user_id"),
    "django_comment_client_role_users": ("course_id", "user_id", "name"),
    "credit_crediteligibility": ("id", "created", "modified", "username", "deadline", "course_id"),
}


def unknown_rows(table: str, enrolments, course_id: str, fmt) -> list[str]:
    """Rows of an unknown table for a course: verified enrolments (verification, credit) or
    every enrolment (forum roles: Student, the course's staff: Moderator)."""
    out = []
    for i, e in enumerate(enrolments):
        u = e.user
        if table == "verify_student_verificationstatus" and e.mode == "verified":
            out.append(f"{fmt(e.created + 60)}\tapproved\t{course_id}\tNULL\t{u.id}")
        elif table == "django_comment_client_role_users":
            out.append(f"{course_id}\t{u.id}\t{'Moderator' if u.is_staff else 'Student'}")
        elif table == "credit_crediteligibility" and e.mode == "verified":
            out.append(f"{i + 1}\t{fmt(e.created)}\t{fmt(e.created)}\t{u.username}\t{fmt(e.created + 86400 * 365)}"
                       f"\t{course_id}")
    return out
