"""The S3 blobstore, on boto3. The endpoint comes from AWS_ENDPOINT_URL_S3 when set (the local stack)."""
from __future__ import annotations

import hashlib
import io
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, Iterator

import boto3
import botocore.config
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from .blobstore import (
    BlobAccessDenied,
    BlobAlreadyExists,
    BlobChanged,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    BlobStoreError,
    Page,
    Part,
    PartsUpload,
)

logger = logging.getLogger(__name__)

# S3 refuses a single CopyObject above 5 GiB.
MAX_SINGLE_COPY = 5 * 1024 ** 3


def _unquote(etag: str) -> str:
    return etag.strip('"').lower()


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _translate(error: ClientError, bucket: str, key: str, *, precondition: type[BlobStoreError] = BlobAlreadyExists):
    code = _error_code(error)
    where = f"s3://{bucket}/{key}"
    if code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
        return BlobNotFound(where)
    if code in ("403", "AccessDenied", "Forbidden"):
        return BlobAccessDenied(where)
    if code in ("412", "PreconditionFailed", "ConditionalRequestConflict"):
        return precondition(where)
    return error


def _upload_error(error: ClientError, upload: PartsUpload):
    if _error_code(error) == "NoSuchUpload":  # completed or aborted meanwhile, by a racing writer of the same key
        return BlobNotFound(f"s3://{upload.bucket}/{upload.key}: upload {upload.upload_id} is gone")
    return _translate(error, upload.bucket, upload.key)


