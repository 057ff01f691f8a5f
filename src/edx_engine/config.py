"""Settings: command-line option > environment variable > config file > default.

The config file is TOML (``edx-engine.toml`` in the working directory, or ``--config``
/ ``EDX_ENGINE_CONFIG``). The GPG passphrase is never read from argv: only from
``EDX_ENGINE_GPG_PASSPHRASE`` or a file (``--passphrase-file`` / ``gpg.passphrase_file``),
by `take_passphrase` alone, once per `Settings` (`Settings.gpg`), and the environment
variable is dropped as it is read so that no child process (gpg, gpg-agent) inherits it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .decrypt import GpgSettings

DEFAULT_DATA_DIR = "./edx-data"
DEFAULT_CONFIG = "edx-engine.toml"
PASSPHRASE_ENV = "EDX_ENGINE_GPG_PASSPHRASE"
PRIVATE_KEYRING = "gnupg"  # <data-dir>/gnupg: where `keys import` puts the organisation's key


class ConfigError(Exception):
    pass


@dataclass
class Settings:
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    gnupghome: str | None = None
    passphrase_file: str | None = None
    file: dict[str, Any] = field(default_factory=dict)  # the whole config file, for other sections
    _gpg: GpgSettings | None = field(default=None, repr=False, compare=False)  # resolved by gpg()

    def gpg(self) -> GpgSettings:
        """The ``[gpg]`` section resolved into one object: the keyring and the passphrase.

        The passphrase is read on the first call (`take_passphrase`: file or environment, then
        dropped from the environment) and kept in this object only, so every later call (and
        every stage the settings reach) sees the same value. ConfigError for an unreadable file.

        The keyring is the one :func:`sync_keyring` names: every command that decrypts (``import``
        as well as ``sync``) finds the key that ``keys import`` put in ``<data-dir>/gnupg``."""
        if self._gpg is None:
            self._gpg = GpgSettings(sync_keyring(self), take_passphrase(self.passphrase_file))
        return self._gpg

    def with_gpg(self, gpg: GpgSettings) -> "Settings":
        """A copy that decrypts with ``gpg`` (another keyring, or an open `decrypt.gpg_session`);
        the passphrase it carries is not read again."""
        return dataclasses.replace(self, gnupghome=gpg.gnupghome, _gpg=gpg)

    def with_keyring(self, gnupghome: str | None) -> "Settings":
        """A copy that decrypts with the keyring ``gnupghome`` and the passphrase already read."""
        return self.with_gpg(dataclasses.replace(self.gpg(), gnupghome=gnupghome))

    def section(self, name: str) -> dict[str, Any]:
        value = self.file.get(name, {})
        return value if isinstance(value, dict) else {}


def load_config_file(path: str | None) -> dict[str, Any]:
    path = path or os.environ.get("EDX_ENGINE_CONFIG")
    explicit = path is not None
    p = Path(path or DEFAULT_CONFIG)
    if not p.exists():
        if explicit:
            raise ConfigError(f"config file {p} does not exist")
        return {}
    try:
        return tomllib.loads(p.read_text("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None


def take_passphrase(passphrase_file: str | None) -> str | None:
    """The one reader of the passphrase: the file when one is given, else ``EDX_ENGINE_GPG_PASSPHRASE``;
    the variable is dropped from the environment either way so that gpg and gpg-agent (our
    children) do not inherit it. ConfigError (one line, never the content) for an unreadable file.
    Callers go through `Settings.gpg`, which calls this once and keeps the value."""
    env = os.environ.pop(PASSPHRASE_ENV, None)
    if passphrase_file:
        try:
            return Path(passphrase_file).read_text("utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"cannot read passphrase file {passphrase_file}: {exc.strerror}") from None
    return env


def private_keyring(data_dir: Path | str) -> Path:
    """``<data-dir>/gnupg``: the private keyring `keys import` fills (mode 0700, no passphrase cache)."""
    return Path(data_dir) / PRIVATE_KEYRING


def sync_keyring(settings: Settings, explicit: str | None = None) -> str | None:
    """The keyring every decryption uses (``import``, ``sync``, ``run``): ``explicit`` (``--gnupghome``), else ``GNUPGHOME`` or
    ``[gpg] gnupghome`` (``settings.gnupghome``), else ``<data-dir>/gnupg`` when it exists, else
    gpg's default (None)."""
    if explicit or settings.gnupghome:
        return explicit or settings.gnupghome
    home = private_keyring(settings.data_dir)
    return str(home) if home.is_dir() else None


