"""The GCS blobstore, on google-cloud-storage. STORAGE_EMULATOR_HOST points it at the local emulator."""
from __future__ import annotations

import base64
import datetime
import logging
import os
from typing import BinaryIO, Iterator

from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.oauth2 import service_account

from .blobstore import BlobAccessDenied, BlobAlreadyExists, BlobChanged, BlobInfo, BlobNotFound, BlobStore, Page

logger = logging.getLogger(__name__)

# GCS resumable uploads need chunk sizes in multiples of 256 KiB.
_CHUNK_QUANTUM = 256 * 1024
# Our own continuation tokens: a server page token, or "the last key seen" when we cut a page ourselves.
_SERVER_TOKEN = "p:"
_AFTER_KEY_TOKEN = "a:"


def crc32c_hex(b64: str | None) -> str:
    return base64.b64decode(b64).hex() if b64 else ""


def _info(blob: storage.Blob) -> BlobInfo:
    return BlobInfo(key=blob.name, size=blob.size or 0, content_type=blob.content_type or "",
                    native_checksum=crc32c_hex(blob.crc32c), metadata=dict(blob.metadata or {}),
                    revision=str(blob.generation or ""))


class GCSBlobStore(BlobStore):
    scheme = "gs"
    native_checksum_name = "crc32c"

    def __init__(self, project: str, credentials_file: str = "", client: storage.Client | None = None):
        self.emulator = os.environ.get("STORAGE_EMULATOR_HOST", "")
        self._signing_credentials = (service_account.Credentials.from_service_account_file(credentials_file)
                                     if credentials_file else None)
        if client is not None:
            self.client = client
        elif self.emulator:
            self.client = storage.Client(project=project, credentials=AnonymousCredentials())
        else:
            self.client = storage.Client(project=project, credentials=self._signing_credentials)

    def _blob(self, bucket: str, key: str) -> storage.Blob:
        return self.client.bucket(bucket).blob(key)

    def put(self, bucket, key, data, *, content_type="application/octet-stream", metadata=None, create_only=False):
        blob = self._blob(bucket, key)
        blob.metadata = metadata or None
        try:
            blob.upload_from_string(data, content_type=content_type,
                                    if_generation_match=0 if create_only else None)
        except gexc.PreconditionFailed as e:
            raise BlobAlreadyExists(f"gs://{bucket}/{key}") from e
        except gexc.NotFound as e:
            raise BlobNotFound(f"gs://{bucket}") from e
        return _info(blob)

    def upload(self, bucket, key, stream: BinaryIO, *, size, part_size, content_type="application/octet-stream",
               metadata=None):
        blob = self._blob(bucket, key)
        blob.chunk_size = max(_CHUNK_QUANTUM, part_size // _CHUNK_QUANTUM * _CHUNK_QUANTUM)
        blob.metadata = metadata or None
        blob.upload_from_file(stream, size=size, content_type=content_type)
        return self.head(bucket, key)

    def get(self, bucket, key):
        try:
            return self._blob(bucket, key).download_as_bytes()
        except gexc.NotFound as e:
            raise BlobNotFound(f"gs://{bucket}/{key}") from e

    def get_range(self, bucket, key, start, end):
        try:
            return self._blob(bucket, key).download_as_bytes(start=start, end=end)
        except gexc.NotFound as e:
            raise BlobNotFound(f"gs://{bucket}/{key}") from e

    def open(self, bucket, key, chunk_size=8 * 1024 * 1024) -> Iterator[bytes]:
        size = self.head(bucket, key).size
        for start in range(0, size, chunk_size):
            yield self.get_range(bucket, key, start, min(start + chunk_size, size) - 1)

    def head(self, bucket, key):
        try:
            blob = self.client.bucket(bucket).get_blob(key)
        except gexc.Forbidden as e:
            raise BlobAccessDenied(f"gs://{bucket}/{key}") from e
        except gexc.NotFound as e:
            raise BlobNotFound(f"gs://{bucket}/{key}") from e
        if blob is None:
            raise BlobNotFound(f"gs://{bucket}/{key}")
        return _info(blob)

    def user_metadata(self, bucket, key, info=None):
        return dict((info or self.head(bucket, key)).metadata)

    def set_tags(self, bucket, key, tags):
        blob = self.client.bucket(bucket).get_blob(key)
        if blob is None:
            raise BlobNotFound(f"gs://{bucket}/{key}")
        blob.metadata = {**(blob.metadata or {}), **tags}
        blob.patch()

    def copy(self, src_bucket, src_key, dst_bucket, dst_key, *, create_only=False, part_size=None, concurrency=8,
             expected_revision=None):
        source = self._blob(src_bucket, src_key)
        destination = self._blob(dst_bucket, dst_key)
        token = None
        try:
            while True:
                # rewrite() is server side; large objects take several calls, each resuming from the token.
                token, _, _ = destination.rewrite(
                    source, token=token, if_generation_match=0 if create_only else None,
                    if_source_generation_match=int(expected_revision) if expected_revision else None)
                if token is None:
                    break
        except gexc.PreconditionFailed as e:
            if self.exists(dst_bucket, dst_key):
                raise BlobAlreadyExists(f"gs://{dst_bucket}/{dst_key}") from e
            raise BlobChanged(f"gs://{src_bucket}/{src_key}") from e
        except gexc.NotFound as e:
            raise BlobNotFound(f"gs://{src_bucket}/{src_key}") from e
        return self.head(dst_bucket, dst_key)

    def list_page(self, bucket, prefix, *, token=None, start_after=None, page_size=1000):
        server_token = None
        if token and token.startswith(_SERVER_TOKEN):
            server_token = token[len(_SERVER_TOKEN):]
        elif token and token.startswith(_AFTER_KEY_TOKEN):
            start_after = token[len(_AFTER_KEY_TOKEN):]
        iterator = self.client.list_blobs(bucket, prefix=prefix, max_results=page_size, page_token=server_token,
                                          start_offset=start_after or None)
        page = next(iterator.pages, None)
        keys = [b.name for b in page] if page is not None else []
        if start_after:
            keys = [k for k in keys if k > start_after]
        # Servers that ignore maxResults (the emulator) return everything: cut the page here.
        if len(keys) > page_size:
            return Page(keys[:page_size], _AFTER_KEY_TOKEN + keys[page_size - 1])
        next_token = iterator.next_page_token
        return Page(keys, _SERVER_TOKEN + next_token if next_token else None)

    def delete(self, bucket, key):
        try:
            self._blob(bucket, key).delete()
        except gexc.NotFound:
            pass

    def signed_url(self, bucket, key, *, ttl, content_disposition=None, method="GET"):
        if self._signing_credentials is None:
            raise RuntimeError("GCS signed URLs need GOOGLE_APPLICATION_CREDENTIALS (a service-account key)")
        kwargs = {"api_access_endpoint": self.emulator} if self.emulator else {}
        return self._blob(bucket, key).generate_signed_url(
            version="v4", expiration=datetime.timedelta(seconds=ttl), method=method,
            credentials=self._signing_credentials, response_disposition=content_disposition, **kwargs)

    def bucket_exists(self, bucket):
        return self.client.lookup_bucket(bucket) is not None

    def create_bucket(self, bucket):
        try:
            self.client.create_bucket(bucket)
        except gexc.Conflict:
            pass
