"""`edx-engine keys import` (fetch.keys) with the real gpg: private keys only, passphrase checked."""

from __future__ import annotations

import os
import subprocess

import pytest

from edx_engine.fetch.keys import KeyError_, import_key, secret_fingerprints


def _export(home, fpr, pw, out, secret: bool) -> None:
    r, w = os.pipe()
    os.write(w, pw.encode() + b"\n")
    os.close(w)
    what = "--export-secret-keys" if secret else "--export"
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase-fd", str(r),
                    "--armor", what, "-o", str(out), fpr], check=True, pass_fds=(r,), capture_output=True)
    os.close(r)


def test_key_import_refuses_public_keys_and_wrong_passphrases(gpg_key, other_gpg_key, tmp_path):
    home, fpr, pw = gpg_key
    other_home, other_fpr = other_gpg_key
    private, public = tmp_path / "org.asc", tmp_path / "other-public.asc"
    _export(home, fpr, pw, private, secret=True)
    _export(other_home, other_fpr, "", public, secret=False)
    ring = tmp_path / "ring"

    with pytest.raises(KeyError_, match="wrong passphrase"):
        import_key(private, ring, "not the passphrase")
    got = import_key(private, ring, pw)
    assert fpr in got and set(got) <= set(secret_fingerprints(ring))
    # a keyring that already holds a private key still refuses a file without one
    with pytest.raises(KeyError_, match="holds no private key"):
        import_key(public, ring, pw)
    subprocess.run(["gpgconf", "--homedir", str(ring), "--kill", "gpg-agent"], capture_output=True)


def test_import_decrypts_with_the_key_that_keys_import_stored_and_leaves_no_agent(gpg_key, tmp_path):
    """The README's route: `keys import` puts the key in <data-dir>/gnupg; `import` (not only `sync`)
    then decrypts with it, without --gnupghome or GNUPGHOME (an outside tester got "no secret key"
    for every file). `keys import` leaves no gpg-agent running on that keyring."""
    import duckdb
    from cli_support import run_cli
    from test_gpg_passphrase import _agent_gone, _encrypted_days

    home, fpr, pw = gpg_key
    private = tmp_path / "org.asc"
    _export(home, fpr, pw, private, secret=True)
    logs = _encrypted_days(tmp_path, home, fpr, ["2026-10-21", "2026-10-22"])
    data, pass_file = tmp_path / "d", tmp_path / "pass.txt"  # short: gpg-agent's socket paths must fit
    pass_file.write_text(pw + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("GNUPGHOME", "EDX_ENGINE_GPG_PASSPHRASE")}
    got = run_cli(["keys", "import", private, "--data-dir", data, "--passphrase-file", pass_file], env=env)
    assert got.returncode == 0, got.stderr
    assert _agent_gone(data / "gnupg")
    got = run_cli(["import", logs, "--data-dir", data, "--passphrase-file", pass_file], env=env)
    assert got.returncode == 0, got.stdout + got.stderr
    with duckdb.connect(str(data / "edx.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 10
    # a wrong passphrase is named as such (not "no secret key": the keyring was found)
    wrong, other = tmp_path / "wrong.txt", tmp_path / "o"
    wrong.write_text("not the passphrase\n")
    got = run_cli(["keys", "import", private, "--data-dir", other, "--passphrase-file", pass_file], env=env)
    assert got.returncode == 0, got.stdout + got.stderr
    got = run_cli(["import", logs, "--data-dir", other, "--passphrase-file", wrong], env=env)
    assert got.returncode == 1 and "wrong passphrase" in got.stdout + got.stderr, got.stdout + got.stderr
