"""Checkout: copies of files and bundles in a replica's checkout bucket, which GET /files and GET /bundles serve.

- File checkout: `blobs/<key>` of the primary bucket, copied server side to the same key in the checkout bucket.
  GET /files copies small files inline; larger ones are copied by a job.
- Bundle checkout: every file of a bundle copied to `{bucket}/bundles/{uuid}.{version}/{name}`, in parallel, into
  the checkout bucket or a user's bucket; the job's status is `checkout/status/{job_id}.json` in the checkout bucket.
- Jobs travel on the `checkout` queue; `handle_message` runs them (the dss-checkout daemon, or the local worker).
  They are idempotent: a re-run copies only what is missing or due for refresh, and a finished job is not re-run.
- `checkout/jobs/<target>.json` names the latest job of a file or bundle, so concurrent readers join one job.

Freshness and wait estimates: dss.checkout_rules.
"""
from __future__ import annotations

import functools
import json
import logging
import secrets
import time
import uuid as uuidlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import boto3

from .checkout_rules import (
    FAILED,
    MAX_JOB_ATTEMPTS,
    RUNNING,
    SUCCEEDED,
    TERMINAL,
    Freshness,
    Pending,
    RetryToken,
    bundle_object_key,
    bundle_target,
    checkout_failed,
    destination_error,
    expected_seconds,
    marker_key,
    notification_message,
    status_document,
    status_key,
)
from .checksums import checksums_from_blob_key, s3_part_size
from .config import Settings
from .errors import DSSError
from .events.bus import Bus, Topology
from .file_metadata import checksums_of
from .storage.blobstore import BlobAccessDenied, BlobNotFound
from .storage.bundles import load_manifest
from .storage.files import blob_key_of, read_json
from .storage.replicas import ReplicaStore
from .storage.stats import ObjectStat, list_stats, stat

logger = logging.getLogger(__name__)

QUEUE = "checkout"
JSON = "application/json"


class JobFailed(Exception):
    """A checkout job cannot succeed, whatever the retries: record FAILED with this cause."""


@dataclass(frozen=True)
class Wanted:
    """One object a checkout must produce: the blob it copies, and what the copy must look like."""
    src_key: str
    size: int
    native_checksum: str  # of the destination store: the S3 ETag or the GCS crc32c

    @classmethod
    def of(cls, rs: ReplicaStore, entry: dict) -> "Wanted":
        """From file metadata or a manifest entry."""
        return cls(blob_key_of(entry), entry["size"], getattr(checksums_of(entry), rs.store.native_checksum_name))

    @classmethod
    def of_blob(cls, rs: ReplicaStore, key: str, size: int) -> "Wanted":
        return cls(key, size, getattr(checksums_from_blob_key(key), rs.store.native_checksum_name))


@functools.lru_cache(maxsize=8)
def api_bus(stage: str) -> Bus:
    """The queues, for the API (the daemons get theirs in Deps)."""
    return Bus(Topology(stage))


def _freshness(settings: Settings) -> Freshness:
    return Freshness(settings.checkout_ttl, settings.signed_url_ttl)


# --- copies ----------------------------------------------------------------------------------------------------

def same_bytes(rs: ReplicaStore, copy: ObjectStat, wanted: Wanted) -> bool:
    """The copy holds the wanted bytes, judged by size and the store's native checksum."""
    if copy.size != wanted.size:
        return False
    if copy.native_checksum == wanted.native_checksum:
        return True
    # SeaweedFS (local) gives multipart copies ETags that are not MD5-based: accept the ETag of the primary blob the
    # copy was pinned to. Real S3 computes the same ETag for the same part size, so there the first test decides.
    if rs.store.scheme != "s3":
        return False
    try:
        return copy.native_checksum == rs.store.head(rs.bucket, wanted.src_key).native_checksum
    except BlobNotFound:
        return False


def copy_verified(rs: ReplicaStore, settings: Settings, wanted: Wanted, dst_bucket: str, dst_key: str) -> None:
    """Server-side copy of a primary blob, pinned to the revision it had when we looked, then checked."""
    try:
        source = rs.store.head(rs.bucket, wanted.src_key)
    except BlobNotFound as e:
        raise JobFailed(f"{wanted.src_key} is missing from the primary bucket") from e
    try:
        info = rs.store.copy(rs.bucket, wanted.src_key, dst_bucket, dst_key, part_size=s3_part_size(source.size),
                             concurrency=settings.copy_concurrency, expected_revision=source.revision)
    except BlobAccessDenied as e:
        raise JobFailed(f"the DSS may not write to bucket {dst_bucket}") from e
    except BlobNotFound as e:
        raise JobFailed(f"bucket {dst_bucket} no longer exists") from e
    if info.size != wanted.size or info.native_checksum not in (wanted.native_checksum, source.native_checksum):
        rs.store.delete(dst_bucket, dst_key)
        raise JobFailed(f"the copy of {wanted.src_key} has {rs.store.native_checksum_name} {info.native_checksum}, "
                        f"not {wanted.native_checksum}")


