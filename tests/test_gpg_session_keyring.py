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
from test_gpg_passphrase import _agent_gone

ENTRY = [sys.executable, "-c", "import sys; from edx_engine.cli import app; sys.exit(app())"]
NOTES: list[str] = []  # why each _decrypt_all had no session keyring (shown by failing asserts)
COSTLY_COUNT = 4194304  # the keyring's own protection: more than the session keyring's 65536, still quick


def _s2k_counts(home: Path) -> list[int]:
    """The S2K iteration counts protecting the secret keys stored in a gpg home."""
    counts = []
    for f in sorted((home / "private-keys-v1.d").glob("*.key")):
        # the extended key format wraps long values onto lines that start with a space, anywhere
        text = f.read_bytes().replace(b"\n ", b"")
        # the salt is hex (#...#) or, when gpg finds its bytes printable enough, a quoted string: a
        # parser that knew only the hex form found no count now and then (a random salt)
        counts += [int(c) for c in re.findall(rb'\(sha1\s*(?:#[0-9A-Fa-f]+#|"(?:[^"\\]|\\.)*")\s*"?(\d+)"?\)', text,
                                               re.DOTALL)]
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
        NOTES.append(g.session.keyring_note)  # type: ignore[union-attr]  # why there is none
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


def test_a_run_decrypts_through_a_session_keyring_under_a_random_cheap_passphrase(costly_key, tmp_path,
                                                                                   monkeypatch):
    home, fpr, pw = costly_key
    files = [_message(tmp_path, home, fpr, f"m{i}", f"message {i}\n" * (i + 1)) for i in range(3)]
    before = _tree_digest(home)
    got, info = _decrypt_all(files, home, pw)
    assert got == [f"message {i}\n".encode() * (i + 1) for i in range(3)]
    assert info is not None, NOTES[-1]
    assert info["counts"] and set(info["counts"]) == {65536}  # the session keyring: the cheapest count
    assert set(_s2k_counts(home)) == {COSTLY_COUNT}  # the keyring: as it was
    assert info["session_unlocks"] and not info["org_unlocks"]  # under another passphrase than the org's
    assert len(info["passphrase"]) >= 40 and info["passphrase"] != pw
    assert not info["home"].exists() and _agent_gone(info["home"])  # gone with the run
    assert _tree_digest(home) == before  # the keyring was only read

    _, again = _decrypt_all(files[:1], home, pw)
    assert again is not None, NOTES[-1]
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
    # the other key's file first: its failure is its own, not the run's verdict on the passphrase
    got, info = _decrypt_all([theirs, mine, theirs, mine], both, pw)
    assert info is None
    assert [isinstance(g, str) and "wrong passphrase" in g for g in got] == [True, False, True, False]
    assert got[1] == got[3] == b"for the test key\n"
    # a passphrase for neither key: every file fails with the reason, none with another file's
    got, _ = _decrypt_all([mine, theirs, mine, theirs, mine], both, "neither")
    assert all(isinstance(g, str) and ("wrong passphrase" in g or "passphrase" in g) for g in got), got
    subprocess.run(["gpgconf", "--homedir", str(both), "--kill", "all"], check=False)


@pytest.mark.parametrize("given", [None, "a passphrase given by habit"])
def test_an_unprotected_key_decrypts_through_a_protected_session_keyring(tmp_path, given):
    home = tmp_path / "ring"
    fpr = make_key(home, "Open <open@example.org>", "")
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)
    f = _message(tmp_path, home, fpr, "m", "no passphrase on this key\n")
    got, info = _decrypt_all([f, f], home, given)
    assert got == [b"no passphrase on this key\n"] * 2
    assert info is not None, NOTES[-1]
    assert info["session_unlocks"] and set(info["counts"]) == {65536}
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


# -- keyrings of every shape (helper-33's review) -----------------------------------------------------------

def _ring(tmp: Path, name: str) -> Path:
    ring = tmp / name
    ring.mkdir(mode=0o700)
    (ring / "gpg-agent.conf").write_text("default-cache-ttl 0\nmax-cache-ttl 0\ns2k-count 65536\n")
    return ring


def _move_key(src: Path, fpr: str, pw: str, ring: Path, with_passphrase: bool = True) -> None:
    key = src.parent / f"{fpr}.asc"
    _gpg(src, "--armor", "--export-secret-keys", "-o", str(key), fpr, passphrase=pw)
    if with_passphrase:
        _gpg(ring, "--import", str(key), passphrase=pw)
    else:  # as `gpg --batch --import` leaves it: in OpenPGP's form, converted by the agent at its first unlock
        subprocess.run(["gpg", "--homedir", str(ring), "--batch", "--import", str(key)], check=True,
                       capture_output=True)
    subprocess.run(["gpgconf", "--homedir", str(ring), "--kill", "all"], check=False)


