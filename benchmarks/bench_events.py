"""Benchmark of the tracking-log import on one generated day (>= 1M events, >= 700 MB of JSON).

    .venv/bin/python benchmarks/bench_events.py [--dir /tmp/edx-bench-events] [--repeat 3]

Measures, in the same run and on the same encrypted file:
  (a) floor: ``gpg -d file | gzip -dc > /dev/null``
  (b) DuckDB ``read_json`` of the decrypted .gz into a table (explicit columns, 2 threads);
      reported alone and as decryption (to a temporary .gz) + read_json
  (c) naive baseline: ``json.loads`` per line + row inserts (sqlite3 executemany), measured
      on a sample of lines and extrapolated to the whole file
  (d) ``import_events`` from the .log.gz.gpg into a fresh store (discovery + fingerprint
      included), peak RSS summed over the importer, its parse workers and gpg
  (e) a reference for the storage job: DuckDB alone, ``read_json`` of the decrypted .gz
      straight into one zstd Parquet file (``COPY ... TO``); none of (d)'s other work
      (context fields, event ids, line numbers, quarantine, date partitions)
Throughput is MB of uncompressed JSON per second; each figure is the median of --repeat runs.
CPU-seconds (user + system, all threads and child processes) are printed beside the wall
times: the machine's cores bound how much CPU work fits in a given wall time.

Day sizes (``--only s``, part of the default run): a browser-heavy mix (55 % browser events whose
``event`` is a JSON string, about 800 bytes a line, old and new course ids; ``mix_lines``) as
``.log.gz.gpg`` days of 1,000, 100,000 and 400,000 lines (the first lines of one generated day),
each imported by ``import_events`` in a fresh process. Per size: lines/s, MB/s of JSON, the ratio
to ``gpg -d | gzip -dc`` of the same file, and where the time goes (in-process import, whole
process). The 1,000-line day is also imported as the second file of a process (warm: libraries
loaded, the store open before), with and without encryption.

Stages (``--only p``, part of the default run): the largest mix day's CPU, each stage alone on one
thread (inflating and cutting blocks; DuckDB's JSON parse alone; the whole block statement; the
Parquet writing), against the CPU that 200 MB/s allows on this machine's cores (issue 15's target).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PASSPHRASE = "bench-events passphrase"
TARGET_EVENTS = 1_000_000
TARGET_BYTES = 700_000_000


def log(msg: str) -> None:
    print(msg, flush=True)


# -- data ---------------------------------------------------------------------------------
def gpg(home: Path, *args: str, passphrase: str | None = None, **kw) -> subprocess.CompletedProcess:
    cmd = ["gpg", "--homedir", str(home), "--batch", "--yes", "--no-tty"]
    fds: tuple = ()
    if passphrase is not None:
        r, w = os.pipe()
        os.write(w, passphrase.encode() + b"\n")
        os.close(w)
        cmd += ["--pinentry-mode", "loopback", "--passphrase-fd", str(r)]
        fds = (r,)
    try:
        return subprocess.run(cmd + list(args), check=True, capture_output=True, pass_fds=fds, **kw)
    finally:
        for fd in fds:
            os.close(fd)


def make_key(home: Path) -> str:
    if (home / "fpr").exists():
        return (home / "fpr").read_text().strip()
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    (home / "gpg-agent.conf").write_text("default-cache-ttl 0\nmax-cache-ttl 0\n")
    gpg(home, "--quick-gen-key", "Bench <bench-events@example.org>", "rsa2048", "default", "never",
        passphrase=PASSPHRASE)
    out = gpg(home, "-K", "--with-colons").stdout.decode()
    fpr = next(ln.split(":")[9] for ln in out.splitlines() if ln.startswith("fpr"))
    gpg(home, "--quick-add-key", fpr, "rsa2048", "encr", "never", passphrase=PASSPHRASE)
    (home / "fpr").write_text(fpr)
    return fpr


def generate_day(base: Path) -> tuple[Path, Path, dict]:
    """The encrypted day file, the gnupg home, and {lines, json_bytes, events}."""
    home = base / "gnupg"
    fpr = make_key(home)
    meta_path = base / "day.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if Path(meta["file"]).exists():
            return Path(meta["file"]), home, meta
    from edx_engine.synthetic import SyntheticConfig, generate

    out = base / "gen"
    shutil.rmtree(out, ignore_errors=True)
    log("generating one day of events (about a minute)...")
    t = time.perf_counter()
    m = generate(out, SyntheticConfig(org="IDBx", seed=7, courses=3, learners=20000, days=1,
                                      events_per_learner=20, start=dt.date(2026, 10, 1), package=False,
                                      encrypt_to=fpr, gnupghome=str(home), malformed=True))
    f = out / m.events_files[0]["file"]
    size = 0
    lines = 0
    with subprocess.Popen(["gpg", "--homedir", str(home), "--batch", "--quiet", "--pinentry-mode", "loopback",
                           "--passphrase-fd", "0", "-d", str(f)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE) as p:
        p.stdin.write(PASSPHRASE.encode() + b"\n")  # type: ignore[union-attr]
        p.stdin.close()  # type: ignore[union-attr]
        with gzip.open(p.stdout) as g:  # type: ignore[arg-type]
            while b := g.read(1 << 22):
                size += len(b)
                lines += b.count(b"\n")
    meta = {"file": str(f), "lines": lines, "json_bytes": size, "events": m.events_files[0]["valid_events"],
            "gpg_bytes": f.stat().st_size}
    meta_path.write_text(json.dumps(meta))
    log(f"generated in {time.perf_counter() - t:.0f} s")
    return f, home, meta


# -- measurements -------------------------------------------------------------------------
def _pass_cmd(home: Path, path: Path) -> str:
    return (f"gpg --homedir {home} --batch --quiet --no-tty --pinentry-mode loopback --passphrase-fd 3 -d {path} "
            f"3<<<'{PASSPHRASE}'")


def floor(path: Path, home: Path) -> tuple[float, float]:
    t, c = time.perf_counter(), _cpu_children()
    subprocess.run(["bash", "-c", f"set -o pipefail; {_pass_cmd(home, path)} | gzip -dc > /dev/null"], check=True)
    return time.perf_counter() - t, _cpu_children() - c


def decrypt_to(path: Path, home: Path, dst: Path) -> tuple[float, float]:
    t, c = time.perf_counter(), _cpu_children()
    subprocess.run(["bash", "-c", f"{_pass_cmd(home, path)} > {dst}"], check=True)
    return time.perf_counter() - t, _cpu_children() - c


DUCK_COLUMNS = {c: "VARCHAR" for c in ("username", "event_source", "event_type", "name", "session", "ip", "agent",
                                       "host", "referer", "accept_language", "page")}
DUCK_COLUMNS.update({"time": "TIMESTAMPTZ", "event": "JSON", "context": "JSON"})


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _read_json_sql(gz: Path) -> str:
    cols = "{" + ", ".join(f"'{k}': '{v}'" for k, v in DUCK_COLUMNS.items()) + "}"
    return f"read_json('{gz}', format='newline_delimited', columns={cols}, ignore_errors=true)"


def duckdb_read_json(gz: Path) -> tuple[float, float, int]:
    """(b): (seconds, CPU-seconds, rows) of read_json into an in-memory table, 2 threads."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads=2")
    t, c = time.perf_counter(), _cpu_self()
    con.execute(f"CREATE TABLE t AS SELECT * FROM {_read_json_sql(gz)}")
    dt_, cpu = time.perf_counter() - t, _cpu_self() - c
    n = con.execute("SELECT count(*) FROM t").fetchone()[0]
    con.close()
    return dt_, cpu, n