_UNSET = object()


def pick(option: Any, env: str | None, section: Mapping[str, Any], key: str, default: Any = None, *,
         blank_is_unset: bool = False) -> Any:
    """The one precedence rule: command-line option > environment variable > config file > default.

    An empty environment variable counts as unset; with ``blank_is_unset`` an empty option or
    config value does too (settings where "" means nothing, like a path)."""
    def given(value: Any) -> bool:
        return bool(value) if blank_is_unset else value is not None

    if given(option):
        return option
    if env and os.environ.get(env) not in (None, ""):
        return os.environ[env]
    if given(section.get(key)):
        return section[key]
    return default


def resolve(data_dir: str | None = None, gnupghome: str | None = None, passphrase_file: str | None = None,
            config: str | None = None) -> Settings:
    conf = load_config_file(config)
    gpg_conf = conf.get("gpg", {}) if isinstance(conf.get("gpg"), dict) else {}
    return Settings(
        data_dir=Path(pick(data_dir, "EDX_ENGINE_DATA_DIR", conf, "data_dir", DEFAULT_DATA_DIR, blank_is_unset=True)),
        gnupghome=pick(gnupghome, "GNUPGHOME", gpg_conf, "gnupghome", blank_is_unset=True) or None,
        passphrase_file=pick(passphrase_file, "EDX_ENGINE_GPG_PASSPHRASE_FILE", gpg_conf, "passphrase_file",
                             blank_is_unset=True) or None,
        file=conf,
    )


# -- [sync] -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SyncConfig:
    """The ``sync`` command's settings after precedence and checks; ``s3`` holds the keyword
    arguments of `fetch.s3.S3Settings` (this module does not import the fetch stage)."""

    org: str
    since: str | None
    only: str | None
    keep_downloads: bool
    key_file: Path | None
    s3: dict[str, Any]


def _as_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [p for p in (x.strip() for x in value.split(",")) if p] or None
    return [str(x) for x in value]


def _date(value: Any, what: str) -> str | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise ConfigError(f"{what} must be a date YYYY-MM-DD, not {value!r}") from None


def sync_settings(settings: Settings, options: Mapping[str, Any]) -> SyncConfig:
    """Options of ``sync`` (None: not given) > environment > ``[sync]`` > defaults; ConfigError
    (one line) for a bad date, ``only``, a missing organisation or an ill-typed setting."""
    sec = settings.section("sync")
    opt = options.get
    since = _date(pick(opt("since"), None, sec, "since"), "--since")
    only = opt("only")
    if only is not None and only not in ("events", "packages"):
        raise ConfigError("--only must be `events` or `packages`")
    org = pick(opt("org"), "EDX_ENGINE_ORG", sec, "org")
    if not org:
        raise ConfigError("no organisation: give --org (or EDX_ENGINE_ORG, or `org` in the config file's [sync] "
                          "section)")
    try:
        s3 = dict(
            org=str(org),
            packages_bucket=pick(opt("packages_bucket"), "EDX_ENGINE_PACKAGES_BUCKET", sec, "packages_bucket",
                                 "course-data"),
            events_bucket=pick(opt("events_bucket"), "EDX_ENGINE_EVENTS_BUCKET", sec, "events_bucket",
                               "edx-course-data"),
            packages_prefixes=_as_list(sec.get("packages_prefixes")),
            events_prefixes=_as_list(sec.get("events_prefixes")),
            endpoint_url=pick(opt("endpoint_url"), None, sec, "endpoint_url"),
            profile=pick(opt("profile"), None, sec, "profile"),
            region=sec.get("region"),
            retries=int(pick(opt("retries"), None, sec, "retries", 4)),
            retry_delay=float(pick(opt("retry_delay"), None, sec, "retry_delay", 1.0)),
            multipart_threshold=int(float(sec.get("multipart_threshold_mb", 16)) * (1 << 20)),
            chunk_size=int(float(sec.get("chunk_size_mb", 8)) * (1 << 20)),
            concurrency=int(sec.get("concurrency", 4)),
            verify_etag=bool(sec.get("verify_etag", True)),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid [sync] setting in the config file: {exc}") from None
    key_file = opt("key_file") or (Path(sec["key_file"]) if sec.get("key_file") else None)
    return SyncConfig(org=str(org), since=since, only=only,
                      keep_downloads=bool(pick(opt("keep_downloads"), None, sec, "keep_downloads", False)),
                      key_file=key_file, s3=s3)
