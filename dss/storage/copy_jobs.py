"""Large-file copies, the 202 path of PUT /files.

PUT /files (dss.storage.files.put_file) checks the staging object, records a RUNNING job in the async-state table
under `files/{uuid}.{version}` (create-only: a repeat of the PUT finds the job and gets its task id) and queues
`{key, task_id}` on the copy queue. The job then runs in four steps, each a plain function of (body, deps) that
reads the job's item first, so the local worker (`handle_message`) and the Step Functions Lambdas
(daemons/dss-copy) run the same code:

    setup -> copy_parts -> finalize -> write_metadata          any CopyFailed -> record_failure

Every step is idempotent and checkpointed in the item (S3: the upload id, with S3's own list of the parts it has;
GCS: the rewrite token), so a run killed at any point resumes when its message comes back and converges without
copying a finished part again. A job has a deadline: after it, it is FAILED, never silently stuck.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
import uuid as uuidlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from ..checksums import s3_part_size
from ..errors import DSSError
from ..file_metadata import same_file
from .async_state import FAILED, RUNNING, SUCCEEDED, AsyncState, Failure, iso_time
from .blobstore import BlobAlreadyExists, BlobChanged, BlobInfo, BlobNotFound
from .files import blob_present, write_immutable_json
from .large_copy import GCSRewrite, PartRange, S3PartCopy, UploadGone, composite_etag, part_ranges
from .replicas import Replica, ReplicaStore

logger = logging.getLogger(__name__)

SOURCE_CHANGED = Failure(422, "missing_checksum",
                         "The staging object changed during the copy: it is no longer the object whose checksum was "
                         "verified when the file was PUT. Stage it again and repeat the PUT.")
# At most this many Map branches in the Step Functions definition, each copying a contiguous batch of parts.
MAX_BATCHES = 32
SETUP_SUBMIT_TRIES = 3


class CopyFailed(Exception):
    """The copy cannot succeed; `failure` is what HEAD and GET /files answer from now on."""

    def __init__(self, failure: Failure):
        super().__init__(failure.title)
        self.failure = failure


class JobGone(Exception):
    """The message's job is no longer this task's RUNNING job: finished, failed, or superseded by a new PUT."""


def copy_failed(reason: str) -> Failure:
    return Failure(500, "copy_failed", reason)


def is_live(item: dict, now: float) -> bool:
    return item["status"] == RUNNING and now <= item["deadline"]


# --- submission (the API side) ----------------------------------------------------------------------------------

class CopyQueue:
    """Where PUT /files hands its large copies, and where HEAD and GET /files learn how they went."""

    def __init__(self, state: AsyncState, send: Callable[[dict, int], None], *, threshold: int, timeout: int,
                 start_delay: int = 0, new_task_id: Callable[[], str] = lambda: str(uuidlib.uuid4())):
        self.state, self.send = state, send
        self.threshold, self.timeout, self.start_delay = threshold, timeout, start_delay
        self.new_task_id = new_task_id

    @classmethod
    def from_settings(cls, settings, bus) -> "CopyQueue":
        return cls(AsyncState(settings.async_state_table),
                   lambda body, delay: bus.send_job("copy", body, delay_seconds=delay),
                   threshold=settings.async_copy_threshold, timeout=settings.async_copy_timeout,
                   start_delay=settings.async_copy_start_delay)

    def running_task(self, key: str, document: dict, conflict: DSSError) -> str | None:
        """The task id of a live copy of this very file (a repeated PUT); a different file raises `conflict`."""
        return self._repeat_of(self.state.get(key), document, conflict)

    def submit(self, key: str, *, rs: ReplicaStore, document: dict, source_bucket: str, source_key: str,
               source: BlobInfo, blob_key: str, conflict: DSSError) -> str:
        """Record a RUNNING job (create-only) and queue it; returns its task id, or that of a racing identical PUT."""
        fields = {"replica": rs.replica.value, "document": document, "blob_key": blob_key,
                  "source": {"bucket": source_bucket, "key": source_key, "revision": source.revision,
                             "size": source.size}}
        for _ in range(SETUP_SUBMIT_TRIES):
            item = self.state.get(key)
            running = self._repeat_of(item, document, conflict)
            if running:
                return running
            task_id = self.new_task_id()
            # A failed, finished or expired job of this key is replaced; a racing PUT makes the write fail.
            if self.state.create(key, task_id, fields, timeout=self.timeout,
                                 replacing=item["task_id"] if item else None):
                try:
                    self.send({"key": key, "task_id": task_id}, self.start_delay)
                except BaseException:
                    self.state.delete(key, task_id)  # no job will run: let a retried PUT start one
                    raise
                logger.info("%s: copy task %s queued (%d bytes)", key, task_id, source.size)
                return task_id
        raise DSSError(503, "service_unavailable", f"Could not record the copy of {key}; retry.",
                       headers={"Retry-After": "1"})

    def _repeat_of(self, item: dict | None, document: dict, conflict: DSSError) -> str | None:
        if item is None or not is_live(item, self.state.clock()):
            return None
        if same_file(item["document"], document):
            return item["task_id"]
        raise conflict

    def not_written_error(self, key: str) -> DSSError:
        """Why files/{uuid}.{version} is not there: still copying (404), or the recorded failure of its copy."""
        item = self.state.get(key)
        if item is None or item["status"] == SUCCEEDED:  # SUCCEEDED on the other replica: not replicated yet
            return DSSError(404, "not_found", "Cannot find file!")
        if item["status"] == FAILED:
            return DSSError(**item["failure"])
        if is_live(item, self.state.clock()):
            return DSSError(404, "not_found", f"Cannot find file! It is being copied (task {item['task_id']}, "
                                              f"{_progress(item)}); poll HEAD until it answers 200.")
        return DSSError(**copy_failed(_timed_out(item)).as_dict())


def _progress(item: dict) -> str:
    if item.get("parts_total"):
        return f"{item.get('parts_done', 0)} of {item['parts_total']} parts copied"
    if item.get("bytes_total"):
        return f"{item.get('bytes_done', 0)} of {item['bytes_total']} bytes copied"
    return "not started yet"


def _timed_out(item: dict) -> str:
    return f"The copy did not finish before its deadline, {iso_time(item['deadline'])}; repeat the PUT to retry."


# --- the job's steps ------------------------------------------------------------------------------------------

@dataclass
class CopyJob:
    """A job as one step sees it: its async-state item, as read when the step started."""
    item: dict
    deps: Any  # dss.events.runtime.Deps (settings, replicas, bus), which storage may not import

    @property
    def key(self) -> str:
        return self.item["key"]

    @property
    def task_id(self) -> str:
        return self.item["task_id"]

    @functools.cached_property
    def rs(self) -> ReplicaStore:
        return self.deps.replicas[self.item["replica"]]

    @property
    def document(self) -> dict:
        return self.item["document"]

    @property
    def source(self) -> dict:
        return self.item["source"]

    def checkpoint(self, *, add: dict[str, int] | None = None, **fields) -> dict:
        item = state_of(self.deps).update(self.key, self.task_id, add=add, **fields)
        if item is None:
            raise JobGone(self.key)
        self.item = item
        return item

    def check_deadline(self) -> None:
        if time.time() > self.item["deadline"]:
            raise CopyFailed(copy_failed(_timed_out(self.item)))


def state_of(deps) -> AsyncState:
    return AsyncState(deps.settings.async_state_table)


def _load(body: dict, deps) -> CopyJob:
    item = state_of(deps).get(body["key"])
    if item is None or item["task_id"] != body["task_id"] or item["status"] != RUNNING:
        raise JobGone(body["key"])
    job = CopyJob(item, deps)
    job.check_deadline()
    return job


def _s3_copier(job: CopyJob) -> S3PartCopy:
    src = job.source
    return S3PartCopy(job.rs.store.client, src["bucket"], src["key"], src["revision"], job.rs.bucket,
                      job.item["blob_key"])


def _s3_parts(job: CopyJob) -> list[PartRange]:
    size = job.source["size"]
    return part_ranges(size, s3_part_size(size))


def setup(body: dict, deps) -> dict:
    """Check the source is still the verified object; start the S3 upload. Returns the batches of parts to copy."""
    job = _load(body, deps)
    rs, src = job.rs, job.source
    parts = _s3_parts(job) if rs.replica is Replica.aws else []
    if not job.item.get("blob_stored"):  # else a run that stopped later already did this
        try:
            source = rs.store.head(src["bucket"], src["key"])
        except BlobNotFound as e:
            raise CopyFailed(SOURCE_CHANGED) from e
        if source.revision != src["revision"]:
            raise CopyFailed(SOURCE_CHANGED)
        if blob_present(rs, job.item["blob_key"], src["size"]):
            job.checkpoint(blob_stored=True)  # the same content was stored meanwhile, by another file
            if job.item.get("upload_id"):
                _s3_copier(job).abort(job.item["upload_id"])
        elif len(parts) > 1 and not job.item.get("upload_id"):
            upload_id = _s3_copier(job).start(source.content_type, source.metadata)
            if not state_of(deps).update(job.key, job.task_id, upload_id=upload_id, parts_total=len(parts),
                                         parts_done=0, if_absent="upload_id"):
                _s3_copier(job).abort(upload_id)  # a racing run of this job started one first; use that
    step = max(1, -(-len(parts) // MAX_BATCHES))
    numbers = [p.number for p in parts] or [1]
    batches = [{"key": job.key, "task_id": job.task_id, "first": numbers[i],
                "last": numbers[min(i + step, len(numbers)) - 1]} for i in range(0, len(numbers), step)]
    return {"key": job.key, "task_id": job.task_id, "batches": batches}


def copy_parts(body: dict, deps, budget_seconds: float | None = None) -> dict:
    """Copy the parts numbered body["first"]..body["last"] (all when absent) that are not copied yet.

    With `budget_seconds` (a Lambda's remaining time) it stops early and answers {"done": False}: call it again.
    """
    job = _load(body, deps)
    if job.item.get("blob_stored"):
        return {"done": True}
    stop_at = time.monotonic() + budget_seconds if budget_seconds else None
    try:
        if job.rs.replica is Replica.aws:
            done = _copy_s3_parts(job, body.get("first"), body.get("last"), stop_at)
        else:
            done = _rewrite_gcs(job, stop_at)
    except BlobChanged as e:
        raise CopyFailed(SOURCE_CHANGED) from e
    return {"done": done}


def _copy_s3_parts(job: CopyJob, first: int | None, last: int | None, stop_at: float | None) -> bool:
    parts, copier = _s3_parts(job), _s3_copier(job)
    if len(parts) == 1:
        try:
            copier.copy_whole()
        except BlobAlreadyExists:
            pass
        job.checkpoint(blob_stored=True, parts_total=1, parts_done=1, add={"part_copies": 1})
        return True
    upload_id = job.item["upload_id"]
    try:
        finished = copier.finished_parts(upload_id)
    except UploadGone:
        if blob_present(job.rs, job.item["blob_key"], job.source["size"]):  # completed before a crash
            job.checkpoint(blob_stored=True)
            return True
        upload_id = _restart_upload(job, upload_id)
        finished = {}
    todo = [p for p in parts if (first or 1) <= p.number <= (last or len(parts)) and p.number not in finished]
    lock, copied = threading.Lock(), set(finished)
    pause = job.deps.settings.async_copy_part_pause

    def copy(part: PartRange) -> None:
        job.check_deadline()
        if stop_at is not None and time.monotonic() > stop_at:
            return
        copier.copy_part(upload_id, part)
        with lock:
            copied.add(part.number)
            job.checkpoint(parts_done=len(copied), add={"part_copies": 1})
        if pause:
            time.sleep(pause)  # throttling, and a window for tests to stop a copy halfway

    with ThreadPoolExecutor(max_workers=max(1, job.deps.settings.copy_concurrency)) as pool:
        list(pool.map(copy, todo))
    logger.info("%s: parts %s copied, %d were already there", job.key, [p.number for p in todo], len(finished))
    return all(p.number in copied for p in todo)


def _restart_upload(job: CopyJob, gone: str) -> str:
    source = job.rs.store.head(job.source["bucket"], job.source["key"])
    upload_id = _s3_copier(job).start(source.content_type, source.metadata)
    logger.warning("%s: upload %s is gone; starting over with %s", job.key, gone, upload_id)
    if state_of(job.deps).update(job.key, job.task_id, upload_id=upload_id, parts_done=0,
                                 if_equal={"upload_id": gone}) is None:
        _s3_copier(job).abort(upload_id)
        raise JobGone(job.key)  # another run replaced it first; its message carries on
    return upload_id


def _rewrite_gcs(job: CopyJob, stop_at: float | None) -> bool:
    src = job.source
    rewrite = GCSRewrite(job.rs.store.client, src["bucket"], src["key"], src["revision"], job.rs.bucket,
                         job.item["blob_key"])
    token = job.item.get("rewrite_token")
    while True:
        job.check_deadline()
        try:
            token, done, total = rewrite.step(token)
        except BlobAlreadyExists:
            token = None
        else:
            job.checkpoint(rewrite_token=token, bytes_done=done, bytes_total=total)
        if token is None:
            job.checkpoint(blob_stored=True)
            return True
        if stop_at is not None and time.monotonic() > stop_at:
            return False


def finalize(body: dict, deps) -> dict:
    """Complete the S3 upload and verify what was stored against the file's checksums."""
    job = _load(body, deps)
    rs = job.rs
    if rs.replica is Replica.aws and job.item.get("upload_id") and not job.item.get("blob_stored"):
        _complete_s3_upload(job)
    blob = rs.store.head(rs.bucket, job.item["blob_key"])
    expected_size = job.document["size"]
    if blob.size != expected_size:
        raise CopyFailed(copy_failed(f"The copy has {blob.size} bytes, not {expected_size}."))
    if rs.replica is Replica.gcp and blob.native_checksum != job.document["crc32c"]:
        # fake-gcs-server ignores ifSourceGenerationMatch on rewrites, so locally a changed source shows up here.
        rs.store.delete(rs.bucket, blob.key)
        raise CopyFailed(_mismatch(job, "crc32c", blob.native_checksum))
    announce = getattr(rs.store, "announce", None)  # the local stand-in for the stores' write notifications
    if announce:
        announce(rs.bucket, blob)
    job.checkpoint(blob_stored=True)
    return {"key": job.key, "task_id": job.task_id}


def _mismatch(job: CopyJob, name: str, actual: str) -> Failure:
    try:
        changed = job.rs.store.head(job.source["bucket"], job.source["key"]).revision != job.source["revision"]
    except BlobNotFound:
        changed = True
    if changed:
        return SOURCE_CHANGED
    return Failure(422, "missing_checksum", f"The copy's {name} {actual} does not match the file's "
                                            f"{job.document[name.replace('_', '-')]}.")


def _complete_s3_upload(job: CopyJob) -> None:
    copier, upload_id = _s3_copier(job), job.item["upload_id"]
    parts = _s3_parts(job)
    try:
        etags = copier.finished_parts(upload_id)
    except UploadGone:
        if blob_present(job.rs, job.item["blob_key"], job.source["size"]):
            return  # completed by an earlier run that stopped before recording it
        raise
    missing = [p.number for p in parts if p.number not in etags]
    if missing:
        raise RuntimeError(f"{job.key}: parts {missing} are not copied yet")  # retried: copy_parts runs again
    composite = composite_etag([etags[p.number] for p in parts])
    if composite is None:
        # SeaweedFS's part-copy ETags are not MD5s; the copy is pinned to the source ETag verified at PUT time.
        logger.info("%s: part ETags are not MD5s; relying on the pinned source ETag", job.key)
    elif composite != job.document["s3-etag"]:
        copier.abort(upload_id)
        raise CopyFailed(_mismatch(job, "s3_etag", composite))
    try:
        copier.complete(upload_id, {p.number: etags[p.number] for p in parts})
    except BlobAlreadyExists:
        copier.abort(upload_id)  # the same content was stored meanwhile, by another file


def write_metadata(body: dict, deps) -> dict:
    """Write files/{uuid}.{version} create-only, then mark the job SUCCEEDED."""
    job = _load(body, deps)
    conflict = DSSError(409, "file_already_exists", f"{job.key} was written meanwhile with different content.")
    try:
        write_immutable_json(job.rs, job.key, job.document, conflict=conflict, same=same_file)
    except DSSError as e:
        raise CopyFailed(Failure(e.status, e.code, e.title)) from e
    state_of(deps).finish(job.key, job.task_id, SUCCEEDED)
    logger.info("%s: copy task %s succeeded", job.key, job.task_id)
    return {"key": job.key, "task_id": job.task_id}


def record_failure(body: dict, deps, failure: Failure) -> None:
    """Mark the job FAILED with its reason, and drop any unfinished S3 upload."""
    state = state_of(deps)
    item = state.get(body["key"])
    if item is None or item["task_id"] != body["task_id"]:
        return
    if state.finish(item["key"], item["task_id"], FAILED, failure):
        logger.warning("%s: copy task %s failed: %s %s", item["key"], item["task_id"], failure.code, failure.title)
    if item.get("upload_id") and not item.get("blob_stored"):
        try:
            _s3_copier(CopyJob(item, deps)).abort(item["upload_id"])
        except Exception:
            logger.warning("could not abort upload %s", item["upload_id"], exc_info=True)


STEPS = (setup, copy_parts, finalize, write_metadata)


def handle_message(body: dict, deps) -> None:
    """The copy queue's handler: run every step. Raising lets the message come back (the job resumes)."""
    attempt = 0
    try:
        job = _load(body, deps)
        attempt = job.checkpoint(add={"attempts": 1})["attempts"]
        for step in STEPS:
            step(body, deps)
    except JobGone:
        logger.info("%s: task %s is no longer running; message dropped", body.get("key"), body.get("task_id"))
    except CopyFailed as e:
        record_failure(body, deps, e.failure)
    except Exception as e:
        if attempt < deps.bus.topology.max_receives:
            raise
        record_failure(body, deps, copy_failed(f"The copy failed {attempt} times; last error: "
                                               f"{type(e).__name__}: {e}"))