def test_a_key_in_openpgp_form_leaves_the_keyring_unwritten(tmp_path):
    """gpg-agent rewrites such a key at its first unlock, under its own S2K count: the export runs on
    a copy, so the keyring keeps its bytes (it had got the session's cheap count)."""
    src = _ring(tmp_path, "src")
    fpr = make_key(src, "Native <native@example.org>", "org pw")
    f = _message(tmp_path, src, fpr, "m", "native form\n")
    ring = tmp_path / "ring"
    ring.mkdir(mode=0o700)  # gpg's defaults: no s2k-count of ours
    _move_key(src, fpr, "org pw", ring, with_passphrase=False)
    assert any(b"openpgp-native" in k.read_bytes() for k in (ring / "private-keys-v1.d").glob("*.key"))
    before = _tree_digest(ring)
    got, info = _decrypt_all([f, f], ring, "org pw")
    assert got == [b"native form\n"] * 2 and info is not None, NOTES[-1]
    assert _tree_digest(ring) == before
    subprocess.run(["gpgconf", "--homedir", str(ring), "--kill", "all"], check=False)


def test_a_primary_key_that_decrypts_and_an_ordinary_key_in_one_keyring(tmp_path):
    """One key decrypts with its primary key (no subkey), the other with a subkey; same passphrase.
    Files to either decrypt through the session keyring (the primaries are exported then)."""
    ring = _ring(tmp_path, "ring")
    ordinary = make_key(ring, "Ordinary <o@example.org>", "org pw")
    _gpg(ring, "--quick-gen-key", "Primary <p@example.org>", "rsa2048", "cert,sign,encr", "never", passphrase="org pw")
    primary = next(ln.split(":")[9] for ln in _gpg(ring, "-K", "--with-colons").splitlines()
                   if ln.startswith("fpr") and ln.split(":")[9] != ordinary and "Primary" in _gpg(
                       ring, "-K", ln.split(":")[9]))
    subprocess.run(["gpgconf", "--homedir", str(ring), "--kill", "all"], check=False)
    a = _message(tmp_path, ring, ordinary, "a", "to the subkey\n")
    b = _message(tmp_path, ring, primary, "b", "to the primary\n")
    got, info = _decrypt_all([a, b], ring, "org pw")
    assert got == [b"to the subkey\n", b"to the primary\n"]
    assert info is not None, NOTES[-1]
    subprocess.run(["gpgconf", "--homedir", str(ring), "--kill", "all"], check=False)


def test_signed_and_passphrase_encrypted_messages_decrypt_as_through_the_keyring(gpg_key, tmp_path, monkeypatch):
    """A signed message needs the signer's public key (in the keyring, copied into the session home);
    a message encrypted with a passphrase (`gpg -c`, binary or armoured) needs the given passphrase,
    not the session's."""
    home, fpr, pw = gpg_key
    ring = _ring(tmp_path, "ring")
    _move_key(home, fpr, pw, ring)
    signer = tmp_path / "signer"
    signer_fpr = make_key(signer, "Signer <s@example.org>", "")
    _gpg(ring, "--import", str(_export_public(signer, signer_fpr, tmp_path / "signer.asc")))
    plain = tmp_path / "signed.txt"
    plain.write_text("signed and encrypted\n")
    _gpg(signer, "--import", str(_export_public(ring, fpr, tmp_path / "org.asc")))
    _gpg(signer, "--trust-model", "always", "--local-user", signer_fpr, "--recipient", fpr, "--sign", "--encrypt",
         "-o", str(tmp_path / "signed.gpg"), str(plain), passphrase="")
    for name, armour in (("sym.gpg", []), ("sym.asc", ["--armor"])):
        _gpg(ring, "--symmetric", *armour, "-o", str(tmp_path / name), str(plain), passphrase=pw)
    files = [tmp_path / "sym.gpg", tmp_path / "signed.gpg", tmp_path / "sym.asc"]  # a symmetric one first
    got, info = _decrypt_all(files, ring, pw)
    assert info is not None, NOTES[-1]
    monkeypatch.setenv("EDX_ENGINE_GPG_SESSION_KEY", "0")
    assert got == _decrypt_all(files, ring, pw)[0] == [b"signed and encrypted\n"] * 3
    subprocess.run(["gpgconf", "--homedir", str(signer), "--kill", "all"], check=False)
    subprocess.run(["gpgconf", "--homedir", str(ring), "--kill", "all"], check=False)