def duckdb_to_parquet(gz: Path, out: Path) -> tuple[float, float]:
    """(e): (seconds, CPU-seconds) of read_json copied straight into one zstd Parquet file."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads=2")
    t, c = time.perf_counter(), _cpu_self()
    con.execute(f"COPY (SELECT * FROM {_read_json_sql(gz)}) TO '{out}' (FORMAT parquet, COMPRESSION zstd)")
    dt_, cpu = time.perf_counter() - t, _cpu_self() - c
    con.close()
    out.unlink()
    return dt_, cpu


def naive(gz: Path, sample: int) -> tuple[float, int, int]:
    """json.loads per line + executemany inserts of the common fields; (seconds, lines, bytes) of the sample."""
    lines = []
    nbytes = 0
    with gzip.open(gz) as g:
        for ln in g:
            lines.append(ln)
            nbytes += len(ln)
            if len(lines) >= sample:
                break
    con = sqlite3.connect(":memory:")
    cols = ["time", "username", "event_source", "event_type", "name", "session", "ip", "agent", "host", "referer",
            "accept_language", "page", "course_id", "user_id", "event", "context"]
    con.execute(f"CREATE TABLE events ({', '.join(cols)})")
    sql = f"INSERT INTO events VALUES ({', '.join('?' * len(cols))})"
    t = time.perf_counter()
    batch = []
    for ln in lines:
        try:
            d = json.loads(ln)
        except ValueError:
            continue
        ctx = d.get("context") or {}
        ev = d.get("event")
        batch.append((d.get("time"), d.get("username"), d.get("event_source"), d.get("event_type"), d.get("name"),
                      d.get("session"), d.get("ip"), d.get("agent"), d.get("host"), d.get("referer"),
                      d.get("accept_language"), d.get("page"), ctx.get("course_id") if isinstance(ctx, dict) else None,
                      ctx.get("user_id") if isinstance(ctx, dict) else None,
                      ev if isinstance(ev, str) else json.dumps(ev), json.dumps(ctx)))
        if len(batch) >= 10000:
            con.executemany(sql, batch)
            batch = []
    if batch:
        con.executemany(sql, batch)
    con.commit()
    return time.perf_counter() - t, len(lines), nbytes


class RssSampler(threading.Thread):
    """Peak of the summed RSS of a process and all its descendants (sampled every 20 ms)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop_flag = pid, 0, False

    @staticmethod
    def _tree(root: int) -> list[int]:
        children: dict[int, list[int]] = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                    children.setdefault(ppid, []).append(int(d))
                except (OSError, ValueError, IndexError):
                    pass
        out, todo = [], [root]
        while todo:
            p = todo.pop()
            out.append(p)
            todo.extend(children.get(p, []))
        return out

    @staticmethod
    def _rss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/status") as f:
                for ln in f:
                    if ln.startswith("VmRSS:"):
                        return int(ln.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def run(self) -> None:
        while not self.stop_flag:
            self.peak = max(self.peak, sum(self._rss(p) for p in self._tree(self.pid)))
            time.sleep(0.02)


IMPORT_CODE = r"""
import json, sys, time
from pathlib import Path
from edx_engine import pandas_guard
pandas_guard.hide()  # as the CLI hides it for every command (DuckDB 1.5 would import it at its first bound parameter)
from edx_engine.decrypt import GpgSettings, gpg_session
from edx_engine.ingest.events import import_events
from edx_engine.ingest.sources import discover
from edx_engine.store.lake import Lake
path, data, home, workers = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
passphrase = sys.stdin.readline().rstrip("\n")
t = time.perf_counter()
lake = Lake(data)
# as `edx-engine import` does: a gpg session (private agents, one passphrase check), the write lock
with gpg_session(GpgSettings(home, passphrase)) as gpg, lake.writer():
    if hasattr(gpg.session, "prepare"):  # as `edx-engine import` does (older code: no such step)
        gpg.session.prepare()
    lake.init()
    srcs = [s for s in discover([Path(path)]).sources if s.events]
    s = import_events(lake, srcs, gpg, workers=None if workers == "auto" else int(workers))
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "events": s.events, "rejected": s.rejected, "line": s.one_line(),
                  "status": [f.status for f in s.files]}))
"""


def _env(src: str | None) -> dict | None:
    """The environment of a child that imports edx_engine from ``src`` (another checkout: the old code
    of an A/B comparison, e.g. ``git worktree add /tmp/old <rev>`` and ``--compare /tmp/old/src``)."""
    if not src:
        return None
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}