def _servable(rs: ReplicaStore, fresh: Freshness, copy: ObjectStat | None, wanted: Wanted, now: float) -> bool:
    return copy is not None and fresh.servable(copy.modified, now) and same_bytes(rs, copy, wanted)


def _up_to_date(rs: ReplicaStore, copy: ObjectStat | None, wanted: Wanted, refresh_before: float | None) -> bool:
    """What a job may leave alone. refresh_before is None for a user's bucket: no lifecycle of ours runs there."""
    return (copy is not None and (refresh_before is None or copy.modified >= refresh_before)
            and same_bytes(rs, copy, wanted))


# --- status documents and job markers --------------------------------------------------------------------------

def _write_json(rs: ReplicaStore, key: str, document: dict) -> None:
    rs.store.put(rs.checkout_bucket, key, json.dumps(document).encode(), content_type=JSON)


def job_status(rs: ReplicaStore, job_id: str) -> dict | None:
    return read_json(rs, status_key(job_id), bucket=rs.checkout_bucket)


def _start_job(rs: ReplicaStore, bus: Bus, job: dict, *, target: str | None, expected: float, now: float) -> Pending:
    """Record the job RUNNING (and as the target's latest job), then queue it."""
    job = {**job, "job_id": str(uuidlib.uuid4()), "start_time": now, "replica": rs.replica.value}
    _write_json(rs, status_key(job["job_id"]), status_document(RUNNING, job, now=now))
    if target:
        _write_json(rs, marker_key(target), {"job_id": job["job_id"], "start_time": now})
    bus.send_job(QUEUE, job)
    logger.info("checkout job %s (%s) queued on %s", job["job_id"], job["kind"], job["replica"])
    return Pending(job["job_id"], now, expected)


def _running(rs: ReplicaStore, pending: Pending, now: float) -> bool:
    if pending.stale(now):
        return False
    status = job_status(rs, pending.job_id)
    return status is not None and status["status"] == RUNNING


def _latest_job(rs: ReplicaStore, target: str, expected: float, now: float) -> Pending | None:
    """The target's latest job, if it is still running."""
    marker = read_json(rs, marker_key(target), bucket=rs.checkout_bucket)
    if not marker:
        return None
    pending = Pending(marker["job_id"], marker["start_time"], expected)
    return pending if _running(rs, pending, now) else None


def _await(rs: ReplicaStore, bus: Bus, job: dict, *, target: str, expected: float, token: RetryToken | None,
           now: float) -> Pending:
    """The job a reader waits for: the one its token names while it runs, else a running one, else a new one."""
    if token is not None and token.job_id and token.start_time is not None:  # a token has both or neither
        pending = Pending(token.job_id, token.start_time, expected)
        status = job_status(rs, token.job_id)
        if status is not None and status["status"] == FAILED:
            raise checkout_failed(status.get("cause", "unknown cause"))
        if _running(rs, pending, now):
            return pending
        # Lost, stale, or finished while its copy is not servable (expired meanwhile): join another or start afresh.
    return _latest_job(rs, target, expected, now) or _start_job(rs, bus, job, target=target, expected=expected,
                                                                 now=now)


# --- file checkout (GET /files) --------------------------------------------------------------------------------

def checkout_file(settings: Settings, rs: ReplicaStore, bus: Bus, document: dict, token: RetryToken | None,
                  now: float) -> Pending | None:
    """None when the checkout copy of the file can be served now; otherwise the job making it."""
    fresh = _freshness(settings)
    wanted = Wanted.of(rs, document)
    copy = stat(rs.store, rs.checkout_bucket, wanted.src_key)
    target = wanted.src_key
    job = {"kind": "file", "key": wanted.src_key, "size": wanted.size, "refresh_before": fresh.refresh_before(now)}
    expected = expected_seconds(wanted.size, settings.checkout_throughput)
    if copy is not None and _servable(rs, fresh, copy, wanted, now):
        if fresh.refresh_due(copy.modified, now):
            _await(rs, bus, job, target=target, expected=expected, token=None, now=now)  # refresh, still served
        return None
    if wanted.size <= settings.checkout_inline_max_bytes:
        try:
            copy_verified(rs, settings, wanted, rs.checkout_bucket, wanted.src_key)
        except JobFailed as e:
            raise checkout_failed(str(e)) from e
        return None
    return _await(rs, bus, job, target=target, expected=expected, token=token, now=now)


