"""Files in a replica: ingest from a staging object, and look up metadata by uuid and version."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..checksums import Checksummer, Checksums, s3_part_size
from ..errors import DSSError
from ..file_metadata import checksums_of, file_metadata_document, parse_source_url, same_file, staging_checksums
from ..identifiers import file_key, uuid_prefix, version_from_key
from .blobstore import BlobAccessDenied, BlobAlreadyExists, BlobChanged, BlobInfo, BlobNotFound
from .replicas import Replica, Replicas, ReplicaStore

if TYPE_CHECKING:
    from .copy_jobs import CopyQueue

logger = logging.getLogger(__name__)

JSON = "application/json"


def read_json(rs: ReplicaStore, key: str, bucket: str | None = None) -> dict | None:
    """The JSON object at key in the replica's primary bucket (or `bucket`); None if there is none."""
    try:
        return json.loads(rs.store.get(bucket or rs.bucket, key))
    except BlobNotFound:
        return None


def write_immutable_json(rs: ReplicaStore, key: str, document: dict, *, conflict: DSSError,
                         same=lambda a, b: a == b, known_absent: bool = False) -> bool:
    """Write create-only. True if written now; False if an identical document was there; else raise conflict.

    known_absent skips the first read when the caller has just looked.
    """
    existing = None if known_absent else read_json(rs, key)
    if existing is None:
        try:
            rs.store.put(rs.bucket, key, json.dumps(document).encode(), content_type=JSON, create_only=True)
            return True
        except BlobAlreadyExists:
            existing = read_json(rs, key)  # a racing writer won; we answer as for a repeat
    if existing is not None and same(existing, document):
        return False
    raise conflict


def latest_file_version(rs: ReplicaStore, uuid: str) -> str | None:
    versions = (version_from_key(k, "files", uuid) for k in rs.store.list(rs.bucket, uuid_prefix("files", uuid)))
    return max((v for v in versions if v), default=None)


def file_metadata(replicas: Replicas, replica: str, uuid: str, version: str | None,
                  copies: CopyQueue | None = None) -> dict:
    """The metadata document; when a given version is not written (yet), `copies` tells whether it is still being
    copied (404) or its copy failed (the recorded problem, e.g. 422 missing_checksum)."""
    rs = replicas[replica]
    uuid = uuid.lower()
    requested = version
    version = version or latest_file_version(rs, uuid)
    document = read_json(rs, file_key(uuid, version)) if version else None
    if document is None:
        if requested and copies is not None:
            raise copies.not_written_error(file_key(uuid, requested))
        raise DSSError(404, "not_found", "Cannot find file!")
    return document


@dataclass(frozen=True)
class PutResult:
    status: int  # 201 new, 200 identical repeat, 202 copying in the background
    task_id: str | None = None


def put_file(replicas: Replicas, uuid: str, version: str, source_url: str, creator_uid: int,
             copies: CopyQueue | None = None) -> PutResult:
    """Ingest a staging object as files/{uuid}.{version}.

    With `copies`, a source above its threshold whose content is not stored yet is copied in the background
    (202): every check that can fail fast is made first, here.
    """
    source_ref = parse_source_url(source_url)
    rs = replicas[Replica.from_scheme(source_ref.scheme)]
    source = _head_source(rs, source_ref.bucket, source_ref.key)
    checksums = staging_checksums(_source_user_metadata(rs, source_ref.bucket, source_ref.key, source))
    document = file_metadata_document(checksums, size=source.size, content_type=source.content_type,
                                      creator_uid=creator_uid, version=version)
    key = file_key(uuid.lower(), version)
    conflict = DSSError(409, "file_already_exists",
                        f"File {uuid} version {version} already exists with different content.")
    existing = read_json(rs, key)
    if existing is not None:
        if same_file(existing, document):
            return PutResult(200)
        raise conflict
    if copies is not None:
        running = copies.running_task(key, document, conflict)
        if running:
            return PutResult(202, running)
        blob_key = checksums.blob_key()
        if source.size > copies.threshold and not blob_present(rs, blob_key, source.size):
            _verify_native_checksum(rs, source_ref.bucket, source_ref.key, source, checksums)
            return PutResult(202, copies.submit(key, rs=rs, document=document, source_bucket=source_ref.bucket,
                                                source_key=source_ref.key, source=source, blob_key=blob_key,
                                                conflict=conflict))
    store_blob(rs, source_ref.bucket, source_ref.key, source, checksums)
    written = write_immutable_json(rs, key, document, conflict=conflict, same=same_file, known_absent=True)
    logger.info("file %s.%s on %s: %s", uuid, version, rs.replica.value, "created" if written else "repeat")
    return PutResult(201 if written else 200)


