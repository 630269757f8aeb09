"""A whole-stack restart, as `make run` after a crash: everything acknowledged before it is still there after it,
and the work still queued when it went down is done without anyone running check_replicas.

This module runs stacks of its own on one root (not the session's), and talks to each through its own clients.
What the stack re-queues on start is described in dss.local.reconcile.
"""
from __future__ import annotations

import os
import signal
import time
import uuid as uuidlib

import psutil
import pytest

from dss.config import Settings
from dss.identifiers import ObjectId, file_key, new_version
from dss.local.stack import LocalStack
from dss.notify.delivery import DELIVERED, DeliveryLedger
from dss.storage.async_state import RUNNING, SUCCEEDED, AsyncState

from .conftest import Stager
from .helpers import ApiClient, poll_while_404, wait_for

MiB = 1024 * 1024
# Files from 1 MiB on are copied in the background (the 202 path), so a copy job is pending at the crash.
STACK_ENV = {"DSS_QUEUE_VISIBILITY_SECONDS": "10", "DSS_BACKOFF_BASE_SECONDS": "1",
             "DSS_ASYNC_COPY_THRESHOLD": str(MiB)}


def start(root) -> tuple[LocalStack, ApiClient, Settings]:
    stack = LocalStack(root, pick_ports=True, with_api=True, extra_env=STACK_ENV)
    stack.stop_timeout = 3.0
    stack.start()
    settings = Settings.from_env(stack.env())
    return stack, ApiClient(stack.env()["DSS_API_URL"].rstrip("/"), stack, settings), settings


def crash(stack: LocalStack) -> None:
    """kill -9 every child, as a power cut of the launcher's children would; then let the stack reap them."""
    processes = [psutil.Process(pid) for pid in stack.pids().values()]
    for process in processes:
        os.killpg(process.pid, signal.SIGKILL)
    psutil.wait_procs(processes, timeout=10)
    stack.stop()


def put_file(api: ApiClient, stager: Stager, size: int) -> tuple[str, str, int]:
    uuid, version = str(uuidlib.uuid4()), new_version()
    r = api.put_file(uuid, version, stager.stage("aws", os.urandom(size)))
    assert r.status_code == (202 if size > MiB else 201), r.text  # above the threshold, copied in the background
    return uuid, version, r.status_code


@pytest.mark.slow
def test_a_restarted_stack_keeps_what_was_acknowledged_and_finishes_what_was_queued(tmp_path):
    root = tmp_path / "stack"
    first, api, settings = start(root)
    try:
        owner = api.auth(email="restart@example.org")
        r = api.request("PUT", "/v1/subscriptions", params={"replica": "aws"}, auth=owner,
                        json={"callback_url": "https://example.org/hook", "jmespath_query": "event_type=='CREATE'"})
        assert r.status_code == 201, r.text
        subscription = r.json()
        collection, collection_version = str(uuidlib.uuid4()), new_version()
        r = api.request("PUT", "/v1/collections", params={"replica": "aws", "uuid": collection,
                                                          "version": collection_version}, auth=owner,
                        json={"name": "kept", "description": "survives a restart", "details": {}, "contents": []})
        assert r.status_code == 201, r.text
        ledger = DeliveryLedger(settings.notifications_table, first.aws_client("dynamodb"))
        notification = str(uuidlib.uuid4())
        ledger.claim(notification, subscription["uuid"], 60, time.time())
        ledger.mark_delivered(notification, time.time())

        # With the worker gone, all that follows waits in the queues when the stack goes down.
        first.kill("worker")
        stager = Stager(first.s3_client(), None, settings)
        files = [put_file(api, stager, 1000 + i) for i in range(6)]
        assert {status for *_, status in files} == {201}
        large_uuid, large_version, status = put_file(api, stager, 2 * MiB)
        assert status == 202
        bundle, bundle_version = str(uuidlib.uuid4()), new_version()
        r = api.request("PUT", f"/v1/bundles/{bundle}", params={"replica": "aws", "version": bundle_version},
                        auth=True, json={"creator_uid": 1, "files": [
                            {"uuid": u, "version": v, "name": f"f{i}", "indexed": False}
                            for i, (u, v, _) in enumerate(files)]})
        assert r.status_code == 201, r.text
        copy_job = AsyncState(settings.async_state_table, first.aws_client("dynamodb")).get(
            file_key(large_uuid, large_version))
        assert copy_job["status"] == RUNNING
    finally:
        crash(first)

    second, api, settings = start(root)
    try:
        headers = api.auth(email="restart@example.org")
        r = api.request("GET", f"/v1/subscriptions/{subscription['uuid']}", params={"replica": "aws"}, auth=headers)
        assert r.status_code == 200, r.text
        assert r.json() == subscription
        r = api.request("GET", "/v1/collections", params={"per_page": 100}, auth=headers)
        assert r.status_code == 200, r.text
        assert {"uuid": collection, "version": collection_version} in [
            {"uuid": c["uuid"], "version": c["version"]} for c in r.json()["collections"]]
        ledger = DeliveryLedger(settings.notifications_table, second.aws_client("dynamodb"))
        assert ledger.claim(notification, subscription["uuid"], 60, time.time()) == DELIVERED

        # The copy job resumes: the same task finishes.
        head = poll_while_404(lambda: api.request("HEAD", f"/v1/files/{large_uuid}",
                                                  params={"replica": "aws", "version": large_version}), timeout=90)
        assert head.status_code == 200, head.text
        done = AsyncState(settings.async_state_table, second.aws_client("dynamodb")).get(
            file_key(large_uuid, large_version))
        assert (done["status"], done["task_id"]) == (SUCCEEDED, copy_job["task_id"])

        # Replication catches up with everything written on aws while the worker was down.
        keys = [ObjectId("files", u, v).to_key() for u, v, _ in files]
        keys += [ObjectId("bundles", bundle, bundle_version).to_key(), file_key(large_uuid, large_version)]
        gcp = second.gcs_client().bucket(settings.gs_bucket)
        wait_for(lambda: all(gcp.blob(key).exists() for key in keys), timeout=120, interval=1,
                 what="everything written before the restart to reach gcp")
        r = api.request("GET", f"/v1/bundles/{bundle}", params={"replica": "gcp", "version": bundle_version})
        assert r.status_code == 200, r.text
        # The bundle's index event was lost with the queues too: it is indexed and journaled all the same.
        wait_for(lambda: api.request("GET", f"/v1/events/{bundle}",
                                     params={"replica": "aws", "version": bundle_version}).status_code == 200,
                 timeout=60, interval=1, what="the bundle's event in the aws journal")
        assert "reconciliation done" in (second.logs_dir / "reconcile.log").read_text()
    finally:
        second.stop()
