"""Size, native checksum and write time of objects, which the checkout freshness rules need.

One object's comes from `BlobStore.head()`. A listing's comes straight from the cloud client the blobstore holds
(`store.client`, also through wrappers such as the local AnnouncingStore), because the blobstore's listing yields
keys only; once it carries these fields, `list_stats` can go.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from .blobstore import BlobNotFound, BlobStore
from .gcs import crc32c_hex


@dataclass(frozen=True)
class ObjectStat:
    key: str
    size: int
    native_checksum: str  # as BlobInfo.native_checksum: the unquoted lower-case ETag, or the crc32c in hex
    modified: float  # epoch seconds of the write the bucket lifecycle counts from (a re-copy resets it)


def stat(store: BlobStore, bucket: str, key: str) -> ObjectStat | None:
    """The object's stat, or None when it does not exist."""
    try:
        info = store.head(bucket, key)
    except BlobNotFound:
        return None
    return ObjectStat(key, info.size, info.native_checksum, info.modified.timestamp() if info.modified else 0.0)


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