def ours(path: Path, home: Path, data: Path, workers: str, src: str | None = None) -> tuple[float, float, int, dict]:
    """(d): (seconds inside the import, CPU-seconds of the whole process tree, peak RSS, result).

    The CPU-seconds are the process's and its children's (gpg); gpg-agent, a daemon, is not among them:
    the S2K unlock of each file's key runs there."""
    shutil.rmtree(data, ignore_errors=True)
    c = _cpu_children()
    p = subprocess.Popen([sys.executable, "-c", IMPORT_CODE, str(path), str(data), str(home), workers],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env(src))
    sampler = RssSampler(p.pid)
    sampler.start()
    out, _ = p.communicate(PASSPHRASE + "\n")
    sampler.stop_flag = True
    sampler.join()
    cpu = _cpu_children() - c
    if p.returncode != 0:
        raise SystemExit(f"import failed (exit {p.returncode})")
    res = json.loads(out.strip().splitlines()[-1])
    return res["seconds"], cpu, sampler.peak, res


# -- day sizes: a browser-heavy mix ------------------------------------------------------------
MIX_SIZES = (1_000, 100_000, 400_000)
MIX_DATE = "2025-10-09"


def mix_lines(n: int, seed: int = 11):
    """``n`` tracking-log lines like a large partner's day: 55 % browser events whose ``event`` is a
    JSON string (video), 45 % server events (problem checks, half with a URL event_type), about 800
    bytes a line, 40 % of them in old-style (``Org/Course/Run``) courses, a third of whose browser
    events carry no course id in their context (it comes from the page URL)."""
    import random

    import orjson

    rng = random.Random(seed)
    new = [f"course-v1:IDBx+CS{100 + i}+2025_T{1 + i % 3}" for i in range(6)]
    old = [f"IDBx/CS{200 + i}/2015_T{1 + i % 2}" for i in range(4)]
    agents = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
              "Safari/537.36", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
              "Gecko) Version/17.1 Safari/605.1.15", "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 "
              "Firefox/121.0"]
    base = dt.datetime.fromisoformat(MIX_DATE).replace(tzinfo=dt.timezone.utc).timestamp()
    videos = ("play_video", "pause_video", "seek_video", "load_video", "speed_change_video")
    for i in range(n):
        t = base + i * 86400 / n
        uid = 100000 + rng.randrange(20000)
        is_old = rng.random() < 0.4
        cid = rng.choice(old if is_old else new)
        page = (f"https://courses.edx.org/courses/{cid}/courseware/{rng.getrandbits(64):016x}/"
                f"{rng.getrandbits(64):016x}/" + ("" if is_old else "1"))
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}+00:00"
        ctx: dict = {"course_id": cid, "org_id": "IDBx", "user_id": uid, "path": "/event", "course_user_tags": {}}
        d = {"username": f"learner{uid - 100000:06d}", "event_source": "browser", "name": "",
             "accept_language": "es-419,es;q=0.9,en;q=0.8", "time": ts, "agent": rng.choice(agents), "page": page,
             "host": "courses.edx.org", "session": f"{rng.getrandbits(128):032x}", "referer": page, "context": ctx,
             "ip": f"190.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"}
        if rng.random() < 0.55:
            et = rng.choice(videos)
            d["event"] = orjson.dumps({"id": f"i4x-IDBx-CS-video-{rng.getrandbits(64):016x}",
                                       "currentTime": round(rng.random() * 600, 3), "code": "html5",
                                       "duration": 612.4}).decode()
            if is_old and rng.random() < 0.3:
                del ctx["course_id"]
        else:
            block = f"block-v1:IDBx+CS+type@problem+block@{rng.getrandbits(64):016x}"
            if rng.random() < 0.5:
                et = f"/courses/{cid}/xblock/{block}/handler/xmodule_handler/problem_check"
                d["event"] = {"POST": {f"input_{rng.getrandbits(32):08x}_2_1": [str(rng.randrange(100))]}, "GET": {}}
            else:
                et = "problem_check"
                d["event"] = {"state": {"seed": 1, "done": True}, "problem_id": block, "grade": rng.randrange(3),
                              "max_grade": 2, "attempts": rng.randrange(1, 4), "success": "correct"}
            ctx["module"] = {"display_name": "Problem 1", "usage_key": block}
            d.update(event_source="server", page=None, referer="", accept_language="es-419,es;q=0.9")
        d["name"] = d["event_type"] = et
        yield orjson.dumps(d) + b"\n"


