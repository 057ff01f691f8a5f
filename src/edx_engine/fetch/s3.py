"""edX's S3 buckets: listing the organisation's objects and downloading them safely.

* Listing uses the ``list_objects_v2`` paginator and keeps only the keys edX uses for the
  organisation (org matched case-insensitively), with the date taken from the key's name:
  ``course-data/{org}-{YYYY-MM-DD}.zip`` (weekly database packages) and
  ``edx-course-data/{org}/{site}/events/{YYYY}/{org}-{site}-events-{YYYY-MM-DD}.log.gz.gpg``
  (daily tracking logs, ``site`` = ``edx`` or ``edge``).
* Downloads go to ``<dest>.part``; objects above ``multipart_threshold`` are fetched as
  parallel ranged GETs of ``chunk_size`` bytes, and the chunks already on disk are recorded
  in ``<dest>.part.json`` so that an interrupted download resumes where it stopped (as long
  as the object's ETag and size are unchanged; every ranged GET carries ``If-Match``). The
  finished file is checked (size, and MD5 when the ETag is a plain MD5), fsynced and renamed
  atomically to ``<dest>``.
* Credentials come from boto3's default chain (environment, ``AWS_PROFILE``/``--profile``,
  instance role). ``endpoint_url`` (or boto3's own ``AWS_ENDPOINT_URL``) points at any
  S3-compatible server. Transient errors (connection refused/reset, timeouts, 5xx, throttling)
  are retried by botocore and then by our own exponential backoff; the final error says what
  failed, where, and after how many attempts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, TypeVar

from ..names import is_date, parse_events_name
from ..store.errors import DiskFull, is_disk_full
from ..store.files import finish_atomic, fsync_dir as _fsync_dir, write_atomic
from .. import _hooks as testhooks

T = TypeVar("T")

DEFAULT_PACKAGES_BUCKET = "course-data"
DEFAULT_EVENTS_BUCKET = "edx-course-data"

_PACKAGE_KEY_RE = re.compile(r"^(?P<org>[^/]+)-(?P<date>\d{4}-\d{2}-\d{2})\.zip$")
_EVENTS_PATH_RE = re.compile(r"(?:^|/)(?P<org>[^/]+)/(?P<site>[^/]+)/events/(?P<year>\d{4})/(?P<name>[^/]+)$")
_TRANSIENT_CODES = {"500", "502", "503", "504", "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout",
                    "RequestTimeTooSkewed", "Throttling", "ThrottlingException", "RequestLimitExceeded"}


class S3Error(Exception):
    """A problem with S3 that retrying will not fix (credentials, permissions, no such bucket)."""


class FetchError(Exception):
    """A transient problem (network, server) that persisted after every retry."""


class ObjectChanged(FetchError):
    """The object was replaced in S3 while we were downloading it."""


class DownloadCorrupt(Exception):
    """The downloaded bytes do not match what S3 announced (size or MD5)."""


@dataclass(frozen=True)
class RemoteObject:
    bucket: str
    key: str
    size: int
    etag: str
    last_modified: dt.datetime | None
    kind: str  # packages | events
    org: str
    date: str  # YYYY-MM-DD from the key's name
    site: str | None = None

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


@dataclass
class S3Settings:
    org: str
    packages_bucket: str = DEFAULT_PACKAGES_BUCKET
    events_bucket: str = DEFAULT_EVENTS_BUCKET
    packages_prefixes: list[str] | None = None  # default: the org as given and in lower case
    events_prefixes: list[str] | None = None  # default: "<org lower case>/" (and "<org>/" if it differs)
    endpoint_url: str | None = None  # default: boto3's AWS_ENDPOINT_URL / AWS
    profile: str | None = None
    region: str | None = None
    retries: int = 4  # our retries after the first attempt (botocore retries too)
    retry_delay: float = 1.0  # first backoff delay (s), doubled at each retry, capped at 30 s
    multipart_threshold: int = 16 << 20
    chunk_size: int = 8 << 20
    concurrency: int = 4
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    verify_etag: bool = True  # check MD5 against single-part ETags
    extra: dict = field(default_factory=dict)

    def package_prefixes(self) -> list[str]:
        if self.packages_prefixes is not None:
            return list(self.packages_prefixes)
        return list(dict.fromkeys([self.org, self.org.lower()]))

    def event_prefixes(self) -> list[str]:
        if self.events_prefixes is not None:
            return list(self.events_prefixes)
        return list(dict.fromkeys([self.org.lower() + "/", self.org + "/"]))


# -- error classification -------------------------------------------------------------------

def _client_error_code(exc: BaseException) -> str | None:
    resp = getattr(exc, "response", None)
    if not isinstance(resp, dict):
        return None
    code = str(resp.get("Error", {}).get("Code", "") or "")
    status = str(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", "") or "")
    return code or status


def is_transient(exc: BaseException) -> bool:
    from botocore import exceptions as bex

    if isinstance(exc, (bex.NoCredentialsError, bex.PartialCredentialsError, bex.ParamValidationError)):
        return False
    if isinstance(exc, bex.ClientError):
        code = _client_error_code(exc) or ""
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        return code in _TRANSIENT_CODES or status.startswith("5")
    transient = (bex.ConnectionError, bex.HTTPClientError, bex.ReadTimeoutError, bex.ConnectTimeoutError,
                 ConnectionError, TimeoutError)
    if isinstance(exc, transient):
        return True
    if type(exc).__name__ in ("ResponseStreamingError", "IncompleteReadError", "ProtocolError", "IncompleteRead",
                              "ReadTimeoutError"):
        return True
    return isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError))


def describe(exc: BaseException) -> str:
    """A short, human reason for an S3/network exception."""
    from botocore import exceptions as bex

    if isinstance(exc, bex.NoCredentialsError):
        return ("no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE (or --profile), "
                "or run on a machine with an instance role")
    if isinstance(exc, bex.ClientError):
        code = _client_error_code(exc)
        msg = exc.response.get("Error", {}).get("Message") or ""
        return f"{code}: {msg}".rstrip(": ") if msg else str(code)
    if isinstance(exc, bex.EndpointConnectionError):
        return f"cannot connect to {exc.kwargs.get('endpoint_url', 'the S3 endpoint')}"
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."


def _backoff(conf: S3Settings, attempt: int) -> float:
    return min(30.0, conf.retry_delay * (2 ** attempt)) * (0.75 + 0.5 * random.random())


def with_retries(conf: S3Settings, what: str, fn: Callable[[], T], sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``fn``; retry transient failures with exponential backoff; raise FetchError/S3Error at the end."""
    from botocore import exceptions as bex

    attempts = conf.retries + 1
    for attempt in range(attempts):
        try:
            return fn()
        except (ObjectChanged, DownloadCorrupt, S3Error):
            raise
        except Exception as exc:
            if is_disk_full(exc):  # our disk, not S3: retrying cannot help (Fetcher.download says it)
                raise
            if isinstance(exc, bex.ClientError) and _client_error_code(exc) in ("PreconditionFailed", "412"):
                raise ObjectChanged(f"{what}: the object changed in S3 during the download") from None
            if isinstance(exc, bex.FlexibleChecksumError):  # the body did not match S3's checksum
                raise DownloadCorrupt(f"{what}: {describe(exc)}") from None
            if not is_transient(exc):
                raise S3Error(f"{what}: {describe(exc)}") from None
            if attempt + 1 >= attempts:
                raise FetchError(f"{what}: {describe(exc)} (gave up after {attempts} attempts)") from None
            sleep(_backoff(conf, attempt))
    raise AssertionError("unreachable")


