"""Large files: PUT /files answers 202 and copies in the background; HEAD answers 404 until the copy is done.

Most tests lower the threshold (an in-process app) so that a few MiB take the background path, and delay the
job's start so that what happens while it is queued is deterministic; the copies themselves run in the stack's
worker, as in production. test_files_api has the default 64 MiB threshold through the real API.
"""
from __future__ import annotations

import dataclasses
import os
import time
import uuid as uuidlib

import pytest

from dss.checksums import MiB, compute_checksums_of_bytes
from dss.events.bus import Bus, Topology
from dss.events.runtime import Deps
from dss.identifiers import file_key, new_version
from dss.storage import copy_jobs
from dss.storage.async_state import FAILED, RUNNING, SUCCEEDED, AsyncState
from dss.storage.copy_jobs import SOURCE_CHANGED, CopyFailed, CopyQueue
from dss.storage.files import put_file
from dss.storage.replicas import Replicas

from .helpers import assert_problem, downloaded_sha256, poll_while_404, stage_in_parts, wait_for

START_DELAY = 3  # seconds a queued copy waits: the window in which these tests act "during the copy"


@pytest.fixture
def async_client(in_process):
    """An app that copies anything above 1 MiB in the background, starting each copy START_DELAY s later."""
    return in_process(async_copy_threshold=MiB, async_copy_start_delay=START_DELAY)


@pytest.fixture
def deps(settings, replicas) -> Deps:
    return Deps(settings, replicas, Bus(Topology(settings.stage)))


@pytest.fixture
def state(settings) -> AsyncState:
    return AsyncState(settings.async_state_table)


def _put(client, api, uuid, version, source, creator_uid=4321):
    return client.put(f"/v1/files/{uuid}", params={"version": version}, headers=api.auth(),
                      json={"source_url": source, "creator_uid": creator_uid})


def _head(api, uuid, replica, version=None):
    return api.request("HEAD", f"/v1/files/{uuid}", params={"replica": replica, **({"version": version} if version
                                                                                   else {})})


def _get(api, uuid, replica, version):
    return api.request("GET", f"/v1/files/{uuid}", params={"replica": replica, "version": version})


def _settled(state: AsyncState, key: str, timeout: float = 10) -> dict:
    """The job's item once it is no longer RUNNING (the file metadata is written just before it is marked)."""
    return wait_for(lambda: (item := state.get(key))["status"] != RUNNING and item, timeout=timeout, interval=0.1,
                    what=f"the copy job {key} to settle")


def _held_back_queue(settings, sent: list, **kwargs) -> CopyQueue:
    """A queue whose jobs are not sent to the worker: the test runs their steps itself."""
    return CopyQueue(AsyncState(settings.async_state_table), lambda body, delay: sent.append(body),
                     threshold=kwargs.pop("threshold", MiB), timeout=kwargs.pop("timeout", 600), **kwargs)


def test_202_then_404_while_copying_then_200(api, async_client, stager, replica, new_uuid, version):
    data = os.urandom(3 * MiB)
    c = compute_checksums_of_bytes(data)
    uuid = new_uuid()
    r = _put(async_client, api, uuid, version, stager.stage(replica, data, content_type="application/x-big"))
    assert r.status_code == 202, r.text
    assert r.json()["version"] == version and uuidlib.UUID(r.json()["task_id"])

    # Queued: nothing is readable yet, on either replica, with or without a version.
    running = _head(api, uuid, replica, version)
    assert running.status_code == 404 and running.content == b""
    assert _head(api, uuid, replica).status_code == 404
    assert "being copied" in assert_problem(_get(api, uuid, replica, version), 404, "not_found")["title"]

    head = poll_while_404(lambda: _head(api, uuid, replica, version))
    assert head.status_code == 200
    assert {h: head.headers[h] for h in ("X-DSS-VERSION", "X-DSS-SIZE", "X-DSS-CONTENT-TYPE", "X-DSS-SHA256",
                                         "X-DSS-S3-ETAG", "X-DSS-CRC32C", "X-DSS-CREATOR-UID")} == {
        "X-DSS-VERSION": version, "X-DSS-SIZE": str(len(data)), "X-DSS-CONTENT-TYPE": "application/x-big",
        "X-DSS-SHA256": c.sha256, "X-DSS-S3-ETAG": c.s3_etag, "X-DSS-CRC32C": c.crc32c, "X-DSS-CREATOR-UID": "4321"}
    assert downloaded_sha256(api, uuid, replica, version) == c.sha256
    # Done: a repeat is an ordinary identical repeat.
    assert _put(async_client, api, uuid, version, stager.stage(replica, data, content_type="application/x-big")
                ).status_code == 200


