"""When objects were written, which the checkout freshness rules need and `BlobInfo` does not carry.

A stop-gap beside the blobstore interface (owned by replication): one HEAD or one listing gives size, native
checksum and modification time together. It reaches the cloud client the blobstore holds (`store.client`), so it
works through wrappers such as the local AnnouncingStore. Once `BlobInfo` and the listing carry the modification
time, this module can go.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from botocore.exceptions import ClientError

from .blobstore import BlobStore
from .gcs import crc32c_hex

_S3_MISSING = ("404", "NoSuchKey", "NotFound")


@dataclass(frozen=True)
class ObjectStat:
    key: str
    size: int
    native_checksum: str  # as BlobInfo.native_checksum: the unquoted lower-case ETag, or the crc32c in hex
    modified: float  # epoch seconds of the write the bucket lifecycle counts from (a re-copy resets it)


def stat(store: BlobStore, bucket: str, key: str) -> ObjectStat | None:
    """The object's stat, or None when it does not exist."""
    if store.scheme == "s3":
        try:
            r = store.client.head_object(Bucket=bucket, Key=key)
        except ClientError as e:
            if str(e.response.get("Error", {}).get("Code", "")) in _S3_MISSING:
                return None
            raise
        return ObjectStat(key, r["ContentLength"], r["ETag"].strip('"').lower(), r["LastModified"].timestamp())
    blob = store.client.bucket(bucket).get_blob(key)
    return None if blob is None else _gcs_stat(blob)


def list_stats(store: BlobStore, bucket: str, prefix: str) -> Iterator[ObjectStat]:
    """The stat of every object under prefix, in key order."""
    if store.scheme == "s3":
        for page in store.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for o in page.get("Contents", []):
                yield ObjectStat(o["Key"], o["Size"], o["ETag"].strip('"').lower(), o["LastModified"].timestamp())
        return
    for blob in store.client.list_blobs(bucket, prefix=prefix):
        yield _gcs_stat(blob)


def _gcs_stat(blob) -> ObjectStat:
    # The lifecycle's Age counts from the creation of this generation; a metadata patch does not reset it.
    created = blob.time_created
    return ObjectStat(blob.name, blob.size or 0, crc32c_hex(blob.crc32c), created.timestamp() if created else 0.0)
