"""Shared fixtures: a throwaway GPG key in a temporary GNUPGHOME (real gpg binary)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

TEST_PASSPHRASE = "correct horse battery staple ñ"

# Rich sizes tables from the terminal, and pytest-xdist workers have none: the same width everywhere
# (a test that wants another width passes its own COLUMNS).
os.environ["COLUMNS"] = "200"


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


# -- running the suite on several workers (pytest-xdist, `make test` uses -n auto --dist loadfile) -------
# Tests of one file share module fixtures (stores, servers, a Spark session) and some run in file order,
# so a file runs on one worker; the costly files are handed out first so both cores stay busy to the end.
# The xdist_group markers below name finer groups for `--dist loadgroup`, which does not pick them up
# with pytest-xdist 3.8 here (its own hook reads the markers first): kept for a later look.
SPLIT_GROUPS = {
    "test_sync.py": lambda name: "kill" if "kill_9" in name else ("errors" if any(
        w in name for w in ("corrupt", "wrong_passphrase", "network", "unreachable", "keeps_failing",
                            "deleted", "fails_is", "foreign", "user_errors")) else "main"),
    "test_faults.py": lambda name: "scrub" if "scrub_killed" in name else "import",
}
COSTLY_FIRST = ["test_sync.py:kill", "test_faults.py:import", "test_sync.py:main", "test_faults.py:scrub",
                "test_sync.py:errors", "test_privacy.py", "test_daily_run.py", "test_spark.py", "test_dashboard.py",
                "test_commit_wait.py", "test_gpg_passphrase.py", "test_store_moves.py", "test_cli.py",
                "test_events_sources.py", "test_adversarial_events.py", "test_models_naive.py",
                "test_postgres_models.py"]


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config, items):
    def group(item) -> str:
        base = item.path.name
        split = SPLIT_GROUPS.get(base)
        return f"{base}:{split(item.name)}" if split else base

    for item in items:
        if not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(group(item)))
    rank = {g: i for i, g in enumerate(COSTLY_FIRST)}
    items.sort(key=lambda it: rank.get(group(it), len(rank)))  # stable: file order kept within the rest
