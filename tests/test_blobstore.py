"""One contract suite for every blobstore: the same tests against SeaweedFS (S3) and fake-gcs-server (GCS).

Where a local server does not enforce part of the contract, the test says so with a strict xfail, so that a
server that starts enforcing it turns the xfail into a failure and the note gets updated.
"""
from __future__ import annotations

import hashlib
import io
import uuid

import google_crc32c
import pytest
import requests

from dss.storage.blobstore import BlobAlreadyExists, BlobChanged, BlobNotFound

from .helpers import unfinished_parts

MiB = 1024 * 1024


@pytest.fixture(params=["aws", "gcp"])
def rs(request, replicas):
    return replicas[request.param]


@pytest.fixture
def prefix():
    return f"contract/{uuid.uuid4()}/"


def _crc32c_hex(data: bytes) -> str:
    return google_crc32c.value(data).to_bytes(4, "big").hex()


def _native(rs, data: bytes) -> str:
    return hashlib.md5(data).hexdigest() if rs.replica.value == "aws" else _crc32c_hex(data)


def test_put_get_head(rs, prefix):
    data = b"some bytes\n" * 100
    info = rs.store.put(rs.bucket, prefix + "a", data, content_type="text/x-test", metadata={"k": "v"})
    assert info.size == len(data)
    head = rs.store.head(rs.bucket, prefix + "a")
    assert (head.size, head.content_type, head.native_checksum) == (len(data), "text/x-test", _native(rs, data))
    assert head.metadata == {"k": "v"}
    assert head.revision
    assert rs.store.get(rs.bucket, prefix + "a") == data
    assert rs.store.exists(rs.bucket, prefix + "a")
    assert b"".join(rs.store.open(rs.bucket, prefix + "a", chunk_size=7)) == data


def test_missing_objects(rs, prefix):
    with pytest.raises(BlobNotFound):
        rs.store.head(rs.bucket, prefix + "missing")
    with pytest.raises(BlobNotFound):
        rs.store.get(rs.bucket, prefix + "missing")
    assert not rs.store.exists(rs.bucket, prefix + "missing")
    rs.store.delete(rs.bucket, prefix + "missing")  # deleting nothing is not an error


def test_ranged_get(rs, prefix):
    data = bytes(range(256)) * 10
    rs.store.put(rs.bucket, prefix + "r", data)
    assert rs.store.get_range(rs.bucket, prefix + "r", 10, 19) == data[10:20]
    assert rs.store.get_range(rs.bucket, prefix + "r", 0, 0) == data[:1]
    assert rs.store.get_range(rs.bucket, prefix + "r", 2550, 2559) == data[-10:]


def test_create_only_put(rs, prefix):
    rs.store.put(rs.bucket, prefix + "once", b"first", create_only=True)
    with pytest.raises(BlobAlreadyExists):
        rs.store.put(rs.bucket, prefix + "once", b"second", create_only=True)
    assert rs.store.get(rs.bucket, prefix + "once") == b"first"


def test_overwrite_without_create_only(rs, prefix):
    rs.store.put(rs.bucket, prefix + "w", b"first")
    rs.store.put(rs.bucket, prefix + "w", b"second")
    assert rs.store.get(rs.bucket, prefix + "w") == b"second"


def test_copy_keeps_bytes_type_and_metadata(rs, prefix):
    data = b"copy me" * 1000
    rs.store.put(rs.bucket, prefix + "src", data, content_type="application/json", metadata={"m": "1"})
    info = rs.store.copy(rs.bucket, prefix + "src", rs.checkout_bucket, prefix + "dst")
    assert info.size == len(data)
    assert rs.store.get(rs.checkout_bucket, prefix + "dst") == data
    head = rs.store.head(rs.checkout_bucket, prefix + "dst")
    assert head.content_type == "application/json"
    assert head.metadata == {"m": "1"}
    assert head.native_checksum == _native(rs, data)


def test_copy_create_only(rs, prefix, request):
    if rs.replica.value == "gcp":
        request.applymarker(pytest.mark.xfail(strict=True,
                                              reason="fake-gcs-server 1.54 ignores ifGenerationMatch on rewrites"))
    rs.store.put(rs.bucket, prefix + "src", b"new")
    rs.store.put(rs.bucket, prefix + "dst", b"old")
    with pytest.raises(BlobAlreadyExists):
        rs.store.copy(rs.bucket, prefix + "src", rs.bucket, prefix + "dst", create_only=True)
    assert rs.store.get(rs.bucket, prefix + "dst") == b"old"