# --- bundle checkout -------------------------------------------------------------------------------------------

def _bundle_expected(settings: Settings, files: list[dict]) -> float:
    return expected_seconds(sum(f["size"] for f in files), settings.checkout_throughput, copies=len(files),
                            concurrency=settings.checkout_concurrency)


def _existing_copies(rs: ReplicaStore, bucket: str, uuid: str, version: str) -> dict[str, ObjectStat]:
    return {s.key: s for s in list_stats(rs.store, bucket, bundle_target(uuid, version) + "/")}


def checkout_bundle(settings: Settings, rs: ReplicaStore, bus: Bus, uuid: str, manifest: dict,
                    token: RetryToken | None, now: float) -> Pending | None:
    """None when the bundle's checkout in the checkout bucket can be served now; otherwise the job making it."""
    uuid, version, files = uuid.lower(), manifest["version"], manifest["files"]
    fresh = _freshness(settings)
    copies = _existing_copies(rs, rs.checkout_bucket, uuid, version)
    job = {"kind": "bundle", "uuid": uuid, "version": version, "destination": None, "email": None,
           "refresh_before": fresh.refresh_before(now)}
    target, expected = bundle_target(uuid, version), _bundle_expected(settings, files)
    found = [copies.get(bundle_object_key(uuid, version, f["name"])) for f in files]
    if all(_servable(rs, fresh, copy, Wanted.of(rs, f), now) for copy, f in zip(found, files, strict=True)):
        if any(fresh.refresh_due(copy.modified, now) for copy in found if copy is not None):
            _await(rs, bus, job, target=target, expected=expected, token=None, now=now)  # refresh, still served
        return None
    return _await(rs, bus, job, target=target, expected=expected, token=token, now=now)


def destination_problem(rs: ReplicaStore, bucket: str) -> str | None:
    """Why a checkout cannot go to `bucket`, found by writing (and deleting) a probe object; None if it can."""
    problem = destination_error(rs.store.scheme, bucket, reserved=(rs.bucket,))
    if problem:
        return problem
    where = f"{rs.store.scheme}://{bucket}"
    try:
        if not rs.store.bucket_exists(bucket):
            return f"bucket {where} does not exist"
        probe = f"touch/{secrets.token_hex(1)}.txt"
        rs.store.put(bucket, probe, b"", content_type="text/plain")
        rs.store.delete(bucket, probe)
    except Exception as e:  # any refusal of the store: the reason goes to the client
        logger.info("checkout destination %s refused: %r", where, e)
        return f"the DSS cannot write to bucket {where} ({type(e).__name__}); grant it write access"
    return None


def start_bundle_checkout(settings: Settings, rs: ReplicaStore, bus: Bus, uuid: str, version: str | None, *,
                          destination: str | None, email: str | None, now: float) -> str:
    """POST /bundles/{uuid}/checkout: validate everything that can fail now, then queue the job. The job id."""
    manifest = load_manifest(rs, uuid, version)
    uuid, version = uuid.lower(), manifest["version"]
    user_bucket = destination is not None and destination != rs.checkout_bucket
    if destination is not None and user_bucket:
        problem = destination_problem(rs, destination)
        if problem:
            raise DSSError(400, "illegal_arguments", f"Cannot check out to {destination!r}: {problem}.")
    job = {"kind": "bundle", "uuid": uuid, "version": version, "destination": destination if user_bucket else None,
           "email": email, "refresh_before": None if user_bucket else _freshness(settings).refresh_before(now)}
    pending = _start_job(rs, bus, job, target=None if user_bucket else bundle_target(uuid, version),
                         expected=_bundle_expected(settings, manifest["files"]), now=now)
    return pending.job_id


# --- jobs ------------------------------------------------------------------------------------------------------

