"""Benchmark: import of an encrypted 50-course package, through the keyring vs through a session keyring.

Each package member is one gpg run. Through the keyring, each gpg run unlocks the key (S2K hashing
in gpg-agent, ~0.1-0.5 s with a key protected like a real one), so the import decrypts through
one private agent per job and starts the next members' gpg while the current one is parsed
(`EDX_ENGINE_GPG_JOBS`, default: the number of cores). With a session keyring (the default) the
run unlocks the key once, re-protects it under a random passphrase with the cheapest S2K in a
private home, and each member unlocks in about a millisecond.

    python benchmarks/bench_decrypt.py [--courses 50] [--learners 1000] [--repeat 3] [--s2k-count N]

Makes a throwaway key (protected with gpg's own S2K calibration unless --s2k-count is given),
writes a synthetic package encrypted to it with `edx-engine synthetic --encrypt-to` (kept in
benchmarks/out/ for the next run), then imports the package zip into a fresh store with
EDX_ENGINE_GPG_SESSION_KEY=0 ("before": one unlock per member, default jobs, as the import did)
and with the default ("after"), alternating, --repeat times each, each in its own process.
Prints the medians and the ratio, and checks that both imports loaded the same rows. Timings
never decide pass/fail of tests.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
ENTRY = [sys.executable, "-c", "import sys; from edx_engine.cli import app; sys.exit(app())"]
PASSPHRASE = "benchmark passphrase"


def gpg(home: Path, *args: str) -> str:
    r, w = os.pipe()
    os.write(w, PASSPHRASE.encode() + b"\n")
    os.close(w)
    try:
        return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--yes", "--no-tty", "--pinentry-mode",
                               "loopback", "--passphrase-fd", str(r), *args], check=True, capture_output=True,
                              text=True, pass_fds=(r,)).stdout
    finally:
        os.close(r)


def ensure_key(home: Path, s2k_count: int | None) -> str:
    """A passphrase-protected key (sign + encryption subkey) in ``home``; returns its fingerprint."""
    if not (home / "fpr").exists():
        home.mkdir(parents=True, exist_ok=True)
        home.chmod(0o700)
        conf = "default-cache-ttl 0\nmax-cache-ttl 0\n" + (f"s2k-count {s2k_count}\n" if s2k_count else "")
        (home / "gpg-agent.conf").write_text(conf)
        gpg(home, "--quick-gen-key", "edx-engine Benchmark <bench@example.org>", "rsa2048", "default", "never")
        fpr = next(ln.split(":")[9] for ln in gpg(home, "-K", "--with-colons").splitlines() if ln.startswith("fpr"))
        gpg(home, "--quick-add-key", fpr, "rsa2048", "encr", "never")
        (home / "fpr").write_text(fpr)
    return (home / "fpr").read_text().strip()


def ensure_package(base: Path, courses: int, learners: int, home: Path, fpr: str) -> Path:
    pkg = base / "package"
    if not list((pkg / "course-data").glob("*.zip")):
        print(f"generating an encrypted package ({courses} courses, {learners} learners) ...", flush=True)
        shutil.rmtree(pkg, ignore_errors=True)
        subprocess.run([*ENTRY, "synthetic", "--out", str(pkg), "--courses", str(courses), "--learners",
                        str(learners), "--days", "1", "--encrypt-to", fpr, "--gnupghome", str(home)],
                       check=True, stdout=subprocess.DEVNULL)
    return next((pkg / "course-data").glob("*.zip"))


def import_once(zip_path: Path, home: Path, session_keyring: bool) -> tuple[float, str]:
    """Seconds of one `edx-engine import` of the package into a fresh store, and its summary line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDX_ENGINE_")}
    env.update(GNUPGHOME=str(home), EDX_ENGINE_GPG_PASSPHRASE=PASSPHRASE)
    if not session_keyring:
        env["EDX_ENGINE_GPG_SESSION_KEY"] = "0"
    with tempfile.TemporaryDirectory(prefix="bench-decrypt-") as data:
        t0 = time.perf_counter()
        r = subprocess.run([*ENTRY, "import", str(zip_path), "--data-dir", data], env=env, capture_output=True,
                           text=True)
        seconds = time.perf_counter() - t0
    if r.returncode not in (0, 2):  # 2: the synthetic package holds a few malformed lines on purpose
        raise SystemExit(f"import failed ({r.returncode}):\n{r.stderr[-3000:]}")
    summary = next(ln for ln in r.stdout.splitlines() if ln.startswith("database files"))
    return seconds, summary.rsplit(",", 1)[0]  # without the seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--courses", type=int, default=50)
    ap.add_argument("--learners", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--s2k-count", type=int, default=None,
                    help="protect the key with this S2K count (default: gpg's calibration, as a real key)")
    args, _ = ap.parse_known_args()  # benchmarks/run.py passes its arguments to every benchmark
    from edx_engine.decrypt import default_jobs

    base = OUT / f"decrypt-{args.courses}c-{args.learners}l-{args.s2k_count or 'default'}"
    home = base / "gnupg"
    fpr = ensure_key(home, args.s2k_count)
    zip_path = ensure_package(base, args.courses, args.learners, home, fpr)
    with zipfile.ZipFile(zip_path) as z:
        members = sum(1 for n in z.namelist() if n.endswith(".gpg"))
    jobs = default_jobs()
    print(f"package {zip_path.name}: {members} encrypted members, {zip_path.stat().st_size / 1e6:.1f} MB; "
          f"{os.cpu_count()} cores; default jobs {jobs}", flush=True)
    times: dict[str, list[float]] = {"before": [], "after": []}
    summaries = set()
    try:
        for i in range(args.repeat):
            for name, keyring in (("before", False), ("after", True)):
                seconds, summary = import_once(zip_path, home, keyring)
                times[name].append(seconds)
                summaries.add(summary)
                label = "session keyring" if keyring else "EDX_ENGINE_GPG_SESSION_KEY=0"
                print(f"  run {i + 1} {name:<6} ({label}, {jobs} jobs): {seconds:7.1f} s", flush=True)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)
    before, after = statistics.median(times["before"]), statistics.median(times["after"])
    print(f"import of {members} encrypted members, median of {args.repeat}: before (one unlock per member) "
          f"{before:.1f} s ({before / members:.3f} s/member), after (session keyring) {after:.1f} s "
          f"({after / members:.3f} s/member); speed-up x{before / after:.2f}")
    if len(summaries) != 1:
        raise SystemExit(f"the imports did not load the same files and rows: {sorted(summaries)}")
    print(f"same result every time: {summaries.pop()}")


if __name__ == "__main__":
    main()