def test_repeat_during_the_copy_is_the_same_task_and_a_conflict_is_409(api, in_process, stager, stack, state,
                                                                       new_uuid, version):
    client = in_process(async_copy_threshold=MiB, async_copy_start_delay=2 * START_DELAY)
    sqs = stack.aws_client("sqs")
    queue_url = sqs.get_queue_url(QueueName=Topology("local").queue("copy"))["QueueUrl"]

    def queued() -> int:
        return int(sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])[
            "Attributes"]["ApproximateNumberOfMessagesDelayed"])

    data = os.urandom(2 * MiB)
    uuid = new_uuid()
    sources = [stager.stage("aws", data) for _ in range(3)]
    before = queued()
    first = _put(client, api, uuid, version, sources[0])
    assert first.status_code == 202, first.text
    # The same document, from the same or another staging object: the same task, and no second job.
    for source in sources:
        again = _put(client, api, uuid, version, source)
        assert (again.status_code, again.json()) == (202, first.json())
    assert queued() == before + 1
    # Another document under the same uuid and version, whatever its size, while the copy runs.
    assert_problem(_put(client, api, uuid, version, stager.stage("aws", os.urandom(2 * MiB))), 409,
                   "file_already_exists")
    assert_problem(_put(client, api, uuid, version, stager.stage("aws", b"small")), 409, "file_already_exists")
    assert_problem(_put(client, api, uuid, version, sources[0], creator_uid=1), 409, "file_already_exists")

    assert poll_while_404(lambda: _head(api, uuid, "aws", version)).status_code == 200
    item = _settled(state, file_key(uuid, version))
    assert (item["status"], item["task_id"], item["attempts"]) == (SUCCEEDED, first.json()["task_id"], 1)
    assert _put(client, api, uuid, version, sources[1]).status_code == 200
    assert_problem(_put(client, api, uuid, version, stager.stage("aws", b"other")), 409, "file_already_exists")


def test_changed_staging_object_fails_the_copy_with_its_reason(api, async_client, stager, s3, gcs, settings,
                                                               replica, new_uuid, version):
    """The copy is pinned to the object verified at PUT time; if it changes, HEAD and GET tell why."""
    data = os.urandom(2 * MiB)
    uuid = new_uuid()
    source = stager.stage(replica, data)
    first = _put(async_client, api, uuid, version, source)
    assert first.status_code == 202, first.text
    bucket, key = source.split("/", 3)[2:]
    if replica == "aws":  # right after the 202, before the delayed job starts
        s3.put_object(Bucket=bucket, Key=key, Body=os.urandom(2 * MiB))
    else:
        gcs.bucket(bucket).blob(key).upload_from_string(os.urandom(2 * MiB))

    failed = poll_while_404(lambda: _head(api, uuid, replica, version))
    assert failed.status_code == 422 and failed.content == b""
    body = assert_problem(_get(api, uuid, replica, version), 422, "missing_checksum")
    assert "changed during the copy" in body["title"]
    # The failure is recorded per file version, so the other replica says the same.
    other = "gcp" if replica == "aws" else "aws"
    assert _head(api, uuid, other, version).status_code == 422
    # Staged again, the repeated PUT starts a new copy, which succeeds.
    retry = _put(async_client, api, uuid, version, stager.stage(replica, data))
    assert retry.status_code == 202 and retry.json()["task_id"] != first.json()["task_id"]
    assert poll_while_404(lambda: _head(api, uuid, replica, version)).status_code == 200
    assert downloaded_sha256(api, uuid, replica, version) == compute_checksums_of_bytes(data).sha256


