"""`build --store` / `report --store` against a real PostgreSQL server, for what the parity tests do not
cover: the store address never printed with its password, whatever its form (URL user part, ``?password=``,
libpq keywords, a mistyped scheme, an unencoded '@'), in a success line or an error."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edx_engine.cli import app

from conftest import new_pg_database
from models_support import synthetic_store

PW = "Sekr3tPa55"
CLEAN = {k: None for k in ("EDX_ENGINE_DATA_DIR", "EDX_ENGINE_CONFIG", "EDX_ENGINE_STORE", "PGPASSWORD",
                           "PGSERVICE", "PGHOST", "PGPORT", "PGUSER", "PGDATABASE")}


def cli(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env={**CLEAN, "COLUMNS": "200", **(env or {})},
                              prog_name="edx-engine")


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    return synthetic_store(tmp_path_factory.mktemp("pgstore"), courses=1, learners=20, days=2)[0]


@pytest.fixture(scope="module")
def db(pg_server):
    url = new_pg_database(pg_server)
    host, _, name = url.rpartition("/")
    return host.split("@", 1)[1].split(":")[0], int(host.rsplit(":", 1)[1]), name


def _text(res) -> str:
    return res.output  # stdout and stderr, interleaved


def _no_secret(lake, res, secret: str = PW) -> None:
    text = _text(res)
    assert secret not in text, text
    for piece in (secret[:4], secret[4:]):  # the halves an unencoded '@' splits it into
        assert piece not in text, text
    for f in Path(lake.root).rglob("*"):  # nor in a file of the data directory
        if f.is_file() and f.stat().st_size < 50_000_000:
            assert secret.encode() not in f.read_bytes(), f


def _forms(db):
    host, port, name = db
    return {
        "user part": (f"postgresql://postgres:{PW}@{host}:{port}/{name}", True),
        "query": (f"postgresql://postgres@{host}:{port}/{name}?password={PW}&connect_timeout=5", True),
        "postgres scheme": (f"postgres://postgres:{PW}@{host}:{port}/{name}", True),
        "keywords": (f"host={host} port={port} dbname={name} user=postgres password={PW}", True),
        "quoted keywords": (f"host={host} port={port} dbname={name} user=postgres password='{PW} x'", True),
        "refused": (f"postgresql://postgres:{PW}@{host}:1/{name}", False),
        "refused query": (f"postgresql://postgres@{host}:1/{name}?password={PW}", False),
        "refused keywords": (f"host={host} port=1 dbname={name} user=postgres password={PW}", False),
        "mistyped scheme": (f"postgresq://postgres:{PW}@{host}:{port}/{name}", False),
        "other scheme": (f"mysql://postgres:{PW}@{host}:{port}/{name}", False),
        "no scheme": (f"postgres:{PW}@{host}:{port}/{name}", False),
        "unencoded @": (f"postgresql://postgres:{PW[:4]}@{PW[4:]}@{host}:{port}/{name}", False),
        "unencoded /": (f"postgresql://postgres:{PW[:4]}/{PW[4:]}@{host}:{port}/{name}", False),
        "bad keywords": (f"host={host} port={port} dbname={name} password={PW[:4]} {PW[4:]}", False),
        "bad query": (f"postgresql://postgres@{host}:{port}/{name}?passwd={PW}", False),
        # an '@' in the query is not the user part's: it used to be, and the password was printed
        "@ in query password": (f"postgresql://postgres@{host}:{port}/{name}?password={PW[:4]}@{PW[4:]}", True),
        "@ in query, no user part": (f"postgresql://{host}:{port}/{name}?user=postgres&password={PW[:4]}@{PW[4:]}",
                                     True),
        "refused @ in query user": (f"postgresql://{host}:1/{name}?user=edx@myserver&password={PW}", False),
        "refused @ in query password": (f"postgresql://postgres@{host}:1/{name}?password={PW[:4]}@{PW[4:]}", False),
        "sslpassword query": (f"postgresql://postgres@{host}:{port}/{name}?sslpassword={PW}", True),
        "sslpassword keywords": (f"host={host} port={port} dbname={name} user=postgres sslpassword={PW}", True),
        "refused sslpassword": (f"postgresql://{host}:1/{name}?user=a@b&sslpassword={PW}", False),
    }


FORMS = ["user part", "query", "postgres scheme", "keywords", "quoted keywords", "refused", "refused query",
         "refused keywords", "mistyped scheme", "other scheme", "no scheme", "unencoded @", "unencoded /",
         "bad keywords", "bad query", "@ in query password", "@ in query, no user part", "refused @ in query user",
         "refused @ in query password", "sslpassword query", "sslpassword keywords", "refused sslpassword"]


@pytest.mark.parametrize("form", FORMS)
def test_password_never_printed(lake, db, form):
    """Each form of the address, given as --store and as EDX_ENGINE_STORE, to build and to report: a success
    line names the store with '***' for its password, a failure is one `error:` line, and the password (or a
    piece of it) appears in neither, nor in any file of the data directory."""
    url, works = _forms(db)[form]
    for args, env in ((["--store", url], None), ([], {"EDX_ENGINE_STORE": url})):
        res = cli("build", "--data-dir", str(lake.root), "--model", "courses", *args, env=env)
        _no_secret(lake, res)
        if works:
            assert res.exit_code == 0, _text(res)
            assert "***" in res.output or PW not in url, res.output
        else:
            assert res.exit_code == 1, _text(res)
            assert "Traceback" not in _text(res) and _text(res).startswith("error: "), _text(res)
            assert isinstance(res.exception, SystemExit), res.exception
        rep = cli("report", "courses", "--data-dir", str(lake.root), "-o", "-", *args, env=env)
        _no_secret(lake, rep)
        assert rep.exit_code == (0 if works else 1), _text(rep)


def test_driver_messages_lose_the_password():
    """`hide_store` on texts a driver may raise: DuckDB's postgres extension quotes the whole connection string,
    libpq quotes a piece of a keyword string it cannot read, a percent-encoded password appears decoded."""
    from edx_engine.models.params import hide_store, mask_store

    url = f"postgresql://u:{PW}%40x@h:5432/db?password={PW}2&sslmode=require"
    assert mask_store(url) == "postgresql://u:***@h:5432/db?password=***&sslmode=require"
    for text in (f'Unable to connect to Postgres at "{url}": timeout', f"password {PW}@x rejected",
                 f"dsn {url.replace('%40', '@')}"):
        assert PW not in hide_store(text, url), text
    kw = f"host=h password='{PW} y' dbname=d"
    assert PW not in mask_store(kw) and PW not in hide_store(f'bad "{PW} y" in "{kw}"', kw)
    assert mask_store(f"host=h password={PW[:4]} {PW[4:]}") == "(store address not shown)"
    assert mask_store("postgresq://a:b@c/d") == "postgresq://…"


def test_mask_store_reads_the_user_part_before_the_query():
    """An '@' in the query (a user name, a password) is not the end of the user part: the password after it
    used to be printed whole (`postgresql://u@h/db?password=Pa@ssw0rd` unchanged); ``sslpassword`` is masked
    as ``password`` is, in the query and in the keyword form; an unencoded '/' or '@' in the user part's
    password still hides all of it."""
    from edx_engine.models.params import hide_store, mask_store

    cases = {
        "postgresql://u@h/db?password=Pa@ssw0rd": "postgresql://u@h/db?password=***",
        "postgresql://host/db?user=a@b&password=s3cretpw": "postgresql://host/db?user=a@b&password=***",
        "postgresql://127.0.0.1:5/e1?user=postgres&password=Top@Secret99":
            "postgresql://127.0.0.1:5/e1?user=postgres&password=***",
        "postgresql://127.0.0.1:1/e1?user=edx@myserver&password=TopSecret99":
            "postgresql://127.0.0.1:1/e1?user=edx@myserver&password=***",
        "postgresql://u:x@h:5432/db?user=a@b": "postgresql://u:***@h:5432/db?user=a@b",
        "postgresql://h?user=a@b&password=xyzw": "postgresql://h?user=a@b&password=***",
        "postgresql://u@h/db?password=ab#cd&sslmode=require": "postgresql://u@h/db?password=***&sslmode=require",
        "postgresql://u:pa?ss@h/db": "postgresql://u:***@h/db",
        "postgresql://h/db?sslpassword=Key@Pass1": "postgresql://h/db?sslpassword=***",
        "dbname=d host=h sslpassword=KeyPass1": "dbname=d host=h sslpassword=***",
        f"postgresql://u:{PW[:4]}@{PW[4:]}@h:5/db": "postgresql://u:***@h:5/db",
        f"postgresql://u:{PW[:4]}/{PW[4:]}@h:5/db": "postgresql://u:***@h:5/db",
    }
    for url, shown in cases.items():
        assert mask_store(url) == shown, url
        error = f'connection to "{url}" failed: password authentication failed'
        assert hide_store(error, url) == f'connection to "{shown}" failed: password authentication failed', url
    for secret in ("Top@Secret99", "TopSecret99", "Key@Pass1"):  # a driver quoting the password alone
        url = f"postgresql://h/db?user=a@b&password={secret}&sslpassword={secret}"
        assert secret not in hide_store(f"bad password {secret} / {secret.split('@')[-1]}", url)


def _pg_hits(url: str, needles: list[str]) -> dict[str, int]:
    """Table of edx_raw / edx_models -> rows whose text holds one of ``needles``."""
    import psycopg

    hits = {}
    with psycopg.connect(url, autocommit=True) as pg:
        tables = pg.execute("SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema IN "
                            "('edx_raw', 'edx_models')").fetchall()
        for s, t in tables:
            n = pg.execute(f'SELECT count(*) FROM {s}."{t}" t WHERE t::text LIKE ANY(%s)',
                           [[f"%{x}%" for x in needles]]).fetchone()[0]
            if n:
                hits[f"{s}.{t}"] = n
    return hits


def test_scrub_reaches_postgresql(tmp_path, pg_server):
    """Import, build into PostgreSQL, scrub, build again without --force, and only one model that reads no
    package table (`--model course_day`): the build copies again what the scrub rewrote and rebuilds the models
    over it, whatever --model says, so no username or e-mail of the package is left in any table of the
    database (edx_raw.auth_user kept the usernames, and the models over it, until a --force build; then, until
    a full build: a build of some models copied only their inputs). Between the scrub and that build, a report
    from PostgreSQL warns that its model is older than its data, as reports from DuckDB do (it said nothing);
    after it, a full build has nothing left to do."""
    import duckdb

    lake = synthetic_store(tmp_path, courses=1, learners=20, days=2)[0]
    url = new_pg_database(pg_server)
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        needles = sorted({v for r in con.execute("SELECT username, email FROM auth_user").fetchall() for v in r
                          if v and len(v) >= 5})
    assert len(needles) >= 20
    res = cli("build", "--data-dir", str(lake.root), "--store", url)
    assert res.exit_code == 0, _text(res)
    assert "edx_raw.auth_user" in _pg_hits(url, needles)  # what the scrub must reach
    res = cli("scrub", "--data-dir", str(lake.root), "--no-locate", env={"EDX_ENGINE_STORE": url})
    assert res.exit_code == 0, _text(res)
    assert "note: the copies in PostgreSQL" in res.output  # scrub says it does not reach them
    stale = "are older than the data they are computed from: run `edx-engine build --store ...`"
    res = cli("report", "masterfile", "--data-dir", str(lake.root), "--store", url, "-o", "-")
    assert res.exit_code == 0 and "warning: model(s) masterfile " + stale in res.output, _text(res)
    res = cli("build", "--data-dir", str(lake.root), "--store", url, "--model", "course_day")
    assert res.exit_code == 0, _text(res)
    assert _pg_hits(url, needles) == {}
    assert "masterfile" in res.output, res.output  # rebuilt, and said so
    for name in ("masterfile", "general", "course", "active_users", "courses"):  # no false alarm
        res = cli("report", name, "--data-dir", str(lake.root), "--store", url, "-o", "-")
        assert res.exit_code == 0 and "warning" not in res.output, (name, _text(res))
    res = cli("build", "--data-dir", str(lake.root), "--store", url)  # and then nothing more to do
    assert res.exit_code == 0 and "(0 built," in res.output, _text(res)


def _one_line_error(res) -> str:
    text = _text(res)
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), (text, res.exception)
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and text.endswith(errors[0] + "\n") and "Traceback" not in text, text
    return errors[0]


def test_server_gone_mid_build(lake, pg_server, monkeypatch):
    """The server ends the build's connection between two models (a restart, a kill, an administrator's
    pg_terminate_backend): one line, exit 1; the next build finishes the job."""
    import psycopg

    from edx_engine.models import build as B

    url = new_pg_database(pg_server)
    real = B._PgRun.build_whole

    def killed(self, n):
        with psycopg.connect(url, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [self.pg.info.backend_pid])
        return real(self, n)

    monkeypatch.setattr(B._PgRun, "build_whole", killed)
    text = _one_line_error(cli("build", "--data-dir", str(lake.root), "--store", url))
    assert "stopped: " in text and "terminat" in text, text
    monkeypatch.setattr(B._PgRun, "build_whole", real)
    assert cli("build", "--data-dir", str(lake.root), "--store", url).exit_code == 0


def test_role_without_create_rights(lake, pg_server):
    """A role that may not create schemas: one line saying what it needs; once the owner made the two schemas
    for it, it builds (no CREATE on the database needed)."""
    import psycopg

    url = new_pg_database(pg_server)
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute("DROP ROLE IF EXISTS edx_weak; CREATE ROLE edx_weak LOGIN")
    weak = url.replace("postgresql://postgres@", "postgresql://edx_weak@")
    text = _one_line_error(cli("build", "--data-dir", str(lake.root), "--store", weak))
    assert "permission denied" in text and "needs CREATE on the database" in text, text
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute("CREATE SCHEMA edx_raw AUTHORIZATION edx_weak; CREATE SCHEMA edx_models AUTHORIZATION edx_weak")
    res = cli("build", "--data-dir", str(lake.root), "--store", weak)
    assert res.exit_code == 0, _text(res)


def test_two_builds_at_once(lake, pg_server, tmp_path, monkeypatch):
    """A build into a database while another one (from another data directory: that directory's own lock
    does not see it) is half-way: one line, and the first build finishes undisturbed."""
    import threading

    from edx_engine.models import Params, build_postgres
    from edx_engine.models import build as B

    other = synthetic_store(tmp_path, courses=1, learners=10, days=1)[0]
    url = new_pg_database(pg_server)
    real, paused, go = B._PgRun.build_whole, threading.Event(), threading.Event()

    def slow(self, n):
        if threading.current_thread().name == "first":
            paused.set()
            go.wait(120)
        return real(self, n)

    monkeypatch.setattr(B._PgRun, "build_whole", slow)
    done: list = []
    first = threading.Thread(name="first", target=lambda: done.append(build_postgres(other, url, [], Params())))
    first.start()
    try:
        assert paused.wait(120)
        text = _one_line_error(cli("build", "--data-dir", str(lake.root), "--store", url))
        assert "another build is writing into PostgreSQL" in text, text
    finally:
        go.set()
        first.join(120)
    assert done and all(m.status == "built" for m in done[0].models)


def test_views_on_models_survive_rebuilds(lake, pg_server):
    """A colleague's view on a model, and a grant on it, survive a rebuild (--force: every model emptied and
    filled again, not dropped); a view on a table the build must drop (an edx_raw input copied again, a model
    whose columns changed) stops the build with one line naming the view, and nothing is dropped."""
    import psycopg

    url = new_pg_database(pg_server)
    assert cli("build", "--data-dir", str(lake.root), "--store", url).exit_code == 0
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute("DROP ROLE IF EXISTS edx_reader; CREATE ROLE edx_reader")
        pg.execute("CREATE SCHEMA team; CREATE VIEW team.pc AS SELECT course_id, count(*) AS n "
                   "FROM edx_models.person_course GROUP BY 1; "
                   "CREATE VIEW team.cs AS SELECT * FROM edx_models.courses; "
                   "GRANT SELECT ON edx_models.courses TO edx_reader")
        before = pg.execute("SELECT * FROM team.pc ORDER BY 1").fetchall()
        res = cli("build", "--data-dir", str(lake.root), "--store", url, "--force")
        assert res.exit_code == 0, _text(res)
        assert pg.execute("SELECT * FROM team.pc ORDER BY 1").fetchall() == before and before
        assert pg.execute("SELECT has_table_privilege('edx_reader', 'edx_models.courses', 'SELECT')").fetchone()[0]
        pg.execute("CREATE VIEW team.users AS SELECT id FROM edx_raw.auth_user")
        text = _one_line_error(cli("build", "--data-dir", str(lake.root), "--store", url, "--force"))
        assert "team.users" in text and "edx_raw.auth_user" in text, text
        pg.execute("DROP VIEW team.users; ALTER TABLE edx_models.courses ADD COLUMN old_column INT")
        text = _one_line_error(cli("build", "--data-dir", str(lake.root), "--store", url, "--force"))
        assert "team.cs" in text and "edx_models.courses" in text, text
        assert pg.execute("SELECT count(*) FROM team.cs").fetchone()[0] > 0  # nothing dropped or emptied


def test_one_data_directory_per_database(lake, pg_server, tmp_path):
    """Two data directories built into one database: the second is refused in one line naming the first
    (their models would silently replace each other's), unless --take-over, after which the database holds
    the second's models, all of them even with --model (it kept the first's other models), and the first is
    refused in turn."""
    import psycopg

    other = synthetic_store(tmp_path, courses=2, learners=10, days=1)[0]
    url = new_pg_database(pg_server)
    assert cli("build", "--data-dir", str(lake.root), "--store", url).exit_code == 0
    text = _one_line_error(cli("build", "--data-dir", str(other.root), "--store", url))
    assert "another data directory" in text and str(lake.root.resolve()) in text and "--take-over" in text, text
    assert "edx-engine build" in text, text  # the daily `run` has no --take-over: the line names the command that has
    res = cli("build", "--data-dir", str(other.root), "--store", url, "--take-over", "--model", "courses")
    assert res.exit_code == 0 and "(0 built" not in res.output, _text(res)
    with psycopg.connect(url, autocommit=True) as pg:  # every model the second's, not only those of --model
        assert pg.execute("SELECT count(*) FROM edx_models.courses").fetchone()[0] == 2  # the second's courses
        assert pg.execute("SELECT count(DISTINCT course_id) FROM edx_models.masterfile").fetchone()[0] == 2
    res = cli("build", "--data-dir", str(other.root), "--store", url)
    assert res.exit_code == 0 and "(0 built," in res.output, _text(res)
    text = _one_line_error(cli("build", "--data-dir", str(lake.root), "--store", url))
    assert str(other.root.resolve()) in text, text
    assert cli("build", "--data-dir", str(other.root), "--store", url).exit_code == 0
    text = _one_line_error(cli("build", "--data-dir", str(lake.root), "--take-over"))
    assert "--take-over needs --store" in text


def test_model_table_with_a_stale_not_null_is_made_anew(lake, pg_server):
    """A model's table whose column is NOT NULL while the definition lets it be NULL (an older definition, an
    administrator's constraint) is not kept and emptied as if it matched: the rows with a NULL there made the
    rebuild's INSERT fail. The keep-or-recreate check compares NOT NULL as well as names and types."""
    import psycopg

    url = new_pg_database(pg_server)
    assert cli("build", "--data-dir", str(lake.root), "--store", url, "--model", "person_course").exit_code == 0
    with psycopg.connect(url, autocommit=True) as pg:
        cols = [r[0] for r in pg.execute("SELECT attname FROM pg_attribute WHERE attrelid = "
                                         "'edx_models.person_course'::regclass AND attnum > 0 AND NOT attisdropped "
                                         "AND NOT attnotnull ORDER BY attnum").fetchall()]
        col = next(c for c in cols if pg.execute(
            f'SELECT count(*) FILTER (WHERE "{c}" IS NULL) > 0 AND count("{c}") > 0 FROM edx_models.person_course'
        ).fetchone()[0])
        pg.execute(f'DELETE FROM edx_models.person_course WHERE "{col}" IS NULL; '
                   f'ALTER TABLE edx_models.person_course ALTER COLUMN "{col}" SET NOT NULL')
        res = cli("build", "--data-dir", str(lake.root), "--store", url, "--model", "person_course", "--force")
        assert res.exit_code == 0, _text(res)
        assert pg.execute(f'SELECT count(*) FROM edx_models.person_course WHERE "{col}" IS NULL').fetchone()[0] > 0
        assert not pg.execute("SELECT attnotnull FROM pg_attribute WHERE attrelid = "
                              "'edx_models.person_course'::regclass AND attname = %s", [col]).fetchone()[0]
