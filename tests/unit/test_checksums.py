import hashlib
import io

import google_crc32c
import pytest

from dss.checksums import (MiB, Checksummer, checksums_from_blob_key, compute_checksums,
                           compute_checksums_of_bytes, crc32c_combine, invalid_checksum_names, s3_multipart_etag,
                           s3_part_size)


def test_known_values_of_hello_world():
    c = compute_checksums_of_bytes(b"hello world\n")
    assert c.crc32c == "f0ff7292"  # the value the hca client writes for this content
    assert c.sha1 == hashlib.sha1(b"hello world\n").hexdigest()
    assert c.sha256 == hashlib.sha256(b"hello world\n").hexdigest()
    assert c.s3_etag == hashlib.md5(b"hello world\n").hexdigest()


def test_empty_content():
    c = compute_checksums_of_bytes(b"")
    assert c.crc32c == "00000000"
    assert c.s3_etag == hashlib.md5(b"").hexdigest()


def test_part_size_rule():
    assert s3_part_size(0) == 64 * MiB
    assert s3_part_size(10000 * 64 * MiB) == 64 * MiB
    assert s3_part_size(10000 * 64 * MiB + 1) == 65 * MiB
    assert s3_part_size(10000 * 100 * MiB) == 100 * MiB


def test_multipart_etag_matches_the_s3_algorithm_with_small_parts():
    data = bytes(range(256)) * 4096 * 3 + b"tail"  # 3 MiB + 4 bytes
    part = MiB
    summer = Checksummer(part_size=part)
    for i in range(0, len(data), 100_000):  # feed in chunks that straddle part boundaries
        summer.update(data[i:i + 100_000])
    parts = [data[i:i + part] for i in range(0, len(data), part)]
    expected = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + "-4"
    assert summer.finish().s3_etag == expected


def test_exact_multiple_of_part_size_has_no_empty_trailing_part():
    summer = Checksummer(part_size=4)
    summer.update(b"abcdefgh")
    expected = s3_multipart_etag([hashlib.md5(b"abcd").digest(), hashlib.md5(b"efgh").digest()])
    assert summer.finish().s3_etag == expected
    assert expected.endswith("-2")


def test_streaming_equals_one_shot():
    data = b"x" * (3 * MiB + 7)
    assert compute_checksums(io.BytesIO(data), len(data), chunk_size=65536) == compute_checksums_of_bytes(data)
    assert compute_checksums_of_bytes(data).crc32c == google_crc32c.value(data).to_bytes(4, "big").hex()


def test_blob_key_round_trip():
    c = compute_checksums_of_bytes(b"abc")
    assert checksums_from_blob_key(c.blob_key()) == c
    assert checksums_from_blob_key(c.blob_key() + ".partA") is None


@pytest.mark.parametrize("name,value", [("sha256", "a" * 63), ("sha1", "g" * 41), ("crc32c", "123"),
                                        ("s3_etag", "a" * 32 + "-1"), ("s3_etag", "a" * 32 + "-10001"),
                                        ("s3_etag", "A" * 32)])
def test_malformed_checksums_are_named(name, value):
    good = {"sha256": "a" * 64, "sha1": "b" * 40, "s3_etag": "c" * 32 + "-2", "crc32c": "d" * 8}
    assert invalid_checksum_names(good) == []
    assert invalid_checksum_names({**good, name: value}) == [name]


@pytest.mark.parametrize("sizes", [(1, 1), (5, 0), (0, 7), (1000, 333), (MiB, 3 * MiB + 17)])
def test_crc32c_of_a_concatenation_from_the_parts(sizes):
    a, b = bytes(range(256)) * (sizes[0] // 256) + b"x" * (sizes[0] % 256), b"\x07" * sizes[1]
    crc = lambda data: google_crc32c.value(data).to_bytes(4, "big").hex()  # noqa: E731
    assert crc32c_combine(crc(a), crc(b), len(b)) == crc(a + b)
