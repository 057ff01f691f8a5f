"""``generate``: write a complete synthetic edX delivery (database package + daily tracking logs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .config import CourseInfo, Manifest, SyntheticConfig
from .events import write_events
from .tables import Recorder, write_package_files
from .vintage import layout as vintage_layout
from .world import build_world

ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def gpg_encrypt(path: Path, recipient: str, gnupghome: str | None = None) -> Path:
    """Encrypt ``path`` to ``path.gpg`` with the real gpg binary; removes the plaintext."""
    out = path.with_name(path.name + ".gpg")
    env = dict(os.environ)
    if gnupghome:
        env["GNUPGHOME"] = str(gnupghome)
    subprocess.run(["gpg", "--batch", "--yes", "--trust-model", "always", "--encrypt", "-r", recipient,
                    "-o", str(out), str(path)], check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)
    path.unlink()
    return out


def _encrypt_all(paths: list[Path], cfg: SyntheticConfig) -> list[Path]:
    with ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 2))) as ex:
        return list(ex.map(lambda p: gpg_encrypt(p, cfg.encrypt_to, cfg.gnupghome), paths))


def _write_zip(zip_path: Path, folder: str | None, paths: list[Path], enc: bool) -> None:
    """A zip like edX's: members under ``folder/`` (the package) or at the top (the opt-in zip)."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_zip = zip_path.with_name(zip_path.name + ".part")
    prefix = f"{folder}/" if folder else ""
    with zipfile.ZipFile(tmp_zip, "w", allowZip64=True) as zf:
        if folder:
            zi = zipfile.ZipInfo(folder + "/", ZIP_TIME)
            zi.external_attr = (0o40755 << 16) | 0x10
            zf.writestr(zi, b"")
        for p in paths:
            zi = zipfile.ZipInfo(f"{prefix}{p.name}", ZIP_TIME)
            zi.external_attr = 0o100644 << 16
            zi.compress_type = zipfile.ZIP_STORED if enc else zipfile.ZIP_DEFLATED
            zi._compresslevel = 1  # Python 3.11/3.12 attribute name
            try:
                zi.compress_level = 1  # Python >= 3.13
            except AttributeError:
                pass
            zi.file_size = p.stat().st_size
            with open(p, "rb") as src, zf.open(zi, "w") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    os.replace(tmp_zip, zip_path)


def generate(out_dir: Path, cfg: SyntheticConfig | None = None, **overrides) -> Manifest:
    """Write the delivery under ``out_dir`` and ``out_dir/manifest.json``; return the manifest."""
    cfg = cfg or SyntheticConfig()
    if overrides:
        cfg = SyntheticConfig(**{**cfg.__dict__, **overrides})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    world = build_world(cfg)
    timings["world"] = time.perf_counter() - t0
    pkg_date = cfg.effective_package_date.isoformat()
    enc = bool(cfg.encrypt_to)
    m = Manifest(org=cfg.org, package_date=pkg_date, seed=cfg.seed, start=cfg.start.isoformat(), days=cfg.days,
                 site=cfg.site, encrypted=enc, config=cfg.to_dict())
    m.config.pop("gnupghome", None)
    for c in world.courses:
        m.courses.append(CourseInfo(c.course_id, c.slug, c.title, c.root.metadata["start"], c.root.metadata["end"],
                                    len(c.chapters), len(c.blocks), c.old))
    m.staff_user_ids = sorted(u.id for u in world.staff)

    if cfg.package:
        t1 = time.perf_counter()
        folder = f"{cfg.org}-{pkg_date}"
        zip_rel = f"course-data/{folder}.zip"
        zip_path = out_dir / zip_rel
        zip_path.parent.mkdir(parents=True, exist_ok=True)
        staging = out_dir / "course-data" / f".staging-{folder}"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        rec = Recorder()
        names = write_package_files(world, staging, rec)
        timings["package_write"] = time.perf_counter() - t1
        paths = [staging / n for n in names]
        if enc:
            paths = _encrypt_all(paths, cfg)
        suffix = ".gpg" if enc else ""
        optin = vintage_layout(cfg.vintage, cfg.site).optin_zip
        if optin:  # since ~2020 the opt-in report comes in its own zip: email-opt-in/{org}-{date}.zip
            optin_paths = [p for p in paths if "-email_opt_in-" in p.name]
            paths = [p for p in paths if p not in optin_paths]
            names = [n for n in names if "-email_opt_in-" not in n]
            optin_rel = f"email-opt-in/{folder}.zip"
            _write_zip(out_dir / optin_rel, None, optin_paths, enc)
            m.files.append(optin_rel)
        _write_zip(zip_path, folder, paths, enc)
        shutil.rmtree(staging)
        members = [f"{folder}/{n}{suffix}" for n in names]
        m.package = {"path": zip_rel, "folder": folder, "members": members}
        m.files.append(zip_rel)
        for r in rec.counts:
            where = (r["name"] + suffix) if optin and r["table"] == "email_opt_in" else f"{folder}/{r['name']}{suffix}"
            m.row_counts.append({"table": r["table"], "course_id": r["course_id"], "rows": r["rows"],
                                 "member": where})
        for r in rec.failed:
            m.failed_exports.append({"table": r["table"], "course_id": r["course_id"],
                                     "member": f"{folder}/{r['name']}{suffix}"})
        for b in rec.malformed:
            m.malformed.append({"file": zip_rel, "member": f"{folder}/{b['name']}{suffix}", "table": b["table"],
                                "course_id": b["course_id"], "line": b["line"], "reason": b["reason"]})
        timings["package_total"] = time.perf_counter() - t1

    gen = None
    if cfg.events and cfg.days > 0:
        t2 = time.perf_counter()
        files, entries, gen = write_events(world, out_dir)
        timings["events_write"] = time.perf_counter() - t2
        if enc:
            enc_files = _encrypt_all(files, cfg)
            for e, p in zip(entries, enc_files):
                e["file"] = p.relative_to(out_dir).as_posix()
        m.events_files = entries
        m.files.extend(e["file"] for e in entries)
        timings["events_total"] = time.perf_counter() - t2

    # known personal values: learners of the first course that are in the package
    first = world.courses[0]
    sample = [e.user for e in first.enrolments if e.kind == "active" and not e.user.is_staff]
    sample = sorted({u.id: u for u in sample}.values(), key=lambda u: u.id)
    pick = [u for u in sample if any(ch in u.name for ch in "áéíóúñçãõèêëüÁÉÍÓÚÑ")][:3] + sample[:3]
    kp = {"emails": [], "usernames": [], "full_names": [], "ips": []}
    for u in pick:
        if u.email not in kp["emails"]:
            kp["emails"].append(u.email)
            kp["usernames"].append(u.username)
            kp["full_names"].append(u.name)
    kp["ips"] = list(gen.known_ips) if gen else []
    m.known_personal_values = kp
    m.totals = {
        "studentmodule_rows": sum(r["rows"] for r in m.row_counts if r["table"] == "courseware_studentmodule"),
        "events": sum(e["valid_events"] for e in m.events_files),
        "learners": len(world.users),
        "enrolments": sum(len(c.enrolments) for c in world.courses),
    }
    m.write(out_dir / "manifest.json")
    m.timings = timings  # not part of manifest.json (non-deterministic)
    return m
