"""Local stand-in for S3 event notifications and the GCS event relay.

In the cloud the stores themselves announce every object written to a primary bucket. The local servers cannot,
so with DSS_PUBLISH_WRITE_EVENTS set, writes to a primary bucket are announced on the same SNS topics, in the
same message shapes, and everything downstream runs unchanged.
"""
from __future__ import annotations

import base64
import logging

from ..storage.blobstore import BlobInfo, BlobStore
from .bus import Bus
from .records import gcs_object, s3_record

logger = logging.getLogger(__name__)

ANNOUNCED_PREFIXES = ("blobs/", "files/", "bundles/", "collections/")


class AnnouncingStore:
    """A blobstore that announces each successful write to `bucket`; everything else passes through."""

    def __init__(self, store: BlobStore, replica: str, bucket: str, bus: Bus):
        self._store, self._replica, self._bucket, self._bus = store, replica, bucket, bus

    def __getattr__(self, name):
        return getattr(self._store, name)

    @property
    def unannounced(self) -> BlobStore:
        """The same store, writing without announcements."""
        return self._store

    def put(self, bucket, key, data, **kwargs) -> BlobInfo:
        return self._announced(bucket, self._store.put(bucket, key, data, **kwargs))

    def upload(self, bucket, key, stream, **kwargs) -> BlobInfo:
        return self._announced(bucket, self._store.upload(bucket, key, stream, **kwargs))

    def copy(self, src_bucket, src_key, dst_bucket, dst_key, **kwargs) -> BlobInfo:
        return self._announced(dst_bucket, self._store.copy(src_bucket, src_key, dst_bucket, dst_key, **kwargs))

    def complete_parts(self, upload, parts) -> BlobInfo:
        return self._announced(upload.bucket, self._store.complete_parts(upload, parts))

    def announce(self, bucket: str, info: BlobInfo) -> None:
        """Announce a write made around this store, straight through its client (large-file copies)."""
        self._announced(bucket, info)

    def _announced(self, bucket: str, info: BlobInfo) -> BlobInfo:
        # As the cloud notifications are configured: only the DSS objects, not the events journal or probes.
        if bucket == self._bucket and info.key.startswith(ANNOUNCED_PREFIXES):
            if self._replica == "aws":
                message = s3_record(bucket, info.key, info.size, info.native_checksum)
            else:
                crc = base64.b64encode(bytes.fromhex(info.native_checksum)).decode() if info.native_checksum else ""
                message = gcs_object(bucket, info.key, info.size, crc)
            try:
                self._bus.publish_object_event(self._replica, message)
            except Exception:  # the write stands; the replica checker finds what an event missed
                logger.exception("could not announce %s/%s", bucket, info.key)
        return info
