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
