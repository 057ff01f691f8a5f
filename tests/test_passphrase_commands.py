"""Every command that may decrypt gets the passphrase the same way (config.Settings.gpg through
`cli.common.read_gpg` or `import_paths`): an unreadable passphrase file is the same one line, exit
1, naming the file and never its content, before anything is written."""

from __future__ import annotations

import gzip
import shutil

import pytest

from test_cli_runner import cli, one_error

COMMANDS = {
    "import": lambda tmp: ["import", str(_log(tmp))],
    "sync": lambda tmp: ["sync", "--org", "IDBx"],
    "run": lambda tmp: ["run", "--org", "IDBx"],
    "keys import": lambda tmp: ["keys", "import", str(tmp / "key.asc")],
}


def _log(tmp):
    p = tmp / "idbx-edx-events-2026-01-01.log.gz"
    p.write_bytes(gzip.compress(b'{"event_type": "x"}\n'))
    return p


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_unreadable_passphrase_file_is_one_line_for_every_command(command, tmp_path):
    if command in ("sync", "run") and shutil.which("gpg") is None:
        pytest.skip("sync checks for gpg first")
    (tmp_path / "key.asc").write_text("not read: the passphrase comes first\n")
    args = COMMANDS[command](tmp_path) + ["--data-dir", str(tmp_path / "d"),
                                         "--passphrase-file", str(tmp_path / "no-pass.txt")]
    res = cli(*args, env={"EDX_ENGINE_GPG_PASSPHRASE": "env-secret-4711"})
    assert one_error(res).startswith(f"cannot read passphrase file {tmp_path / 'no-pass.txt'}")
    assert "env-secret-4711" not in res.output
    assert not (tmp_path / "d" / "edx.duckdb").exists()  # nothing imported, no ledger written