def handle_message(body: dict, deps) -> None:
    """Run one checkout job (a message of the `checkout` queue). Idempotent."""
    rs = deps.replicas[body["replica"]]
    status = job_status(rs, body["job_id"])
    if status is not None and status["status"] in TERMINAL:
        logger.info("checkout job %s already %s", body["job_id"], status["status"])
        return
    attempts = (status or {}).get("attempts", 0) + 1
    if attempts > MAX_JOB_ATTEMPTS:
        _finish(deps.settings, rs, body, attempts - 1, cause=f"gave up after {MAX_JOB_ATTEMPTS} attempts")
        return
    _write_json(rs, status_key(body["job_id"]), status_document(RUNNING, body, now=time.time(), attempts=attempts))
    run = _run_file_job if body["kind"] == "file" else _run_bundle_job
    try:
        location = run(deps.settings, rs, body)
    except JobFailed as e:
        _finish(deps.settings, rs, body, attempts, cause=str(e))
    except Exception as e:
        if attempts < MAX_JOB_ATTEMPTS:
            raise  # the queue brings it back after a backoff
        _finish(deps.settings, rs, body, attempts, cause=f"{type(e).__name__}: {e}")
    else:
        _finish(deps.settings, rs, body, attempts, location=location)


def _run_file_job(settings: Settings, rs: ReplicaStore, job: dict) -> str:
    wanted = Wanted.of_blob(rs, job["key"], job["size"])
    if not _up_to_date(rs, stat(rs.store, rs.checkout_bucket, wanted.src_key), wanted, job["refresh_before"]):
        copy_verified(rs, settings, wanted, rs.checkout_bucket, wanted.src_key)
    return rs.store.direct_url(rs.checkout_bucket, wanted.src_key)


def _run_bundle_job(settings: Settings, rs: ReplicaStore, job: dict) -> str:
    uuid, version = job["uuid"], job["version"]
    bucket = job["destination"] or rs.checkout_bucket
    try:
        files = load_manifest(rs, uuid, version)["files"]
    except DSSError as e:
        if e.status == 404:
            raise JobFailed(f"bundle {uuid}.{version} does not exist (or was deleted)") from e
        raise
    if job["destination"]:
        problem = destination_problem(rs, bucket)
        if problem:
            raise JobFailed(problem)
    try:
        copies = _existing_copies(rs, bucket, uuid, version)
    except Exception:  # a user's bucket may allow writes but not listings: then copy everything
        logger.info("cannot list %s; copying every file", bucket, exc_info=True)
        copies = {}

    def check_out(entry: dict) -> str | None:
        key, wanted = bundle_object_key(uuid, version, entry["name"]), Wanted.of(rs, entry)
        if _up_to_date(rs, copies.get(key), wanted, job["refresh_before"]):
            return None
        try:
            copy_verified(rs, settings, wanted, bucket, key)
        except JobFailed as e:
            return f"{entry['name']}: {e}"
        return None

    with ThreadPoolExecutor(max_workers=max(1, settings.checkout_concurrency)) as pool:
        failures = [f for f in pool.map(check_out, files) if f]
    if failures:
        shown = "; ".join(failures[:5]) + (" ..." if len(failures) > 5 else "")
        raise JobFailed(f"{len(failures)} of {len(files)} files could not be copied: {shown}")
    logger.info("bundle %s.%s checked out to %s (%d files)", uuid, version, bucket, len(files))
    return rs.store.direct_url(bucket, bundle_target(uuid, version))


def _finish(settings: Settings, rs: ReplicaStore, job: dict, attempts: int, *, location: str | None = None,
            cause: str | None = None) -> None:
    doc = status_document(SUCCEEDED if cause is None else FAILED, job, now=time.time(), attempts=attempts,
                          location=location, cause=cause)
    if job.get("email"):
        what = f"bundle {job['uuid']}.{job['version']}" if job["kind"] == "bundle" else job["key"]
        doc["notification"] = _send_email(settings, job["email"], *notification_message(doc, what))
    _write_json(rs, status_key(job["job_id"]), doc)
    (logger.info if cause is None else logger.warning)("checkout job %s %s%s", job["job_id"], doc["status"],
                                                       f": {cause}" if cause else "")


@functools.lru_cache(maxsize=1)
def _ses():
    return boto3.client("ses")


def _send_email(settings: Settings, to: str, subject: str, body: str) -> str:
    """Send a notification; never raises (a failed email must not fail the checkout). The outcome, for the status."""
    if not settings.notification_sender:
        return "not sent: no sender is configured (DSS_NOTIFICATION_SENDER)"
    try:
        _ses().send_email(Source=settings.notification_sender, Destination={"ToAddresses": [to]},
                          Message={"Subject": {"Data": subject}, "Body": {"Text": {"Data": body}}})
    except Exception as e:
        logger.warning("could not email %s: %s", to, e)
        return f"not sent: {type(e).__name__}: {e}"
    return f"sent to {to}"
