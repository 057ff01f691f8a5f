"""The run's session keyring (decrypt.make_session_keyring), with the real gpg binary.

A run unlocks the organisation's key once: its secret subkeys are exported and re-protected in a
private home under a random passphrase with gpg-agent's cheapest S2K, and every file of the run
decrypts through that home. These tests check what that must never change and what it promises:

* the plaintext is the same as through the keyring, and the keyring's files are only read;
* the session home holds the key under a passphrase that is not the organisation's, random per run,
  with the cheap count (the keyring's own, costly count stays as it was);
* neither passphrase ever appears in a gpg command line;
* a keyring it cannot be made from (two keys with different passphrases) falls back to decrypting
  through the keyring, file by file, as before; an unprotected key works with or without a passphrase;
* the home and its agent are gone when the run ends; backfill workers use the driver's home.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import _gpg, gpg_encrypt, make_key

ENTRY = [sys.executable, "-c", "import sys; from edx_engine.cli import app; sys.exit(app())"]
COSTLY_COUNT = 4194304  # the keyring's own protection: more than the session keyring's 65536, still quick


def _s2k_counts(home: Path) -> list[int]:
    """The S2K iteration counts protecting the secret keys stored in a gpg home."""
    counts = []
    for f in sorted((home / "private-keys-v1.d").glob("*.key")):
        counts += [int(c) for c in re.findall(rb'\(sha1\s+#[0-9A-Fa-f]+#\s+"?(\d+)"?\)', f.read_bytes())]
    return counts


def _tree_digest(home: Path) -> dict[str, str]:
    return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(home.rglob("*")) if p.is_file() and not p.name.startswith("S.") and p.name != "random_seed"}


def _passwd_check(home: Path, fpr: str, passphrase: str) -> bool:
    """gpg's own test of a key's passphrase (``--dry-run --passwd``)."""
    r, w = os.pipe()
    os.write(w, passphrase.encode() + b"\n")
    os.close(w)
    try:
        out = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
                              "--passphrase-fd", str(r), "--status-fd", "1", "--dry-run", "--passwd", fpr],
                             capture_output=True, text=True, pass_fds=(r,)).stdout
    finally:
        os.close(r)
    return "SUCCESS keyedit.passwd" in out and "ERROR keyedit.passwd" not in out


@pytest.fixture(scope="module")
def costly_key(tmp_path_factory):
    """(keyring, fingerprint, passphrase) of a key protected with a larger S2K count than the session's."""
    home = Path(tmp_path_factory.mktemp("gnupg-costly"))
    fpr = make_key(home, "Costly <costly@example.org>", "org passphrase 1")
    # make_key protects with 65536; re-protect under a costly count, as a real keyring is
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)
    (home / "gpg-agent.conf").write_text(f"default-cache-ttl 0\nmax-cache-ttl 0\ns2k-count {COSTLY_COUNT}\n")
    r, w = os.pipe()
    os.write(w, b"org passphrase 1\norg passphrase 1\n")
    os.close(w)
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--command-fd", str(r),
                    "--passwd", fpr], check=True, capture_output=True, pass_fds=(r,))
    os.close(r)
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)
    assert set(_s2k_counts(home)) == {COSTLY_COUNT}
    yield home, fpr, "org passphrase 1"
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)


def _message(tmp: Path, home: Path, fpr: str, name: str, text: str) -> Path:
    plain = tmp / f"{name}.txt"
    plain.write_text(text)
    return gpg_encrypt(home, fpr, plain, tmp / f"{name}.txt.gpg")


def _decrypt_all(files: list[Path], keyring: Path, passphrase: str | None) -> tuple[list, object]:
    """Each file's plaintext (or the error) through one session; and the session's keyring."""
    from edx_engine.decrypt import DecryptError, GpgSettings, gpg_decrypt, gpg_session

    out = []
    with gpg_session(GpgSettings(str(keyring), passphrase)) as g:
        for f in files:
            try:
                with gpg_decrypt(f, g) as s:
                    text = s.read()
                out.append(text)  # only once gpg has ended well
            except DecryptError as exc:
                out.append(str(exc))
        made = g.session.keyring  # type: ignore[union-attr]
        if made is not None:
            assert made.home.is_dir() and (made.home.stat().st_mode & 0o777) == 0o700
            made_home, made_pass = made.home, made.passphrase
            counts = _s2k_counts(made.home)
            org_unlocks = _passwd_check(made.home, _fpr(keyring), passphrase or "")
            session_unlocks = _passwd_check(made.home, _fpr(keyring), made.passphrase)
    info = None if made is None else dict(home=made_home, passphrase=made_pass, counts=counts,
                                          org_unlocks=org_unlocks, session_unlocks=session_unlocks)
    return out, info


def _fpr(home: Path) -> str:
    return next(ln.split(":")[9] for ln in _gpg(home, "-K", "--with-colons").splitlines() if ln.startswith("fpr"))


def _agent_running_in(home: Path) -> bool:
    for d in Path("/proc").iterdir():
        try:
            cmd = (d / "cmdline").read_bytes() if d.name.isdigit() else b""
        except OSError:
            continue
        if b"gpg-agent" in cmd and str(home).encode() in cmd:
            return True
    return False


