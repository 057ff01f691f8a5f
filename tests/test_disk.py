"""`status` sizes the store by part and says how much is free beside it; `status` and the daily `run`
warn when the store's file system has less free space than the next night may need.

The low-space case runs on a real small file system (a tmpfs mounted by the test, which needs root and
the right to mount: skipped where either is missing). Sizes are checked against `find -printf %s`
and `df`, not against the code's own walk."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from cli_support import run_cli
from store_support import edx, small_store
from test_commit_wait import small_disk  # noqa: F401 (a real 48 MB tmpfs, or a skip)
from test_sync import cli_args, gpg_key, moto, s3, sync_env, write_config, ENTRY  # noqa: F401

from edx_engine.store.status import DISK_MARGIN, human_bytes


def find_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path``, by find(1)."""
    if not path.exists():
        return 0
    r = subprocess.run(["find", str(path), "-type", "f", "-printf", "%s\n"], capture_output=True, text=True,
                       check=True)
    return sum(int(x) for x in r.stdout.split())


def df_free(path: Path) -> int:
    r = subprocess.run(["df", "-B1", "--output=avail", str(path)], capture_output=True, text=True, check=True)
    return int(r.stdout.split()[-1])


@pytest.fixture
def store(tmp_path_factory, tmp_path) -> Path:
    dest = tmp_path / "store"
    shutil.copytree(small_store(tmp_path_factory.mktemp("disk")), dest, symlinks=True)
    return dest


def status_json(data: Path) -> dict:
    r = edx("status", "--json", "--data-dir", str(data))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_status_sizes_the_store_by_part(store):
    (store / "downloads" / "b").mkdir(parents=True)
    (store / "downloads" / "b" / "IDBx-2026-01-05.zip").write_bytes(b"x" * 12345)  # a kept download
    disk = status_json(store)["disk"]
    lake = store / "lake"
    expected = {"events": find_bytes(lake / "events"), "tables": find_bytes(lake / "tables"),
                "models": find_bytes(lake / "models") + find_bytes(lake / "model_parts"),
                "quarantine": find_bytes(lake / "quarantine"), "downloads": 12345, "site": find_bytes(store / "site")}
    assert expected["events"] and expected["tables"] and expected["models"] and expected["quarantine"]
    assert disk["store_bytes"] == find_bytes(store)
    assert {k: disk["parts"][k] for k in expected} == expected
    assert disk["parts"]["other"] == find_bytes(store) - sum(expected.values())
    assert disk["parts"]["other"] >= (store / "edx.duckdb").stat().st_size  # the catalog is "other"
    assert disk["need_bytes"] == expected["models"] + expected["tables"] + DISK_MARGIN
    assert abs(disk["free_bytes"] - df_free(store)) < 64 << 20  # other processes write beside us
    assert disk["low"] == (disk["free_bytes"] < disk["need_bytes"])

    r = edx("status", "--data-dir", str(store))
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("disk:"))
    assert f"store {human_bytes(find_bytes(store))}" in line and "free on its file system" in line
    assert f"downloads {human_bytes(12345)}" in line
    assert ("warning: only" in r.stderr) == disk["low"]


def test_human_bytes():
    assert [human_bytes(n) for n in (0, 1023, 1024, 1536, 5 << 20, 3 << 30, 2 << 40)] == \
        ["0 B", "1023 B", "1.0 KB", "1.5 KB", "5.0 MB", "3.0 GB", "2.0 TB"]


def test_status_and_run_warn_when_the_next_night_may_not_fit(store, small_disk, s3, moto, gpg_key, tmp_path):
    data = small_disk / "store"
    shutil.copytree(store, data, symlinks=True)
    disk = status_json(data)["disk"]
    assert disk["low"] is True
    assert disk["free_bytes"] < 48 << 20 and abs(disk["free_bytes"] - df_free(data)) < 1 << 20
    r = edx("status", "--data-dir", str(data))
    assert r.returncode == 0, r.stderr
    warning = [ln for ln in r.stderr.splitlines() if ln.startswith("warning: only")]
    assert len(warning) == 1 and human_bytes(disk["need_bytes"]) in warning[0], r.stderr

    # the daily job says it too, and still does its work (an empty delivery: nothing new, exit 0)
    conf, env = write_config(tmp_path, moto.url), sync_env(gpg_key)
    r = run_cli(cli_args(data, conf, "run", "--no-dashboard")[len(ENTRY):], env=env)
    assert r.returncode == 0, r.stderr + r.stdout
    assert sum(ln.startswith("warning: only") for ln in r.stderr.splitlines()) == 1, r.stderr

    # on a roomy disk (the store where it was), no warning
    if not status_json(store)["disk"]["low"]:
        r = run_cli(cli_args(store, conf, "run", "--no-dashboard")[len(ENTRY):], env=env)
        assert r.returncode == 0, r.stderr + r.stdout
        assert "warning: only" not in r.stderr


def test_disk_report_reads_each_directory_once(store, monkeypatch):
    """The sizes come from one walk of the data directory: each part used to be walked, then the whole
    directory again (every file of a large store listed and stat'ed twice, by `status` and every `run`)."""
    import os

    from edx_engine.store import status as S

    before = S.disk_report(store)
    seen: list[str] = []
    real = os.scandir
    monkeypatch.setattr(S.os, "scandir", lambda p: (seen.append(str(p)), real(p))[1])
    report = S.disk_report(store)
    assert len(seen) == len(set(seen)), sorted(p for p in set(seen) if seen.count(p) > 1)[:5]
    assert report["parts"] == before["parts"] and report["store_bytes"] == before["store_bytes"]
    assert report["store_bytes"] == find_bytes(store)