# -- the client -------------------------------------------------------------------------------

_DATA_LOADERS: dict = {}  # botocore data path -> its loader (the S3 model, endpoints: read-only data)


def _share_data_loader(session) -> None:
    """One botocore data loader per process: its caches keep the parsed S3 service model, so a process that
    syncs more than once (a scheduler, the tests) pays the 0.1 s of JSON parsing once. Credentials and
    configuration still come from a new session every time."""
    path = session.get_config_variable("data_path")
    loader = _DATA_LOADERS.get(path)
    if loader is None:
        _DATA_LOADERS[path] = session.get_component("data_loader")
    else:
        session.register_component("data_loader", loader)


def make_client(conf: S3Settings):
    """An S3 client from botocore's session (boto3's credential chain and configuration, without boto3
    itself, whose S3 transfer layer we do not use: ~0.1 s less per sync)."""
    import botocore.session
    from botocore.config import Config

    session = botocore.session.Session(profile=conf.profile) if conf.profile else botocore.session.Session()
    _share_data_loader(session)
    bconf = Config(
        retries={"max_attempts": 1 + min(2, conf.retries), "mode": "standard"},
        connect_timeout=conf.connect_timeout, read_timeout=conf.read_timeout,
        max_pool_connections=max(10, conf.concurrency * 2),
    )
    kwargs = {"config": bconf}
    if conf.endpoint_url:
        kwargs["endpoint_url"] = conf.endpoint_url
    if conf.region:
        kwargs["region_name"] = conf.region
    elif not session.get_config_variable("region"):
        kwargs["region_name"] = "us-east-1"
    return session.create_client("s3", **kwargs)


