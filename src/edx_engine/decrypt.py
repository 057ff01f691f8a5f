"""Streaming decryption through the real ``gpg`` binary.

The passphrase travels over an inherited pipe (``--passphrase-fd``), never argv,
environment of the child, logs or error messages. Decrypted bytes are read from
gpg's stdout as a stream, so plaintext need not touch the disk.

A run decrypts through its own gpg-agents (:class:`GpgSession`): temporary home directories
with fresh agents that never cache a passphrase. So a passphrase that the user's own agent
still holds from an earlier unlock is never used: a wrong passphrase fails even right after a
correct one.

Every use of a protected key costs one S2K unlock in gpg-agent: the key's passphrase is hashed
as many times as the key's protection says (gpg calibrates it to ~0.1-0.5 s), for every file.
A package holds hundreds of encrypted members and a backfill thousands of logs, so a run
unlocks the keyring's key once (:func:`make_session_keyring`): its secret subkeys are exported
and imported into a private home, re-protected there under a random 256-bit passphrase that
only this process knows, with gpg-agent's smallest S2K count (stretching protects guessable
passphrases, not random ones). Each file then unlocks in about a millisecond. Whenever that
cannot be done (several keys with other passphrases, a key on a card, ...) the run decrypts
through the keyring itself, one unlock per file, as before; ``EDX_ENGINE_GPG_SESSION_KEY=0``
asks for that too.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Callable, Iterator


_SECRET_ENV = ("EDX_ENGINE_GPG_PASSPHRASE", "EDX_ENGINE_PSEUDONYM_SECRET")
JOBS_ENV = "EDX_ENGINE_GPG_JOBS"
SESSION_KEY_ENV = "EDX_ENGINE_GPG_SESSION_KEY"  # "0": no session keyring (one unlock per file)
NO_CACHE_CONF = "default-cache-ttl 0\nmax-cache-ttl 0\n"
CHEAP_S2K_CONF = "s2k-count 65536\n"  # gpg-agent's smallest count: for keys under a random passphrase only
_HOME_PREFIX = "edx-engine-gpg-"
SAMPLE_BYTES = 16384  # enough for the public-key packets at the start of a message


class DecryptError(Exception):
    """A file could not be decrypted; the message names the file and the reason."""


class PassphraseError(DecryptError):
    """The passphrase does not unlock the key (or is missing): no file of the run can be decrypted."""


def default_jobs() -> int:
    """Concurrent decryptions: ``EDX_ENGINE_GPG_JOBS``, else the number of usable cores."""
    value = os.environ.get(JOBS_ENV, "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class GpgSettings:
    gnupghome: str | None = None
    passphrase: str | None = None  # kept in memory only; never logged
    jobs: int | None = None  # concurrent decryptions (None: default_jobs())
    session: "GpgSession | None" = field(default=None, compare=False)

    def __repr__(self) -> str:  # never show the passphrase, even in tracebacks
        return f"GpgSettings(gnupghome={self.gnupghome!r}, passphrase={'***' if self.passphrase else None})"


def _gpg_error_codes(status: str) -> set[int]:
    """Low 16 bits of the codes in ``[GNUPG:] ERROR <where> <code>`` status lines."""
    codes = set()
    for ln in status.splitlines():
        parts = ln.split()
        if len(parts) >= 4 and parts[1] == "ERROR" and parts[3].isdigit():
            codes.add(int(parts[3]) & 0xFFFF)
    return codes


def _reason(status: str, stderr: str) -> str:
    codes = _gpg_error_codes(status)
    if 11 in codes:  # GPG_ERR_BAD_PASSPHRASE
        return "wrong passphrase for the secret key"
    if 177 in codes:  # GPG_ERR_NO_PASSPHRASE (an empty one was given)
        return "the secret key needs a passphrase and none was given (set EDX_ENGINE_GPG_PASSPHRASE or --passphrase-file)"
    if "NO_SECKEY" in status:
        keys = [ln.split()[2] for ln in status.splitlines() if "NO_SECKEY" in ln and len(ln.split()) > 2]
        return f"no secret key for this file (encrypted to {', '.join(keys) or 'an unknown key'})"
    if "BAD_PASSPHRASE" in status or "Bad passphrase" in stderr:
        return "wrong passphrase for the secret key"
    if "MISSING_PASSPHRASE" in status or ("NEED_PASSPHRASE" in status and "can't get input" in stderr):
        return "the secret key needs a passphrase and none was given (set EDX_ENGINE_GPG_PASSPHRASE or --passphrase-file)"
    if "NODATA" in status or "no valid OpenPGP data" in stderr:
        return "not an OpenPGP message (no valid OpenPGP data)"
    if "DECRYPTION_FAILED" in status or "decryption failed" in stderr:
        return "decryption failed (file corrupt or truncated)"
    last = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return last[-1] if last else "gpg failed"


def is_passphrase_reason(reason: str) -> bool:
    """True for the reasons that fail every file alike: wrong or missing passphrase."""
    return reason.startswith(("wrong passphrase", "the secret key needs a passphrase"))


# -- private agents -------------------------------------------------------------------------

def keyring_home(gnupghome: str | None) -> Path:
    """The keyring gpg would use: the given one, else ``GNUPGHOME``, else gpg's default."""
    from urllib.parse import unquote

    if gnupghome or os.environ.get("GNUPGHOME"):
        return Path(gnupghome or os.environ["GNUPGHOME"]).expanduser().resolve()
    try:
        out = subprocess.run(["gpgconf", "--list-dirs", "homedir"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return Path(unquote(out)) if out else Path.home() / ".gnupg"


def _skip_in_private_home(name: str) -> bool:
    """Sockets, locks and agent settings belong to the keyring's own agent, not to ours."""
    return (name.startswith(("S.", ".#lk")) or name.endswith(".lock")
            or name in ("gpg-agent.conf", "random_seed", "owner"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_agent(home: Path) -> None:
    """Stop the gpg-agent serving ``home`` (if any)."""
    try:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        pass


def remove_private_home(home: Path) -> None:
    """Stop the home's agent and delete the home (its links, never what they point to)."""
    stop_agent(home)
    shutil.rmtree(home, ignore_errors=True)


def _homes_dir() -> str:
    """Where private homes go: the temporary directory, unless its path is too long for the
    agent's socket (a Unix socket path has at most 107 bytes)."""
    base = tempfile.gettempdir()
    return base if len(base) + len(_HOME_PREFIX) + 30 < 100 else "/tmp"


def _ram_dir() -> str:
    """Where the homes that hold copies of secret keys go: a file system in memory (the user's
    runtime folder, else /dev/shm) when there is one, so that no copy reaches a disk; else
    the temporary directory."""
    for d in (os.environ.get("XDG_RUNTIME_DIR"), "/dev/shm"):
        if d and os.path.isdir(d) and os.access(d, os.W_OK | os.X_OK) and len(d) + len(_HOME_PREFIX) + 30 < 100:
            return d
    return _homes_dir()


_swept = False


def _sweep_stale_homes() -> None:
    """Private homes left by a run that was killed (kill -9): stop their agents, remove them."""
    global _swept
    if _swept:
        return
    _swept = True
    for d in [h for base in dict.fromkeys((_homes_dir(), _ram_dir())) for h in Path(base).glob(_HOME_PREFIX + "*")]:
        try:
            if d.stat().st_uid != os.getuid():
                continue
            owner = (d / "owner").read_text().strip()
        except OSError:
            continue
        if owner.isdigit() and not _pid_alive(int(owner)):
            remove_private_home(d)


_SECRET_ENTRIES = ("private-keys-v1.d", "secring.gpg")  # where a keyring keeps secret keys


def make_private_home(keyring: Path | None, agent_conf: str = NO_CACHE_CONF, *, copy: bool = False,
                      secrets_too: bool = True, where: str | None = None) -> Path:
    """A temporary gpg home (0700) whose keyring files link to ``keyring`` (None: an empty home),
    with an agent configuration that never caches a passphrase. gpg started with it talks to a
    fresh agent of its own, never to the keyring's agent (which may hold an unlocked key).

    ``copy``: copies of the keyring's files instead of links (whatever gpg and its agent write
    there, e.g. a key converted at its first unlock, never reaches the keyring); ``secrets_too``:
    the secret keys too; ``where``: the folder to make it in (default: the temporary directory)."""
    _sweep_stale_homes()
    home = Path(tempfile.mkdtemp(prefix=_HOME_PREFIX, dir=where or _homes_dir()))
    try:
        _fill_home(home, keyring, agent_conf, copy, secrets_too)
    except BaseException:  # a full /dev/shm, Ctrl-C: no half-made home (it may hold key copies)
        shutil.rmtree(home, ignore_errors=True)
        raise
    return home


def _fill_home(home: Path, keyring: Path | None, agent_conf: str, copy: bool, secrets_too: bool) -> None:
    (home / "owner").write_text(str(os.getpid()))
    if keyring is not None and keyring.is_dir():
        for entry in sorted(keyring.iterdir()):
            if _skip_in_private_home(entry.name) or (not secrets_too and entry.name in _SECRET_ENTRIES):
                continue
            if not copy:
                (home / entry.name).symlink_to(entry)
                continue
            try:
                if entry.is_dir():
                    shutil.copytree(entry, home / entry.name,
                                    ignore=lambda d, names: [n for n in names if n.startswith("S.")])
                elif entry.is_file():
                    shutil.copyfile(entry, home / entry.name)
            except FileNotFoundError:
                continue  # gone meanwhile (a lock or temporary file of the keyring's own gpg)
    (home / "gpg-agent.conf").write_text(agent_conf)


@contextmanager
def private_home(keyring: Path) -> Iterator[Path]:
    home = make_private_home(keyring)
    try:
        yield home
    finally:
        remove_private_home(home)


# -- the run's session keyring -------------------------------------------------------------------

@dataclass(frozen=True)
class SessionKeyring:
    """A private home holding the keyring's secret subkeys under a random passphrase (module docstring)."""

    home: Path
    passphrase: str = field(repr=False)  # random, made for this run; never leaves this process but through pipes


def session_keyring_wanted() -> bool:
    """False when ``EDX_ENGINE_GPG_SESSION_KEY`` is 0/no/false/off: decrypt through the keyring itself."""
    return os.environ.get(SESSION_KEY_ENV, "").strip().lower() not in ("0", "no", "false", "off")


def _gpg(home: Path, args: list[str], secret: str | None = None, data: bytes = b"",
         secret_option: str = "--passphrase-fd") -> tuple[int, bytes, str]:
    """Run gpg in ``home`` on ``data``; ``secret`` (passphrase lines) goes over a pipe named by
    ``secret_option``, never argv or the environment. Returns (exit code, stdout, status + stderr)."""
    cmd = ["gpg", "--batch", "--no-tty", "--yes", "--homedir", str(home), "--pinentry-mode", "loopback",
           "--status-fd", "2"]
    r = w = None
    if secret is not None:
        r, w = os.pipe()
        cmd += [secret_option, str(r)]
    env = {k: v for k, v in os.environ.items() if k not in _SECRET_ENV}
    try:
        proc = subprocess.Popen(cmd + args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                pass_fds=[r] if r is not None else [], env=env)
    finally:
        if r is not None:
            os.close(r)
    _write_secret(w, secret.encode() if secret is not None else b"")
    out, err = _communicate(proc, data)
    return proc.returncode, out, err.decode("utf-8", "replace")


def _write_secret(fd: int | None, secret: bytes) -> None:
    """Write a few lines (a passphrase: the pipe holds them) for gpg to read, and close the pipe.
    gpg may have ended already (not a message): its status says why."""
    if fd is None:
        return
    try:
        os.write(fd, secret)
    except BrokenPipeError:
        pass
    os.close(fd)


def _communicate(proc: subprocess.Popen, data: bytes) -> tuple[bytes, bytes]:
    """Feed ``data`` to a gpg and wait for it (at most 5 minutes, then it is stopped)."""
    try:
        return proc.communicate(data, timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def _protection(home: Path) -> dict[str, str]:
    """keygrip -> protection of each secret key in the home's agent: "P" (passphrase), "C" (clear), "-"."""
    env = {k: v for k, v in os.environ.items() if k not in _SECRET_ENV}
    out = subprocess.run(["gpg-connect-agent", "--homedir", str(home), "KEYINFO --list", "/bye"],
                         capture_output=True, text=True, timeout=120, env=env).stdout
    return {f[2]: f[7] for f in (ln.split() for ln in out.splitlines() if ln.startswith("S KEYINFO "))
            if len(f) > 7}


@dataclass
class _SecretKeys:
    """What a keyring's secret keys need from a session keyring (``gpg -K --with-colons``)."""

    keys: int = 0  # primary keys with a secret part somewhere (here, or on a card)
    fingerprints: list[str] = field(default_factory=list)
    encryption_grips: set[str] = field(default_factory=set)  # keygrips of the secret keys that decrypt
    primary_decrypts: bool = False  # a primary key is itself an encryption key
    on_card: bool = False  # an encryption key lives on a smartcard (not exportable)


def _secret_keys(home: Path) -> _SecretKeys:
    _, out, _ = _gpg(home, ["--with-colons", "--with-keygrip", "--list-secret-keys"])
    info, last, after_sec = _SecretKeys(), None, False
    for ln in out.decode("utf-8", "replace").splitlines():
        f = ln.split(":")
        if f[0] in ("sec", "ssb") and len(f) > 14:
            decrypts = "e" in f[11]  # lower case: this key's own capabilities
            info.keys += f[0] == "sec"
            last = f if decrypts and f[14] == "+" else None  # "+": the secret key is here
            info.primary_decrypts |= decrypts and f[0] == "sec" and f[14] == "+"
            info.on_card |= decrypts and f[14] not in ("+", "#", "")
        elif f[0] == "fpr" and after_sec and len(f) > 9:
            info.fingerprints.append(f[9])
        elif f[0] == "grp" and last is not None and len(f) > 9:
            info.encryption_grips.add(f[9])
            last = None
        after_sec = f[0] == "sec"
    return info


def _count_secret_keys(keyring: Path) -> int:
    """How many secret keys the keyring holds (0 if it cannot be read), listed from a private home
    linked to it (the user's own agent is never started)."""
    try:
        with private_home(keyring) as home:
            return _secret_keys(home).keys
    except (OSError, subprocess.SubprocessError):
        return 0


def make_session_keyring(keyring: Path, passphrase: str | None) -> tuple[SessionKeyring | None, str | None, str, int]:
    """Unlock the keyring's secret encryption keys once and keep them, for this run, in a private
    home under a random passphrase with the cheapest S2K (so each file unlocks in about a millisecond).

    Returns (the session keyring or None, the export's passphrase reason or None, why there is none,
    how many secret keys the keyring holds, 0 if unknown); the caller judges whether that reason is
    the run's (``GpgSession.single_key``). Without a session keyring (a key on a card, keys with
    other passphrases, no secret key, ...) the caller decrypts through the keyring, which reports
    what is wrong file by file.

    The keyring is only read: the export runs on a copy (its agent may rewrite a key at its first
    unlock), in memory where possible, removed at once. The session home holds copies of the
    keyring's public files (so signatures are checked as before) and the exported keys."""
    where = _ram_dir()
    exported, reason, need, why = b"", None, _SecretKeys(), ""
    try:
        source = make_private_home(keyring, NO_CACHE_CONF + CHEAP_S2K_CONF, copy=True, where=where)
    except OSError as exc:
        return None, None, f"the keyring could not be copied ({exc})", 0
    try:
        need = _secret_keys(source)
        if not need.encryption_grips or need.on_card:
            why = "no secret encryption key in the keyring" if not need.on_card else "an encryption key is on a card"
        else:
            # subkeys only, unless a primary key decrypts (one more unlock: the primary's)
            what = "--export-secret-keys" if need.primary_decrypts else "--export-secret-subkeys"
            rc, exported, status = _gpg(source, [what], None if passphrase is None else passphrase + "\n")
            if rc != 0 or not exported:
                r = _reason(status, status)
                why = f"the export failed ({r})"
                if rc != 0 and is_passphrase_reason(r):
                    reason = r
    except (OSError, subprocess.SubprocessError) as exc:
        why = f"the export failed ({exc})"
    finally:
        remove_private_home(source)
    if why:
        return None, reason, why, need.keys
    home = None
    try:
        home = make_private_home(keyring, NO_CACHE_CONF + CHEAP_S2K_CONF, copy=True, secrets_too=False, where=where)
        session, why = _reprotect(home, exported, passphrase, need.encryption_grips)
    except (OSError, subprocess.SubprocessError) as exc:
        session, why = None, f"re-protecting failed ({exc})"
    except BaseException:  # Ctrl-C: no copy of the key is left behind
        if home is not None:
            remove_private_home(home)
        raise
    if session is None and home is not None:
        remove_private_home(home)
    return session, None, why, need.keys


def _reprotect(home: Path, exported: bytes, passphrase: str | None, grips: set[str]) -> tuple[SessionKeyring | None, str]:
    """Import the exported keys into ``home`` and protect them under a new random passphrase.
    Trusted only if every secret encryption key of the keyring (``grips``) is there, protected,
    and gpg's own passphrase test (``--dry-run --passwd``) accepts the new passphrase."""
    rc, _, _ = _gpg(home, ["--import"], None if passphrase is None else passphrase + "\n", data=exported)
    fprs, protection = _secret_keys(home).fingerprints, _protection(home)
    if rc != 0 or not fprs or not grips <= protection.keys():
        return None, f"the import failed or missed keys (exit {rc}, {len(fprs)} keys, {len(grips - protection.keys())} missing)"
    if len(set(protection.values())) != 1 or next(iter(protection.values())) not in "PC":
        return None, f"keys protected in different ways ({sorted(protection.values())})"
    new = secrets.token_urlsafe(32)
    # gpg asks for the old passphrase (a protected key only), then for the new one
    was = next(iter(protection.values()))
    answers = ([passphrase or ""] if was == "P" else []) + [new]
    for fpr in fprs:
        _gpg(home, ["--passwd", fpr], "\n".join(answers * len(protection)) + "\n", secret_option="--command-fd")
    if any(_protection(home).get(g) != "P" for g in protection):
        return None, "the new passphrase was not set"
    for fpr in fprs:
        _, _, status = _gpg(home, ["--dry-run", "--passwd", fpr], new + "\n")
        if "[GNUPG:] SUCCESS keyedit.passwd" not in status or "[GNUPG:] ERROR keyedit.passwd" in status:
            return None, "gpg's test of the new passphrase failed"
    return SessionKeyring(home, new), ""


class GpgSession:
    """One run's private gpg-agents (no passphrase cache), its session keyring and its single
    passphrase check.

    At the first decryption the session makes its session keyring (:func:`make_session_keyring`):
    the key is unlocked once, by that export, which is also the run's passphrase check, and every
    file decrypts through the session keyring. Without it (it could not be made, or is not
    wanted), ``jobs`` homes linked to the keyring (one agent each: an agent unlocks one key at a
    time) are made and the passphrase is judged by the run's first decryption itself (gpg's
    status lines say whether the key was unlocked before any plaintext is written): other
    decryptions wait for that verdict before starting gpg, and after a wrong or missing
    passphrase every later file fails at once, without starting gpg. That verdict is the run's only
    when the keyring holds a single secret key: with several (each with its passphrase), a file
    for a key the passphrase is not for fails on its own and the next file judges.
    :meth:`close` removes them all."""

    MAX_UNDECIDED = 3  # files whose decryption says nothing about the passphrase (corrupt, other key)

    def __init__(self, settings: GpgSettings):
        self.keyring_opt = settings.gnupghome
        self._passphrase = settings.passphrase
        self.jobs = max(1, settings.jobs or default_jobs())
        self.failure: str | None = None  # the passphrase problem, once found
        self.keyring: SessionKeyring | None = None  # the session keyring, once made
        self.keyring_note = ""  # why there is none (for whoever looks into a slow run)
        self.secret_keys = 0  # how many secret keys the keyring holds (0: not known)
        self._keyring_tried = False
        self._closed = False
        self._keyring_lock = threading.Lock()
        self._homes: list[Path] = []
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._verdict = threading.Condition()
        self._checked = False
        self._checking = False  # a decryption (or probe) is judging the passphrase now
        self._undecided = 0

    @property
    def single_key(self) -> bool:
        """Whether a passphrase verdict on one file is the run's: the keyring holds one secret key (or
        an unknown number). With several, each may have its own passphrase: a file for another key
        fails on its own."""
        return self.secret_keys <= 1

    def _ensure_keyring(self) -> None:
        """Make the session keyring at the run's first decryption (once; the other threads wait)."""
        with self._keyring_lock:
            if self._keyring_tried:
                return
            self._keyring_tried = True
            if not session_keyring_wanted():
                self.secret_keys = _count_secret_keys(keyring_home(self.keyring_opt))
                return
            self.keyring, reason, self.keyring_note, self.secret_keys = make_session_keyring(
                keyring_home(self.keyring_opt), self._passphrase)
            # the verdict before the lock is released: a claim() waiting on it must not judge again
            if self.keyring is not None:
                self.mark_checked()  # its export unlocked the key with this passphrase
            elif reason is not None and self.single_key:  # the passphrase of every file
                with self._verdict:
                    self.failure = self.failure or reason
                    self._verdict.notify_all()

    def prepare(self) -> None:
        """Make the session keyring now, in a thread, for a run that will decrypt: its unlock (the
        key's S2K, 0.3-0.5 s) then overlaps what the run does before its first decryption (opening
        the catalog, reading the bookkeeping). The first decryption waits for it (``claim``)."""
        if self._keyring_tried or self.failure is not None:
            return

        def make() -> None:
            try:
                with contextlib.suppress(Exception):  # the first decryption reports what is wrong
                    self._ensure_keyring()
            finally:
                if self._closed:  # close() gave up waiting for it (a second Ctrl-C): no copy left behind
                    with self._keyring_lock:
                        made, self.keyring = self.keyring, None
                    if made is not None:
                        remove_private_home(made.home)

        # not a daemon: the interpreter waits for it at exit, so its clean-up always runs
        threading.Thread(target=make, name="gpg-keyring").start()

    def home(self) -> str:
        """The gpg home for the next decryption: the session keyring, else a private home linked
        to the keyring (round robin over the session's agents)."""
        if self.keyring is not None:
            return str(self.keyring.home)
        with self._lock:
            if not self._homes:
                keyring = keyring_home(self.keyring_opt)
                self._homes = [make_private_home(keyring) for _ in range(self.jobs)]
            return str(self._homes[next(self._turn) % len(self._homes)])

    @property
    def checked(self) -> bool:
        """The passphrase was found right (or could not be judged often enough to keep probing)."""
        return self._checked

    def mark_checked(self) -> None:
        """The passphrase was already checked elsewhere (a backfill's driver): no probe, no second unlock."""
        with self._verdict:
            self._checked = True
            self._verdict.notify_all()

    def claim(self, label: str) -> bool:
        """Before a gpg starts: raise PassphraseError once the passphrase is known wrong; wait while
        another decryption is judging it; True when this one is to judge it (it must then call
        :meth:`resolve`, whatever happens)."""
        if self.failure is None:
            self._ensure_keyring()
        with self._verdict:
            while True:
                if self.failure is not None:
                    raise PassphraseError(f"{label}: cannot decrypt: {self.failure}")
                if self._checked:
                    return False
                if not self._checking:
                    self._checking = True
                    return True
                self._verdict.wait()

    def resolve(self, verdict: str | None) -> None:
        """The judging decryption's verdict: "ok", a passphrase reason, or None (could not tell)."""
        with self._verdict:
            self._checking = False
            if verdict == "ok":
                self._checked = True
            elif verdict is None or not self.single_key:
                # could not tell, or (several keys) a key this passphrase is not for: the file fails on
                # its own and the next one judges
                self._undecided += 1
                self._checked = self._checked or self._undecided >= self.MAX_UNDECIDED
            elif self.failure is None:
                self.failure = verdict
            self._verdict.notify_all()

    def check(self, settings: GpgSettings, sample: Callable[[], bytes], label: str) -> None:
        """Probe the passphrase on the first bytes of a file without decrypting the file (a driver
        that decrypts nothing itself: the backfill); raise PassphraseError if it is wrong."""
        if not self.claim(label):
            return
        verdict = None
        try:
            data = sample()
            verdict = _probe(self.home(), settings.passphrase, data) if data else None
        except Exception:  # noqa: BLE001 - the file's own decryption will say what is wrong
            verdict = None
        finally:
            self.resolve(verdict)
        if self.failure is not None:
            raise PassphraseError(f"{label}: cannot decrypt: {self.failure}")

    def close(self) -> None:
        self._closed = True
        with self._lock:
            homes, self._homes = self._homes, []
        with self._keyring_lock:
            if self.keyring is not None:
                homes.append(self.keyring.home)
            self.keyring = None
            self._keyring_tried = True  # closed: no new session keyring
        for h in homes:
            remove_private_home(h)


@contextmanager
def gpg_session(settings: GpgSettings) -> Iterator[GpgSettings]:
    """``settings`` bound to a session (private agents, one passphrase check) for one run.

    Settings that already carry a session (a sync spanning many imports) are used as they are."""
    if settings.session is not None:
        yield settings
        return
    session = GpgSession(settings)
    try:
        yield replace(settings, session=session)
    finally:
        session.close()


def _probe(home: str, passphrase: str | None, sample: bytes) -> str | None:
    """Decrypt the start of a message in a fresh agent: "ok" when the key was unlocked, the
    reason when the passphrase is wrong or missing, None when the sample cannot tell.

    The output (a little plaintext) goes to /dev/null; the status lines come over a pipe."""
    status_r, status_w = os.pipe()
    pass_r = pass_w = None
    if passphrase is not None:
        pass_r, pass_w = os.pipe()
    cmd = _gpg_command(home, pass_r, status_w)
    env = {k: v for k, v in os.environ.items() if k not in _SECRET_ENV}
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                pass_fds=[fd for fd in (status_w, pass_r) if fd is not None], env=env)
    finally:
        for fd in (status_w, pass_r):
            if fd is not None:
                os.close(fd)
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(status_r, 65536), b"")),
                              daemon=True)
    reader.start()
    _write_secret(pass_w, passphrase.encode() + b"\n" if passphrase is not None else b"")
    _, err = _communicate(proc, sample)
    reader.join()
    os.close(status_r)
    return _verdict(b"".join(chunks).decode("utf-8", "replace"), err.decode("utf-8", "replace"))


# status lines that gpg writes only once the key is unlocked (BEGIN_DECRYPTION also follows a bad passphrase)
_UNLOCKED = (b"[GNUPG:] DECRYPTION_KEY ", b"[GNUPG:] PLAINTEXT ")


def _verdict(status: str, stderr: str) -> str | None:
    """What a finished gpg says about the passphrase: "ok", a passphrase reason, or None."""
    if any(t.decode() in status for t in _UNLOCKED):
        return "ok"
    reason = _reason(status, stderr)
    return reason if is_passphrase_reason(reason) else None


class _StatusReader(threading.Thread):
    """Collects gpg's status lines from a pipe. When its gpg judges the run's passphrase
    (``session``), it gives the session the verdict as soon as the status tells it: the key was
    unlocked (before any plaintext is written), or gpg ended without unlocking it."""

    def __init__(self, fd: int, session: "GpgSession | None", stderr_fd: int):
        super().__init__(daemon=True, name="gpg-status")
        self.fd, self.session, self.stderr_fd = fd, session, stderr_fd
        self.chunks: list[bytes] = []

    def run(self) -> None:
        seen = b""
        try:
            while chunk := os.read(self.fd, 65536):
                self.chunks.append(chunk)
                if self.session is not None:
                    seen = seen[-200:] + chunk
                    if any(t in seen for t in _UNLOCKED):
                        self.session.resolve("ok")
                        self.session = None
        except OSError:
            pass
        finally:
            os.close(self.fd)
            if self.session is not None:  # gpg ended (or was stopped) without unlocking the key
                try:
                    err = os.pread(self.stderr_fd, 1 << 16, 0).decode("utf-8", "replace")
                except OSError:
                    err = ""
                self.session.resolve(_verdict(self.text(), err))
                self.session = None

    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", "replace")


class _GpgStream:
    """File-like view on gpg's stdout; close() waits for gpg and raises on failure."""

    def __init__(self, proc: subprocess.Popen, label: str, status: _StatusReader, stderr_file,
                 feeder: threading.Thread | None):
        self._proc, self._label = proc, label
        self._status, self._stderr, self._feeder = status, stderr_file, feeder
        self.raw: BinaryIO = proc.stdout  # type: ignore[assignment]
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        return self.raw.read(n)

    def readinto(self, b) -> int:
        return self.raw.readinto(b)

    def readable(self) -> bool:
        return True

    def finish(self) -> None:
        """Drain, wait for gpg, raise DecryptError (PassphraseError for a wrong or missing
        passphrase) if it failed."""
        if self.closed:
            return
        self.closed = True
        try:
            while self.raw.read(1 << 20):
                pass
        except (OSError, ValueError):
            pass
        self.raw.close()
        rc = self._proc.wait()
        if self._feeder:
            self._feeder.join()
        self._status.join()
        self._stderr.seek(0)
        stderr = self._stderr.read().decode("utf-8", "replace")
        self._stderr.close()
        if rc != 0:
            reason = _reason(self._status.text(), stderr)
            cls = PassphraseError if is_passphrase_reason(reason) else DecryptError
            raise cls(f"{self._label}: cannot decrypt: {reason}")

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self._proc.kill()
            self._proc.wait()
            self.raw.close()
            self._status.join()
            self._stderr.close()


def _gpg_command(home: str | None, passphrase_fd: int | None, status_fd: int) -> list[str]:
    cmd = ["gpg", "--batch", "--no-tty", "--yes", "--status-fd", str(status_fd)]
    if home:
        cmd += ["--homedir", home]
    # Loopback even without a passphrase: gpg then never starts a pinentry (which fails or
    # prompts once per file without a terminal) and reports MISSING_PASSPHRASE at once for a
    # protected key; an unprotected key still decrypts.
    cmd += ["--pinentry-mode", "loopback"]
    if passphrase_fd is not None:
        cmd += ["--passphrase-fd", str(passphrase_fd)]
    return cmd + ["--decrypt"]


@contextmanager
def gpg_decrypt(source: Path | BinaryIO, settings: GpgSettings, label: str | None = None) -> Iterator[_GpgStream]:
    """Decrypt ``source`` (a path or a readable binary stream) as a stream.

    Within a session, the run's first decryption is also its passphrase check (see
    :class:`GpgSession`); a passphrase known to be wrong raises PassphraseError without gpg.
    Leaving the block normally waits for gpg and raises DecryptError if it failed,
    so a truncated or wrongly keyed file never passes silently.
    """
    label = label or str(source)
    session = settings.session
    judge = session.claim(label) if session is not None else False
    try:
        stream = _start(source, settings, label, session if judge else None)
    except BaseException:
        if judge:
            session.resolve(None)  # type: ignore[union-attr]
        raise
    try:
        yield stream
    except Exception as exc:
        # A parse error on garbage output is usually a decryption failure: report that.
        if isinstance(exc, DecryptError):
            stream.abort()
            raise
        try:
            stream.finish()
        except DecryptError as dexc:
            raise dexc from exc
        raise
    except BaseException:
        stream.abort()
        raise
    stream.finish()


HEAD_BYTES = 1024  # enough for an armour header and the first packet's header


def _peek(source: Path | BinaryIO) -> tuple[bytes, bytes]:
    """(the first bytes of a message, the bytes taken from the stream that gpg must get first):
    a file is read again by gpg, a stream's first bytes are gone once read."""
    if isinstance(source, (str, Path)):
        with open(source, "rb") as f:
            return f.read(HEAD_BYTES), b""
    head = source.read(HEAD_BYTES)
    return head, head


def symmetric_message(head: bytes) -> bool:
    """Whether an OpenPGP message starts with a passphrase-encrypted session key (``gpg -c``: packet
    tag 3) rather than one encrypted to a public key; ASCII armour is decoded far enough to tell."""
    import base64

    if head.startswith(b"-----BEGIN PGP MESSAGE-----"):
        lines = head.split(b"\n")[1:]
        while lines and lines[0].strip():  # armour headers (Version: ...) end with a blank line
            lines = lines[1:]
        body = b"".join(ln.strip() for ln in lines[1:3])
        try:
            head = base64.b64decode(body[:4])
        except ValueError:
            return False
    if not head or not head[0] & 0x80:
        return False
    tag = head[0] & 0x3F if head[0] & 0x40 else (head[0] >> 2) & 0x0F
    return tag == 3


def _start(source: Path | BinaryIO, settings: GpgSettings, label: str, judge: GpgSession | None) -> _GpgStream:
    """Start gpg on ``source``; ``judge``: the session whose passphrase verdict this gpg gives."""
    pass_r = pass_w = None
    fds: list[int] = []
    session = settings.session
    home = session.home() if session is not None else settings.gnupghome
    passphrase, head = settings.passphrase, b""
    if session is not None and session.keyring is not None:
        peek, head = _peek(source)
        if not symmetric_message(peek):  # a message encrypted with a passphrase (gpg -c) gets the given one
            passphrase = session.keyring.passphrase
    if passphrase is not None:
        pass_r, pass_w = os.pipe()
        fds.append(pass_r)
    status_r, status_w = os.pipe()
    fds.append(status_w)
    stderr_file = tempfile.TemporaryFile()
    cmd = _gpg_command(home, pass_r, status_w)
    is_path = isinstance(source, (str, Path))
    if is_path:
        cmd.append(str(source))
    # gpg (and the gpg-agent it may start, which lives on) must not inherit the passphrase.
    env = {k: v for k, v in os.environ.items() if k not in _SECRET_ENV}
    try:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL if is_path else subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=stderr_file, pass_fds=fds, bufsize=1 << 20, env=env,
        )
    except BaseException:
        for fd in (pass_r, pass_w, status_r):
            if fd is not None:
                os.close(fd)
        stderr_file.close()
        raise
    finally:
        os.close(status_w)
    status = _StatusReader(status_r, judge, stderr_file.fileno())
    status.start()
    if pass_r is not None:
        os.close(pass_r)
        _write_secret(pass_w, passphrase.encode() + b"\n")  # type: ignore[union-attr]
    feeder = None
    if not is_path:
        def feed() -> None:
            try:
                if head:
                    proc.stdin.write(head)  # type: ignore[union-attr]
                while chunk := source.read(1 << 20):  # type: ignore[union-attr]
                    proc.stdin.write(chunk)  # type: ignore[union-attr]
            except (BrokenPipeError, OSError):
                pass
            finally:
                try:
                    proc.stdin.close()  # type: ignore[union-attr]
                except OSError:
                    pass
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
    return _GpgStream(proc, label, status, stderr_file, feeder)