def test_change_during_the_copy_is_caught(replicas, settings, deps, stager, s3, gcs, api, replica, new_uuid,
                                          version):
    """A change after setup: S3 refuses the pinned part copy; the GCS emulator copies, and finalize notices."""
    sent = []
    data = os.urandom(2 * MiB)
    uuid = new_uuid()
    source = stager.stage(replica, data)
    result = put_file(replicas, uuid, version, source, 1, _held_back_queue(settings, sent))
    assert result.status == 202 and sent == [{"key": file_key(uuid, version), "task_id": result.task_id}]
    copy_jobs.setup(sent[0], deps)
    bucket, key = source.split("/", 3)[2:]
    if replica == "aws":
        s3.put_object(Bucket=bucket, Key=key, Body=os.urandom(2 * MiB))
    else:
        gcs.bucket(bucket).blob(key).upload_from_string(os.urandom(2 * MiB))
    with pytest.raises(CopyFailed) as failed:
        copy_jobs.copy_parts(sent[0], deps)
        copy_jobs.finalize(sent[0], deps)
    assert failed.value.failure == SOURCE_CHANGED
    rs = replicas[replica]
    assert not rs.store.exists(rs.bucket, compute_checksums_of_bytes(data).blob_key())
    copy_jobs.record_failure(sent[0], deps, failed.value.failure)
    assert_problem(_get(api, uuid, replica, version), 422, "missing_checksum")


def test_fail_fast_checks_stay_synchronous(api, async_client, stager, state, replica, new_uuid, version):
    data = os.urandom(2 * MiB)
    native = "s3_etag" if replica == "aws" else "crc32c"
    lie = {**compute_checksums_of_bytes(data).as_dict(), native: getattr(compute_checksums_of_bytes(b"x"), native)}
    uuid = new_uuid()
    assert_problem(_put(async_client, api, uuid, version, stager.stage(replica, data, checksums=lie)), 422,
                   "missing_checksum")
    assert_problem(_put(async_client, api, uuid, version, stager.stage(replica, data, drop=["sha1"])), 422,
                   "missing_checksum")
    assert state.get(file_key(uuid, version)) is None


def test_content_already_stored_is_registered_synchronously(api, async_client, stager, replica, new_uuid):
    data = os.urandom(2 * MiB)
    first, version = new_uuid(), new_version()
    assert _put(async_client, api, first, version, stager.stage(replica, data)).status_code == 202
    assert poll_while_404(lambda: _head(api, first, replica, version)).status_code == 200
    r = _put(async_client, api, new_uuid(), version, stager.stage(replica, data))
    assert (r.status_code, r.json()) == (201, {"version": version})


def test_a_copy_past_its_deadline_is_failed(api, replicas, settings, deps, stager, state, new_uuid, version):
    sent = []
    uuid = new_uuid()
    source = stager.stage("aws", os.urandom(2 * MiB))
    result = put_file(replicas, uuid, version, source, 1, _held_back_queue(settings, sent, timeout=1))
    assert result.status == 202
    time.sleep(1.5)
    assert _head(api, uuid, "aws", version).status_code == 500  # never ran: the readers tell from the deadline
    copy_jobs.handle_message(sent[0], deps)
    assert state.get(file_key(uuid, version))["status"] == FAILED
    assert "deadline" in assert_problem(_get(api, uuid, "aws", version), 500, "copy_failed")["title"]
    retry = put_file(replicas, uuid, version, source, 1, _held_back_queue(settings, sent))
    assert retry.status == 202 and retry.task_id != result.task_id


