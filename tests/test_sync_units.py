"""Fast, in-process checks of the sync's parts: key names, retries, resumable downloads, lock."""

from __future__ import annotations

import hashlib
import os

import boto3
import pytest

from edx_engine.fetch.s3 import (FetchError, ObjectChanged, RemoteObject, S3Error, S3Fetcher, S3Settings,
                                 local_path_for, with_retries)
from edx_engine.fetch.sync import SyncBusy, lock_holder, sync_lock

moto = pytest.importorskip("moto")


def fetcher(**kw) -> S3Fetcher:
    return S3Fetcher(S3Settings(org="IDBx", **kw), client=object())


def obj(key: str) -> dict:
    return {"Key": key, "Size": 10, "ETag": '"abc"'}


def test_package_and_event_keys_are_recognised_case_insensitively():
    f = fetcher()
    p = f.classify("course-data", "packages", obj("IDBx-2026-10-04.zip"))
    assert p and p.date == "2026-10-04" and p.etag == "abc" and p.kind == "packages"
    assert f.classify("course-data", "packages", obj("idbx-2026-10-04.zip")).org == "idbx"
    for bad in ("OtherX-2026-10-04.zip", "IDBx-2026-13-04.zip", "IDBx-2026-10-04.tar", "IDBx-latest.zip"):
        assert f.classify("course-data", "packages", obj(bad)) is None, bad
    e = f.classify("edx-course-data", "events", obj("idbx/edx/events/2026/idbx-edx-events-2026-10-12.log.gz.gpg"))
    assert e and e.date == "2026-10-12" and e.site == "edx"
    e = f.classify("edx-course-data", "events", obj("idbx/edge/events/2016/idbx-edge-events-2016-01-02.log.gz.gpg"))
    assert e and e.site == "edge"
    for bad in ("otherx/edx/events/2026/otherx-edx-events-2026-10-12.log.gz.gpg",
                "idbx/edx/events/2026/otherx-edx-events-2026-10-12.log.gz.gpg",
                "idbx/edx/2026/idbx-edx-events-2026-10-12.log.gz.gpg",
                "idbx/edx/events/2026/notes.txt"):
        assert f.classify("edx-course-data", "events", obj(bad)) is None, bad


def test_local_paths_never_escape_the_download_dir(tmp_path):
    o = RemoteObject("b", "../../etc/x/../passwd", 1, "e", None, "events", "IDBx", "2026-01-01")
    p = local_path_for(tmp_path, o)
    assert tmp_path in p.parents


def test_transient_errors_are_retried_with_backoff_then_reported():
    from botocore.exceptions import ClientError, EndpointConnectionError

    sleeps: list[float] = []
    calls = [0]

    def down():
        calls[0] += 1
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")

    conf = S3Settings(org="IDBx", retries=3, retry_delay=0.5)
    with pytest.raises(FetchError) as e:
        with_retries(conf, "listing s3://b/", down, sleep=sleeps.append)
    assert calls[0] == 4 and len(sleeps) == 3 and sleeps[0] < sleeps[1] < sleeps[2]
    assert "cannot connect to http://127.0.0.1:9" in str(e.value) and "gave up after 4 attempts" in str(e.value)

    flaky = iter([EndpointConnectionError(endpoint_url="x"), None])

    def once():
        exc = next(flaky)
        if exc:
            raise exc
        return "ok"

    assert with_retries(conf, "x", once, sleep=lambda s: None) == "ok"

    def denied():
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                           "ResponseMetadata": {"HTTPStatusCode": 403}}, "ListObjectsV2")

    with pytest.raises(S3Error, match="AccessDenied: Access Denied"):
        with_retries(conf, "listing", denied, sleep=lambda s: pytest.fail("no retry for 403"))


@pytest.mark.parametrize("code,status,retried", [
    ("SlowDown", 503, True), ("InternalError", 500, True), ("ServiceUnavailable", 503, True),
    ("RequestTimeout", 400, True), ("AccessDenied", 403, False), ("NoSuchKey", 404, False)])
def test_s3_error_codes_retried_or_not(code, status, retried):
    """S3's throttling and server errors are retried; the others are reported at once (test_sync's failing
    object answers InternalError through a real proxy; SlowDown is held here)."""
    from botocore.exceptions import ClientError

    calls = [0]

    def fails():
        calls[0] += 1
        raise ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                          "GetObject")

    conf = S3Settings(org="IDBx", retries=2, retry_delay=0.5)
    with pytest.raises(FetchError if retried else S3Error, match=code):
        with_retries(conf, "s3://b/k", fails, sleep=lambda s: None)
    assert calls[0] == (3 if retried else 1)


