"""One small object-store interface, implemented for S3 (boto3) and GCS (google-cloud-storage).

Immutable DSS objects are written create-only, so racing writers cannot both win.
"""
from __future__ import annotations

import abc
import datetime
import io
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator


class BlobStoreError(Exception):
    pass


class BlobNotFound(BlobStoreError):
    pass


class BlobAlreadyExists(BlobStoreError):
    """A create-only write found the key taken."""


class BlobAccessDenied(BlobStoreError):
    pass


class BlobChanged(BlobStoreError):
    """The source of a copy changed while it was being copied."""


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int
    content_type: str
    # The store's own checksum: the S3 ETag (unquoted, lower case) or the GCS crc32c (8 hex digits).
    native_checksum: str
    metadata: dict[str, str] = field(default_factory=dict)
    # S3 ETag or GCS generation: what a conditional read or copy pins.
    revision: str = ""
    # When the object was written (S3 LastModified, GCS timeCreated), if the store said.
    modified: datetime.datetime | None = None


@dataclass(frozen=True)
class Page:
    keys: list[str]
    next_token: str | None


@dataclass(frozen=True)
class Part:
    """One uploaded part of a PartsUpload."""
    number: int  # 1-based; parts are assembled in number order
    size: int
    token: str  # S3: the part's ETag; GCS: the temporary object holding the part
    checksum: str = ""  # the store's own checksum of the part's bytes: S3 the part's MD5, GCS its crc32c


@dataclass(frozen=True)
class PartsUpload:
    """A multipart write in progress: parts go up in any order, in parallel; the object appears only when they are
    assembled, complete, by complete_parts. `uploaded` holds the parts a crashed writer left, when resumed."""
    bucket: str
    key: str
    upload_id: str
    content_type: str
    metadata: dict[str, str]
    uploaded: dict[int, Part] = field(default_factory=dict)


class BlobStore(abc.ABC):
    """The operations DSS needs. Keys are plain strings; buckets are names."""

    scheme: str  # "s3" or "gs"
    native_checksum_name: str  # "s3_etag" or "crc32c"
    # The raw boto3 or google-cloud-storage client, which storage/copy_jobs.py and storage/stats.py still use.
    client: Any

    @abc.abstractmethod
    def put(self, bucket: str, key: str, data: bytes, *, content_type: str = "application/octet-stream",
            metadata: dict[str, str] | None = None, create_only: bool = False) -> BlobInfo:
        """Write bytes; with create_only, raise BlobAlreadyExists if the key exists (where the server enforces it)."""

    @abc.abstractmethod
    def upload(self, bucket: str, key: str, stream: BinaryIO | io.RawIOBase, *, size: int, part_size: int,
               content_type: str = "application/octet-stream", metadata: dict[str, str] | None = None) -> BlobInfo:
        """Stream bytes in, in parts of part_size (multipart when there is more than one part)."""

    @abc.abstractmethod
    def get(self, bucket: str, key: str) -> bytes: ...

    @abc.abstractmethod
    def get_range(self, bucket: str, key: str, start: int, end: int) -> bytes:
        """Bytes start..end inclusive, as in an HTTP Range."""

    @abc.abstractmethod
    def open(self, bucket: str, key: str, chunk_size: int = 8 * 1024 * 1024, *, start: int = 0,
             end: int | None = None) -> Iterator[bytes]:
        """Stream the object's bytes (or bytes start..end inclusive) in chunks, with constant memory."""

    @abc.abstractmethod
    def head(self, bucket: str, key: str) -> BlobInfo: ...

    def exists(self, bucket: str, key: str) -> bool:
        try:
            self.head(bucket, key)
        except BlobNotFound:
            return False
        return True

    @abc.abstractmethod
    def user_metadata(self, bucket: str, key: str, info: BlobInfo | None = None) -> dict[str, str]:
        """S3: x-amz-meta-* merged with the object's tags (tags win). GCS: the custom metadata.

        `info`, a head() of the same object, saves a request.
        """

    @abc.abstractmethod
    def set_tags(self, bucket: str, key: str, tags: dict[str, str]) -> None:
        """S3 object tags; on GCS the same pairs become custom metadata."""

    @abc.abstractmethod
    def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str, *,
             create_only: bool = False, part_size: int | None = None, concurrency: int = 8,
             expected_revision: str | None = None) -> BlobInfo:
        """Server-side copy. S3 uses multipart part copies above part_size; GCS rewrites with a token loop.

        expected_revision pins the source (an ETag or a generation): if it changed, BlobChanged.
        """

    # Multipart writes (S3 multipart uploads; GCS temporary objects `{key}.part{N}`, composed).

    @abc.abstractmethod
    def start_parts(self, bucket: str, key: str, *, content_type: str = "application/octet-stream",
                    metadata: dict[str, str] | None = None, resume: bool = True) -> PartsUpload:
        """Begin a multipart write of key. With resume, pick up the parts an unfinished earlier write left."""

    @abc.abstractmethod
    def upload_part(self, upload: PartsUpload, number: int, data: bytes | bytearray) -> Part:
        """Upload part `number` (1-based), replacing any earlier upload of that part."""

    @abc.abstractmethod
    def assembled_checksum(self, parts: list[Part]) -> str:
        """The native checksum the object assembled from these parts will have: check it before completing."""

    @abc.abstractmethod
    def complete_parts(self, upload: PartsUpload, parts: list[Part]) -> BlobInfo:
        """Assemble the parts in number order into the object at once, then remove what the write left behind."""

    @abc.abstractmethod
    def discard_parts(self, bucket: str, key: str) -> int:
        """Remove every unfinished multipart write of key (uploads, temporary parts); how many were found."""

    @abc.abstractmethod
    def list_page(self, bucket: str, prefix: str, *, token: str | None = None, start_after: str | None = None,
                  page_size: int = 1000) -> Page:
        """One page of keys under prefix, in lexicographic order."""

    def list(self, bucket: str, prefix: str, *, start_after: str | None = None,
             page_size: int = 1000) -> Iterator[str]:
        token = None
        while True:
            page = self.list_page(bucket, prefix, token=token, start_after=start_after, page_size=page_size)
            yield from page.keys
            if not page.next_token:
                return
            token = page.next_token

    @abc.abstractmethod
    def delete(self, bucket: str, key: str) -> None:
        """Delete; a missing key is not an error."""

    @abc.abstractmethod
    def signed_url(self, bucket: str, key: str, *, ttl: int, content_disposition: str | None = None,
                   method: str = "GET") -> str: ...

    def direct_url(self, bucket: str, key: str) -> str:
        return f"{self.scheme}://{bucket}/{key}"

    @abc.abstractmethod
    def bucket_exists(self, bucket: str) -> bool: ...

    @abc.abstractmethod
    def create_bucket(self, bucket: str) -> None: ...