def _export_public(home: Path, fpr: str, out: Path) -> Path:
    _gpg(home, "--armor", "--export", "-o", str(out), fpr)
    return out


def test_an_interrupted_session_keyring_leaves_no_copy_of_the_key(gpg_key, monkeypatch):
    """Ctrl-C while the key is being re-protected: its home (holding the key under the organisation's
    passphrase at the cheap count until then) is removed, and it lived in memory (/dev/shm), not on disk."""
    import edx_engine.decrypt as D

    home, _, pw = gpg_key
    made: list[Path] = []
    real = D._gpg

    def interrupted(h, args, *a, **k):
        if args[:1] == ["--passwd"]:
            made.append(Path(h))
            raise KeyboardInterrupt
        return real(h, args, *a, **k)

    monkeypatch.setattr(D, "_gpg", interrupted)
    with pytest.raises(KeyboardInterrupt):
        D.make_session_keyring(home, pw)
    assert made and not made[0].exists() and _agent_gone(made[0])
    if Path("/dev/shm").is_dir() and not os.environ.get("XDG_RUNTIME_DIR"):
        assert made[0].parent == Path("/dev/shm")


def test_a_full_memory_folder_means_no_session_keyring_and_no_half_made_home(gpg_key, tmp_path, monkeypatch):
    """/dev/shm is 64 MB in many containers: a copy that fails (here: no space left) leaves no
    half-made home behind (it may hold key copies), and the run decrypts through the keyring."""
    import errno
    import shutil as sh

    import edx_engine.decrypt as D

    home, fpr, pw = gpg_key
    f = _message(tmp_path, home, fpr, "m", "through the keyring\n")

    def ours() -> set[Path]:  # this process' homes (other test processes may be making their own)
        out = set()
        for h in Path(D._ram_dir()).glob("edx-engine-gpg-*"):
            try:
                if (h / "owner").read_text().strip() == str(os.getpid()):
                    out.add(h)
            except OSError:
                pass
        return out

    before = ours()

    def full(src, dst, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sh, "copyfile", full)
    monkeypatch.setattr(sh, "copy2", full)
    got, info = _decrypt_all([f], home, pw)
    assert got == [b"through the keyring\n"] and info is None
    assert "could not be copied" in NOTES[-1] and "No space left" in NOTES[-1]
    assert ours() <= before


def test_prepare_makes_the_session_keyring_in_the_background_and_keeps_the_passphrase_check(costly_key, tmp_path,
                                                                                         monkeypatch):
    """``GpgSession.prepare`` (what ``import`` calls before opening the catalog) makes the keyring in a
    thread: the first decryption waits for it and goes through it; a wrong passphrase still fails that
    first decryption with PassphraseError; closing the session meanwhile leaves no copy of the key."""
    import threading
    import time

    from edx_engine.decrypt import GpgSettings, PassphraseError, gpg_decrypt, gpg_session

    home, fpr, pw = costly_key
    f = _message(tmp_path, home, fpr, "m", "prepared\n")
    with gpg_session(GpgSettings(str(home), pw)) as g:
        g.session.prepare()  # type: ignore[union-attr]
        assert any(t.name == "gpg-keyring" for t in threading.enumerate())
        with gpg_decrypt(f, g) as s:
            assert s.read() == b"prepared\n"
        made = g.session.keyring  # type: ignore[union-attr]
        assert made is not None and made.home.is_dir(), g.session.keyring_note  # type: ignore[union-attr]
    assert not made.home.exists()
    with gpg_session(GpgSettings(str(home), "not the passphrase")) as g:
        g.session.prepare()  # type: ignore[union-attr]
        with pytest.raises(PassphraseError):
            with gpg_decrypt(f, g) as s:
                s.read()
    import edx_engine.decrypt as D

    made: list[Path] = []
    real = D.make_private_home

    def spy(*a, **k):
        made.append(real(*a, **k))
        return made[-1]

    monkeypatch.setattr(D, "make_private_home", spy)

    def settle() -> None:
        for t in threading.enumerate():
            if t.name == "gpg-keyring":
                t.join(30)

    with gpg_session(GpgSettings(str(home), pw)) as g:  # closed while the keyring is being made
        g.session.prepare()  # type: ignore[union-attr]
        time.sleep(0.01)
    settle()
    assert g.session.keyring is None and made and not any(h.exists() for h in made)  # type: ignore[union-attr]
    # close() interrupted while it waited for the keyring (a second Ctrl-C): the thread removes its own copy
    made.clear()
    session = D.GpgSession(GpgSettings(str(home), pw))
    session.prepare()
    session._closed = True  # what close() sets before it waits
    settle()
    assert session.keyring is None and made and not any(h.exists() for h in made)
