"""The organisation's private GPG key in a private keyring under the data directory.

``<data_dir>/gnupg`` (mode 0700) with a ``gpg-agent.conf`` that never caches passphrases, so
nothing lingers in its agent. (Imports and syncs do not rely on that: they decrypt through
private agents of their own, see ``decrypt.GpgSession``, whatever keyring they are given.)
The passphrase, when given, travels over a pipe (``--passphrase-fd``), never argv.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ..config import PASSPHRASE_ENV, private_keyring
from ..decrypt import private_home, stop_agent

AGENT_CONF = "default-cache-ttl 0\nmax-cache-ttl 0\n"
SOCKET_PATH_MAX = 106  # the longest socket path gpg-agent starts with (measured: 107 fails; sun_path is 108 bytes)


class KeyError_(Exception):
    """The key file cannot be imported; the message says why (never the passphrase)."""


def default_home(data_dir: Path) -> Path:
    """``<data-dir>/gnupg`` (`config.private_keyring`: config knows it too, for the sync's keyring)."""
    return private_keyring(data_dir)


def prepare_home(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    conf = home / "gpg-agent.conf"
    if not conf.exists() or "default-cache-ttl 0" not in conf.read_text():
        conf.write_text(AGENT_CONF)
        os.chmod(conf, 0o600)


def _gpg(home: Path, args: list[str], passphrase: str | None = None) -> subprocess.CompletedProcess:
    cmd = ["gpg", "--homedir", str(home), "--batch", "--yes", "--no-tty"]
    fds: tuple[int, ...] = ()
    r = w = None
    if passphrase is not None:
        r, w = os.pipe()
        cmd += ["--pinentry-mode", "loopback", "--passphrase-fd", str(r)]
        fds = (r,)
    env = {k: v for k, v in os.environ.items() if k != PASSPHRASE_ENV}
    try:
        proc = subprocess.Popen(cmd + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=fds, env=env)
        if r is not None:
            os.close(r)
            r = None
            try:
                os.write(w, passphrase.encode() + b"\n")  # type: ignore[union-attr]
            except BrokenPipeError:
                pass
            os.close(w)  # type: ignore[arg-type]
            w = None
        out, err = proc.communicate()
        return subprocess.CompletedProcess(cmd + args, proc.returncode, out.decode("utf-8", "replace"),
                                           err.decode("utf-8", "replace"))
    except FileNotFoundError:
        raise KeyError_("the gpg binary was not found (install gnupg)") from None
    finally:
        for fd in (r, w):
            if fd is not None:
                os.close(fd)


def _secret_keys(colons: str) -> list[tuple[str, str]]:
    """(sec | ssb, fingerprint) of the secret keys in gpg's ``--with-colons`` output."""
    out, kind = [], None
    for line in colons.splitlines():
        rec = line.split(":", 1)[0]
        if rec in ("sec", "ssb", "pub", "sub"):
            kind = rec if rec in ("sec", "ssb") else None
        elif rec == "fpr" and kind:
            out.append((kind, line.split(":")[9]))
            kind = None
    return out


def secret_fingerprints(home: Path) -> list[str]:
    return [f for _, f in _secret_keys(_gpg(home, ["--with-colons", "--list-secret-keys"]).stdout)]


def _file_secret_keys(home: Path, key_file: Path) -> tuple[list[str], str | None]:
    """(secret (sub)key fingerprints in the file, fingerprint of its first primary secret key)."""
    res = _gpg(home, ["--with-colons", "--import-options", "show-only", "--import", str(key_file)])
    keys = _secret_keys(res.stdout)
    return [f for _, f in keys], next((f for k, f in keys if k == "sec"), None)


def _check_passphrase(home: Path, fpr: str, passphrase: str) -> None:
    """Sign an empty file with the key: gpg needs the passphrase and says if it is wrong.

    The signature is made through a private, fresh agent (never the keyring's own, which may
    still hold the key unlocked from an earlier, correct passphrase). It goes to stdout
    (captured, thrown away): gpg replaces an --output file by renaming over it, which must
    never be a device such as /dev/null."""
    with private_home(Path(home).resolve()) as fresh:
        empty = fresh / "passphrase-check.txt"
        empty.write_bytes(b"")
        res = _gpg(fresh, ["--status-fd", "2", "--local-user", fpr, "--output", "-", "--sign", str(empty)],
                   passphrase)
    if "BAD_PASSPHRASE" in res.stderr or "Bad passphrase" in res.stderr:
        raise KeyError_("the passphrase does not unlock this key (wrong passphrase)")


def import_key(key_file: Path, home: Path, passphrase: str | None = None) -> list[str]:
    """Import a private key file into ``home``; returns the secret (sub)key fingerprints it brought.

    A file with public keys only is refused (even if the keyring already holds a private key),
    and a passphrase, when given, is checked against the key before the key is used for a sync."""
    key_file = Path(key_file)
    if not key_file.is_file():
        raise KeyError_(f"key file {key_file} does not exist")
    prepare_home(home)
    running = _agent_running(home)
    try:
        return _import_key(key_file, home, passphrase)
    finally:
        if not running:  # the agent gpg started for the import: no daemon is left on the keyring
            stop_agent(home)


def _agent_running(home: Path) -> bool:
    """Whether a gpg-agent already serves ``home`` (not started here: ``--no-autostart``)."""
    try:
        out = subprocess.run(["gpg-connect-agent", "--homedir", str(home), "--no-autostart", "GETINFO pid", "/bye"],
                             capture_output=True, text=True, timeout=30).stdout
        return any(line.startswith("D ") for line in out.splitlines())
    except (OSError, subprocess.SubprocessError):
        return False


def _import_key(key_file: Path, home: Path, passphrase: str | None) -> list[str]:
    wanted, primary = _file_secret_keys(home, key_file)
    if not wanted:
        raise KeyError_(f"{key_file} holds no private key (export it with `gpg --export-secret-keys`)")
    res = _gpg(home, ["--import", str(key_file)], passphrase)
    if res.returncode != 0 and "secret keys imported" not in res.stderr and "unchanged" not in res.stderr:
        last = [ln for ln in res.stderr.splitlines() if ln.strip()]
        why = next((ln for ln in last if "agent" in ln), last[-1] if last else "gpg failed")
        socket = home.resolve() / "S.gpg-agent.browser"
        if "agent" in why and len(str(socket)) > SOCKET_PATH_MAX:
            why += (f" (the keyring's path is too long for gpg-agent's sockets: {len(str(socket))} characters "
                    f"with their names, {SOCKET_PATH_MAX} at most; use a shorter --data-dir or --gnupghome, "
                    "or create /run/user/<uid> so that gpg puts its sockets there)")
        raise KeyError_(f"cannot import {key_file}: {why}")
    have = set(secret_fingerprints(home))
    fprs = [f for f in wanted if f in have]
    if not fprs:
        raise KeyError_(f"cannot import the private key of {key_file}")
    if passphrase is not None and primary:
        _check_passphrase(home, primary, passphrase)
    return fprs
