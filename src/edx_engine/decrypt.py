"""Streaming decryption through the real ``gpg`` binary.

The passphrase travels over an inherited pipe (``--passphrase-fd``), never argv,
environment of the child, logs or error messages. Decrypted bytes are read from
gpg's stdout as a stream, so plaintext need not touch the disk.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator


_SECRET_ENV = ("EDX_ENGINE_GPG_PASSPHRASE", "EDX_ENGINE_PSEUDONYM_SECRET")


class DecryptError(Exception):
    """A file could not be decrypted; the message names the file and the reason."""


@dataclass(frozen=True)
class GpgSettings:
    gnupghome: str | None = None
    passphrase: str | None = None  # kept in memory only; never logged

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


class _GpgStream:
    """File-like view on gpg's stdout; close() waits for gpg and raises on failure."""

    def __init__(self, proc: subprocess.Popen, label: str, status_file, stderr_file, feeder: threading.Thread | None):
        self._proc, self._label = proc, label
        self._status, self._stderr, self._feeder = status_file, stderr_file, feeder
        self.raw: BinaryIO = proc.stdout  # type: ignore[assignment]
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        return self.raw.read(n)

    def readinto(self, b) -> int:
        return self.raw.readinto(b)

    def readable(self) -> bool:
        return True

    def finish(self) -> None:
        """Drain, wait for gpg, raise DecryptError if it failed."""
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
        self._status.seek(0)
        self._stderr.seek(0)
        status = self._status.read().decode("utf-8", "replace")
        stderr = self._stderr.read().decode("utf-8", "replace")
        self._status.close()
        self._stderr.close()
        if rc != 0:
            raise DecryptError(f"{self._label}: cannot decrypt: {_reason(status, stderr)}")

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self._proc.kill()
            self._proc.wait()
            self.raw.close()
            self._status.close()
            self._stderr.close()


def _gpg_command(settings: GpgSettings, passphrase_fd: int | None, status_fd: int) -> list[str]:
    cmd = ["gpg", "--batch", "--no-tty", "--yes", "--status-fd", str(status_fd)]
    if settings.gnupghome:
        cmd += ["--homedir", settings.gnupghome]
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

    Leaving the block normally waits for gpg and raises DecryptError if it failed,
    so a truncated or wrongly keyed file never passes silently.
    """
    label = label or str(source)
    pass_r = pass_w = None
    fds: list[int] = []
    if settings.passphrase is not None:
        pass_r, pass_w = os.pipe()
        fds.append(pass_r)
    status_file = tempfile.TemporaryFile()
    stderr_file = tempfile.TemporaryFile()
    fds.append(status_file.fileno())
    cmd = _gpg_command(settings, pass_r, status_file.fileno())
    is_path = isinstance(source, (str, Path))
    if is_path:
        cmd.append(str(source))
    # gpg (and the gpg-agent it may start, which lives on) must not inherit the passphrase.
    env = {k: v for k, v in os.environ.items() if k not in _SECRET_ENV}
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL if is_path else subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=stderr_file, pass_fds=fds, bufsize=1 << 20, env=env,
    )
    if pass_r is not None:
        os.close(pass_r)
        os.write(pass_w, settings.passphrase.encode() + b"\n")  # type: ignore[union-attr]
        os.close(pass_w)
    feeder = None
    if not is_path:
        def feed() -> None:
            try:
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
    stream = _GpgStream(proc, label, status_file, stderr_file, feeder)
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
