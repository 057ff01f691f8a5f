"""Finding importable files (zip, directory, single files) and opening them as plaintext streams."""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import BinaryIO, Callable, ContextManager, Iterator

from ..decrypt import SAMPLE_BYTES, GpgSettings, gpg_decrypt
from ..names import (EventsFile, PackageFile, bad_name_date, parse_events_name, parse_package_member,
                     parse_package_name)


class SourceError(Exception):
    """A source file cannot be used; the message names the file."""


@dataclass
class Source:
    """One file to import, from wherever it lives."""

    label: str  # shown to people: path, or zip:member
    encrypted: bool
    fingerprint: str  # identity of the raw bytes (size + checksum)
    opener: Callable[[], ContextManager[BinaryIO]]  # raw bytes, still encrypted if .gpg
    member: PackageFile | None = None
    events: EventsFile | None = None
    org: str | None = None
    package_date: str | None = None
    size: int = 0

    @contextmanager
    def open(self, gpg: GpgSettings) -> Iterator[BinaryIO]:
        """The file's plaintext as a stream; decryption failures raise DecryptError.

        Within a gpg session the run's first decryption is its passphrase check (``gpg_decrypt``):
        once the passphrase is known wrong, PassphraseError is raised at once, without gpg."""
        if self.encrypted and gpg.session is not None and gpg.session.failure is not None:
            gpg.session.claim(self.label)  # raises PassphraseError, before the file is even opened
        with self.opener() as raw:
            if not self.encrypted:
                yield raw
                return
            with gpg_decrypt(raw, gpg, label=self.label) as plain:
                yield plain  # type: ignore[misc]

    def head(self, n: int = SAMPLE_BYTES) -> bytes:
        """The first ``n`` raw (still encrypted) bytes."""
        with self.opener() as raw:
            return raw.read(n)


@dataclass
class Discovery:
    sources: list[Source] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # files whose names are not edX's
    refused: list[str] = field(default_factory=list)  # one line each: links leaving the package (never read)
    warnings: list[str] = field(default_factory=list)  # one line each: odd zip member paths (read anyway)


def _file_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return f"{path.stat().st_size}:sha256:{h.hexdigest()}"


def _package_of(path: Path) -> tuple[str, str] | None:
    for parent in [path.parent, *path.parents]:
        if found := parse_package_name(parent.name):
            return found
    return None


def _classify(label: str, name: str, opener, fingerprint: str, size: int, pkg: tuple[str, str] | None,
              package_date: str | None) -> Source | None:
    if member := parse_package_member(name):
        org, pdate = pkg if pkg else (member.org, package_date)
        return Source(label, member.encrypted, fingerprint, opener, member=member, org=org or member.org,
                      package_date=pdate, size=size)
    if ev := parse_events_name(name):
        return Source(label, ev.encrypted, fingerprint, opener, events=ev, org=ev.org, size=size)
    return None


def _bad_date(path: Path) -> str | None:
    """Why a file is refused for the date in its own name, or None."""
    if d := bad_name_date(path.name):
        return f"the date {d} in its name is not a day of the calendar; not imported"
    return None


def _bad_package_folder(path: Path) -> Path | None:
    """The folder that gives a package member its date (the nearest named like a package, as
    ``_package_of`` finds it) when that date is not a day of the calendar, else None."""
    if not parse_package_member(path.name):
        return None
    for p in path.parents:
        if bad_name_date(p.name):
            return p
        if parse_package_name(p.name):
            return None
    return None


def _count_bad_folder(bad: dict[str, list], label: str, folder: Path) -> None:
    """One more file of a package folder refused for its date (``label``: how people know the folder)."""
    bad.setdefault(label, [bad_name_date(folder.name), 0])[1] += 1


def _refuse_folders(bad: dict[str, list], out: "Discovery") -> None:
    """One line per package folder refused for its date, with the number of its files."""
    for folder, (d, n) in bad.items():
        out.refused.append(f"{folder}: the date {d} in this folder's name is not a day of the calendar; "
                           f"its {n} file(s) not imported")


def _zip_member_is_link(info: zipfile.ZipInfo) -> bool:
    """A member stored as a symbolic link (Unix mode bits in the external attributes)."""
    return stat.S_ISLNK(info.external_attr >> 16)


