"""The gpg section resolved in one place (config.Settings.gpg): the passphrase is read once, from
the file or the environment, and the environment variable is gone afterwards."""

from __future__ import annotations

import os

import pytest

from edx_engine import config as cfg

ENV = "EDX_ENGINE_GPG_PASSPHRASE"


def test_env_passphrase_is_read_once_and_dropped(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, "from-env")
    s = cfg.resolve(data_dir=str(tmp_path), config=str(_empty_conf(tmp_path)))
    assert ENV in os.environ  # resolving alone reads nothing: commands without gpg keep it
    gpg = s.gpg()
    assert gpg.passphrase == "from-env" and ENV not in os.environ
    monkeypatch.setenv(ENV, "set-later")  # a second call does not read again
    assert s.gpg() is gpg and s.gpg().passphrase == "from-env"
    assert "from-env" not in repr(s) and "from-env" not in repr(gpg)


def test_passphrase_file_wins_and_the_env_is_dropped_anyway(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, "from-env")
    pf = tmp_path / "pw"
    pf.write_text("from-file\n")
    s = cfg.resolve(data_dir=str(tmp_path), passphrase_file=str(pf), config=str(_empty_conf(tmp_path)))
    assert s.gpg().passphrase == "from-file"
    assert ENV not in os.environ


def test_unreadable_passphrase_file_is_one_line_without_content(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV, raising=False)
    s = cfg.resolve(data_dir=str(tmp_path), passphrase_file=str(tmp_path / "missing"),
                    config=str(_empty_conf(tmp_path)))
    with pytest.raises(cfg.ConfigError) as exc:
        s.gpg()
    assert str(exc.value).startswith("cannot read passphrase file ") and "\n" not in str(exc.value)


def test_with_keyring_keeps_the_passphrase_without_reading_again(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, "once")
    s = cfg.resolve(data_dir=str(tmp_path), gnupghome="/a", config=str(_empty_conf(tmp_path)))
    t = s.with_keyring("/b")
    assert (t.gnupghome, t.gpg().gnupghome, t.gpg().passphrase) == ("/b", "/b", "once")
    assert (s.gnupghome, s.gpg().gnupghome) == ("/a", "/a")  # the original is unchanged


def test_sync_keyring_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("GNUPGHOME", raising=False)
    conf = _empty_conf(tmp_path)
    s = cfg.resolve(data_dir=str(tmp_path / "d"), config=str(conf))
    assert cfg.sync_keyring(s) is None  # no private keyring yet: gpg's default
    (tmp_path / "d" / "gnupg").mkdir(parents=True)
    assert cfg.sync_keyring(s) == str(tmp_path / "d" / "gnupg")
    assert cfg.sync_keyring(s, "/explicit") == "/explicit"
    monkeypatch.setenv("GNUPGHOME", "/from-env")
    s2 = cfg.resolve(data_dir=str(tmp_path / "d"), config=str(conf))
    assert cfg.sync_keyring(s2) == "/from-env"


def _empty_conf(tmp_path):
    p = tmp_path / "empty.toml"
    p.write_text("")
    return p