def _strip_etag(etag: str | None) -> str:
    return (etag or "").strip('"')


class S3Fetcher:
    def __init__(self, conf: S3Settings, client=None):
        self.conf = conf
        self.client = client or make_client(conf)

    # -- listing -------------------------------------------------------------------------
    def _list(self, bucket: str, prefix: str) -> list[dict]:
        def run() -> list[dict]:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            return [obj for page in pages for obj in page.get("Contents", [])]

        return with_retries(self.conf, f"listing s3://{bucket}/{prefix}", run)

    def classify(self, bucket: str, kind: str, obj: dict) -> RemoteObject | None:
        key = obj["Key"]
        org = self.conf.org.lower()
        common = dict(bucket=bucket, key=key, size=int(obj.get("Size", 0)), etag=_strip_etag(obj.get("ETag")),
                      last_modified=_naive_utc(obj.get("LastModified")))
        if kind == "packages":
            m = _PACKAGE_KEY_RE.match(key.rsplit("/", 1)[-1])
            if not m or m["org"].lower() != org or not is_date(m["date"]):
                return None
            return RemoteObject(kind=kind, org=m["org"], date=m["date"], **common)
        m = _EVENTS_PATH_RE.search(key)
        ev = parse_events_name(key)
        if not m or ev is None or m["org"].lower() != org or ev.org.lower() != org:  # (ev: None for a date that is no day)
            return None
        if ".." in key.split("/"):
            return None
        return RemoteObject(kind=kind, org=ev.org, date=ev.date, site=ev.site, **common)

    def list(self, only: str | None = None, since: str | None = None) -> tuple[list[RemoteObject], list[str]]:
        """The organisation's objects (oldest date first) and the keys that were skipped as unknown."""
        found: dict[tuple[str, str], RemoteObject] = {}
        skipped: list[str] = []
        plan = []
        if only in (None, "packages"):
            plan += [(self.conf.packages_bucket, "packages", p) for p in self.conf.package_prefixes()]
        if only in (None, "events"):
            plan += [(self.conf.events_bucket, "events", p) for p in self.conf.event_prefixes()]
        for bucket, kind, prefix in plan:
            for obj in self._list(bucket, prefix):
                r = self.classify(bucket, kind, obj)
                if r is None:
                    if not obj["Key"].endswith("/"):
                        skipped.append(f"s3://{bucket}/{obj['Key']}")
                    continue
                if since and r.date < since:
                    continue
                found[(r.bucket, r.key)] = r
        order = {"packages": 0, "events": 1}
        return sorted(found.values(), key=lambda r: (order[r.kind], r.date, r.key)), sorted(set(skipped))

    # -- downloading ---------------------------------------------------------------------
    def download(self, obj: RemoteObject, dest: Path, on_bytes: Callable[[int], None] | None = None,
                 on_resume: Callable[[int, int], None] | None = None) -> str:
        """Download ``obj`` to ``dest`` (atomically); returns the sha256 of the bytes."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        meta = dest.with_name(dest.name + ".part.json")
        label = f"downloading s3://{obj.bucket}/{obj.key}"
        try:
            if obj.size > self.conf.multipart_threshold:
                self._ranged(obj, part, meta, label, on_bytes, on_resume)
            else:
                meta.unlink(missing_ok=True)
                testhooks.pause("download")
                with_retries(self.conf, label, lambda: self._single(obj, part, on_bytes))
            sha = self._verify(obj, part)
        except (ObjectChanged, DownloadCorrupt, S3Error):
            part.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
            raise
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            # the downloads' disk, not S3: was retried as a network error, then reported as "S3 unreachable"
            part.unlink(missing_ok=True)  # the space back at once (a ranged download's chunks are lost too)
            meta.unlink(missing_ok=True)
            raise DiskFull(f"could not download s3://{obj.bucket}/{obj.key}: no space left on device (writing "
                           f"{dest.parent}); nothing of it was kept and the sync stopped, the next one downloads "
                           f"it again; free some space and run again") from None
        except FetchError:
            if not meta.exists():  # a single-request download restarts from zero: nothing to resume
                part.unlink(missing_ok=True)
            raise
        finish_atomic(part, dest)
        meta.unlink(missing_ok=True)
        _fsync_dir(dest.parent)
        return sha

    def _get(self, obj: RemoteObject, **extra):
        kwargs = {"Bucket": obj.bucket, "Key": obj.key, **extra}
        if obj.etag:
            kwargs["IfMatch"] = f'"{obj.etag}"'
        return self.client.get_object(**kwargs)

    def _single(self, obj: RemoteObject, part: Path, on_bytes) -> None:
        body = self._get(obj)["Body"]
        done = 0
        try:
            with open(part, "wb") as f:
                while chunk := body.read(1 << 20):
                    f.write(chunk)
                    done += len(chunk)
                    if on_bytes:
                        on_bytes(len(chunk))
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            if on_bytes and done:
                on_bytes(-done)
            raise
        finally:
            body.close()

    def _ranged(self, obj: RemoteObject, part: Path, meta: Path, label: str, on_bytes, on_resume) -> None:
        size, csize = obj.size, max(1 << 14, self.conf.chunk_size)
        nchunks = (size + csize - 1) // csize
        state = _load_meta(meta)
        done: set[int] = set()
        if (state and state.get("etag") == obj.etag and state.get("size") == size and state.get("chunk") == csize
                and part.exists() and part.stat().st_size == size):
            done = {int(i) for i in state.get("done", [])}
            if done and on_resume:
                on_resume(len(done), nchunks)
            if on_bytes:
                on_bytes(sum(min(csize, size - i * csize) for i in done))
        else:
            with open(part, "wb") as f:
                f.truncate(size)
            _save_meta(meta, {"etag": obj.etag, "size": size, "chunk": csize, "done": []})
        todo = [i for i in range(nchunks) if i not in done]
        lock = threading.Lock()
        fd = os.open(part, os.O_RDWR)
        try:
            def fetch(i: int) -> None:
                start, end = i * csize, min(size, (i + 1) * csize) - 1

                def once() -> None:
                    body = self._get(obj, Range=f"bytes={start}-{end}")["Body"]
                    pos, got = start, 0
                    try:
                        while chunk := body.read(1 << 20):
                            os.pwrite(fd, chunk, pos)
                            pos += len(chunk)
                            got += len(chunk)
                            if on_bytes:
                                on_bytes(len(chunk))
                    except BaseException:
                        if on_bytes and got:
                            on_bytes(-got)
                        raise
                    finally:
                        body.close()
                    if pos != end + 1:
                        if on_bytes and got:
                            on_bytes(-got)
                        raise ConnectionError(f"short read for bytes {start}-{end} ({pos - start} bytes)")

                with_retries(self.conf, f"{label} (bytes {start}-{end})", once)

            step = max(1, self.conf.concurrency)
            with ThreadPoolExecutor(max_workers=step) as pool:
                for b in range(0, len(todo), step):
                    batch = todo[b:b + step]
                    list(pool.map(fetch, batch))  # raises the first failure
                    os.fsync(fd)
                    with lock:
                        done.update(batch)
                        _save_meta(meta, {"etag": obj.etag, "size": size, "chunk": csize, "done": sorted(done)})
                    if b == 0:
                        testhooks.pause("download")
        finally:
            os.close(fd)

    def _verify(self, obj: RemoteObject, part: Path) -> str:
        got = part.stat().st_size
        if got != obj.size:
            raise DownloadCorrupt(f"s3://{obj.bucket}/{obj.key}: downloaded {got} bytes, S3 announced {obj.size}")
        sha, md5 = hashlib.sha256(), hashlib.md5()
        with open(part, "rb") as f:
            while chunk := f.read(1 << 22):
                sha.update(chunk)
                md5.update(chunk)
        if self.conf.verify_etag and re.fullmatch(r"[0-9a-f]{32}", obj.etag) and md5.hexdigest() != obj.etag:
            raise DownloadCorrupt(f"s3://{obj.bucket}/{obj.key}: MD5 of the downloaded bytes does not match the "
                                  f"ETag {obj.etag}")
        return sha.hexdigest()


def _naive_utc(v) -> dt.datetime | None:
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.timezone.utc).replace(tzinfo=None) if v.tzinfo else v
    return None


def _load_meta(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _save_meta(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data))


def local_path_for(downloads: Path, obj) -> Path:
    """Where an object is downloaded: ``<downloads>/<bucket>/<key>`` (keys never escape the directory).

    ``obj``: anything with ``bucket`` and ``key`` (a listed object or a ledger entry)."""
    parts = [p for p in obj.key.split("/") if p not in ("", ".", "..")]
    return downloads.joinpath(obj.bucket, *parts)


def total_size(objs: Iterable[RemoteObject]) -> int:
    return sum(o.size for o in objs)