def _odd_member_path(name: str) -> str | None:
    """Why a member's path is unusual (it could write outside a folder if someone unzipped it)."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if ".." in parts:
        return "'..' in its path"
    return None


def _zip_sources(path: Path, package_date: str | None, out: Discovery, zip_label: str) -> None:
    pkg = parse_package_name(path.name)
    try:
        with zipfile.ZipFile(path) as zf:  # closed here: left to the garbage collector, its __del__
            infos = zf.infolist()           # could meet a Ctrl-C ("Exception ignored in ZipFile.__del__")
    except (zipfile.BadZipFile, OSError) as exc:
        raise SourceError(f"{path}: not a readable zip file ({exc})") from None
    seen: set[str] = set()
    bad_folders: dict[str, list] = {}  # folder -> [its date, files]
    for info in infos:
        if info.is_dir():
            continue
        label = f"{zip_label}:{info.filename}"
        if _zip_member_is_link(info):
            out.refused.append(f"{label}: a symbolic link inside the zip; not imported")
            continue
        member_path = Path(info.filename.replace("\\", "/"))
        if why := _bad_date(member_path):
            out.refused.append(f"{label}: {why}")
            continue
        if pkg is None and package_date is None and (folder := _bad_package_folder(member_path)) is not None:
            _count_bad_folder(bad_folders, f"{zip_label}:{folder.as_posix()}", folder)
            continue
        if odd := _odd_member_path(info.filename):
            out.warnings.append(f"{label}: member with {odd}; read from the zip by its file name, "
                                "nothing is written outside the store")
        if info.filename in seen:
            out.warnings.append(f"{label}: the zip holds this member name more than once; each copy is read")
        seen.add(info.filename)

        @contextmanager
        def opener(info=info) -> Iterator[BinaryIO]:
            with zipfile.ZipFile(path) as z, z.open(info) as f:
                yield f  # type: ignore[misc]

        src = _classify(label, info.filename.replace("\\", "/").rsplit("/", 1)[-1], opener, f"{info.file_size}:crc32:{info.CRC:08x}",
                        info.file_size, pkg or _package_of(Path(info.filename)), package_date)
        (out.sources.append(src) if src else out.unknown.append(label))
    _refuse_folders(bad_folders, out)


def _walk(root: Path, out: Discovery) -> list[Path]:
    """The regular files under a directory, links included only when they stay inside it.

    A link that leaves the directory (or is broken) is refused and named in ``out.refused``,
    never opened: a package folder must not make the importer read /etc/passwd or a key file.
    Links to folders are not followed (their files, if inside, are found where they are)."""
    top = root.resolve()
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        for name in sorted(dirnames + filenames):
            f = d / name
            if not f.is_symlink():
                if name in filenames and f.is_file():
                    files.append(f)
                continue
            target = Path(os.path.realpath(f))
            if not target.exists():
                out.refused.append(f"{f}: a broken symbolic link; not imported")
            elif target != top and top not in target.parents:
                out.refused.append(f"{f}: a symbolic link to {target}, outside {root}; not imported")
            elif target.is_file():
                files.append(f)
    return sorted(files)


def discover(paths: list[Path], package_date: str | None = None, labels: dict[Path, str] | None = None) -> Discovery:
    """Every importable file under ``paths`` (zips are opened; directories are walked).

    ``labels`` gives files a name for people (default: their path).
    """
    out = Discovery()
    labels = {Path(k).resolve(): v for k, v in (labels or {}).items()}
    if package_date is not None:
        try:
            package_date = date.fromisoformat(package_date).isoformat()
        except ValueError:
            raise SourceError(f"--package-date {package_date!r} is not a date (YYYY-MM-DD)") from None
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise SourceError(f"{p}: no such file or directory")
        files = _walk(p, out) if p.is_dir() else [p]
        bad_folders: dict[str, list] = {}  # folder -> [its date, files]
        for f in files:
            if why := _bad_date(f):
                out.refused.append(f"{labels.get(f.resolve(), str(f))}: {why}")
                continue
            if package_date is None and (folder := _bad_package_folder(f)) is not None:
                _count_bad_folder(bad_folders, str(folder), folder)
                continue
            if f.name.lower().endswith(".zip") or f.name.lower().endswith(".zip.gpg"):
                if f.name.lower().endswith(".gpg"):
                    raise SourceError(f"{f}: encrypted zip files are not supported; edX encrypts the members")
                _zip_sources(f, package_date, out, labels.get(f.resolve(), str(f)))
                continue
            if f.name in ("manifest.json",) or f.name.startswith("."):
                continue

            @contextmanager
            def opener(f=f) -> Iterator[BinaryIO]:
                with open(f, "rb") as fh:
                    yield fh

            pkg = _package_of(f)
            if pkg is None and package_date is None and parse_package_member(f.name):
                # The date decides which snapshot is newer: never guess it (a copied file's mtime lies).
                raise SourceError(f"{f}: cannot tell which package this file belongs to; put it in a folder "
                                  f"named {{org}}-{{YYYY-MM-DD}} (as in edX's zip) or pass --package-date")
            pdate = package_date
            src = _classify(labels.get(f.resolve(), str(f)), f.name, opener, "", f.stat().st_size, pkg, pdate)
            if src:
                src.fingerprint = _file_fingerprint(f)
                out.sources.append(src)
            else:
                out.unknown.append(str(f))
        _refuse_folders(bad_folders, out)
    return out
