"""Keyed pseudonyms for research exports.

``pseudonym(user_id) = hex(HMAC-SHA256(secret, "user:" + str(user_id)))[:20]``

The secret is the organisation's: the same secret gives the same pseudonym for a learner in
every export, every package and every run (so researchers can join exports), another secret
gives unrelated pseudonyms, and without the secret a pseudonym cannot be traced back to a
user id (user ids are small integers: a plain hash would be reversed by trying them all,
which is why the hash is keyed and the secret must stay secret and be long).

The secret comes from ``--secret-file`` / ``EDX_ENGINE_PSEUDONYM_SECRET_FILE`` / config
``[privacy] pseudonym_secret_file`` (a file whose content, without the final newline, is the
secret) or the environment variable ``EDX_ENGINE_PSEUDONYM_SECRET``. Never from argv.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

import pyarrow as pa

ENV_SECRET = "EDX_ENGINE_PSEUDONYM_SECRET"
ENV_SECRET_FILE = "EDX_ENGINE_PSEUDONYM_SECRET_FILE"
MIN_SECRET_CHARS = 16
LENGTH = 20  # hex characters = 80 bits: collisions are negligible for any edX organisation


class SecretError(Exception):
    pass


def load_secret(secret_file: str | os.PathLike | None = None, settings=None) -> bytes:
    """The organisation's pseudonymisation secret (option > environment > config file)."""
    conf = settings.section("privacy") if settings is not None else {}
    path = secret_file or os.environ.get(ENV_SECRET_FILE) or None
    value: str | None = None
    where = ""
    if path:
        value, where = _read(path), f"secret file {path}"
    elif os.environ.get(ENV_SECRET):
        value, where = os.environ[ENV_SECRET], f"${ENV_SECRET}"
    elif conf.get("pseudonym_secret_file"):
        path = conf["pseudonym_secret_file"]
        value, where = _read(path), f"secret file {path} (config privacy.pseudonym_secret_file)"
    if not value:
        raise SecretError(
            "no pseudonymisation secret: set the environment variable "
            f"{ENV_SECRET}, or pass --secret-file PATH (or set {ENV_SECRET_FILE} / "
            "[privacy] pseudonym_secret_file). Use the same secret for every export that must be joinable, "
            "e.g. generate one with: python -c 'import secrets; print(secrets.token_hex(32))'")
    if len(value) < MIN_SECRET_CHARS:
        raise SecretError(f"the pseudonymisation secret from {where} is too short ({len(value)} characters; "
                          f"at least {MIN_SECRET_CHARS} are needed, 64 random hex characters recommended)")
    return value.encode("utf-8")


def _read(path: str | os.PathLike) -> str:
    try:
        return Path(path).read_text("utf-8").rstrip("\r\n")
    except OSError as exc:
        raise SecretError(f"cannot read pseudonymisation secret file {path}: {exc.strerror}") from None


class Pseudonymizer:
    def __init__(self, secret: bytes | str, length: int = LENGTH):
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        if not secret:
            raise SecretError("empty pseudonymisation secret")
        self._secret = secret
        self.length = length
        self._cache: dict[object, str] = {}

    def _mac(self, message: str) -> str:
        return hmac.new(self._secret, message.encode("utf-8"), hashlib.sha256).hexdigest()[: self.length]

    def user(self, user_id) -> str | None:
        """Pseudonym of a user id (int or its decimal text); None stays None."""
        if user_id is None or user_id == "":
            return None
        key = int(user_id)
        p = self._cache.get(key)
        if p is None:
            p = self._cache[key] = self._mac(f"user:{key}")
        return p

    def username(self, username: str | None) -> str | None:
        """Pseudonym of a username, for rows that have no user id (a different namespace)."""
        if username is None or username == "":
            return None
        return self._mac(f"username:{username}")

    @property
    def order_key(self) -> str:
        """A secret derived from the secret, for ordering rows by a keyed hash of their user ids: an export
        in the store's order (a table file's: by user id) let anyone holding the learners' ids match
        rows to them by rank. Never written anywhere."""
        return self._mac("row-order") + self._mac("row-order-2")

    @property
    def key_id(self) -> str:
        """Identifies the secret without revealing it: exports with equal key ids are joinable."""
        return self._mac("key-id")[:8]

    def users(self, arr: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Pseudonyms of a column of user ids (ints or decimal strings)."""
        values = arr.to_pylist()
        out = []
        for v in values:
            try:
                out.append(self.user(v))
            except (TypeError, ValueError):
                out.append(self.username(str(v)))  # not a number: never leak it
        return pa.array(out, pa.string())


def pseudonym(user_id, secret: bytes | str, length: int = LENGTH) -> str | None:
    return Pseudonymizer(secret, length).user(user_id)