def generate_mix(base: Path, home: Path, fpr: str) -> list[dict]:
    """The mix's days (one per size, each the first lines of the largest), encrypted; cached in ``base``."""
    meta_path = base / "mix.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if all(Path(m["file"]).exists() for m in meta):
            return meta
    log(f"generating the browser-heavy mix ({max(MIX_SIZES):,} lines)...")
    out = []
    for n in MIX_SIZES:
        d = base / f"mix-{n}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        gz = d / f"idbx-edx-events-{MIX_DATE}.log.gz"
        size = 0
        with gzip.open(gz, "wb", compresslevel=6) as f:
            chunk: list[bytes] = []
            for line in mix_lines(n):
                chunk.append(line)
                size += len(line)
                if len(chunk) >= 10_000:
                    f.write(b"".join(chunk))
                    chunk = []
            f.write(b"".join(chunk))
        gpg(home, "--trust-model", "always", "-e", "-r", fpr, "-o", str(gz) + ".gpg", str(gz))
        warm = base / f"mix-{n}-plain"  # the same day unencrypted (warm measurement of the small day)
        shutil.rmtree(warm, ignore_errors=True)
        warm.mkdir()
        gz.rename(warm / gz.name)
        out.append({"lines": n, "json_bytes": size, "file": str(gz) + ".gpg", "plain": str(warm / gz.name),
                    "gpg_bytes": (d / (gz.name + ".gpg")).stat().st_size})
    meta_path.write_text(json.dumps(out))
    return out


