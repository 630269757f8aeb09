"""The four DSS checksums, computed in one streaming pass. Pure: no I/O beyond the stream it is given."""
from __future__ import annotations

import functools
import hashlib
import math
import re
from dataclasses import asdict, dataclass
from typing import BinaryIO, Iterable

import google_crc32c

MiB = 1024 * 1024
S3_DEFAULT_PART_SIZE = 64 * MiB
S3_MAX_PARTS = 10000

CHECKSUM_REGEXES = {
    "sha256": re.compile(r"^[a-z0-9]{64}$"),
    "sha1": re.compile(r"^[a-z0-9]{40}$"),
    "s3_etag": re.compile(r"^[a-z0-9]{32}(-([2-9]|[1-9][0-9]{1,3}|10000))?$"),
    "crc32c": re.compile(r"^[a-z0-9]{8}$"),
}
# The order of the parts of a blob key.
CHECKSUM_NAMES = ("sha256", "sha1", "s3_etag", "crc32c")
BLOB_KEY_REGEX = re.compile(
    r"^blobs/(?P<sha256>[a-z0-9]{64})\.(?P<sha1>[a-z0-9]{40})\."
    r"(?P<s3_etag>[a-z0-9]{32}(?:-[0-9]+)?)\.(?P<crc32c>[a-z0-9]{8})$"
)


def s3_part_size(size: int) -> int:
    """The part size the hca client (dcplib) uses, so S3 multipart ETags agree with hca-dss-s3_etag."""
    if size <= S3_MAX_PARTS * S3_DEFAULT_PART_SIZE:
        return S3_DEFAULT_PART_SIZE
    return math.ceil(size / S3_MAX_PARTS / MiB) * MiB


def s3_part_count(size: int) -> int:
    return max(1, math.ceil(size / s3_part_size(size)))


def s3_multipart_etag(part_md5s: Iterable[bytes]) -> str:
    digests = list(part_md5s)
    if len(digests) == 1:
        return digests[0].hex()
    return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


# CRC32C of a concatenation from the parts' CRCs (zlib's crc32_combine, for the Castagnoli polynomial): a CRC
# is advanced over len(b) zero bytes by a linear operator on GF(2)^32, then combined with crc(b) by xor.
_CRC32C_POLY = 0x82F63B78  # reflected


def _gf2_times(matrix: tuple[int, ...], vector: int) -> int:
    result, row = 0, 0
    while vector:
        if vector & 1:
            result ^= matrix[row]
        vector >>= 1
        row += 1
    return result


def _gf2_compose(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(_gf2_times(a, column) for column in b)


@functools.lru_cache(maxsize=16)
def _crc32c_zeros(length: int) -> tuple[int, ...]:
    """The operator that advances a CRC32C register over `length` zero bytes."""
    one_bit = (_CRC32C_POLY,) + tuple(1 << n for n in range(31))
    op = one_bit
    for _ in range(3):  # 1 -> 2 -> 4 -> 8 bits: one byte
        op = _gf2_compose(op, op)
    result = tuple(1 << n for n in range(32))  # identity
    while length:
        if length & 1:
            result = _gf2_compose(op, result)
        op = _gf2_compose(op, op)
        length >>= 1
    return result


def crc32c_combine(crc_a: str, crc_b: str, length_b: int) -> str:
    """crc32c(a + b) in hex, from crc32c(a), crc32c(b) (hex) and len(b)."""
    return f"{_gf2_times(_crc32c_zeros(length_b), int(crc_a, 16)) ^ int(crc_b, 16):08x}"


@dataclass(frozen=True)
class Checksums:
    sha256: str
    sha1: str
    s3_etag: str
    crc32c: str

    def blob_key(self) -> str:
        return f"blobs/{self.sha256}.{self.sha1}.{self.s3_etag}.{self.crc32c}"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def invalid_checksum_names(values: dict[str, str]) -> list[str]:
    return [name for name in CHECKSUM_NAMES if not CHECKSUM_REGEXES[name].match(values.get(name, ""))]


def checksums_from_blob_key(key: str) -> Checksums | None:
    match = BLOB_KEY_REGEX.match(key)
    return Checksums(**match.groupdict()) if match else None


class Checksummer:
    """Feeds bytes once to sha256, sha1, crc32c and per-part md5s; memory is one part's digest state."""

    def __init__(self, size: int | None = None, part_size: int | None = None):
        self._part_size = part_size or (s3_part_size(size) if size is not None else S3_DEFAULT_PART_SIZE)
        self._sha256 = hashlib.sha256()
        self._sha1 = hashlib.sha1()
        self._crc32c = google_crc32c.Checksum()
        self._part_md5 = hashlib.md5()
        self._part_filled = 0
        self._part_digests: list[bytes] = []
        self.size = 0

    def update(self, data: bytes) -> None:
        self._sha256.update(data)
        self._sha1.update(data)
        self._crc32c.update(data)
        self.size += len(data)
        view = memoryview(data)
        while view:
            take = min(len(view), self._part_size - self._part_filled)
            self._part_md5.update(view[:take])
            self._part_filled += take
            view = view[take:]
            if self._part_filled == self._part_size:
                self._part_digests.append(self._part_md5.digest())
                self._part_md5 = hashlib.md5()
                self._part_filled = 0

    def finish(self) -> Checksums:
        digests = list(self._part_digests)
        if self._part_filled or not digests:
            digests.append(self._part_md5.digest())
        return Checksums(
            sha256=self._sha256.hexdigest(),
            sha1=self._sha1.hexdigest(),
            s3_etag=s3_multipart_etag(digests),
            crc32c=self._crc32c.digest().hex(),
        )


def compute_checksums(stream: BinaryIO, size: int | None = None, chunk_size: int = 8 * MiB) -> Checksums:
    summer = Checksummer(size)
    while chunk := stream.read(chunk_size):
        summer.update(chunk)
    return summer.finish()


def compute_checksums_of_bytes(data: bytes) -> Checksums:
    summer = Checksummer(len(data))
    summer.update(data)
    return summer.finish()