def test_copy_pinned_to_a_revision(rs, prefix, request):
    if rs.replica.value == "gcp":
        request.applymarker(pytest.mark.xfail(strict=True,
                                              reason="fake-gcs-server 1.54 ignores ifSourceGenerationMatch"))
    first = rs.store.put(rs.bucket, prefix + "src", b"v1")
    pinned = rs.store.head(rs.bucket, prefix + "src").revision
    rs.store.put(rs.bucket, prefix + "src", b"v2 changed")
    assert first.size == 2
    with pytest.raises(BlobChanged):
        rs.store.copy(rs.bucket, prefix + "src", rs.bucket, prefix + "dst", expected_revision=pinned)


def test_multipart_copy_and_upload(rs, prefix):
    data = bytes(range(256)) * (11 * MiB // 256) + b"odd tail"
    info = rs.store.upload(rs.bucket, prefix + "big", io.BytesIO(data), size=len(data), part_size=5 * MiB,
                           content_type="application/x-big")
    assert info.size == len(data)
    if rs.replica.value == "aws":  # three parts of the uploaded stream, as S3 computes the ETag
        parts = [data[i:i + 5 * MiB] for i in range(0, len(data), 5 * MiB)]
        assert info.native_checksum == hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + "-3"
    copied = rs.store.copy(rs.bucket, prefix + "big", rs.bucket, prefix + "big-copy", part_size=5 * MiB,
                           concurrency=3)
    assert copied.size == len(data)
    assert copied.content_type == "application/x-big"
    assert hashlib.sha256(b"".join(rs.store.open(rs.bucket, prefix + "big-copy"))).digest() == \
        hashlib.sha256(data).digest()
    # SeaweedFS answers UploadPartCopy with ETags that are not the parts' MD5s, so the composite ETag of a
    # multipart copy differs from real S3's; DSS verifies the source ETag instead (see dss.storage.files).


def test_tags_and_metadata(rs, prefix):
    rs.store.put(rs.bucket, prefix + "t", b"x", metadata={"hca-dss-sha1": "from-metadata", "other": "kept"})
    rs.store.set_tags(rs.bucket, prefix + "t", {"hca-dss-sha1": "from-tags", "hca-dss-crc32c": "0000abcd"})
    merged = rs.store.user_metadata(rs.bucket, prefix + "t")
    assert merged["hca-dss-sha1"] == "from-tags"  # S3 tags win over metadata, as the contract says
    assert merged["hca-dss-crc32c"] == "0000abcd"
    assert merged["other"] == "kept"


def test_paginated_listing(rs, prefix):
    keys = [f"{prefix}k{i:02d}" for i in range(10)]
    for key in keys:
        rs.store.put(rs.bucket, key, b"")
    rs.store.put(rs.bucket, prefix.rstrip("/") + "-sibling", b"")  # outside the prefix
    pages, token = [], None
    while True:
        page = rs.store.list_page(rs.bucket, prefix, token=token, page_size=3)
        pages.append(page.keys)
        token = page.next_token
        if not token:
            break
    assert [len(p) for p in pages] == [3, 3, 3, 1]
    assert [k for p in pages for k in p] == keys
    assert list(rs.store.list(rs.bucket, prefix, page_size=4)) == keys
    assert list(rs.store.list(rs.bucket, prefix, start_after=keys[6], page_size=2)) == keys[7:]
    assert rs.store.list_page(rs.bucket, prefix + "none", page_size=3).keys == []


def test_delete(rs, prefix):
    rs.store.put(rs.bucket, prefix + "d", b"bye")
    rs.store.delete(rs.bucket, prefix + "d")
    assert not rs.store.exists(rs.bucket, prefix + "d")


def test_signed_url(rs, prefix):
    rs.store.put(rs.bucket, prefix + "s", b"signed content", content_type="text/plain")
    url = rs.store.signed_url(rs.bucket, prefix + "s", ttl=300, content_disposition='attachment; filename="x.txt"')
    r = requests.get(url, timeout=30)
    assert r.status_code == 200 and r.content == b"signed content"
    assert rs.store.direct_url(rs.bucket, prefix + "s") == f"{rs.replica.scheme}://{rs.bucket}/{prefix}s"


def test_signed_url_signature_is_checked(rs, prefix, request):
    if rs.replica.value == "gcp":
        request.applymarker(pytest.mark.xfail(strict=True, reason="fake-gcs-server does not check signatures"))
    rs.store.put(rs.bucket, prefix + "s", b"secret")
    url = rs.store.signed_url(rs.bucket, prefix + "s", ttl=300)
    tampered = url.replace("Signature=", "Signature=0") if "Signature=" in url else \
        url.replace("X-Goog-Signature=", "X-Goog-Signature=00")
    assert requests.get(tampered, timeout=30).status_code == 403


def test_signed_put_url(rs, prefix):
    url = rs.store.signed_url(rs.bucket, prefix + "up", ttl=300, method="PUT")
    assert requests.put(url, data=b"uploaded", timeout=30).status_code == 200
    assert rs.store.get(rs.bucket, prefix + "up") == b"uploaded"


def test_ranged_open(rs, prefix):
    data = bytes(range(256)) * 100
    rs.store.put(rs.bucket, prefix + "o", data)
    assert b"".join(rs.store.open(rs.bucket, prefix + "o", chunk_size=1000, start=300, end=5299)) == data[300:5300]
    assert b"".join(rs.store.open(rs.bucket, prefix + "o", chunk_size=7, start=25590)) == data[25590:]
    assert b"".join(rs.store.open(rs.bucket, prefix + "o", start=0, end=0)) == data[:1]


def test_parts_upload_is_invisible_until_complete_and_resumable(rs, prefix):
    key = prefix + "parts"
    parts = [bytes([n]) * 5 * MiB for n in (1, 2)] + [b"tail"]  # S3 parts but the last are 5 MiB at least
    upload = rs.store.start_parts(rs.bucket, key, content_type="application/x-parts", metadata={"m": "1"})
    assert upload.uploaded == {}
    first = rs.store.upload_part(upload, 2, bytearray(parts[1]))  # any order, from a reusable buffer
    assert (first.number, first.size) == (2, 5 * MiB)
    rs.store.upload_part(upload, 1, parts[0])
    assert not rs.store.exists(rs.bucket, key)
    assert unfinished_parts(rs, key)

    resumed = rs.store.start_parts(rs.bucket, key, content_type="application/x-parts", metadata={"m": "1"})
    assert {n: p.size for n, p in resumed.uploaded.items()} == {1: 5 * MiB, 2: 5 * MiB}
    last = rs.store.upload_part(resumed, 3, parts[2])
    predicted = rs.store.assembled_checksum([last, *resumed.uploaded.values()])  # known before the object exists
    info = rs.store.complete_parts(resumed, [last, *resumed.uploaded.values()])
    data = b"".join(parts)
    assert info.size == len(data)
    assert info.native_checksum == predicted
    if rs.replica.value == "aws":
        assert info.native_checksum == hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + "-3"
    else:
        assert info.native_checksum == _crc32c_hex(data)
    head = rs.store.head(rs.bucket, key)
    assert (head.content_type, head.metadata) == ("application/x-parts", {"m": "1"})
    assert rs.store.get(rs.bucket, key) == data
    assert unfinished_parts(rs, key) == []


def test_discard_parts(rs, prefix):
    key = prefix + "abandoned"
    upload = rs.store.start_parts(rs.bucket, key)
    rs.store.upload_part(upload, 1, b"x" * 1000)
    assert rs.store.discard_parts(rs.bucket, key) == 1
    assert unfinished_parts(rs, key) == []
    assert rs.store.start_parts(rs.bucket, key).uploaded == {}
    assert rs.store.discard_parts(rs.bucket, key) in (0, 1)  # S3: the upload just started; GCS: nothing
    assert not rs.store.exists(rs.bucket, key)


def test_gcs_composes_many_parts_in_stages(replicas, prefix, monkeypatch):
    from dss.storage import gcs
    monkeypatch.setattr(gcs, "MAX_COMPOSE_SOURCES", 3)  # ten parts: stages of stages
    rs = replicas["gcp"]
    key = prefix + "many"
    parts = [f"part {n};".encode() * 100 for n in range(1, 11)]
    upload = rs.store.start_parts(rs.bucket, key, content_type="text/plain")
    uploaded = [rs.store.upload_part(upload, n, data) for n, data in enumerate(parts, 1)]
    info = rs.store.complete_parts(upload, uploaded)
    assert rs.store.get(rs.bucket, key) == b"".join(parts)
    assert info.native_checksum == _crc32c_hex(b"".join(parts))
    assert info.content_type == "text/plain"
    assert list(rs.store.list(rs.bucket, prefix)) == [key]  # parts and stage results are gone


def _compose_parts(rs, key: str, count: int) -> bytes:
    parts = [f"{n};".encode() for n in range(1, count + 1)]
    upload = rs.store.start_parts(rs.bucket, key)
    uploaded = [rs.store.upload_part(upload, n, data) for n, data in enumerate(parts, 1)]
    rs.store.complete_parts(upload, uploaded)
    return b"".join(parts)


def test_gcs_compose_stays_within_the_32_source_limit(replicas, prefix, monkeypatch):
    from google.api_core.exceptions import BadRequest

    from dss.storage import gcs
    rs = replicas["gcp"]
    data = _compose_parts(rs, prefix + "many", 33)
    assert rs.store.get(rs.bucket, prefix + "many") == data
    assert list(rs.store.list(rs.bucket, prefix)) == [prefix + "many"]
    # The local server refuses a compose of more than 32 sources, as GCS does, so the staging above is needed.
    monkeypatch.setattr(gcs, "MAX_COMPOSE_SOURCES", 33)
    with pytest.raises(BadRequest, match="32"):
        _compose_parts(rs, prefix + "one-call", 33)