WARM_CODE = r"""
import json, shutil, sys, time
from pathlib import Path
from edx_engine import pandas_guard
pandas_guard.hide()  # as the CLI hides it for every command (DuckDB 1.5 would import it at its first bound parameter)
from edx_engine.decrypt import GpgSettings, gpg_session
from edx_engine.ingest.events import import_events
from edx_engine.ingest.sources import discover
from edx_engine.store.lake import Lake
data, home, first, second = sys.argv[1:5]
passphrase = sys.stdin.readline().rstrip("\n")
lake = Lake(data)
out = []
with gpg_session(GpgSettings(home, passphrase)) as gpg, lake.writer():
    lake.init()
    for path in (first, second):
        t = time.perf_counter()
        s = import_events(lake, [x for x in discover([Path(path)]).sources if x.events], gpg)
        out.append(time.perf_counter() - t)
print(json.dumps({"first": out[0], "second": out[1], "events": s.events}))
"""


def warm_small(data: Path, home: Path, first: str, second: str, src: str | None = None) -> tuple[float, float]:
    """(first, second) in-process seconds of two small days imported one after the other in one process."""
    shutil.rmtree(data, ignore_errors=True)
    p = subprocess.run([sys.executable, "-c", WARM_CODE, str(data), str(home), first, second],
                       input=PASSPHRASE + "\n", capture_output=True, text=True, check=True, env=_env(src))
    r = json.loads(p.stdout.strip().splitlines()[-1])
    return r["first"], r["second"]


def _next_day_copy(path: Path, base: Path, tag: str) -> str:
    """The same small day under the next day's name (a second source for the warm measurement)."""
    d = base / f"warm-{tag}"
    d.mkdir(exist_ok=True)
    dst = d / path.name.replace(MIX_DATE, "2025-10-10")
    if not dst.exists():
        shutil.copyfile(path, dst)
    return str(dst)

STAGES_CODE = r"""
import json, sys, tempfile, time
from pathlib import Path
from edx_engine import pandas_guard
pandas_guard.hide()
from isal import igzip
from edx_engine.ingest import events_duck as ed
from edx_engine.ingest.events_pipeline import PartSink
path = sys.argv[1]
parser = ed.DuckParser(1)
con = parser.con
parse_only = f"SELECT line, try(json_transform(raw, '{ed._SPEC}')) AS e FROM blk"
cpu = {"read": 0.0, "parse": 0.0, "statement": 0.0, "write": 0.0}
clock = time.thread_time
with tempfile.TemporaryDirectory() as tmp:
    sink = PartSink(Path(tmp), "k", "f", "t")
    blocks = ed.iter_blocks(igzip.open(path, "rb"))
    while True:
        t = clock()
        block = next(blocks, None)
        cpu["read"] += clock() - t
        if block is None:
            break
        t = clock()
        con.register("blk", block.table)
        con.sql(parse_only).to_arrow_table()
        con.unregister("blk")
        cpu["parse"] += clock() - t
        t = clock()
        table = parser.parse(block, [])
        cpu["statement"] += clock() - t
        t = clock()
        sink.add(table)
        cpu["write"] += clock() - t
        del block, table
    t = clock()
    sink.close()
    cpu["write"] += clock() - t
print(json.dumps(cpu))
"""