def test_exhausted_retries_record_the_last_error(api, replicas, settings, stager, state, new_uuid, version):
    sent = []
    uuid = new_uuid()
    assert put_file(replicas, uuid, version, stager.stage("aws", os.urandom(2 * MiB)), 1,
                    _held_back_queue(settings, sent)).status == 202
    broken = dataclasses.replace(settings, s3_bucket="no-such-bucket-for-dss")
    deps = Deps(broken, Replicas(broken), Bus(Topology(settings.stage, max_receives=2)))
    with pytest.raises(Exception):
        copy_jobs.handle_message(sent[0], deps)  # the first attempt fails and will be retried
    assert state.get(file_key(uuid, version))["status"] == RUNNING
    copy_jobs.handle_message(sent[0], deps)  # the last attempt records why
    item = state.get(file_key(uuid, version))
    assert (item["status"], item["attempts"], item["failure"]["code"]) == (FAILED, 2, "copy_failed")
    body = assert_problem(_get(api, uuid, "aws", version), 500, "copy_failed")
    assert "2 times" in body["title"] and "CopyObject" in body["title"]


@pytest.mark.slow
def test_worker_killed_mid_copy_resumes_and_converges(api, stack, s3, settings, state, new_uuid, version):
    """SIGKILL the worker between two part copies: the message comes back, and the copy resumes, not restarts."""
    data = os.urandom(MiB) * 65  # two 64 MiB parts at the default threshold, as the hca client stages them
    c = compute_checksums_of_bytes(data)
    key = stage_in_parts(s3, settings.s3_staging_bucket, data, part_size=64 * MiB)
    sqs = stack.aws_client("sqs")
    queue_url = sqs.get_queue_url(QueueName=Topology("local").queue("copy"))["QueueUrl"]
    saved_env = dict(stack.extra_env)
    quick = {"DSS_QUEUE_VISIBILITY_SECONDS": "3"}
    stack.kill("worker")
    try:
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": "3"})
        # One part at a time, with a long pause after each: the kill lands after part 1 and before part 2.
        stack.extra_env.update(quick, DSS_ASYNC_COPY_PART_PAUSE_SECONDS="60", DSS_COPY_CONCURRENCY="1")
        stack.respawn("worker")
        uuid = new_uuid()
        r = api.put_file(uuid, version, f"s3://{settings.s3_staging_bucket}/{key}")
        assert r.status_code == 202, r.text
        job_key = file_key(uuid, version)
        wait_for(lambda: (state.get(job_key) or {}).get("parts_done", 0) >= 1, timeout=60, interval=0.05,
                 what="the first part to be copied")
        stack.kill("worker")
        halfway = state.get(job_key)
        assert (halfway["status"], halfway["parts_total"], halfway["parts_done"]) == (RUNNING, 2, 1)
        assert _head(api, uuid, "aws", version).status_code == 404

        stack.extra_env.clear()
        stack.extra_env.update(saved_env, **quick)
        stack.respawn("worker")
        head = poll_while_404(lambda: _head(api, uuid, "aws", version), timeout=90)
        assert head.status_code == 200 and head.headers["X-DSS-SHA256"] == c.sha256
        done = _settled(state, job_key)
        # The same upload, resumed: part 1 was not copied again, and nothing is left behind.
        assert (done["status"], done["attempts"], done["upload_id"], done["part_copies"]) == (
            SUCCEEDED, 2, halfway["upload_id"], 2)
        uploads = s3.list_multipart_uploads(Bucket=settings.s3_bucket, Prefix=c.blob_key()).get("Uploads", [])
        assert uploads == []
        assert downloaded_sha256(api, uuid, "aws", version) == c.sha256
    finally:
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": "60"})
        if "worker" in stack.pids():
            stack.kill("worker")
        stack.extra_env.clear()
        stack.extra_env.update(saved_env)
        stack.respawn("worker")
