"""Shared fixtures: a throwaway GPG key in a temporary GNUPGHOME (real gpg binary)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

TEST_PASSPHRASE = "correct horse battery staple ñ"

# Rich sizes tables from the terminal, and pytest-xdist workers have none: the same width everywhere
# (a test that wants another width passes its own COLUMNS).
os.environ["COLUMNS"] = "200"
# One cache of compiled model SQL (models/sqlcache.py) for every test process and every CLI subprocess they
# start (they inherit the environment; those that drop EDX_ENGINE_* variables keep this one). Entries are
# keyed by content and written atomically, so concurrent workers share it safely.
os.environ.setdefault("EDX_ENGINE_SQL_CACHE", str(Path(tempfile.gettempdir()) / f"edx-engine-sql-cache-{os.getuid()}"))
# Subprocesses (the CLI runs) read and write bytecode even where PYTHONDONTWRITEBYTECODE is set (`make test`
# unsets it for the workers too): compiling the package's modules again in each of ~190 runs cost ~0.3 CPU-s each.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
# The tests' Spark JVMs (the shared session, and those a CLI run or a subprocess starts: they inherit this)
# run many tiny queries: the C2 JIT and the parallel GC cost more CPU than they save there. C1 only and the
# serial GC halved the Spark tests' JVM CPU (129 -> 63 CPU-s, same tests). On data this small, compiling
# generated code (whole-stage and per-expression, Janino) costs more than it saves: the interpreted
# evaluation Spark falls back to anyway cut test_spark.py's JVM CPU by about a quarter (72 -> 53 CPU-s).
# A young generation of 384 MB (the serial GC's default is a third of a small initial heap) collects
# less often: busy CPU of test_spark.py's parity and day-after tests 91, 85 -> 74, 75 (pairs of runs).
# Not verifying the bytecode of the classes it loads (Spark's own jars, from the locked pyspark wheel) saves
# about 2 s of the session's start and 2-3 CPU-s of its first build (49.4 -> 47.5 s, 44.7 -> 42.1 JVM CPU-s).
# Users' Spark keeps its defaults: the parity tests check results, which do not depend on code generation.
os.environ.setdefault("PYSPARK_SUBMIT_ARGS",
                      "--conf spark.sql.codegen.wholeStage=false --conf spark.sql.codegen.factoryMode=NO_CODEGEN "
                      '--driver-java-options "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xmn384m '
                      '-XX:+UnlockDiagnosticVMOptions -XX:-BytecodeVerificationRemote -XX:-BytecodeVerificationLocal" '
                      "pyspark-shell")


def _gpg(home: Path, *args: str, passphrase: str | None = None) -> str:
    cmd = ["gpg", "--homedir", str(home), "--batch", "--yes", "--no-tty"]
    if passphrase is not None:
        r, w = os.pipe()
        os.write(w, passphrase.encode() + b"\n")
        os.close(w)
        cmd += ["--pinentry-mode", "loopback", "--passphrase-fd", str(r)]
        try:
            return subprocess.run(cmd + list(args), check=True, capture_output=True, text=True, pass_fds=(r,)).stdout
        finally:
            os.close(r)
    return subprocess.run(cmd + list(args), check=True, capture_output=True, text=True).stdout


def make_key(home: Path, uid: str, passphrase: str) -> str:
    """Create a key (sign primary + encryption subkey); returns its fingerprint."""
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    # Never cache passphrases: a wrong-passphrase test must really be asked for one.
    # A cheap key-protection count keeps each decryption at ~10 ms instead of ~0.5 s.
    (home / "gpg-agent.conf").write_text("default-cache-ttl 0\nmax-cache-ttl 0\ns2k-count 65536\n")
    _gpg(home, "--quick-gen-key", uid, "rsa2048", "default", "never", passphrase=passphrase)
    fpr = next(ln.split(":")[9] for ln in _gpg(home, "-K", "--with-colons").splitlines() if ln.startswith("fpr"))
    _gpg(home, "--quick-add-key", fpr, "rsa2048", "encr", "never", passphrase=passphrase)
    return fpr


@pytest.fixture(scope="session")
def gpg_key(tmp_path_factory):
    """(GNUPGHOME, fingerprint, passphrase) of a throwaway key; agents are stopped afterwards."""
    home = Path(tmp_path_factory.mktemp("gnupg"))
    fpr = make_key(home, "edx-engine Test <edx-test@example.org>", TEST_PASSPHRASE)
    yield home, fpr, TEST_PASSPHRASE
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)


@pytest.fixture(scope="session")
def other_gpg_key(tmp_path_factory):
    """A second, unrelated key: files encrypted to it cannot be read with gpg_key."""
    home = Path(tmp_path_factory.mktemp("gnupg-other"))
    fpr = make_key(home, "Someone Else <else@example.org>", "another secret")
    yield home, fpr
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)


def gpg_encrypt(home: Path, recipient: str, src: Path, dst: Path) -> Path:
    _gpg(home, "--trust-model", "always", "--encrypt", "-r", recipient, "-o", str(dst), str(src))
    return dst


# -- one local Spark session per worker, shared by the Spark test files (starting one costs 10-40 s) ----------

def spark_unavailable() -> str | None:
    """Why Spark tests cannot run here (they are then skipped with this reason), or None."""
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (pip install '.[spark]'): the Spark tests are skipped"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no Java on PATH (apt-get install openjdk-17-jre-headless): the Spark tests are skipped"
    return None


_SPARK: dict = {}


@pytest.fixture
def spark_local():
    """The worker's local[2] Spark session; a new one if a test (a CLI run) stopped the last one.
    Its Python workers run this interpreter (they import edx_engine)."""
    why = spark_unavailable()
    if why:
        pytest.skip(why)
    s = _SPARK.get("session")
    if s is None or s.sparkContext._jsc is None:  # never started, or stopped by the code under test
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        from edx_engine.models.spark import spark_session

        # the same JVM also serves Spark Connect on a free loopback port (test_spark_connect.py)
        port = _free_port()
        # one shuffle partition and no adaptive re-planning: the tests' data is a few thousand rows
        # (the parity build of every model: 26 -> 20 s once warm); results do not depend on either
        s = _SPARK["session"] = spark_session("local[2]", conf={
            "spark.sql.shuffle.partitions": "1", "spark.sql.adaptive.enabled": "false",
            "spark.plugins": "org.apache.spark.sql.connect.SparkConnectPlugin",
            "spark.connect.grpc.binding.address": "127.0.0.1", "spark.connect.grpc.binding.port": str(port)})
        _SPARK["connect"] = f"sc://127.0.0.1:{port}"
    return s


def _free_port() -> int:
    import socket

    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return so.getsockname()[1]


PGBIN = Path("/usr/lib/postgresql/15/bin")


def _as_pg(*cmd: str) -> None:
    pre = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(pre + list(cmd), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL server for this worker (``postgresql://postgres@127.0.0.1:<port>``, no database
    part): started at the first test that needs it, stopped at the end. Each module takes a database of its
    own (``pg_url``); the PostgreSQL tests share a scheduling group, hence one server."""
    if not (PGBIN / "initdb").exists() or not (PGBIN / "pg_ctl").exists():
        pytest.skip(f"PostgreSQL server binaries not found in {PGBIN} (apt-get install postgresql)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as user postgres")
    d = tempfile.mkdtemp(prefix="edx-pgtest-")
    os.chmod(d, 0o755)
    if os.geteuid() == 0:
        shutil.chown(d, "postgres", "postgres")
    port = _free_port()
    _as_pg(str(PGBIN / "initdb"), "-D", f"{d}/data", "-A", "trust", "-U", "postgres", "-E", "UTF8",
           "--locale=C.UTF-8")
    _as_pg(str(PGBIN / "pg_ctl"), "-D", f"{d}/data", "-l", f"{d}/log", "-w", "-o",
           f"-p {port} -k {d} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        _as_pg(str(PGBIN / "pg_ctl"), "-D", f"{d}/data", "-m", "immediate", "-w", "stop")
        shutil.rmtree(d, ignore_errors=True)


def new_pg_database(server: str) -> str:
    """The URL of a new, empty database on ``server`` (``pg_server``): a test's builds start from nothing."""
    import uuid

    import psycopg

    name = f"edx_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as pg:
        pg.execute(f"CREATE DATABASE {name}")
    return f"{server}/{name}"


@pytest.fixture(scope="module")
def pg_url(pg_server) -> str:
    """A database of its own for each module on the worker's PostgreSQL server (one initdb per worker)."""
    return new_pg_database(pg_server)


@pytest.fixture
def spark_connect_url(spark_local) -> str:
    """``sc://127.0.0.1:<port>``: the Spark Connect server running in the worker's shared session."""
    return _SPARK["connect"]


SHM, SHM_MIN_FREE = Path("/dev/shm"), 4 << 30


def memory_basetemp() -> Path | None:
    """Where the tests' temporary folders go when memory can hold them: a tmpfs such as /dev/shm.

    The stores the tests write are small, but every commit, model file and download is fsynced (as it
    must be for users) and the disk's journal makes each fsync cost milliseconds; on a tmpfs it costs
    nothing. Only if /dev/shm is a tmpfs with at least 4 GiB free (CI containers often give it 64 MiB):
    otherwise pytest's default under the system's temporary folder. EDX_ENGINE_TEST_TMP=disk keeps the default."""
    if os.environ.get("EDX_ENGINE_TEST_TMP") == "disk" or not SHM.is_dir():
        return None
    try:
        st = os.statvfs(SHM)
        fs = next((ln.split()[2] for ln in Path("/proc/mounts").read_text().splitlines()
                   if ln.split()[1] == str(SHM)), "")
    except OSError:
        return None
    if fs != "tmpfs" or st.f_bavail * st.f_frsize < SHM_MIN_FREE or not os.access(SHM, os.W_OK):
        return None
    _remove_dead_runs_folders()
    # one folder per run: pytest empties a --basetemp when it starts, so a shared name let one run
    # delete the files of another running at the same time
    return SHM / f"edx-engine-tests-{os.getuid()}-{os.getpid()}"


def _remove_dead_runs_folders() -> None:
    """The folders of earlier runs whose process is gone (a failed run keeps its folder to be looked
    at, until the next run: it is memory)."""
    prefix = f"edx-engine-tests-{os.getuid()}"
    for d in SHM.glob(prefix + "*"):
        pid = d.name[len(prefix) + 1:]
        if pid.isdigit() and Path(f"/proc/{pid}").exists():
            continue
        shutil.rmtree(d, ignore_errors=True)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # before pytest's temporary-folder factory reads the option; xdist workers get their own sub-folder of it
    if not config.option.basetemp and not hasattr(config, "workerinput"):
        base = memory_basetemp()
        if base is not None:
            config.option.basetemp = str(base)
            config._edx_memory_basetemp = base
    config.addinivalue_line("markers", "last: runs after the other tests of its scheduling group "
                                       "(it stops a session the group shares)")


def pytest_sessionfinish(session, exitstatus):
    s = _SPARK.pop("session", None)
    if s is not None:
        s.stop()
    base = getattr(session.config, "_edx_memory_basetemp", None)
    if base is not None and exitstatus == 0:  # memory, not disk: kept only for a run that failed
        shutil.rmtree(base, ignore_errors=True)


# -- running the suite on several workers (pytest-xdist, `make test` uses -n auto --dist loadfile) -------
# Tests of one group share a worker, hence its module fixtures (stores, servers, a Spark session); a group
# is a file, or a part of a costly file (SPLIT_GROUPS) so that both cores share it. With --dist loadfile
# the scheduler below hands groups out in COSTLY_FIRST order (xdist's own would sort them by test count),
# so the long ones start first and the short ones fill in at the end.
SPLIT_GROUPS = {
    "test_sync.py": lambda name: ("kill-a" if any(s in name for s in ("[download]", "[downloaded]", "[import]",
                                                                      "[decrypt]")) else "kill-b")
    if "kill_9" in name else ("errors" if any(
        w in name for w in ("corrupt", "wrong_passphrase", "network", "unreachable", "keeps_failing",
                            "deleted", "fails_is", "foreign", "user_errors")) else "main"),
    "test_faults.py": lambda name: "scrub" if "scrub_killed" in name else "import",
    "test_incremental_random.py": lambda name: name.rpartition("[")[2].rstrip("]"),  # one group a seed
}
SAME_GROUP = {"test_spark.py": "spark", "test_spark_import.py": "spark", "test_spark_connect.py": "spark",
              "test_event_id_text.py": "spark",  # one worker, one Spark session
              "test_postgres_models.py": "pg", "test_postgres_courses.py": "pg", "test_models_geo.py": "pg",
              "test_postgres_store.py": "pg", "test_postgres_nul.py": "pg",
              "test_postgres_incremental_random.py": "pg"}  # one server
COSTLY_FIRST = ["spark", "test_sync.py:kill-a", "test_sync.py:kill-b", "test_faults.py:import",
                "test_sync.py:main", "pg", "test_privacy.py", "test_incremental.py",
                *(f"test_incremental_random.py:{s}" for s in (1, 2, 3)), "test_faults.py:scrub",
                "test_sync.py:errors", "test_daily_run.py", "test_dashboard.py", "test_commit_wait.py",
                "test_gpg_passphrase.py", "test_store_moves.py", "test_cli.py", "test_events_sources.py",
                "test_adversarial_events.py", "test_models_naive.py"]


def schedule_group(nodeid: str) -> str:
    """The scheduling group of a test: its file, or a named part of it (SPLIT_GROUPS)."""
    path, _, name = nodeid.partition("::")
    base = path.rsplit("/", 1)[-1]
    if base in SAME_GROUP:
        return SAME_GROUP[base]
    split = SPLIT_GROUPS.get(base)
    return f"{base}:{split(name)}" if split else base


def pytest_collection_modifyitems(config, items):
    rank = {g: i for i, g in enumerate(COSTLY_FIRST)}
    # stable: file order kept otherwise; in a group, the tests that stop a shared session ("last") go last
    items.sort(key=lambda it: (rank.get(schedule_group(it.nodeid), len(rank)), bool(it.get_closest_marker("last"))))


def pytest_xdist_make_scheduler(config, log):
    """--dist loadfile, by group and in collection (COSTLY_FIRST) order rather than by test count."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class GroupScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return schedule_group(nodeid)

    config.option.loadscopereorder = False
    return GroupScheduling(config, log)