@pytest.fixture
def bucket(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        c = boto3.client("s3", region_name="us-east-1")
        c.create_bucket(Bucket="course-data")
        yield c


def test_ranged_download_resumes_after_interruption(bucket, tmp_path):
    data = os.urandom(200_000)
    bucket.put_object(Bucket="course-data", Key="IDBx-2026-10-04.zip", Body=data)
    f = S3Fetcher(S3Settings(org="IDBx", multipart_threshold=50_000, chunk_size=1 << 14, concurrency=2,
                             retries=0), client=bucket)
    (o,), _ = f.list(only="packages")
    dest = tmp_path / "d" / "IDBx-2026-10-04.zip"
    got = [0]

    def boom(n: int) -> None:  # the "network" dies after ~64 KB
        got[0] += n
        if got[0] > 64_000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        f.download(o, dest, on_bytes=boom)
    assert not dest.exists() and dest.with_name(dest.name + ".part").exists()
    resumed: list[tuple[int, int]] = []
    sha = f.download(o, dest, on_resume=lambda done, total: resumed.append((done, total)))
    assert resumed and 0 < resumed[0][0] < resumed[0][1]
    assert dest.read_bytes() == data and sha == hashlib.sha256(data).hexdigest()
    assert not list(dest.parent.glob("*.part*"))


def test_object_replaced_during_download_is_detected(bucket, tmp_path):
    bucket.put_object(Bucket="course-data", Key="IDBx-2026-10-04.zip", Body=b"old" * 1000)
    f = S3Fetcher(S3Settings(org="IDBx", retries=0), client=bucket)
    (o,), _ = f.list(only="packages")
    bucket.put_object(Bucket="course-data", Key="IDBx-2026-10-04.zip", Body=b"new" * 1000)
    with pytest.raises(ObjectChanged):
        f.download(o, tmp_path / "x.zip")
    assert not list(tmp_path.glob("x.zip*"))


def test_since_and_only_filter_by_the_date_in_the_name(bucket):
    bucket.create_bucket(Bucket="edx-course-data")
    for d in ("2026-09-27", "2026-10-04"):
        bucket.put_object(Bucket="course-data", Key=f"IDBx-{d}.zip", Body=b"x")
        bucket.put_object(Bucket="edx-course-data", Key=f"idbx/edx/events/2026/idbx-edx-events-{d}.log.gz.gpg",
                          Body=b"x")
    bucket.put_object(Bucket="course-data", Key="IDBx-notes.txt", Body=b"x")
    f = S3Fetcher(S3Settings(org="IDBx"), client=bucket)
    objs, skipped = f.list()
    assert [(o.kind, o.date) for o in objs] == [("packages", "2026-09-27"), ("packages", "2026-10-04"),
                                                ("events", "2026-09-27"), ("events", "2026-10-04")]
    assert skipped == ["s3://course-data/IDBx-notes.txt"]
    objs, _ = f.list(only="events", since="2026-10-01")
    assert [(o.kind, o.date) for o in objs] == [("events", "2026-10-04")]


def test_sync_lock_is_exclusive_and_names_the_holder(tmp_path):
    assert lock_holder(tmp_path) is None
    with sync_lock(tmp_path):
        assert lock_holder(tmp_path) == os.getpid()
        with pytest.raises(SyncBusy, match=f"another sync is running \\(pid {os.getpid()}\\)"):
            with sync_lock(tmp_path):
                pass
        assert lock_holder(tmp_path) == os.getpid()  # a refused second sync does not clear it
    assert lock_holder(tmp_path) is None
    with sync_lock(tmp_path, wait=True, timeout=1):
        pass


def test_missing_days_are_reported():
    from edx_engine.store.status import missing_days as _missing_days

    assert _missing_days(["2026-10-01", "2026-10-04", "2026-10-02"]) == ["2026-10-03"]
    assert _missing_days([]) == []


def test_a_long_failure_line_loses_its_middle_between_words():
    """Cut inside words it read "the compressed stream i…runcated after line 1,436" (helper-70)."""
    from edx_engine.fetch.sync import LINE_MAX, failure_line

    url = "s3://edx-course-data/idbx/edx/events/2026/idbx-edx-events-2026-10-02.log.gz.gpg"
    why = ("the compressed stream is truncated after line 1,436 (the rest of the file is missing); 1,436 lines "
           "kept and 12 lines quarantined, the day stays partial until edX delivers it again; gave up after 4 attempts")
    line = failure_line("failed", url, why)
    assert len(line) <= LINE_MAX
    head, tail = line[len(f"failed {url}: "):].split(" … ")
    assert why.startswith(head) and why.endswith(tail)
    words = set(why.split())
    assert head.split()[-1] in words and tail.split()[0] in words, line
    assert tail.endswith("gave up after 4 attempts")