class S3BlobStore(BlobStore):
    scheme = "s3"
    native_checksum_name = "s3_etag"

    def __init__(self, client=None, max_pool_connections: int = 64):
        self.client = client or boto3.session.Session().client(
            "s3", config=botocore.config.Config(
                signature_version="s3v4", max_pool_connections=max_pool_connections,
                retries={"max_attempts": 5, "mode": "standard"}))

    def put(self, bucket, key, data, *, content_type="application/octet-stream", metadata=None, create_only=False):
        extra = {"IfNoneMatch": "*"} if create_only else {}
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type,
                                   Metadata=metadata or {}, **extra)
        except ClientError as e:
            raise _translate(e, bucket, key) from e
        return self.head(bucket, key)

    def upload(self, bucket, key, stream: BinaryIO | io.RawIOBase, *, size, part_size,
               content_type="application/octet-stream", metadata=None):
        config = TransferConfig(multipart_threshold=part_size + 1, multipart_chunksize=part_size,
                                max_concurrency=4, use_threads=True)
        self.client.upload_fileobj(stream, bucket, key, Config=config,
                                   ExtraArgs={"ContentType": content_type, "Metadata": metadata or {}})
        return self.head(bucket, key)

    def get(self, bucket, key):
        try:
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as e:
            raise _translate(e, bucket, key) from e

    def get_range(self, bucket, key, start, end):
        try:
            return self.client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")["Body"].read()
        except ClientError as e:
            raise _translate(e, bucket, key) from e

    def open(self, bucket, key, chunk_size=8 * 1024 * 1024, *, start=0, end=None) -> Iterator[bytes]:
        ranged = {"Range": f"bytes={start}-{'' if end is None else end}"} if start or end is not None else {}
        try:
            body = self.client.get_object(Bucket=bucket, Key=key, **ranged)["Body"]
        except ClientError as e:
            raise _translate(e, bucket, key) from e
        with body:
            yield from body.iter_chunks(chunk_size)

    def head(self, bucket, key):
        try:
            r = self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as e:
            raise _translate(e, bucket, key) from e
        etag = _unquote(r["ETag"])
        return BlobInfo(key=key, size=r["ContentLength"], content_type=r.get("ContentType", ""),
                        native_checksum=etag, metadata=dict(r.get("Metadata", {})), revision=r["ETag"],
                        modified=r.get("LastModified"))

    def tags(self, bucket, key) -> dict[str, str]:
        try:
            tag_set = self.client.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
        except ClientError as e:
            raise _translate(e, bucket, key) from e
        return {t["Key"]: t["Value"] for t in tag_set}

    def user_metadata(self, bucket, key, info=None):
        merged = dict((info or self.head(bucket, key)).metadata)
        merged.update(self.tags(bucket, key))
        return merged

    def set_tags(self, bucket, key, tags):
        try:
            self.client.put_object_tagging(Bucket=bucket, Key=key, Tagging={
                "TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]})
        except ClientError as e:
            raise _translate(e, bucket, key) from e

    def copy(self, src_bucket, src_key, dst_bucket, dst_key, *, create_only=False, part_size=None, concurrency=8,
             expected_revision=None):
        source = self.head(src_bucket, src_key)
        if_match = expected_revision or source.revision
        if source.size <= min(part_size or MAX_SINGLE_COPY, MAX_SINGLE_COPY):
            extra = {"IfNoneMatch": "*"} if create_only else {}
            try:
                self.client.copy_object(Bucket=dst_bucket, Key=dst_key, MetadataDirective="COPY",
                                        CopySource={"Bucket": src_bucket, "Key": src_key},
                                        CopySourceIfMatch=if_match, **extra)
            except ClientError as e:
                raise self._copy_error(e, src_bucket, src_key, dst_bucket, dst_key) from e
        else:
            self._multipart_copy(source, src_bucket, src_key, dst_bucket, dst_key, if_match=if_match,
                                 part_size=part_size or MAX_SINGLE_COPY, concurrency=concurrency,
                                 create_only=create_only)
        return self.head(dst_bucket, dst_key)

    def _copy_error(self, e: ClientError, src_bucket, src_key, dst_bucket, dst_key):
        code = _error_code(e)
        # A failed CopySourceIfMatch and a failed IfNoneMatch are both 412; tell them apart by looking.
        if code in ("412", "PreconditionFailed"):
            if self.exists(dst_bucket, dst_key):
                return BlobAlreadyExists(f"s3://{dst_bucket}/{dst_key}")
            return BlobChanged(f"s3://{src_bucket}/{src_key}")
        return _translate(e, src_bucket, src_key)

    def _multipart_copy(self, source: BlobInfo, src_bucket, src_key, dst_bucket, dst_key, *, if_match, part_size,
                        concurrency, create_only):
        upload_id = self.client.create_multipart_upload(
            Bucket=dst_bucket, Key=dst_key, ContentType=source.content_type or "application/octet-stream",
            Metadata=source.metadata)["UploadId"]
        ranges = [(n + 1, start, min(start + part_size, source.size) - 1)
                  for n, start in enumerate(range(0, source.size, part_size))]

        def copy_part(part):
            number, start, end = part
            r = self.client.upload_part_copy(
                Bucket=dst_bucket, Key=dst_key, UploadId=upload_id, PartNumber=number,
                CopySource={"Bucket": src_bucket, "Key": src_key}, CopySourceRange=f"bytes={start}-{end}",
                CopySourceIfMatch=if_match)
            return {"PartNumber": number, "ETag": r["CopyPartResult"]["ETag"]}

        try:
            with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
                parts = list(pool.map(copy_part, ranges))
            extra = {"IfNoneMatch": "*"} if create_only else {}
            self.client.complete_multipart_upload(Bucket=dst_bucket, Key=dst_key, UploadId=upload_id,
                                                  MultipartUpload={"Parts": parts}, **extra)
        except ClientError as e:
            self.client.abort_multipart_upload(Bucket=dst_bucket, Key=dst_key, UploadId=upload_id)
            raise self._copy_error(e, src_bucket, src_key, dst_bucket, dst_key) from e
        except BaseException:
            self.client.abort_multipart_upload(Bucket=dst_bucket, Key=dst_key, UploadId=upload_id)
            raise
        logger.info("copied s3://%s/%s to s3://%s/%s in %d parts", src_bucket, src_key, dst_bucket, dst_key,
                    len(ranges))

    def start_parts(self, bucket, key, *, content_type="application/octet-stream", metadata=None, resume=True):
        pending = self._pending_uploads(bucket, key) if resume else []
        if pending:  # the newest unfinished upload of this key: its finished parts are kept
            upload_id = max(pending, key=lambda u: u["Initiated"])["UploadId"]
            pages = self.client.get_paginator("list_parts").paginate(Bucket=bucket, Key=key, UploadId=upload_id)
            uploaded = {p["PartNumber"]: Part(p["PartNumber"], p["Size"], p["ETag"], _unquote(p["ETag"]))
                        for page in pages for p in page.get("Parts", [])}
        else:
            upload_id = self.client.create_multipart_upload(
                Bucket=bucket, Key=key, ContentType=content_type, Metadata=metadata or {})["UploadId"]
            uploaded = {}
        return PartsUpload(bucket, key, upload_id, content_type, dict(metadata or {}), uploaded)

    def upload_part(self, upload, number, data):
        try:
            r = self.client.upload_part(Bucket=upload.bucket, Key=upload.key, UploadId=upload.upload_id,
                                        PartNumber=number, Body=data)
        except ClientError as e:
            raise _upload_error(e, upload) from e
        return Part(number, len(data), r["ETag"], _unquote(r["ETag"]))

    def assembled_checksum(self, parts):
        # The multipart ETag: the MD5 of the parts' MD5s, and the number of parts.
        digests = b"".join(bytes.fromhex(p.checksum) for p in sorted(parts, key=lambda p: p.number))
        return f"{hashlib.md5(digests).hexdigest()}-{len(parts)}"

    def complete_parts(self, upload, parts):
        try:
            self.client.complete_multipart_upload(
                Bucket=upload.bucket, Key=upload.key, UploadId=upload.upload_id,
                MultipartUpload={"Parts": [{"PartNumber": p.number, "ETag": p.token}
                                           for p in sorted(parts, key=lambda p: p.number)]})
        except ClientError as e:
            raise _upload_error(e, upload) from e
        self.discard_parts(upload.bucket, upload.key)  # uploads of this key that crashed or lost the race
        return self.head(upload.bucket, upload.key)

    def discard_parts(self, bucket, key):
        pending = self._pending_uploads(bucket, key)
        for upload in pending:
            try:
                self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
            except ClientError as e:
                if _error_code(e) != "NoSuchUpload":
                    raise
        return len(pending)

    def _pending_uploads(self, bucket, key) -> list[dict]:
        pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=key)
        return [u for page in pages for u in page.get("Uploads", []) if u["Key"] == key]

    def list_page(self, bucket, prefix, *, token=None, start_after=None, page_size=1000):
        kwargs = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
        if token:
            kwargs["ContinuationToken"] = token
        elif start_after:
            kwargs["StartAfter"] = start_after
        try:
            r = self.client.list_objects_v2(**kwargs)
        except ClientError as e:
            raise _translate(e, bucket, prefix) from e
        keys = [o["Key"] for o in r.get("Contents", [])]
        return Page(keys, r.get("NextContinuationToken") if r.get("IsTruncated") else None)

    def delete(self, bucket, key):
        try:
            self.client.delete_object(Bucket=bucket, Key=key)
        except ClientError as e:
            error = _translate(e, bucket, key)
            if not isinstance(error, BlobNotFound):
                raise error from e

    def signed_url(self, bucket, key, *, ttl, content_disposition=None, method="GET"):
        params = {"Bucket": bucket, "Key": key}
        if content_disposition:
            params["ResponseContentDisposition"] = content_disposition
        operation = {"GET": "get_object", "PUT": "put_object", "HEAD": "head_object"}[method]
        return self.client.generate_presigned_url(operation, Params=params, ExpiresIn=ttl)

    def bucket_exists(self, bucket):
        try:
            self.client.head_bucket(Bucket=bucket)
        except ClientError as e:
            if isinstance(_translate(e, bucket, ""), BlobNotFound):
                return False
            raise
        return True

    def create_bucket(self, bucket):
        try:
            self.client.create_bucket(Bucket=bucket)
        except ClientError as e:
            if _error_code(e) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
