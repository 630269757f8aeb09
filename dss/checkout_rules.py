"""Checkout rules: freshness of checkout copies, wait estimates, retry tokens, job status documents. Pure: no I/O.

Freshness. A checkout copy lives `ttl` seconds from its last write (the checkout bucket's lifecycle rule), and a
signed URL lives `url_ttl` seconds. A copy of age `a` is *servable* while `a < ttl - url_ttl`: a URL handed out
now then expires before the lifecycle can delete the copy. From `a >= (ttl - url_ttl) / 2` a copy is *due for
refresh*: it is still served, and a background job re-copies it, so popular files never expire under a reader.
Older copies are re-copied before they are served.

Waiting. A job that copies `n` objects of `b` bytes in total is expected to take
`JOB_START_SECONDS + b / throughput + PER_COPY_SECONDS * ceil(n / concurrency)`. A 301 answers
`Retry-After = ceil(expected - elapsed)`, at least 1 s, with `elapsed` counted from the job's start (carried in the
retry token). Past the estimate it backs off with the time spent: `ceil(elapsed / 10)`, between 1 and 30 s. A job
still unfinished after `STALE_FACTOR * expected + STALE_GRACE_SECONDS` is presumed lost and started afresh.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from .errors import DSSError

JOB_START_SECONDS = 1.0  # queueing and start-up of a job
PER_COPY_SECONDS = 0.05  # request overhead of one server-side copy
STALE_FACTOR = 3
STALE_GRACE_SECONDS = 120  # covers the queue's own retries of a failed attempt (2, 4, 8, 16 s ...)
MAX_OVERDUE_RETRY_SECONDS = 30
MAX_JOB_ATTEMPTS = 4  # below the queue's maxReceiveCount (5): a job records FAILED before it is dead-lettered

RUNNING, SUCCEEDED, FAILED = "RUNNING", "SUCCEEDED", "FAILED"
TERMINAL = (SUCCEEDED, FAILED)

_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_GS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


@dataclass(frozen=True)
class Freshness:
    ttl: int
    url_ttl: int

    @property
    def window(self) -> int:
        return self.ttl - self.url_ttl

    def servable(self, modified: float, now: float) -> bool:
        return now - modified < self.window

    def refresh_due(self, modified: float, now: float) -> bool:
        return now - modified >= self.window / 2

    def refresh_before(self, now: float) -> float:
        """Copies written before this moment are re-copied by a job."""
        return now - self.window / 2


def expected_seconds(total_bytes: int, throughput: int, copies: int = 1, concurrency: int = 1) -> float:
    return (JOB_START_SECONDS + total_bytes / max(1, throughput)
            + PER_COPY_SECONDS * math.ceil(copies / max(1, concurrency)))


def retry_after(expected: float, elapsed: float) -> int:
    elapsed = max(0.0, elapsed)
    remaining = expected - elapsed
    if remaining > 0:
        return max(1, math.ceil(remaining))
    return min(MAX_OVERDUE_RETRY_SECONDS, max(1, math.ceil(elapsed / 10)))


def job_is_stale(expected: float, elapsed: float) -> bool:
    return elapsed > STALE_FACTOR * expected + STALE_GRACE_SECONDS


@dataclass(frozen=True)
class RetryToken:
    """The `token` of a checkout redirect: how often the client came back, and the job it is waiting for."""
    attempts: int = 0
    job_id: str | None = None
    start_time: float | None = None

    @classmethod
    def parse(cls, parsed: dict[str, Any]) -> "RetryToken":
        """From the JSON object the API parsed (`attempts` is known to be there); 400 illegal_token if malformed."""
        attempts, job_id, start = parsed.get("attempts"), parsed.get("job_id"), parsed.get("start_time")
        if (not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 0
                or not isinstance(job_id, (str, type(None)))
                or not isinstance(start, (int, float, type(None))) or isinstance(start, bool)):
            raise DSSError(400, "illegal_token", "Could not parse the token.")
        if job_id is None or start is None:
            return cls(attempts)
        return cls(attempts, job_id, float(start))

    def encode(self) -> str:
        return json.dumps({"attempts": self.attempts, "job_id": self.job_id, "start_time": self.start_time},
                          separators=(",", ":"))


@dataclass(frozen=True)
class Pending:
    """A job the client waits for."""
    job_id: str
    start_time: float
    expected: float

    def elapsed(self, now: float) -> float:
        return max(0.0, now - self.start_time)

    def stale(self, now: float) -> bool:
        return job_is_stale(self.expected, self.elapsed(now))

    def retry_after(self, now: float) -> int:
        return retry_after(self.expected, self.elapsed(now))

    def token(self, previous: RetryToken | None) -> RetryToken:
        return RetryToken((previous.attempts if previous else 0) + 1, self.job_id, self.start_time)


# --- keys and documents in the checkout bucket -----------------------------------------------------------------

def status_key(job_id: str) -> str:
    return f"checkout/status/{job_id}.json"


def marker_key(target: str) -> str:
    """The latest job of a target (`blobs/<key>` or `bundles/<uuid>.<version>`), so requests join it."""
    return f"checkout/jobs/{target}.json"


def bundle_target(uuid: str, version: str) -> str:
    return f"bundles/{uuid}.{version}"


def bundle_object_key(uuid: str, version: str, name: str) -> str:
    return f"{bundle_target(uuid, version)}/{name}"


def status_document(status: str, job: dict[str, Any], *, now: float, attempts: int = 0, location: str | None = None,
                    cause: str | None = None, notification: str | None = None) -> dict[str, Any]:
    doc = {"status": status, "job_id": job["job_id"], "kind": job["kind"], "replica": job["replica"],
           "started_at": job["start_time"], "updated_at": now, "attempts": attempts}
    for name, value in (("location", location), ("cause", cause), ("notification", notification)):
        if value is not None:
            doc[name] = value
    return doc


def public_status(doc: dict[str, Any]) -> dict[str, Any]:
    """What GET /bundles/checkout/{id} shows."""
    return {k: doc[k] for k in ("status", "location", "cause", "notification") if k in doc}


def checkout_failed(cause: str) -> DSSError:
    return DSSError(500, "checkout_error", f"Checkout failed: {cause}")


# --- destinations ----------------------------------------------------------------------------------------------

def destination_error(scheme: str, bucket: str, reserved: tuple[str, ...]) -> str | None:
    """Why `bucket` cannot take a checkout, judged from its name alone; None if it can be tried."""
    pattern = _S3_BUCKET if scheme == "s3" else _GS_BUCKET
    if not pattern.match(bucket):
        return f"{bucket!r} is not a valid {scheme} bucket name; give the bucket name only, without {scheme}:// or /"
    if bucket in reserved:
        return f"{bucket!r} is a DSS bucket and cannot be a checkout destination"
    return None


def notification_message(doc: dict[str, Any], what: str) -> tuple[str, str]:
    """Subject and body of the email sent when a checkout job ends."""
    subject = f"DSS checkout of {what}: {doc['status']}"
    if doc["status"] == SUCCEEDED:
        body = f"The checkout of {what} (job {doc['job_id']}) succeeded.\nLocation: {doc['location']}\n"
    else:
        body = f"The checkout of {what} (job {doc['job_id']}) failed.\nCause: {doc.get('cause', 'unknown')}\n"
    return subject, body