def _head_source(rs: ReplicaStore, bucket: str, key: str) -> BlobInfo:
    try:
        return rs.store.head(bucket, key)
    except BlobNotFound as e:
        raise DSSError(400, "illegal_arguments",
                       f"source_url {rs.replica.scheme}://{bucket}/{key} does not exist.") from e
    except BlobAccessDenied as e:
        raise DSSError(400, "illegal_arguments", f"The DSS may not read {rs.replica.scheme}://{bucket}/{key}.") from e


def _source_user_metadata(rs: ReplicaStore, bucket: str, key: str, info: BlobInfo) -> dict[str, str]:
    try:
        return rs.store.user_metadata(bucket, key, info)
    except (BlobNotFound, BlobAccessDenied) as e:
        raise DSSError(400, "illegal_arguments",
                       f"Cannot read the tags of {rs.replica.scheme}://{bucket}/{key}.") from e


def store_blob(rs: ReplicaStore, src_bucket: str, src_key: str, source: BlobInfo, checksums: Checksums) -> str:
    """Copy the staging object to its content-addressed key, server side, after verifying its native checksum."""
    blob_key = checksums.blob_key()
    if blob_present(rs, blob_key, source.size):
        return blob_key  # content dedupe: only verified bytes are ever written under a blob key
    _verify_native_checksum(rs, src_bucket, src_key, source, checksums)
    try:
        rs.store.copy(src_bucket, src_key, rs.bucket, blob_key, create_only=True,
                      part_size=s3_part_size(source.size), expected_revision=source.revision)
    except BlobAlreadyExists:
        pass  # a racing writer stored the same content
    except BlobChanged as e:
        raise DSSError(409, "source_changed", "The staging object changed while it was being copied; retry.") from e
    return blob_key


def blob_present(rs: ReplicaStore, blob_key: str, size: int) -> bool:
    try:
        return rs.store.head(rs.bucket, blob_key).size == size
    except BlobNotFound:
        return False


def _verify_native_checksum(rs: ReplicaStore, bucket: str, key: str, source: BlobInfo, checksums: Checksums):
    """The store computed its own checksum over the staged bytes; it must agree with the submitted one."""
    expected = getattr(checksums, rs.store.native_checksum_name)
    if source.native_checksum == expected:
        return
    if rs.replica is Replica.aws and source.size <= s3_part_size(source.size):
        # Staged in parts other than the hca client's: recompute the single-part ETag from the bytes.
        summer = Checksummer(source.size)
        for chunk in rs.store.open(bucket, key):
            summer.update(chunk)
        if summer.finish().s3_etag == expected:
            return
    name = rs.store.native_checksum_name
    # The contract reports a native-checksum mismatch as missing_checksum, on either replica.
    raise DSSError(422, "missing_checksum",
                   f"The {name} the store computed for the staging object ({source.native_checksum}) does not "
                   f"match hca-dss-{name} ({expected}). Large S3 objects must be uploaded in 64 MiB parts.")


def blob_key_of(document: dict) -> str:
    return checksums_of(document).blob_key()
