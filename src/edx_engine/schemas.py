"""Schema registry: every edX table's columns, types, meaning and personal-data flag.

This is the one place where table layouts live. The importer types columns from it,
the synthetic generator writes headers from it, and privacy tools read the
``personal`` flags from it. Column order is the order edX writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# student_courseaccessrole roles that make an account the course's staff (beta testers and library
# users are learners); docs/indicators.md "Staff". The models and locate-users' summary read it.
COURSE_STAFF_ROLES = ("instructor", "staff", "ccx_coach", "finance_admin", "sales_admin", "data_researcher")

# Logical types and their DuckDB / Arrow spelling.
DUCKDB_TYPES = {
    "int": "BIGINT",
    "double": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMP",
    "text": "VARCHAR",
    "json": "VARCHAR",  # JSON held in a text column (studentmodule state, profile meta)
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str = "text"
    meaning: str = ""
    personal: bool = False
    required: bool = True  # a missing required column is an error; optional ones may be absent

    @property
    def duckdb_type(self) -> str:
        return DUCKDB_TYPES[self.type]


@dataclass(frozen=True)
class TableSchema:
    name: str
    meaning: str
    columns: tuple[Column, ...]
    kind: str = "sql"  # sql (MySQL batch TSV), csv, json, mongo, tar
    per_course: bool = True
    extra: dict = field(default_factory=dict)
    # Other spellings of a column in some years' headers -> the registry's name (user_id_map's
    # ``user_id`` since Oct 2022 was ``id`` before): the store keeps one name across vintages.
    aliases: dict = field(default_factory=dict)
    # Column sets that identify a row (the first is the primary key): checked on every snapshot.
    keys: tuple[tuple[str, ...], ...] = ()
    # Columns holding auth_user ids: checked against the auth_user file of the same package.
    user_refs: tuple[str, ...] = ()
    known: bool = True  # False: a table edX delivers that the registry does not describe (all text)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column | None:
        for c in self.columns:
            if c.name == name:
                return c
        return None

    @property
    def personal_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.personal]


def C(name: str, type: str = "text", meaning: str = "", personal: bool = False, required: bool = True) -> Column:
    return Column(name, type, meaning, personal, required)


def P(name: str, type: str = "text", meaning: str = "", required: bool = True) -> Column:
    """A personal-data column."""
    return Column(name, type, meaning, True, required)


_TABLES: list[TableSchema] = [
    TableSchema("auth_user", "Learner accounts", (
        C("id", "int", "user id"),
        P("username", meaning="public username"),
        P("first_name"), P("last_name"), P("email"),
        P("password", meaning="password hash, often empty"),
        C("is_staff", "bool", "edX staff account"),
        C("is_active", "bool", "account activated"),
        C("is_superuser", "bool"),
        C("last_login", "timestamp"),
        C("date_joined", "timestamp", "account creation time"),
        C("status", required=False), P("email_key", required=False), C("avatar_type", required=False),
        C("country", required=False), C("show_country", required=False),
        C("date_of_birth", required=False), C("interesting_tags", required=False),
        C("ignored_tags", required=False), C("email_tag_filter_strategy", required=False),
        C("display_tag_filter_strategy", required=False),
        C("consecutive_days_visit_count", required=False),
    ), keys=(("id",), ("username",))),
    TableSchema("auth_userprofile", "Learner profiles (self-reported demographics)", (
        C("id", "int"), C("user_id", "int"),
        P("name", meaning="full name"),
        C("language"), P("location"), P("meta", "json", "free JSON text"),
        C("courseware"),
        C("gender", meaning="m, f, o, empty or NULL"),
        P("mailing_address"),
        C("year_of_birth", "int"),
        C("level_of_education", meaning="p, m, b, a, hs, jhs, el, none, other, p_se, p_oth"),
        P("goals"),
        C("allow_certificate", "bool", required=False),
        C("country", meaning="ISO 3166-1 alpha-2"),
        P("city"), P("bio", required=False),
        C("profile_image_uploaded_at", "timestamp", required=False),
        # since 2021 (exporter's explicit column list): US state / region, and for a while a phone number
        C("state", meaning="US state or region code (2021+)", required=False),
        P("phone_number", meaning="2021-2022 exports only", required=False),
    ), keys=(("id",), ("user_id",)), user_refs=("user_id",)),
    TableSchema("certificates_generatedcertificate", "Certificates", (
        C("id", "int"), C("user_id", "int"),
        P("download_url"),
        C("grade", "double", "final grade 0..1"),
        C("course_id"), C("key"), C("distinction", "bool"),
        C("status", meaning="downloadable, notpassing, audit_passing, ..."),
        # the two uuids form the public certificate URL, whose page shows the learner's name
        P("verify_uuid"), P("download_uuid"),
        P("name", meaning="name printed on the certificate"),
        C("created_date", "timestamp"), C("modified_date", "timestamp"),
        C("error_reason"), C("mode"),
    ), keys=(("id",), ("user_id", "course_id")), user_refs=("user_id",)),
    TableSchema("courseware_studentmodule", "Learner state per course block", (
        C("id", "int"), C("module_type"), C("module_id", meaning="block usage key"),
        C("student_id", "int"), C("state", "json"),
        C("grade", "double"), C("created", "timestamp"), C("modified", "timestamp"),
        C("max_grade", "double"), C("done"), C("course_id"),
    ), keys=(("id",), ("student_id", "module_id")), user_refs=("student_id",)),
    TableSchema("student_courseenrollment", "Enrolments", (
        C("id", "int"), C("user_id", "int"), C("course_id"),
        C("created", "timestamp"), C("is_active", "bool", "0 = unenrolled"),
        C("mode", meaning="audit, honor, verified, ..."),
    ), keys=(("id",), ("user_id", "course_id")), user_refs=("user_id",)),
    TableSchema("student_courseaccessrole", "Course team roles (instructor, staff, beta_testers, ...)", (
        C("org", required=False), C("course_id"), C("user_id", "int"),
        C("role", meaning="instructor, staff, beta_testers, ccx_coach, finance_admin, sales_admin, ..."),
    ), keys=(("user_id", "course_id", "role"),)),
    TableSchema("user_id_map", "Anonymous hash id to user id", (
        C("hash_id"), C("id", "int", "user id (header `user_id` since Oct 2022)"), P("username"),
    ), aliases={"user_id": "id"}, keys=(("id",), ("hash_id",)), user_refs=("id",)),
    TableSchema("student_anonymoususerid", "Per-course anonymous ids", (
        C("id", "int"), C("user_id", "int"), C("anonymous_user_id"), C("course_id"),
    ), keys=(("id",), ("anonymous_user_id",))),
    TableSchema("user_api_usercoursetag", "Cohort / experiment tags", (
        C("user_id", "int"), C("course_id"), C("key"), C("value"),
    ), keys=(("user_id", "course_id", "key"),)),
    TableSchema("student_languageproficiency", "Languages spoken", (
        C("id", "int"), C("user_profile_id", "int"), C("code"),
    ), keys=(("id",),)),
    TableSchema("teams", "Teams", (
        # name and description are free text typed by the learners who create the team; edX makes
        # team_id from the name (slug + uuid), so it carries the name too (id is the key to join on)
        C("id", "int"), P("team_id", meaning="slug of the name + uuid"),
        P("name", meaning="team name (learners' free text)"), C("course_id"),
        C("topic_id"), C("date_created", "timestamp"),
        P("description", meaning="learners' free text"), C("country"), C("language"),
        C("discussion_topic_id"), C("last_activity_at", "timestamp"), C("team_size", "int"),
    ), keys=(("id",), ("team_id",))),
    TableSchema("teams_membership", "Team membership", (
        C("id", "int"), C("user_id", "int"), C("team_id", "int"),
        C("date_joined", "timestamp"), C("last_activity_at", "timestamp"),
    ), keys=(("id",), ("user_id", "team_id"))),
    TableSchema("grades_persistentcoursegrade", "Persisted course grades", (
        C("id", "int"), C("user_id", "int"), C("course_id"),
        C("course_edited_timestamp", "timestamp"), C("course_version"), C("grading_policy_hash"),
        C("percent_grade", "double"), C("letter_grade"), C("passed_timestamp", "timestamp"),
        C("created", "timestamp"), C("modified", "timestamp"),
    ), keys=(("id",), ("user_id", "course_id")), user_refs=("user_id",)),
    TableSchema("grades_persistentsubsectiongrade", "Persisted subsection grades", (
        C("id", "int"), C("user_id", "int"), C("course_id"), C("usage_key"),
        C("subtree_edited_timestamp", "timestamp"), C("course_version"),
        C("earned_all", "double"), C("possible_all", "double"),
        C("earned_graded", "double"), C("possible_graded", "double"),
        C("first_attempted", "timestamp"), C("created", "timestamp"), C("modified", "timestamp"),
        C("visible_blocks_hash"),
    ), keys=(("id",), ("user_id", "course_id", "usage_key")), user_refs=("user_id",)),
    TableSchema("wiki_article", "Wiki articles", (
        C("id", "int"), C("current_revision_id", "int"), C("created", "timestamp"),
        C("modified", "timestamp"), C("owner_id", "int"), C("group_id", "int"),
        C("group_read", "bool"), C("group_write", "bool"), C("other_read", "bool"),
        C("other_write", "bool"),
    ), keys=(("id",),)),
    TableSchema("wiki_articlerevision", "Wiki article revisions", (
        C("id", "int"), C("revision_number", "int"), P("user_message"), C("automatic_log"),
        P("ip_address"), C("user_id", "int"), C("modified", "timestamp"), C("created", "timestamp"),
        C("previous_revision_id", "int"), C("deleted", "bool"), C("locked", "bool"),
        C("article_id", "int"), P("content"), P("title", meaning="article title (wikis are learner-editable)"),
    ), keys=(("id",),)),
    TableSchema("email_opt_in", "Organisation e-mail opt-in (CSV)", (
        C("user_id", "int"), P("username"), P("email"), P("full_name"), C("course_id"),
        C("is_opted_in_for_email", "bool"), C("preference_set_datetime", "timestamp"),
    ), kind="csv", per_course=False, keys=(("user_id", "course_id"),)),
    # Non-tabular files, flattened by their own loaders (ingest/structure.py, ingest/forum.py).
    TableSchema("course_structure", "Course outline: one row per block", (
        C("block_id", meaning="usage key"), C("category"), C("display_name"),
        C("parent_id"), C("position", "int", "index among the parent's children"),
        C("chapter_id", meaning="enclosing chapter"), C("start", "timestamp"), C("due", "timestamp"),
        C("graded", "bool"), C("format"), C("metadata", "json"),
    ), kind="json"),
    TableSchema("forum", "Discussion forum posts (threads and comments)", (
        C("id", meaning="_id $oid"), C("type", meaning="CommentThread or Comment"),
        C("author_id", "int"), P("author_username"), P("title"), P("body"),
        C("commentable_id"), C("thread_type"), C("comment_thread_id"), C("parent_id"),
        C("created_at", "timestamp"), C("updated_at", "timestamp"), C("last_activity_at", "timestamp"),
        C("votes_up", "int"), C("comment_count", "int"), C("anonymous", "bool"),
        C("anonymous_to_peers", "bool"), C("closed", "bool"), C("pinned", "bool"),
        C("endorsed", "bool"), P("raw", "json", "the whole document (holds username, body, title)"),
    ), kind="mongo"),
    TableSchema("course_content", "Course OLX export (kept as a file listing)", (
        C("path", meaning="member path inside the tar.gz"), C("size", "int"),
        C("content", "json", "text of the course policies (policies/*/grading_policy.json, policy.json); "
                             "NULL for other members", required=False),
    ), kind="tar"),
]

TABLES: dict[str, TableSchema] = {t.name: t for t in _TABLES}

# Tables of the original (seed) system: the must-have core.
SEED_TABLES = (
    "auth_user", "auth_userprofile", "certificates_generatedcertificate",
    "courseware_studentmodule", "student_courseenrollment", "user_id_map",
)

# Columns the importer adds to every loaded table.
ADDED_COLUMNS = (
    Column("course_id", "text", "course the file belongs to"),
    Column("org", "text", "organisation"),
    Column("package_date", "text", "date of the weekly package (YYYY-MM-DD)"),
    Column("source_file", "text", "file the row came from"),
)


def untyped(name: str) -> TableSchema:
    """A table edX delivers that the registry does not describe: every header column is kept as
    text (``known=False``). Once the table is added to ``_TABLES``, a re-import types it."""
    return TableSchema(name, "not described by the registry: kept as text", (), known=False)


def schema_for(name: str) -> TableSchema:
    return TABLES[name] if name in TABLES else untyped(name)


def personal_in(table: str, columns: list[str]) -> list[str]:
    """The columns of a stored ``table`` to treat as personal: the registry's flags, plus every
    column the registry does not describe (an unknown table's, or one edX added to a known table:
    a phone number, a free-text field...), except the importer's own (course_id, org, ...)."""
    added = {c.name for c in ADDED_COLUMNS}
    schema = TABLES.get(table)
    if schema is None:
        return [c for c in columns if c not in added]
    return [c for c in columns if (col := schema.column(c)) is not None and col.personal
            or col is None and c not in added]


def personal_columns() -> dict[str, list[str]]:
    """Personal-data columns per table, for scrubbing and export checks."""
    return {t.name: t.personal_columns for t in _TABLES if t.personal_columns}
