"""The cloud-specific halves of a large-file copy, on the clients of the S3 and GCS blobstores.

- S3: a multipart upload whose parts are UploadPartCopy requests pinned to the source ETag (CopySourceIfMatch).
  The upload id, and S3's own list of the parts it holds, are the checkpoint: a restarted copy skips them.
- GCS: a rewrite loop pinned to the source generation (ifSourceGenerationMatch); the rewrite token is the
  checkpoint.
Both are server side: no byte passes through the DSS.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from dataclasses import dataclass

from botocore.exceptions import ClientError
from google.api_core import exceptions as gexc

from .blobstore import BlobAlreadyExists, BlobChanged

logger = logging.getLogger(__name__)

_PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")


class UploadGone(Exception):
    """The multipart upload no longer exists: it was completed or aborted."""


@dataclass(frozen=True)
class PartRange:
    number: int  # 1-based, as S3 numbers parts
    start: int
    end: int  # inclusive, as in an HTTP Range


def part_ranges(size: int, part_size: int) -> list[PartRange]:
    return [PartRange(n + 1, start, min(start + part_size, size) - 1)
            for n, start in enumerate(range(0, size, part_size))]


def composite_etag(part_etags: list[str]) -> str | None:
    """The ETag S3 gives the completed upload: md5 of the part md5s, then `-N`.

    None when a part ETag is not a plain MD5 (SeaweedFS answers UploadPartCopy with `md5-N` ETags of its own
    chunks), because then the composite says nothing about the bytes.
    """
    digests = [etag.strip('"').lower() for etag in part_etags]
    if not all(_PLAIN_MD5.match(d) for d in digests):
        return None
    return f"{hashlib.md5(b''.join(bytes.fromhex(d) for d in digests)).hexdigest()}-{len(digests)}"


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class S3PartCopy:
    """Copy s3://src to s3://dst in parts, every part pinned to the source ETag `if_match`."""

    def __init__(self, client, src_bucket: str, src_key: str, if_match: str, dst_bucket: str, dst_key: str):
        self.client = client
        self.source = {"Bucket": src_bucket, "Key": src_key}
        self.if_match = if_match
        self.dst_bucket, self.dst_key = dst_bucket, dst_key

    def _where(self) -> dict:
        return {"Bucket": self.dst_bucket, "Key": self.dst_key}

    def start(self, content_type: str, metadata: dict[str, str]) -> str:
        return self.client.create_multipart_upload(
            **self._where(), ContentType=content_type or "application/octet-stream", Metadata=metadata)["UploadId"]

    def finished_parts(self, upload_id: str) -> dict[int, str]:
        """Part number -> ETag of every part S3 holds for the upload."""
        parts = {}
        with self._errors(upload_id):
            for page in self.client.get_paginator("list_parts").paginate(**self._where(), UploadId=upload_id):
                parts.update({p["PartNumber"]: p["ETag"] for p in page.get("Parts", [])})
        return parts

    def copy_part(self, upload_id: str, part: PartRange) -> str:
        with self._errors(upload_id, precondition=self._changed()):
            r = self.client.upload_part_copy(**self._where(), UploadId=upload_id, PartNumber=part.number,
                                             CopySource=self.source, CopySourceRange=f"bytes={part.start}-{part.end}",
                                             CopySourceIfMatch=self.if_match)
        return r["CopyPartResult"]["ETag"]

    def complete(self, upload_id: str, etags: dict[int, str]) -> None:
        """Create-only: if the destination exists already (the same content, stored by another file), that wins."""
        parts = [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
        with self._errors(upload_id, precondition=self._taken()):
            self.client.complete_multipart_upload(**self._where(), UploadId=upload_id,
                                                  MultipartUpload={"Parts": parts}, IfNoneMatch="*")

    def abort(self, upload_id: str) -> None:
        with contextlib.suppress(UploadGone), self._errors(upload_id):
            self.client.abort_multipart_upload(**self._where(), UploadId=upload_id)

    def copy_whole(self) -> None:
        """One CopyObject, for a source of a single part."""
        try:
            self.client.copy_object(**self._where(), CopySource=self.source, CopySourceIfMatch=self.if_match,
                                    MetadataDirective="COPY", IfNoneMatch="*")
        except ClientError as e:
            if _code(e) not in ("412", "PreconditionFailed", "NoSuchKey"):
                raise
            # Both pins answer 412: the destination taken, or the source changed. Tell them apart by looking.
            try:
                self.client.head_object(**self._where())
            except ClientError:
                raise self._changed() from e
            raise self._taken() from e

    def _changed(self) -> BlobChanged:
        return BlobChanged(f"s3://{self.source['Bucket']}/{self.source['Key']}")

    def _taken(self) -> BlobAlreadyExists:
        return BlobAlreadyExists(f"s3://{self.dst_bucket}/{self.dst_key}")

    @contextlib.contextmanager
    def _errors(self, upload_id: str, precondition: Exception | None = None):
        """S3's errors as ours: a failed pin as `precondition`, a source gone as changed, an upload gone as such."""
        try:
            yield
        except ClientError as e:
            code = _code(e)
            if precondition and code in ("412", "PreconditionFailed", "ConditionalRequestConflict"):
                raise precondition from e
            if code == "NoSuchKey":
                raise self._changed() from e
            if code in ("NoSuchUpload", "404"):
                raise UploadGone(upload_id) from e
            raise


class GCSRewrite:
    """Rewrite gs://src to gs://dst, pinned to the source generation; each call resumes from the last token."""

    def __init__(self, client, src_bucket: str, src_key: str, generation: str, dst_bucket: str, dst_key: str):
        self.source = client.bucket(src_bucket).blob(src_key)
        self.destination = client.bucket(dst_bucket).blob(dst_key)
        self.generation = int(generation)

    def step(self, token: str | None) -> tuple[str | None, int, int]:
        """One rewrite call: (the next token, or None when done; bytes rewritten so far; total bytes)."""
        try:
            return self.destination.rewrite(self.source, token=token, if_generation_match=0,
                                            if_source_generation_match=self.generation)
        except gexc.BadRequest:
            if token is None:
                raise
            logger.warning("rewrite token of gs://%s/%s rejected; starting over", self.destination.bucket.name,
                           self.destination.name)
            return self.step(None)
        except gexc.PreconditionFailed as e:
            if self.destination.exists():
                raise BlobAlreadyExists(f"gs://{self.destination.bucket.name}/{self.destination.name}") from e
            raise BlobChanged(f"gs://{self.source.bucket.name}/{self.source.name}") from e
        except gexc.NotFound as e:
            raise BlobChanged(f"gs://{self.source.bucket.name}/{self.source.name}") from e