def stages(plain: str, json_bytes: int, repeat: int) -> None:
    """Where a day's CPU goes, each stage alone on one thread (``--only p``), against what 200 MB/s
    allows on this machine's cores: the budget for the issue's target, stage by stage.

    read: inflating (isal) and cutting whole-line blocks; parse: DuckDB's JSON parse of each line
    alone, into Arrow (the first step of the block statement, the least any DuckDB JSON design pays);
    statement: the whole block statement (parse, normalisation, ids) with its Arrow hand-off;
    write: the Parquet parts (zstd level 1). Medians of ``repeat`` runs, each in a fresh process."""
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", STAGES_CODE, plain], check=True, capture_output=True,
                             text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    mb, cores = json_bytes / 1e6, os.cpu_count() or 1
    budget = cores * mb / 200
    log(f"stages of the {mb:.1f} MB day, each alone on one thread, CPU-s (medians of {repeat}):")
    for k in ("read", "parse", "statement", "write"):
        log(f"  {k:>10} {med[k]:6.2f}   ({mb / med[k]:6.1f} MB/s on one core)")
    need = med["read"] + med["statement"] + med["write"]
    least = med["read"] + med["parse"] + med["write"]
    log(f"  read + statement + write: {need:.2f} CPU-s; read + parse alone + write: {least:.2f} CPU-s")
    log(f"  200 MB/s on {cores} cores allows {budget:.2f} CPU-s for everything (start-up, catalog and commit "
        f"included): {'within' if need <= budget else 'over'} it by the stages alone "
        f"({need / budget:.2f} x the budget; {least / budget:.2f} x without any normalisation)")


