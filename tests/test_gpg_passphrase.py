"""GPG in imports and syncs (issue 10, part 4), with the real gpg binary.

* A passphrase that the user's own gpg-agent still holds (the README's GNUPGHOME route: a
  keyring whose agent caches) is never relied upon: a wrong passphrase fails, for `import`
  and for `keys import`.
* A wrong passphrase is found once, before the first file: one line, exit 1, one gpg run.
* A package whose every file failed is a failure (exit 1); a partial import names the
  quarantine only when lines were rejected.
* Package members are decrypted concurrently (bounded) with results identical to a
  sequential import and to the same package unencrypted.
* `sync` prints each failure once, in under 200 characters, and checks the passphrase once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from cli_support import run_cli
from conftest import _gpg, gpg_encrypt
from edx_engine.synthetic import SyntheticConfig, generate

ENTRY = [sys.executable, "-c", "import sys; from edx_engine.cli import app; sys.exit(app())"]
WRONG = "not-the-passphrase-4711"


# -- fixtures ---------------------------------------------------------------------------------

def _export_secret(home: Path, fpr: str, pw: str, out: Path) -> Path:
    _gpg(home, "--armor", "--export-secret-keys", "-o", str(out), fpr, passphrase=pw)
    return out


@pytest.fixture(scope="module")
def user_keyring(gpg_key, tmp_path_factory):
    """The organisation's key imported into a keyring like a user's own: its agent caches
    passphrases (gpg's defaults; only a cheap S2K count to keep the tests fast)."""
    home, fpr, pw = gpg_key
    ring = Path(tmp_path_factory.mktemp("user-gnupg"))
    ring.chmod(0o700)
    (ring / "gpg-agent.conf").write_text("s2k-count 65536\n")
    key_file = _export_secret(home, fpr, pw, ring.parent / "org-private.asc")
    _gpg(ring, "--import", str(key_file), passphrase=pw)
    # An imported secret key stays in OpenPGP's own protection until its first use, when the agent that
    # unlocks it stores it in the agent's format under that agent's S2K count. Used first by the engine's
    # private agents (gpg's calibrated count), every later unlock cost ~0.3 s; used first here, 65536.
    probe = ring.parent / "first-use"
    probe.write_text("first use\n")
    _gpg(ring, "--trust-model", "always", "--recipient", fpr, "--output", f"{probe}.gpg", "--encrypt", str(probe))
    _gpg(ring, "--output", f"{probe}.out", "--decrypt", f"{probe}.gpg", passphrase=pw)  # the encryption subkey
    subprocess.run(["gpgconf", "--homedir", str(ring), "--kill", "all"], check=False)  # no passphrase cached
    yield ring, fpr, pw, key_file
    subprocess.run(["gpgconf", "--homedir", str(ring), "--kill", "all"], check=False)


@pytest.fixture(scope="module")
def deliveries(gpg_key, tmp_path_factory):
    """The same small synthetic delivery, encrypted to the test key and in plain text."""
    home, fpr, _ = gpg_key
    base = tmp_path_factory.mktemp("gpg-deliveries")
    common = dict(org="IDBx", courses=2, learners=30, days=1, seed=3, malformed=True)
    generate(base / "enc", SyntheticConfig(encrypt_to=fpr, gnupghome=str(home), **common))
    generate(base / "plain", SyntheticConfig(**common))
    return base


def package_zip(deliveries: Path, which: str) -> Path:
    return next((deliveries / which / "course-data").glob("*.zip"))


def gpg_spy(tmp: Path) -> tuple[Path, Path]:
    """A `gpg` first on PATH that records when each decryption starts and ends, then runs the real one."""
    d, log = tmp / "spybin", tmp / "gpg-decrypt.log"
    d.mkdir(exist_ok=True)
    (d / "gpg").write_text(f"""#!/bin/sh
case " $* " in *" --decrypt "*) dec=1 ;; *) dec=0 ;; esac
case " $* " in *" --export-secret-subkeys "*) echo "export $$" >> "{log}" ;; esac
[ $dec = 1 ] && echo "start $$ $(date +%s%N)" >> "{log}"
"{shutil.which('gpg')}" "$@"
rc=$?
[ $dec = 1 ] && echo "end $$ $(date +%s%N)" >> "{log}"
exit $rc
""")
    (d / "gpg").chmod(0o755)
    return d, log


def decrypt_runs(log: Path) -> list[str]:
    return [ln for ln in log.read_text().splitlines() if ln.startswith("start")] if log.exists() else []


def export_runs(log: Path) -> list[str]:
    """gpg runs that unlocked the keyring's key to make a run's session keyring."""
    return [ln for ln in log.read_text().splitlines() if ln.startswith("export")] if log.exists() else []


def max_overlap(log: Path) -> int:
    """Most gpg decryptions running at the same moment."""
    events = sorted((int(t), 1 if kind == "start" else -1) for kind, _, t in
                    (ln.split() for ln in log.read_text().splitlines() if not ln.startswith("export")))
    now = best = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


def env_for(gnupghome: Path, passphrase: str | None, path_first: Path | None = None, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDX_ENGINE_") or k == "EDX_ENGINE_SQL_CACHE"}
    env.update(GNUPGHOME=str(gnupghome), COLUMNS="200", **extra)
    if passphrase is not None:
        env["EDX_ENGINE_GPG_PASSPHRASE"] = passphrase
    if path_first is not None:
        env["PATH"] = f"{path_first}:{env['PATH']}"
    return env


def run_import(data: Path, env: dict, *paths: Path) -> subprocess.CompletedProcess:
    """`edx-engine import`, in this process (cli_support.run_cli); gpg runs as its own processes either way."""
    return run_cli(["import", *map(str, paths), "--data-dir", str(data)], env=env)


def agent_has_cached(ring: Path) -> bool:
    """True if the keyring's own agent holds a passphrase (KEYINFO's 7th field is 1)."""
    grips = [ln.split(":")[9] for ln in _gpg(ring, "-K", "--with-colons", "--with-keygrip").splitlines()
             if ln.startswith("grp")]
    out = subprocess.run(["gpg-connect-agent", "--homedir", str(ring), *[f"KEYINFO {g}" for g in grips], "/bye"],
                         capture_output=True, text=True).stdout
    return any(ln.split()[6] == "1" for ln in out.splitlines() if ln.startswith("S KEYINFO"))


def dump(data: Path, drop: tuple[str, ...] = ()) -> dict[str, list]:
    """Every row of every view of the store (sorted), without the columns in ``drop``."""
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        views = [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal "
                                          "AND schema_name='main' ORDER BY 1").fetchall()]
        out = {}
        for v in views:
            cols = [c for c in con.sql(f'SELECT * FROM "{v}" LIMIT 0').columns if c not in drop]
            sel = ", ".join(f'"{c}"' for c in cols) or "1"
            out[v] = sorted(con.execute(f'SELECT {sel} FROM "{v}"').fetchall(), key=repr)
        return out


# -- never a cached unlock --------------------------------------------------------------------

def test_a_passphrase_cached_by_the_users_agent_is_never_used(user_keyring, deliveries, tmp_path):
    ring, _, pw, _ = user_keyring
    pkg = package_zip(deliveries, "enc")
    ok = run_import(tmp_path / "d1", env_for(ring, pw), pkg)
    assert ok.returncode in (0, 2), ok.stderr  # 2: the synthetic package has malformed lines on purpose
    assert "loaded" in ok.stdout and "wrong passphrase" not in ok.stderr
    # the user decrypts a file with their own gpg: their agent now holds the unlocked key
    member = tmp_path / "member.gpg"
    with __import__("zipfile").ZipFile(pkg) as z:
        member.write_bytes(z.read(next(n for n in z.namelist() if n.endswith(".gpg"))))
    _gpg(ring, "--output", str(tmp_path / "member.txt"), "--decrypt", str(member), passphrase=pw)
    assert agent_has_cached(ring)  # without it this test would prove nothing

    spy, log = gpg_spy(tmp_path)
    bad = run_import(tmp_path / "d2", env_for(ring, WRONG, spy), pkg)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "wrong passphrase" in lines[0] and ".gpg" in lines[0], bad.stderr
    assert "Traceback" not in bad.stderr and WRONG not in bad.stdout + bad.stderr
    # one check, by the export that would have made the session keyring; no gpg run per file
    assert len(export_runs(log)) == 1 and len(decrypt_runs(log)) == 0
    assert agent_has_cached(ring)  # the user's agent was not even asked: ours are separate
    assert not leftover_private_homes()  # the finished import removed its private homes


def leftover_private_homes() -> list[Path]:
    """Private gpg homes whose run has ended (other runs may be going on in parallel)."""
    from edx_engine.decrypt import _homes_dir, _pid_alive

    return [d for d in Path(_homes_dir()).glob("edx-engine-gpg-*")
            if (d / "owner").exists() and not _pid_alive(int((d / "owner").read_text()))]


def test_keys_import_checks_the_passphrase_against_the_key_not_a_cached_unlock(user_keyring, tmp_path):
    from edx_engine.fetch.keys import KeyError_, import_key

    ring, fpr, pw, key_file = user_keyring
    _gpg(ring, "--local-user", fpr, "--output", str(tmp_path / "sig"), "--sign", str(key_file), passphrase=pw)
    assert agent_has_cached(ring)
    with pytest.raises(KeyError_, match="wrong passphrase"):
        import_key(key_file, ring, WRONG)
    assert fpr in import_key(key_file, ring, pw)


# -- one check, one line, honest exit codes ---------------------------------------------------

CID, SLUG = "course-v1:IDBx+IDB1x+2T2016", "IDBx-IDB1x-2T2016"
ENROL = "id\tuser_id\tcourse_id\tcreated\tis_active\tmode\n" + "".join(
    f"{i}\t{100 + i}\t{CID}\t2016-05-0{i} 13:11:09\t1\taudit\n" for i in range(1, 4))
USERS = "id\tusername\n" + "".join(f"{100 + i}\tuser{i}\n" for i in range(1, 4))


def _member(pkg: Path, table: str, text: str, home: Path, fpr: str) -> Path:
    pkg.mkdir(parents=True, exist_ok=True)
    plain = pkg.parent / f"{SLUG}-{table}-prod-analytics.sql"
    plain.write_text(text)
    out = gpg_encrypt(home, fpr, plain, pkg / (plain.name + ".gpg"))
    plain.unlink()
    return out


def test_every_file_failed_is_a_failure_and_partial_points_to_quarantine_only_with_rejects(
        gpg_key, other_gpg_key, tmp_path):
    home, fpr, pw = gpg_key
    other_home, other_fpr = other_gpg_key
    env = env_for(home, pw)
    foreign = tmp_path / "a" / "IDBx-2016-10-09"
    _member(foreign, "student_courseenrollment", ENROL, other_home, other_fpr)
    _member(foreign, "auth_user", USERS, other_home, other_fpr)
    r = run_import(tmp_path / "d1", env, foreign)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "all 2 files failed" in r.stderr and "Traceback" not in r.stderr
    failed = [ln for ln in r.stderr.splitlines() if ln.startswith("failed")]
    assert len(failed) == 2 and all("no secret key" in ln and ".sql.gpg" in ln for ln in failed)

    mixed = tmp_path / "b" / "IDBx-2016-10-09"
    _member(mixed, "student_courseenrollment", ENROL, home, fpr)
    _member(mixed, "auth_user", USERS, other_home, other_fpr)
    r = run_import(tmp_path / "d2", env, mixed)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "import was partial" in r.stdout and "quarantine" not in r.stdout  # no line was rejected
    with duckdb.connect(str(tmp_path / "d2" / "edx.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM student_courseenrollment").fetchone()[0] == 3


def test_missing_passphrase_is_one_line_before_any_file(gpg_key, deliveries, tmp_path):
    home, _, _ = gpg_key
    spy, log = gpg_spy(tmp_path)
    r = run_import(tmp_path / "d", env_for(home, None, spy), package_zip(deliveries, "enc"))
    assert r.returncode == 1, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "needs a passphrase" in lines[0]
    assert len(export_runs(log)) == 1 and len(decrypt_runs(log)) == 0


# -- concurrent decryption --------------------------------------------------------------------

def _import_lib(data: Path, zip_path: Path, home: Path, pw: str, monkeypatch, jobs: int):
    from edx_engine.config import resolve
    from edx_engine.ingest.run import import_paths

    monkeypatch.setenv("EDX_ENGINE_GPG_JOBS", str(jobs))
    monkeypatch.setenv("EDX_ENGINE_GPG_PASSPHRASE", pw)
    return import_paths(resolve(data_dir=str(data), gnupghome=str(home)), [zip_path])[0]


def test_concurrent_member_decryption_is_bounded_and_gives_identical_results(gpg_key, deliveries, tmp_path,
                                                                            monkeypatch):
    home, _, pw = gpg_key
    enc, plain = package_zip(deliveries, "enc"), package_zip(deliveries, "plain")
    spy, log = gpg_spy(tmp_path)
    monkeypatch.setenv("PATH", f"{spy}:{os.environ['PATH']}")
    members = sum(1 for n in __import__("zipfile").ZipFile(enc).namelist() if n.endswith(".gpg"))
    assert members >= 10

    seq = _import_lib(tmp_path / "seq", enc, home, pw, monkeypatch, jobs=1)
    # one gpg run per member: the first member's decryption is the passphrase check (issue 15), one at a time
    assert len(decrypt_runs(log)) == members and max_overlap(log) == 1
    log.unlink()
    par = _import_lib(tmp_path / "par", enc, home, pw, monkeypatch, jobs=3)
    assert len(decrypt_runs(log)) == members
    assert 2 <= max_overlap(log) <= 4  # ahead of the member being parsed: at most `jobs` more
    _import_lib(tmp_path / "plain", plain, home, pw, monkeypatch, jobs=3)

    assert [(f.label, f.status, f.rows, f.rejected, f.course_id) for f in par.files] == \
        [(f.label, f.status, f.rows, f.rejected, f.course_id) for f in seq.files]
    volatile = ("imported_at",)
    assert dump(tmp_path / "par", volatile) == dump(tmp_path / "seq", volatile)
    # and the same rows as the package in plain text (independent of gpg altogether)
    names = ("source_file", "imported_at")
    assert dump(tmp_path / "par", names) == dump(tmp_path / "plain", names)
    assert sum(len(v) for v in dump(tmp_path / "plain", names).values()) > 1000


# -- sync -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def moto_url():
    pytest.importorskip("moto.server")
    from test_sync import Moto

    m = Moto()
    yield m.url
    m.stop()


def test_sync_checks_once_and_prints_each_failure_once_under_200_chars(moto_url, gpg_key, deliveries, tmp_path):
    from test_sync import EV_BUCKET, PKG_BUCKET, cli_args, client, ledger, sync_env, upload, write_config

    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")).read()
    c = client(moto_url)
    c.create_bucket(Bucket=PKG_BUCKET)
    c.create_bucket(Bucket=EV_BUCKET)
    keys = upload(c, deliveries / "enc")
    assert len(keys) >= 2
    conf, data = write_config(tmp_path, moto_url), tmp_path / "d"
    spy, log = gpg_spy(tmp_path)
    env = sync_env(gpg_key, passphrase=WRONG)
    env["PATH"] = f"{spy}:{env['PATH']}"
    r = run_cli(cli_args(data, conf, "sync")[len(ENTRY):], env=env)
    # a configuration error, not a partial sync: exit 1, one failure line, then the summary says why
    # nothing else was imported (every object used to print its own identical line, exit 2)
    assert r.returncode == 1, r.stdout + r.stderr
    failed = [ln for ln in r.stderr.splitlines() if ln.startswith(("failed ", "pending "))]
    assert len(failed) == 1 and len(failed[0]) < 200 and "wrong passphrase" in failed[0], failed
    summary = r.stdout.strip().splitlines()[-1]
    assert summary.startswith("sync failed") and "stopped early: cannot decrypt: wrong passphrase" in summary
    assert WRONG not in r.stdout + r.stderr
    # one check for the whole run (the session keyring's export); no gpg for the objects
    assert len(export_runs(log)) == 1 and len(decrypt_runs(log)) == 0
    states = ledger(data).values()
    assert all("wrong passphrase" in err for _, _, err in states) and len(states) == len(keys)
    assert sorted(state for state, _, _ in states) == ["downloaded"] * (len(keys) - 1) + ["failed"]
    r = run_cli(cli_args(data, conf, "sync")[len(ENTRY):], env=sync_env(gpg_key))
    assert r.returncode in (0, 2) and "0 failed" in r.stdout, r.stdout + r.stderr


# -- private homes ----------------------------------------------------------------------------

def _agent_gone(home: Path, timeout: float = 10.0) -> bool:
    """No gpg-agent serves ``home`` (one told to stop takes a moment to exit: it gets ``timeout`` s)."""
    import time

    deadline = time.monotonic() + timeout
    while _agent_running_in(home):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _agent_running_in(home: Path) -> bool:
    for d in Path("/proc").iterdir():
        try:
            cmd = (d / "cmdline").read_bytes() if d.name.isdigit() else b""
        except OSError:
            continue
        if b"gpg-agent" in cmd and str(home).encode() in cmd:
            return True
    return False


def test_private_homes_of_a_killed_run_are_removed_by_the_next(gpg_key, tmp_path):
    from edx_engine.decrypt import make_private_home

    home, _, _ = gpg_key
    stale = make_private_home(home)
    assert (stale / "private-keys-v1.d").is_symlink() and "default-cache-ttl 0" in (stale / "gpg-agent.conf").read_text()
    subprocess.run(["gpg-connect-agent", "--homedir", str(stale), "/bye"], check=True, capture_output=True)
    assert _agent_running_in(stale)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (stale / "owner").write_text(str(dead.pid))  # as if its run had been killed with -9
    code = ("from pathlib import Path; from edx_engine.decrypt import private_home\n"
            f"with private_home(Path({str(home)!r})) as h: print(h)")
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert not stale.exists() and not Path(fresh).exists()
    assert _agent_gone(stale)
    assert any((home / "private-keys-v1.d").iterdir())  # the keyring itself is untouched


# -- event logs: the first file's decryption is the check (issue 15) ---------------------------

def _encrypted_days(tmp: Path, home: Path, fpr: str, days: list[str], per_day: int = 5) -> Path:
    """Daily logs (``per_day`` hand-written events each) encrypted to ``fpr``, plain copies removed."""
    import gzip
    import json

    from eventlog import tracking_event

    root = tmp / "logs"
    root.mkdir(exist_ok=True)
    for day in days:
        plain = root / f"idbx-edx-events-{day}.log.gz"
        with gzip.open(plain, "wt") as f:
            for n in range(per_day):
                ev = tracking_event(f"u{n}", 100 + n, "course-v1:IDBx+T1+2026", "10.0.0.1", n)
                ev["time"] = f"{day}T10:00:{n:02d}+00:00"
                f.write(json.dumps(ev) + "\n")
        gpg_encrypt(home, fpr, plain, root / (plain.name + ".gpg"))
        plain.unlink()
    return root


def _import_logs(data: Path, root: Path, home: Path, pw: str, monkeypatch):
    from edx_engine.config import resolve
    from edx_engine.ingest.run import import_paths

    monkeypatch.setenv("EDX_ENGINE_GPG_PASSPHRASE", pw)
    return import_paths(resolve(data_dir=str(data), gnupghome=str(home)), [root])[1]


def _events_in(data: Path) -> int:
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        return con.execute("SELECT count(*) FROM events").fetchone()[0]


def test_event_logs_unlock_the_key_once_per_file_and_a_wrong_passphrase_runs_gpg_once(
        gpg_key, tmp_path, monkeypatch):
    from edx_engine.decrypt import PassphraseError

    home, fpr, pw = gpg_key
    root = _encrypted_days(tmp_path, home, fpr, ["2026-10-20", "2026-10-21", "2026-10-22"])
    spy, log = gpg_spy(tmp_path)
    monkeypatch.setenv("PATH", f"{spy}:{os.environ['PATH']}")
    ev = _import_logs(tmp_path / "ok", root, home, pw, monkeypatch)
    assert [f.status for f in ev.files] == ["loaded"] * 3 and ev.events == 15
    assert _events_in(tmp_path / "ok") == 15
    # the key unlocked once, by the export that made the session keyring, then one gpg per file
    assert len(export_runs(log)) == 1 and len(decrypt_runs(log)) == 3
    log.unlink()

    with pytest.raises(PassphraseError, match="wrong passphrase") as err:
        _import_logs(tmp_path / "bad", root, home, WRONG, monkeypatch)
    assert "2026-10-20.log.gz.gpg" in str(err.value) and WRONG not in str(err.value)
    assert len(export_runs(log)) == 1 and len(decrypt_runs(log)) == 0  # the export found it; no gpg per file
    assert _events_in(tmp_path / "bad") == 0


@pytest.mark.parametrize("session_keyring", ["1", "0"])
def test_a_file_that_cannot_judge_the_passphrase_leaves_the_check_to_the_next(gpg_key, other_gpg_key, tmp_path,
                                                                             monkeypatch, session_keyring):
    """A first file encrypted to another key says nothing about the passphrase: it fails on its own
    ("no secret key"). Without a session keyring (EDX_ENGINE_GPG_SESSION_KEY=0, or a keyring it
    cannot be made from), the next file's decryption is the check; with one, its export is."""
    monkeypatch.setenv("EDX_ENGINE_GPG_SESSION_KEY", session_keyring)
    home, fpr, pw = gpg_key
    other_home, other_fpr = other_gpg_key
    root = _encrypted_days(tmp_path, home, fpr, ["2026-10-21", "2026-10-22"])
    _encrypted_days(tmp_path, other_home, other_fpr, ["2026-10-20"])  # same folder, sorts first
    spy, log = gpg_spy(tmp_path)
    monkeypatch.setenv("PATH", f"{spy}:{os.environ['PATH']}")
    ev = _import_logs(tmp_path / "d", root, home, pw, monkeypatch)
    by_day = {f.label.rsplit("-", 1)[-1][:2]: f for f in ev.files}
    assert by_day["20"].status == "failed" and "no secret key" in by_day["20"].message
    assert by_day["21"].status == by_day["22"].status == "loaded" and _events_in(tmp_path / "d") == 10
    assert len(decrypt_runs(log)) == 3 and len(export_runs(log)) == int(session_keyring)

    log.unlink()
    from edx_engine.decrypt import PassphraseError

    with pytest.raises(PassphraseError):
        _import_logs(tmp_path / "bad", root, home, WRONG, monkeypatch)
    if session_keyring == "1":
        assert len(export_runs(log)) == 1 and len(decrypt_runs(log)) == 0  # the export found it
    else:
        assert len(decrypt_runs(log)) == 2  # the foreign file (undecided), then the first own file: wrong


@pytest.mark.parametrize("jobs", ["1", "2"])  # one process; worker processes (the default on 2 cores)
def test_event_logs_with_a_wrong_passphrase_are_one_line_and_exit_1(gpg_key, tmp_path, jobs):
    """`import` of encrypted logs with a wrong passphrase says so once (it printed a `failed` line per
    file before the error line), exits 1 and imports nothing."""
    home, fpr, _ = gpg_key
    root = _encrypted_days(tmp_path, home, fpr, ["2026-10-20", "2026-10-21", "2026-10-22"])
    args = ["import", str(root), "--jobs", jobs, "--data-dir", str(tmp_path / "d")]
    if jobs == "1":
        r = run_cli(args, env=env_for(home, WRONG))
    else:  # worker processes are forked: not from the test process (its threads)
        r = subprocess.run([*ENTRY, *args], env=env_for(home, WRONG), capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "wrong passphrase" in lines[0], lines
    assert WRONG not in r.stdout + r.stderr
    assert _events_in(tmp_path / "d") == 0