def test_a_run_decrypts_through_a_session_keyring_under_a_random_cheap_passphrase(costly_key, tmp_path,
                                                                                   monkeypatch):
    home, fpr, pw = costly_key
    files = [_message(tmp_path, home, fpr, f"m{i}", f"message {i}\n" * (i + 1)) for i in range(3)]
    before = _tree_digest(home)
    got, info = _decrypt_all(files, home, pw)
    assert got == [f"message {i}\n".encode() * (i + 1) for i in range(3)]
    assert info is not None
    assert info["counts"] and set(info["counts"]) == {65536}  # the session keyring: the cheapest count
    assert set(_s2k_counts(home)) == {COSTLY_COUNT}  # the keyring: as it was
    assert info["session_unlocks"] and not info["org_unlocks"]  # under another passphrase than the org's
    assert len(info["passphrase"]) >= 40 and info["passphrase"] != pw
    assert not info["home"].exists() and not _agent_running_in(info["home"])  # gone with the run
    assert _tree_digest(home) == before  # the keyring was only read

    _, again = _decrypt_all(files[:1], home, pw)
    assert again["passphrase"] != info["passphrase"]  # random per run

    # the same plaintext without a session keyring (EDX_ENGINE_GPG_SESSION_KEY=0): one unlock per file
    monkeypatch.setenv("EDX_ENGINE_GPG_SESSION_KEY", "0")
    plain, none = _decrypt_all(files, home, pw)
    assert none is None and plain == got


def test_a_keyring_of_two_keys_with_different_passphrases_decrypts_file_by_file(gpg_key, other_gpg_key, tmp_path):
    """No session keyring can be made (one passphrase cannot export both keys): every file is
    decrypted through the keyring, as before, and the right passphrase for a file's key works."""
    home, fpr, pw = gpg_key
    other_home, other_fpr = other_gpg_key
    both = tmp_path / "both"
    both.mkdir(mode=0o700)
    (both / "gpg-agent.conf").write_text("default-cache-ttl 0\nmax-cache-ttl 0\ns2k-count 65536\n")
    for h, f, p in ((home, fpr, pw), (other_home, other_fpr, "another secret")):
        key = tmp_path / f"{f}.asc"
        _gpg(h, "--armor", "--export-secret-keys", "-o", str(key), f, passphrase=p)
        _gpg(both, "--import", str(key), passphrase=p)
    subprocess.run(["gpgconf", "--homedir", str(both), "--kill", "all"], check=False)
    mine = _message(tmp_path, home, fpr, "mine", "for the test key\n")
    theirs = _message(tmp_path, other_home, other_fpr, "theirs", "for the other key\n")
    got, info = _decrypt_all([mine, theirs], both, pw)
    assert info is None
    assert got[0] == b"for the test key\n"
    assert isinstance(got[1], str) and "wrong passphrase" in got[1]  # the other key's passphrase is another
    got, info = _decrypt_all([theirs], both, "another secret")
    assert info is None and got == [b"for the other key\n"]
    subprocess.run(["gpgconf", "--homedir", str(both), "--kill", "all"], check=False)


@pytest.mark.parametrize("given", [None, "a passphrase given by habit"])
def test_an_unprotected_key_decrypts_through_a_protected_session_keyring(tmp_path, given):
    home = tmp_path / "ring"
    fpr = make_key(home, "Open <open@example.org>", "")
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)
    f = _message(tmp_path, home, fpr, "m", "no passphrase on this key\n")
    got, info = _decrypt_all([f, f], home, given)
    assert got == [b"no passphrase on this key\n"] * 2
    assert info is not None and info["session_unlocks"] and set(info["counts"]) == {65536}
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)


def _spy(tmp: Path) -> tuple[Path, Path]:
    """A `gpg` first on PATH that records every command line (with its --homedir), then runs the real one."""
    d, log = tmp / "spybin", tmp / "gpg-argv.log"
    d.mkdir(exist_ok=True)
    (d / "gpg").write_text(f"""#!/bin/sh
echo "$*" >> "{log}"
exec "{shutil.which('gpg')}" "$@"
""")
    (d / "gpg").chmod(0o755)
    return d, log


def test_backfill_workers_decrypt_through_the_drivers_session_keyring(costly_key, tmp_path):
    """`import --jobs 2` of encrypted logs: the key is exported once, on the driver; each worker's gpg
    runs in the driver's session home; neither passphrase is ever on a gpg command line."""
    from eventlog import tracking_event

    home, fpr, pw = costly_key
    root = tmp_path / "logs"
    root.mkdir()
    for day in ("2026-10-20", "2026-10-21", "2026-10-22"):
        plain = root / f"idbx-edx-events-{day}.log.gz"
        with gzip.open(plain, "wt") as out:
            for n in range(4):
                ev = tracking_event(f"u{n}", 100 + n, "course-v1:IDBx+T1+2026", "10.0.0.1", n)
                ev["time"] = f"{day}T10:00:{n:02d}+00:00"
                out.write(json.dumps(ev) + "\n")
        gpg_encrypt(home, fpr, plain, root / (plain.name + ".gpg"))
        plain.unlink()
    spy, log = _spy(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDX_ENGINE_") or k == "EDX_ENGINE_SQL_CACHE"}
    env.update(GNUPGHOME=str(home), EDX_ENGINE_GPG_PASSPHRASE=pw, PATH=f"{spy}:{env['PATH']}")
    r = subprocess.run([*ENTRY, "import", str(root), "--jobs", "2", "--data-dir", str(tmp_path / "d")], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "events: 12" in r.stdout
    lines = log.read_text().splitlines()
    exports = [ln for ln in lines if "--export-secret-subkeys" in ln]
    decrypts = [ln for ln in lines if "--decrypt" in ln]
    assert len(exports) == 1 and len(decrypts) == 3
    homes = {re.search(r"--homedir (\S+)", ln).group(1) for ln in decrypts}
    assert len(homes) == 1 and str(home) not in homes.pop()  # one session home, not the keyring
    assert pw not in log.read_text()
    # every --passphrase-fd / --command-fd names a pipe; no passphrase-like argument at all
    assert not any(re.search(r"--passphrase(?!-fd)\b", ln) for ln in lines)