def sizes(base: Path, home: Path, repeat: int, compare: str | None = None, only: set[int] | None = None) -> None:
    """The day-size table: floor, import in a fresh process (in-process and whole-process seconds).

    ``compare``: the ``src`` folder of another checkout (the old code), run interleaved with this one,
    run after run, so that both see the same machine load (the 1-minute load average is printed)."""
    fpr = make_key(home)
    days = generate_mix(base, home, fpr)
    measured = [m for m in days if only is None or m["lines"] in only]
    codes = [("new", None)] + ([("old", compare)] if compare else [])
    rows = []
    for m in measured:
        path, mb = Path(m["file"]), m["json_bytes"] / 1e6
        fl, loads = [], []
        imp: dict[str, list[float]] = {k: [] for k, _ in codes}
        whole: dict[str, list[float]] = {k: [] for k, _ in codes}
        cpus: dict[str, list[float]] = {k: [] for k, _ in codes}
        for _ in range(repeat):
            fl.append(floor(path, home)[0])
            for name, src in codes:
                loads.append(os.getloadavg()[0])
                t = time.perf_counter()
                sec, cpu_s, _, r = ours(path, home, base / "store-mix", "auto", src)
                whole[name].append(time.perf_counter() - t)
                imp[name].append(sec)
                cpus[name].append(cpu_s)
                if r["events"] != m["lines"]:
                    raise SystemExit(f"{path}: {r['events']} events imported, {m['lines']} expected")
        med = statistics.median
        rows.append((m, med(fl), {k: (med(imp[k]), med(whole[k]), med(cpus[k])) for k, _ in codes}, loads))
        log(f"  {m['lines']:>9,} lines {mb:7.1f} MB: floor {med(fl):6.2f} s, "
            + "; ".join(f"{k}: import {med(imp[k]):6.2f} s in-process, {med(whole[k]):6.2f} s whole process, "
                        f"{med(cpus[k]):6.2f} CPU-s" for k, _ in codes)
            + f" (load {min(loads):.1f}-{max(loads):.1f})")
    small = days[0]
    warm: dict[str, dict[str, list]] = {k: {"plain": [], "gpg": []} for k, _ in codes}
    wloads = []
    for _ in range(repeat):
        for name, src in codes:
            wloads.append(os.getloadavg()[0])
            warm[name]["plain"].append(warm_small(base / "store-warm", home, small["plain"],
                                                  _next_day_copy(Path(small["plain"]), base, "plain"), src))
            warm[name]["gpg"].append(warm_small(base / "store-warm", home, small["file"],
                                                _next_day_copy(Path(small["file"]), base, "gpg"), src))
    log("")
    log(f"browser-heavy mix, medians of {repeat} runs, each import in a fresh process"
        + (", old and new code interleaved" if compare else "") + ":")
    log(f"  {'lines':>9} {'MB JSON':>8} {'code':>4} {'floor s':>8} {'import s':>9} {'process s':>9} {'CPU-s':>6} "
        f"{'lines/s':>10} {'MB/s':>6} {'x floor':>7} {'load':>9}")
    for m, f, by, loads in rows:
        mb = m["json_bytes"] / 1e6
        for name, (i, w, c) in by.items():
            log(f"  {m['lines']:>9,} {mb:>8.1f} {name:>4} {f:>8.2f} {i:>9.2f} {w:>9.2f} {c:>6.2f} "
                f"{m['lines'] / i:>10,.0f} {mb / i:>6.1f} {f / i:>7.2f} {min(loads):>4.1f}-{max(loads):<4.1f}")
    log("  (import s: import_events in-process, discovery and the passphrase check included; process s: "
        "the whole python process; x floor: floor s / import s, 1.00 = as fast as gpg -d | gzip -dc; "
        "CPU-s: the process and gpg, not gpg-agent, which unlocks the key; load: 1-minute load average "
        "at the runs' starts, on this many cores: " + str(os.cpu_count()) + ")")
    for name, _ in codes:
        for label, key in (("plain .log.gz", "plain"), (".log.gz.gpg", "gpg")):
            runs = warm[name][key]
            log(f"  {name}: {small['lines']:,}-line day, {label}: first in its process "
                f"{statistics.median(r[0] for r in runs):.3f} s, as the second file of a process "
                f"{statistics.median(r[1] for r in runs):.3f} s")
    log(f"  (load {min(wloads):.1f}-{max(wloads):.1f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/edx-bench-events", help="work directory (data, store, gnupg home)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sample", type=int, default=100_000, help="lines for the naive baseline (c)")
    ap.add_argument("--workers", default="auto")
    ap.add_argument("--only", default="abcdesp", help="which measurements to run (subset of abcdesp; s: day sizes; p: the stages of the "
                         "largest mix day, each alone)")
    ap.add_argument("--compare", default=None, metavar="SRC",
                    help="day sizes: also run the code in SRC (another checkout's src folder, e.g. of "
                         "`git worktree add /tmp/old <rev>`), interleaved with this one")
    ap.add_argument("--sizes", default=None, help="day sizes: only these line counts (comma-separated, of "
                                                  + ",".join(map(str, MIX_SIZES)) + ")")
    args = ap.parse_args()
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    if "s" in args.only:
        sizes(base, base / "gnupg", args.repeat, args.compare,
              {int(x) for x in args.sizes.split(",")} if args.sizes else None)
    if "p" in args.only:
        home = base / "gnupg"
        largest = generate_mix(base, home, make_key(home))[-1]
        stages(largest["plain"], largest["json_bytes"], args.repeat)
    if not set(args.only) - {"s", "p"}:
        return
    path, home, meta = generate_day(base)
    mb = meta["json_bytes"] / 1e6
    cores = os.cpu_count() or 1
    log(f"file: {path.name}: {meta['gpg_bytes'] / 1e6:.1f} MB encrypted, {mb:.1f} MB of JSON, "
        f"{meta['lines']:,} lines, {meta['events']:,} valid events; cores: {cores}; "
        f"load average: {os.getloadavg()[0]:.2f}")
    if meta["events"] < TARGET_EVENTS or meta["json_bytes"] < TARGET_BYTES:
        log("WARNING: the day is smaller than the 1M events / 700 MB the benchmark calls for")
    keys = ("a", "dec", "b", "c", "d", "e")
    res: dict[str, list[float]] = {k: [] for k in keys}
    cpu: dict[str, list[float]] = {k: [] for k in keys}
    rss: list[int] = []
    last_line = naive_note = ""

    def record(key: str, seconds: float, cpu_seconds: float | None = None) -> None:
        res[key].append(seconds)
        if cpu_seconds is not None:
            cpu[key].append(cpu_seconds)

    with tempfile.TemporaryDirectory(dir=base) as tmp:
        gz = Path(tmp) / "day.log.gz"
        for i in range(args.repeat):
            if "a" in args.only:
                record("a", *floor(path, home))
            if "b" in args.only or "e" in args.only:
                record("dec", *decrypt_to(path, home, gz))
            if "b" in args.only:
                sec, cpu_s, _ = duckdb_read_json(gz)
                record("b", sec, cpu_s)
            if "e" in args.only:
                record("e", *duckdb_to_parquet(gz, Path(tmp) / "e.parquet"))
            if "d" in args.only:
                sec, cpu_s, peak, r = ours(path, home, base / "store", args.workers)
                record("d", sec, cpu_s)
                rss.append(peak)
                last_line = r["line"]
            if "c" in args.only and i == 0:
                if not gz.exists():
                    decrypt_to(path, home, gz)
                sec, nlines, nbytes = naive(gz, args.sample)
                record("c", sec * meta["json_bytes"] / nbytes)
                naive_note = f"measured on {nlines:,} lines ({nbytes / 1e6:.1f} MB) and extrapolated"
            log(f"run {i + 1}/{args.repeat}: " + ", ".join(f"{k}={v[-1]:.2f}s" for k, v in res.items() if v))
    med = {k: statistics.median(v) for k, v in res.items() if v}
    mcpu = {k: statistics.median(v) for k, v in cpu.items() if v}
    rate = {k: mb / v for k, v in med.items()}

    def row(label: str, key: str, seconds: float | None = None, note: str = "") -> None:
        sec = med[key] if seconds is None else seconds
        c = f"{mcpu[key]:6.2f} CPU-s" if key in mcpu and seconds is None else " " * 12
        log(f"  {label:48s} {sec:6.2f} s  {mb / sec:7.1f} MB/s  {c}{note}")

    log("")
    log(f"medians of {args.repeat} runs, MB/s of JSON ({mb:.0f} MB, {meta['lines']:,} lines):")
    if "a" in med:
        row("(a) gpg -d | gzip -dc > /dev/null (floor)", "a")
    if "dec" in med:
        row("    decryption to a .gz file", "dec")
    if "b" in med:
        row("(b) DuckDB read_json of the decrypted .gz", "b")
        row("    decryption to .gz + (b)", "b", med["dec"] + med["b"])
    if "c" in med:
        row("(c) naive json.loads + row inserts", "c", note=f"  ({naive_note})")
    if "d" in med:
        row("(d) edx-engine import_events from .log.gz.gpg", "d",
            note=f"  peak RSS {max(rss) / 2**20:.0f} MiB (median {statistics.median(rss) / 2**20:.0f} MiB)")
        log(f"      {meta['lines'] / med['d']:,.0f} lines/s"
            + (f", {med['a'] / med['d']:.2f} x the floor (a)" if "a" in med else "") + f"; {last_line}")
    if "e" in med:
        row("(e) DuckDB alone: read_json .gz -> Parquet", "e")
        row("    decryption to .gz + (e)", "e", med["dec"] + med["e"])
    log("")
    checks = []
    if "a" in med and "d" in med:
        checks.append(("(d) >= 0.6 x (a)", rate["d"] / rate["a"], rate["d"] >= 0.6 * rate["a"]))
    if "b" in med and "d" in med:
        both = med["dec"] + med["b"]
        checks.append(("(d) faster than decryption + (b)", both / med["d"], med["d"] < both))
    if "c" in med and "d" in med:
        checks.append(("(d) >= 5 x (c)", rate["d"] / rate["c"], rate["d"] >= 5 * rate["c"]))
    for name, ratio, ok in checks:
        log(f"  {name:36s} ratio {ratio:5.2f}  {'OK' if ok else 'MISSED'}")
    if rss:
        log(f"  {'peak RSS < 1 GB':36s} {max(rss) / 1e9:5.2f} GB  {'OK' if max(rss) < 1e9 else 'MISSED'}")
    if mcpu:
        log("")
        log(f"CPU budget on {cores} cores: a run that needs C CPU-seconds takes at least C / {cores} seconds.")
        for key, label in (("b", "(b)"), ("e", "(e)"), ("d", "(d)")):
            if key in mcpu:
                log(f"  {label} {mcpu[key]:6.2f} CPU-s -> at least {mcpu[key] / cores:5.2f} s")


if __name__ == "__main__":
    main()
