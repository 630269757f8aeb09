"""The file metadata document and the staging-object rules of PUT /files. Pure: no I/O."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .checksums import CHECKSUM_NAMES, Checksums, invalid_checksum_names
from .errors import DSSError

FILE_METADATA_FORMAT = "0.0.4"
STAGING_CHECKSUM_PREFIX = "hca-dss-"
_SOURCE_URL = re.compile(r"(?P<scheme>[a-z0-9]+)://(?P<bucket>[^/]+)/(?P<key>.+)", re.DOTALL)
SUPPORTED_SCHEMES = ("s3", "gs")
# What either store can name at all (botocore refuses other bucket names before asking; both stores cap keys at
# 1024 bytes of UTF-8): anything else cannot be a staging object, and is the client's mistake.
_BUCKET_NAME = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
_MAX_KEY_BYTES = 1024
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class SourceURL:
    scheme: str
    bucket: str
    key: str


def parse_source_url(url: str) -> SourceURL:
    match = _SOURCE_URL.fullmatch(url or "")
    if not match or match["scheme"] not in SUPPORTED_SCHEMES:
        raise DSSError(400, "unknown_source_schema",
                       f"source_url must be s3://bucket/key or gs://bucket/key, not {url!r}")
    bucket, key = match["bucket"], match["key"]
    if not _BUCKET_NAME.match(bucket):
        raise DSSError(400, "illegal_arguments", f"source_url names no possible bucket: {bucket!r}")
    try:
        key_bytes = len(key.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate, which JSON can spell and UTF-8 cannot
        key_bytes = -1
    if not 0 < key_bytes <= _MAX_KEY_BYTES or _CONTROL_CHARACTERS.search(key):
        raise DSSError(400, "illegal_arguments",
                       f"source_url names no possible object: keys are 1 to {_MAX_KEY_BYTES} bytes of UTF-8 "
                       "without control characters")
    return SourceURL(match["scheme"], bucket, key)


def staging_checksums(user_metadata: dict[str, str]) -> Checksums:
    """The four hca-dss-* checksums of a staging object, lower-cased and validated."""
    values = {}
    for name in CHECKSUM_NAMES:
        raw = user_metadata.get(STAGING_CHECKSUM_PREFIX + name)
        if raw is None:
            raise DSSError(422, "missing_checksum", f"The staging object has no {STAGING_CHECKSUM_PREFIX}{name}.")
        values[name] = raw.strip().lower()
    invalid = invalid_checksum_names(values)
    if invalid:
        raise DSSError(422, "invalid_checksum",
                       "Malformed checksum: " + ", ".join(f"{STAGING_CHECKSUM_PREFIX}{n}" for n in invalid))
    return Checksums(**values)


def file_metadata_document(checksums: Checksums, *, size: int, content_type: str, creator_uid: int,
                           version: str) -> dict[str, Any]:
    return {
        "format": FILE_METADATA_FORMAT,
        "creator_uid": creator_uid,
        "version": version,
        "content-type": content_type,
        "size": size,
        "crc32c": checksums.crc32c,
        "s3-etag": checksums.s3_etag,
        "sha1": checksums.sha1,
        "sha256": checksums.sha256,
    }


def checksums_of(document: dict[str, Any]) -> Checksums:
    return Checksums(sha256=document["sha256"], sha1=document["sha1"], s3_etag=document["s3-etag"],
                     crc32c=document["crc32c"])


def same_file(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """An identical repeat of PUT /files: same bytes, size, content type and creator. Extra keys are tolerated."""
    keys = ("creator_uid", "version", "content-type", "size", "crc32c", "s3-etag", "sha1", "sha256")
    return all(a.get(k) == b.get(k) for k in keys)


def dss_headers(document: dict[str, Any]) -> dict[str, str]:
    return {
        "X-DSS-CREATOR-UID": str(document["creator_uid"]),
        "X-DSS-VERSION": document["version"],
        "X-DSS-CONTENT-TYPE": document["content-type"],
        "X-DSS-SIZE": str(document["size"]),
        "X-DSS-CRC32C": document["crc32c"],
        "X-DSS-S3-ETAG": document["s3-etag"],
        "X-DSS-SHA1": document["sha1"],
        "X-DSS-SHA256": document["sha256"],
    }
