"""Settings: command-line option > environment variable > config file > default.

The config file is TOML (``edx-engine.toml`` in the working directory, or ``--config``
/ ``EDX_ENGINE_CONFIG``). The GPG passphrase is never read from argv: only from
``EDX_ENGINE_GPG_PASSPHRASE`` or a file (``--passphrase-file`` / ``gpg.passphrase_file``).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .decrypt import GpgSettings

DEFAULT_DATA_DIR = "./edx-data"
DEFAULT_CONFIG = "edx-engine.toml"


class ConfigError(Exception):
    pass


@dataclass
class Settings:
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    gnupghome: str | None = None
    passphrase_file: str | None = None
    file: dict[str, Any] = field(default_factory=dict)  # the whole config file, for other sections

    def gpg(self) -> GpgSettings:
        return GpgSettings(self.gnupghome, read_passphrase(self.passphrase_file))

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


def read_passphrase(passphrase_file: str | None) -> str | None:
    if passphrase_file:
        try:
            return Path(passphrase_file).read_text("utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"cannot read passphrase file {passphrase_file}: {exc.strerror}") from None
    return os.environ.get("EDX_ENGINE_GPG_PASSPHRASE")


def resolve(data_dir: str | None = None, gnupghome: str | None = None, passphrase_file: str | None = None,
            config: str | None = None) -> Settings:
    conf = load_config_file(config)
    gpg_conf = conf.get("gpg", {}) if isinstance(conf.get("gpg"), dict) else {}
    return Settings(
        data_dir=Path(data_dir or os.environ.get("EDX_ENGINE_DATA_DIR") or conf.get("data_dir") or DEFAULT_DATA_DIR),
        gnupghome=gnupghome or os.environ.get("GNUPGHOME") or gpg_conf.get("gnupghome"),
        passphrase_file=passphrase_file or os.environ.get("EDX_ENGINE_GPG_PASSPHRASE_FILE")
        or gpg_conf.get("passphrase_file"),
        file=conf,
    )
