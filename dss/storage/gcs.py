"""The GCS blobstore, on google-cloud-storage. STORAGE_EMULATOR_HOST points it at the local emulator."""
from __future__ import annotations

import base64
import datetime
import io
import logging
import re
from typing import BinaryIO, Iterator

from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.oauth2 import service_account

from ..checksums import crc32c_combine
from .blobstore import (
    BlobAccessDenied,
    BlobAlreadyExists,
    BlobChanged,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    Page,
    Part,
    PartsUpload,
)

logger = logging.getLogger(__name__)

# GCS resumable uploads need chunk sizes in multiples of 256 KiB.
_CHUNK_QUANTUM = 256 * 1024
# One compose call takes at most 32 sources; more parts are composed in stages.
MAX_COMPOSE_SOURCES = 32
# Parts of a multipart write are the temporary objects `{key}.part{N}`; stage results `{key}.part{N}-{M}` hold
# parts N..M. Deterministic names: a restarted write finds and reuses (or overwrites) what a crashed one left.
_PART_SUFFIX_REGEX = re.compile(r"\.part(\d+)(?:-(\d+))?")
_PART_UPLOAD_CHUNK = 8 * 1024 * 1024


def crc32c_hex(b64: str | None) -> str:
    return base64.b64decode(b64).hex() if b64 else ""


def _info(blob: storage.Blob) -> BlobInfo:
    return BlobInfo(key=blob.name, size=blob.size or 0, content_type=blob.content_type or "",
                    native_checksum=crc32c_hex(blob.crc32c), metadata=dict(blob.metadata or {}),
                    revision=str(blob.generation or ""), modified=blob.time_created)


class _MemoryReader(io.RawIOBase):
    """A read-only file over a buffer, without copying it whole (io.BytesIO would)."""

    def __init__(self, data):
        self._view, self._pos = memoryview(data).cast("B"), 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._pos

    def seek(self, offset, whence=io.SEEK_SET):
        self._pos = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence] + offset
        return self._pos

    def readinto(self, buffer):
        n = min(len(buffer), max(0, len(self._view) - self._pos))
        buffer[:n] = self._view[self._pos:self._pos + n]
        self._pos += n
        return n


class GCSBlobStore(BlobStore):
    scheme = "gs"
    native_checksum_name = "crc32c"

    def __init__(self, project: str, credentials_file: str = "", client: storage.Client | None = None,
                 emulator_host: str = ""):
        self.emulator = emulator_host
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

    def upload(self, bucket, key, stream: BinaryIO | io.RawIOBase, *, size, part_size,
               content_type="application/octet-stream", metadata=None):
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

    def open(self, bucket, key, chunk_size=8 * 1024 * 1024, *, start=0, end=None) -> Iterator[bytes]:
        last = self.head(bucket, key).size - 1 if end is None else end
        for first in range(start, last + 1, chunk_size):
            yield self.get_range(bucket, key, first, min(first + chunk_size - 1, last))

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

    def start_parts(self, bucket, key, *, content_type="application/octet-stream", metadata=None, resume=True):
        uploaded = {}
        if resume:
            for blob in self._temporary_parts(bucket, key):
                match = _PART_SUFFIX_REGEX.fullmatch(blob.name[len(key):])
                if not match[2]:  # a part, not a stage result
                    number = int(match[1])
                    uploaded[number] = Part(number, blob.size or 0, blob.name, crc32c_hex(blob.crc32c))
        return PartsUpload(bucket, key, "", content_type, dict(metadata or {}), uploaded)

    def upload_part(self, upload, number, data):
        name = f"{upload.key}.part{number}"
        blob = self._blob(upload.bucket, name)
        blob.chunk_size = _PART_UPLOAD_CHUNK  # read (and copy) the part a chunk at a time, not whole
        blob.upload_from_file(_MemoryReader(data), size=len(data), content_type="application/octet-stream")
        return Part(number, len(data), name, crc32c_hex(blob.crc32c))

    def assembled_checksum(self, parts):
        crc = "00000000"
        for part in sorted(parts, key=lambda p: p.number):
            crc = crc32c_combine(crc, part.checksum, part.size)
        return crc

    def complete_parts(self, upload, parts):
        bucket = self.client.bucket(upload.bucket)
        # (first part, last part, object) of each source, composed in stages of at most 32 until one call is left.
        sources = [(p.number, p.number, p.token) for p in sorted(parts, key=lambda p: p.number)]
        try:
            while len(sources) > MAX_COMPOSE_SOURCES:
                stage = []
                for i in range(0, len(sources), MAX_COMPOSE_SOURCES):
                    group = sources[i:i + MAX_COMPOSE_SOURCES]
                    name = f"{upload.key}.part{group[0][0]}-{group[-1][1]}"
                    bucket.blob(name).compose([bucket.blob(source) for _, _, source in group])
                    stage.append((group[0][0], group[-1][1], name))
                sources = stage
            destination = bucket.blob(upload.key)
            destination.content_type = upload.content_type
            destination.metadata = upload.metadata or None
            destination.compose([bucket.blob(source) for _, _, source in sources])
        except gexc.NotFound as e:  # a racing writer of the same key finished first and removed the parts
            raise BlobNotFound(f"gs://{upload.bucket}/{upload.key}: a part is gone") from e
        self.discard_parts(upload.bucket, upload.key)
        return self.head(upload.bucket, upload.key)

    def discard_parts(self, bucket, key):
        found = list(self._temporary_parts(bucket, key))
        for blob in found:
            self.delete(bucket, blob.name)
        return len(found)

    def _temporary_parts(self, bucket, key) -> Iterator[storage.Blob]:
        for blob in self.client.list_blobs(bucket, prefix=key + ".part"):
            if _PART_SUFFIX_REGEX.fullmatch(blob.name[len(key):]):
                yield blob

    def list_page(self, bucket, prefix, *, token=None, start_after=None, page_size=1000):
        iterator = self.client.list_blobs(bucket, prefix=prefix, max_results=page_size, page_token=token,
                                          start_offset=start_after or None)
        page = next(iterator.pages, None)
        keys = [b.name for b in page] if page is not None else []
        if start_after:  # startOffset includes the key itself
            keys = [k for k in keys if k > start_after]
        return Page(keys, iterator.next_page_token or None)

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
