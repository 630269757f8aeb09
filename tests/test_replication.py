"""Replication between the replicas, through the running local stack: its worker replicates on its own.

Direct calls of replicate_object build the cases the worker would race with (objects written without write
events, see helpers.quiet_replicas), so an outcome can be asserted exactly.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import uuid as uuidlib

import boto3
import pytest

import dss.replication

from dss.bundle_manifest import bundle_document, manifest_entry
from dss.checksums import Checksummer, checksums_from_blob_key, compute_checksums_of_bytes, s3_part_size
from dss.events.bus import Bus, Topology
from dss.events.records import gcs_object, s3_record
from dss.events.runtime import Deps, NotReady
from dss.identifiers import ObjectId, new_version
from dss.replication import REPLICATED_LINE, handle_message, replicate_object

from .helpers import (downloaded_sha256, put_file_quietly, quiet_replicas, stage_in_parts, unfinished_parts,
                      wait_for)

MiB = 1024 * 1024
OTHER = {"aws": "gcp", "gcp": "aws"}
DEAD_LETTERS = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "dead_letters.py"


@pytest.fixture(scope="module")
def deps(settings, replicas) -> Deps:
    return Deps(settings, replicas, Bus(Topology(settings.stage)))


@pytest.fixture(scope="module")
def quiet(replicas):
    return quiet_replicas(replicas)


def head_file(api, uuid, replica):
    return api.request("HEAD", f"/v1/files/{uuid}", params={"replica": replica})


def dss_headers(response) -> dict:
    return {k: v for k, v in response.headers.items() if k.upper().startswith("X-DSS-")}


def sha256_of(rs, key) -> str:
    digest = hashlib.sha256()
    for chunk in rs.store.open(rs.bucket, key):
        digest.update(chunk)
    return digest.hexdigest()


def worker_log(stack) -> pathlib.Path:
    return stack.logs_dir / "worker.log"


def replicated_lines(stack, key: str) -> list[dict]:
    text = worker_log(stack).read_text(errors="replace")
    return [m.groupdict() for m in REPLICATED_LINE.finditer(text) if m["key"] == key]


def put_new_file(api, stager, replica, data, content_type="application/octet-stream"):
    uuid, version = str(uuidlib.uuid4()), new_version()
    r = api.put_file(uuid, version, stager.stage(replica, data, content_type=content_type))
    assert r.status_code == 201, r.text  # small: stored at once
    return uuid, version


def put_bundle(api, replica, files):
    uuid, version = str(uuidlib.uuid4()), new_version()
    r = api.request("PUT", f"/v1/bundles/{uuid}", params={"replica": replica, "version": version}, auth=True,
                    json={"creator_uid": 12, "files": [{"uuid": u, "version": v, "name": f"file{i}", "indexed": False}
                                                       for i, (u, v) in enumerate(files)]})
    assert r.status_code == 201, r.text
    return uuid, version


def get_bundle(api, uuid, replica, **params):
    return api.request("GET", f"/v1/bundles/{uuid}", params={"replica": replica, **params})


# --- through the worker --------------------------------------------------------------------------------------

def test_files_replicate_both_ways(api, stager, stack, replica):
    data = os.urandom(3000)
    uuid, version = put_new_file(api, stager, replica, data, content_type="application/x-replica-test")
    source = head_file(api, uuid, replica)
    assert source.status_code == 200
    copy = wait_for(lambda: (r := head_file(api, uuid, OTHER[replica])).status_code == 200 and r,
                    what=f"file {uuid} to reach {OTHER[replica]}")
    assert dss_headers(copy) == dss_headers(source)
    digests = {downloaded_sha256(api, uuid, r) for r in (replica, OTHER[replica])}
    assert digests == {hashlib.sha256(data).hexdigest()}
    # One parseable line per replicated object, with its lag.
    lines = wait_for(lambda: replicated_lines(stack, f"files/{uuid}.{version}"), timeout=5,
                     what="the replication log line")
    assert lines[0]["source"] == replica and lines[0]["dest"] == OTHER[replica]
    assert 0 <= float(lines[0]["lag"]) < 30


def test_a_burst_of_writes_from_several_clients_replicates_and_none_is_retried(api, stager, stack, settings):
    """Several clients write at once through the API: every file reaches the other replica, each metadata copy is
    made once, and none of the burst's messages is left behind or retried. (The stack's sync queue as a whole need
    not empty: other test files on this stack leave bundles waiting for files that never come.)"""
    from concurrent.futures import ThreadPoolExecutor

    from .helpers import ApiClient

    def client(n: int) -> list[tuple[str, str, bytes]]:
        own = ApiClient(api.base_url, stack, settings)  # a session per client thread
        written = []
        for _ in range(5):
            data = os.urandom(500 + n)
            written.append((*put_new_file(own, stager, "aws", data), data))
        return written

    with ThreadPoolExecutor(6) as pool:
        files = [f for written in pool.map(client, range(6)) for f in written]
    for uuid, version, data in files:
        wait_for(lambda: head_file(api, uuid, "gcp").status_code == 200, timeout=120,
                 what=f"file {uuid} to reach gcp")
        assert downloaded_sha256(api, uuid, "gcp", version) == hashlib.sha256(data).hexdigest()
    for uuid, version, _ in files:
        lines = replicated_lines(stack, f"files/{uuid}.{version}")
        assert [(line["source"], line["dest"]) for line in lines] == [("aws", "gcp")], lines
    log = worker_log(stack).read_text(errors="replace")
    retried = [line for line in log.splitlines() if ("failed" in line or "not ready" in line)
               and any(uuid in line for uuid, _, _ in files)]
    assert retried == []


@pytest.fixture
def private_events(settings):
    """Deps whose write announcements go to topics and queues of their own stage (the stack's worker polls
    others), so a test can read every event a replication makes; the buckets are the stack's."""
    import dataclasses

    from dss.storage.replicas import Replicas
    stage = f"echotest{uuidlib.uuid4().hex[:8]}"
    private = dataclasses.replace(settings, stage=stage, publish_write_events=True)
    bus = Bus(Topology(stage))
    bus.ensure()
    try:
        yield Deps(private, Replicas(private), bus)
    finally:
        for name in bus.topology.queues:
            for queue in (bus.topology.queue(name), bus.topology.dead_letter_queue(name)):
                bus.sqs.delete_queue(QueueUrl=bus.queue_url(queue))
        for replica in ("aws", "gcp"):
            bus.sns.delete_topic(TopicArn=bus.topic_arn(bus.topology.topic(replica)))


def received_keys(bus: Bus, consumer: str) -> list[str]:
    """The object keys of every event in a consumer's queue (received and deleted)."""
    from dss.events.records import object_events
    url, keys = bus.queue_url(bus.topology.queue(consumer)), []
    while messages := bus.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            keys += [event.key for event in object_events(message["Body"])]
            bus.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return sorted(keys)


def test_copies_of_blobs_and_files_make_no_echo_and_the_indexer_hears_only_of_bundles(private_events, quiet,
                                                                                      replicas):
    f = put_file_quietly(replicas, "aws", os.urandom(300), version=new_version())
    aws = quiet["aws"]
    entry = manifest_entry({"uuid": f["uuid"], "version": f["version"], "name": "f0", "indexed": False},
                           json.loads(aws.store.get(aws.bucket, f["metadata_key"])))
    bundle_key = ObjectId("bundles", str(uuidlib.uuid4()), f["version"]).to_key()
    aws.store.put(aws.bucket, bundle_key, json.dumps(bundle_document([entry], version=f["version"],
                                                                      creator_uid=3)).encode(),
                  content_type="application/json")
    for key in (f["blob_key"], f["metadata_key"], bundle_key):
        assert replicate_object(private_events, "aws", "gcp", key) == "copied"
    # Only the bundle's copy is announced on gcp's topic: the other replica's indexer reads it.
    assert received_keys(private_events.bus, "sync") == [bundle_key]
    assert received_keys(private_events.bus, "index") == [bundle_key]
    # A write through the API's announcing store reaches the replication daemon whatever it is, the indexer only
    # if it is a bundle.
    rs = private_events.replicas["aws"]
    other = put_file_quietly(replicas, "aws", os.urandom(40), version=new_version())
    rs.store.put(rs.bucket, other["metadata_key"], aws.store.get(aws.bucket, other["metadata_key"]),
                 content_type="application/json")
    rs.store.put(rs.bucket, bundle_key, aws.store.get(aws.bucket, bundle_key), content_type="application/json")
    assert received_keys(private_events.bus, "sync") == sorted([other["metadata_key"], bundle_key])
    assert received_keys(private_events.bus, "index") == [bundle_key]


def test_bundles_replicate_after_their_files(api, stager):
    files = [put_new_file(api, stager, "aws", os.urandom(100)) for _ in range(3)]
    uuid, version = put_bundle(api, "aws", files)
    copy = wait_for(lambda: (r := get_bundle(api, uuid, "gcp")).status_code == 200 and r,
                    what="the bundle to reach gcp")
    for file_uuid, _ in files:  # visible only after every one of its files
        assert head_file(api, file_uuid, "gcp").status_code == 200
    assert copy.json() == get_bundle(api, uuid, "aws").json()


def test_bundle_written_on_gcp_waits_for_files_from_aws(api, stager):
    """PUT /bundles on gcp names files just uploaded through aws: it waits for them to replicate."""
    files = [put_new_file(api, stager, "aws", os.urandom(100)) for _ in range(2)]
    uuid, version = put_bundle(api, "gcp", files)
    wait_for(lambda: get_bundle(api, uuid, "aws").status_code == 200, what="the bundle to reach aws")


def test_tombstones_replicate(api, stager):
    uuid, _ = put_bundle(api, "aws", [put_new_file(api, stager, "aws", b"soon dead")])
    wait_for(lambda: get_bundle(api, uuid, "gcp").status_code == 200, what="the bundle to reach gcp")
    r = api.request("DELETE", f"/v1/bundles/{uuid}", params={"replica": "aws"}, auth=True,
                    json={"reason": "replication test"})
    assert r.status_code == 200, r.text
    wait_for(lambda: get_bundle(api, uuid, "gcp").status_code == 404, what="the tombstone to reach gcp")


def test_collections_replicate(api, stager):
    file_uuid, file_version = put_new_file(api, stager, "gcp", b'{"a": 1}', content_type="application/json")
    uuid, version = str(uuidlib.uuid4()), new_version()
    body = {"name": "replicated", "description": "d", "details": {"k": "v"},
            "contents": [{"type": "file", "uuid": file_uuid, "version": file_version}]}
    r = api.request("PUT", "/v1/collections", params={"replica": "gcp", "uuid": uuid, "version": version},
                    json=body, auth=True)
    assert r.status_code == 201, r.text

    def on_aws():
        return api.request("GET", f"/v1/collections/{uuid}", params={"replica": "aws"}, auth=True)
    copy = wait_for(lambda: (r := on_aws()).status_code == 200 and r, what="the collection to reach aws")
    assert copy.json() == api.request("GET", f"/v1/collections/{uuid}", params={"replica": "gcp"}, auth=True).json()


def test_duplicated_events_converge(deps, quiet, replicas):
    """Each cloud delivers at least once: the same events, twice, through the queue, leave one identical copy."""
    f = put_file_quietly(replicas, "gcp", os.urandom(5000), version=new_version())
    gs = quiet["gcp"]
    events = [gcs_object(gs.bucket, key, 1) for key in (f["blob_key"], f["metadata_key"])] * 2
    for event in events:
        deps.bus.publish_object_event("gcp", event)
    aws = quiet["aws"]
    wait_for(lambda: aws.store.exists(aws.bucket, f["metadata_key"]), what="the file to reach aws")
    for key in (f["blob_key"], f["metadata_key"]):
        assert aws.store.get(aws.bucket, key) == gs.store.get(gs.bucket, key)
        assert aws.store.head(aws.bucket, key).content_type == gs.store.head(gs.bucket, key).content_type


def test_operator_messages_and_foreign_keys(deps, quiet, replicas):
    f = put_file_quietly(replicas, "aws", b"by operator", version=new_version())
    for key in (f["blob_key"], f["metadata_key"]):
        handle_message({"source_replica": "aws", "dest_replica": "gcp", "key": key}, deps)
    gs = quiet["gcp"]
    assert gs.store.get(gs.bucket, f["metadata_key"]) == quiet["aws"].store.get(quiet["aws"].bucket,
                                                                               f["metadata_key"])
    # Not DSS objects, or not in the primary bucket: nothing happens.
    assert replicate_object(deps, "aws", "gcp", f["blob_key"] + ".part1") == "skipped"
    assert replicate_object(deps, "aws", "gcp", "cache/something") == "skipped"
    assert replicate_object(deps, "aws", "gcp", "files/not-a-uuid.2020") == "skipped"
    g = put_file_quietly(replicas, "aws", b"in the wrong bucket", version=new_version())
    handle_message(s3_record(quiet["aws"].checkout_bucket, g["metadata_key"], 10, ""), deps)
    handle_message({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectRemoved:Delete"}]}, deps)
    assert not gs.store.exists(gs.bucket, g["metadata_key"]) and not gs.store.exists(gs.bucket, g["blob_key"])


# --- direct calls: ordering and idempotency ------------------------------------------------------------------

def test_a_bundle_never_precedes_its_files(deps, quiet, replicas, monkeypatch):
    version = new_version()
    files = [put_file_quietly(replicas, "aws", os.urandom(200), version=version) for _ in range(2)]
    aws, gcp = quiet["aws"], quiet["gcp"]
    entries = [manifest_entry({"uuid": f["uuid"], "version": f["version"], "name": f"f{i}", "indexed": False},
                              json.loads(aws.store.get(aws.bucket, f["metadata_key"])))
               for i, f in enumerate(files)]
    bundle_key = ObjectId("bundles", str(uuidlib.uuid4()), version).to_key()
    aws.store.put(aws.bucket, bundle_key, json.dumps(bundle_document(entries, version=version, creator_uid=3)).encode(),
                  content_type="application/json")
    tombstone_key = ObjectId("bundles", ObjectId.from_key(bundle_key).uuid, tombstone=True).to_key()
    aws.store.put(aws.bucket, tombstone_key, b'{"email": "x", "reason": "y", "admin_deleted": true}',
                  content_type="application/json")

    with pytest.raises(NotReady, match="files/"):
        replicate_object(deps, "aws", "gcp", bundle_key)
    with monkeypatch.context() as patch:
        patch.setattr(dss.replication, "SMALL_BLOB_MAX", 100)
        with pytest.raises(NotReady, match="blobs/"):  # a file waits for its large blob's own copy
            replicate_object(deps, "aws", "gcp", files[0]["metadata_key"])
    assert not gcp.store.exists(gcp.bucket, files[0]["metadata_key"])
    assert replicate_object(deps, "aws", "gcp", tombstone_key) == "copied"  # a tombstone needs nothing
    assert replicate_object(deps, "aws", "gcp", files[0]["blob_key"]) == "copied"
    assert replicate_object(deps, "aws", "gcp", files[0]["metadata_key"]) == "copied"
    # A small blob is brought along by its file, before the file; its own event finds it there.
    assert replicate_object(deps, "aws", "gcp", files[1]["metadata_key"]) == "copied"
    assert gcp.store.get(gcp.bucket, files[1]["blob_key"]) == aws.store.get(aws.bucket, files[1]["blob_key"])
    assert replicate_object(deps, "aws", "gcp", files[1]["blob_key"]) == "present"
    assert not gcp.store.exists(gcp.bucket, bundle_key)
    assert replicate_object(deps, "aws", "gcp", bundle_key) == "copied"
    for key in [bundle_key, tombstone_key] + [f[k] for f in files for k in ("blob_key", "metadata_key")]:
        assert gcp.store.get(gcp.bucket, key) == aws.store.get(aws.bucket, key)
        assert replicate_object(deps, "aws", "gcp", key) == "present"  # idempotent
        assert replicate_object(deps, "gcp", "aws", key) == "present"  # and the echo stops


def test_a_collection_waits_for_what_it_links(deps, quiet, replicas):
    f = put_file_quietly(replicas, "gcp", b'{"x": [1]}', version=new_version(), content_type="application/json")
    gcp = quiet["gcp"]
    key = ObjectId("collections", str(uuidlib.uuid4()), new_version()).to_key()
    document = {"name": "c", "description": "d", "details": {}, "owner": "dev@example.org",
                "contents": [{"type": "file", "uuid": f["uuid"], "version": f["version"]},
                             {"type": "x", "uuid": f["uuid"], "version": f["version"], "fragment": "/x/0"}]}
    gcp.store.put(gcp.bucket, key, json.dumps(document).encode(), content_type="application/json")
    with pytest.raises(NotReady, match=f["metadata_key"]):
        replicate_object(deps, "gcp", "aws", key)
    for k in (f["blob_key"], f["metadata_key"], key):
        assert replicate_object(deps, "gcp", "aws", k) == "copied"


def test_a_dependency_missing_everywhere_is_an_error(deps, quiet):
    """File metadata without a blob, in the source too, will never become ready: that fails (and dead-letters)."""
    from dss.replication import ReplicationError
    from dss.file_metadata import file_metadata_document
    aws = quiet["aws"]
    version = new_version()
    key = ObjectId("files", str(uuidlib.uuid4()), version).to_key()
    document = file_metadata_document(compute_checksums_of_bytes(os.urandom(10)), size=10,
                                      content_type="text/plain", creator_uid=1, version=version)
    aws.store.put(aws.bucket, key, json.dumps(document).encode(), content_type="application/json")
    with pytest.raises(ReplicationError, match="missing in the source"):
        replicate_object(deps, "aws", "gcp", key)


def test_a_blob_of_the_wrong_size_is_replaced(deps, quiet):
    data = os.urandom(4000)
    key = compute_checksums_of_bytes(data).blob_key()
    aws, gcp = quiet["aws"], quiet["gcp"]
    aws.store.put(aws.bucket, key, data)
    gcp.store.put(gcp.bucket, key, data[:1000])  # a partial copy, as the reference's sync bugs left
    assert replicate_object(deps, "aws", "gcp", key) == "copied"
    assert gcp.store.get(gcp.bucket, key) == data


def test_a_copy_that_fails_verification_is_deleted(deps, quiet):
    """The bytes under a blob key must have the checksums the key names; a copy that does not is removed."""
    from dss.replication import ReplicationError
    data = os.urandom(4000)
    key = compute_checksums_of_bytes(os.urandom(4000)).blob_key()  # checksums of other bytes
    gcp, aws = quiet["gcp"], quiet["aws"]
    gcp.store.put(gcp.bucket, key, data)
    with pytest.raises(ReplicationError, match="verification"):
        replicate_object(deps, "gcp", "aws", key)
    assert not aws.store.exists(aws.bucket, key)


# --- blobs in parts, at a small scale (in this process, with 5 MiB parts) --------------------------------------

@pytest.fixture
def small_parts(monkeypatch):
    """Blobs over 1 MiB go in 5 MiB parts: blob keys must then carry the ETag of 5 MiB parts."""
    monkeypatch.setattr(dss.replication, "SMALL_BLOB_MAX", MiB)
    monkeypatch.setattr(dss.replication, "s3_part_size", lambda size: 5 * MiB)

    def blob(data: bytes) -> str:
        summer = Checksummer(part_size=5 * MiB)
        summer.update(data)
        return summer.finish().blob_key()
    return blob


@pytest.mark.parametrize("source", ["aws", "gcp"])
def test_parts_are_resumed_assembled_and_verified(deps, quiet, small_parts, source, caplog):
    data = os.urandom(11 * MiB)
    key = small_parts(data)
    src, dst = quiet[source], quiet[OTHER[source]]
    src.store.put(src.bucket, key, data)
    # A crashed copy left part 2 behind.
    dst.store.upload_part(dst.store.start_parts(dst.bucket, key), 2, data[5 * MiB:10 * MiB])
    with caplog.at_level("INFO", logger="dss.replication"):
        assert replicate_object(deps, source, OTHER[source], key) == "copied"
    assert "in 3 parts (1 there already)" in caplog.text
    assert dst.store.get(dst.bucket, key) == data
    assert dst.store.head(dst.bucket, key).native_checksum == \
        getattr(checksums_from_blob_key(key), dst.store.native_checksum_name)
    assert unfinished_parts(dst, key) == []


@pytest.mark.parametrize("source", ["aws", "gcp"])
def test_parts_that_do_not_add_up_are_discarded(deps, quiet, small_parts, source):
    data = os.urandom(6 * MiB)
    key = small_parts(os.urandom(6 * MiB))  # the checksums of other bytes
    src, dst = quiet[source], quiet[OTHER[source]]
    src.store.put(src.bucket, key, data)
    from dss.replication import ReplicationError
    with pytest.raises(ReplicationError, match="failed verification"):
        replicate_object(deps, source, OTHER[source], key)
    assert not dst.store.exists(dst.bucket, key) and unfinished_parts(dst, key) == []


# --- large blobs ---------------------------------------------------------------------------------------------

def stage_large(replica, data: bytes, settings, stager) -> str:
    """Stage as the hca client does; on S3 in 64 MiB parts, so the ETag is the one in hca-dss-s3_etag."""
    if replica == "gcp":
        return stager.stage("gcp", data)
    bucket = settings.s3_staging_bucket
    return f"s3://{bucket}/{stage_in_parts(boto3.client('s3'), bucket, data, part_size=s3_part_size(len(data)))}"


def check_large_copy(api, replicas, uuid, source, data_sha256, checksums):
    dest = OTHER[source]
    copy = wait_for(lambda: (r := head_file(api, uuid, dest)).status_code == 200 and r, timeout=180, interval=0.5,
                    what=f"the large file to reach {dest}")
    assert dss_headers(copy) == dss_headers(head_file(api, uuid, source))
    key = checksums.blob_key()
    rs = replicas[dest]
    info = rs.store.head(rs.bucket, key)
    assert info.size == int(copy.headers["X-DSS-SIZE"])
    # The destination's own checksum is the one in the key: a 64 MiB-part multipart ETag, or the crc32c.
    assert info.native_checksum == (checksums.s3_etag if dest == "aws" else checksums.crc32c)
    if dest == "aws":
        assert info.native_checksum.endswith("-2")
    assert sha256_of(rs, key) == data_sha256
    assert unfinished_parts(replicas["aws"], key) == [] and unfinished_parts(replicas["gcp"], key) == []


@pytest.mark.slow
@pytest.mark.parametrize("source", ["gcp", "aws"])
def test_large_blobs_are_copied_in_parts(api, stager, settings, replicas, source):
    data = os.urandom(65 * MiB)  # two parts: one of 64 MiB, and a short last one
    checksums = compute_checksums_of_bytes(data)
    uuid, version = str(uuidlib.uuid4()), new_version()
    r = api.put_file(uuid, version, stage_large(source, data, settings, stager))
    assert r.status_code == 202, r.text  # above the 64 MiB threshold: copied in the background
    check_large_copy(api, replicas, uuid, source, hashlib.sha256(data).hexdigest(), checksums)


def finished_parts(rs, key) -> int:
    """Parts of an unfinished multipart write of key that are already uploaded."""
    if rs.replica.value == "gcp":
        return len(rs.store.start_parts(rs.bucket, key).uploaded)
    client = rs.store.client
    return sum(len(client.list_parts(Bucket=rs.bucket, Key=key, UploadId=upload).get("Parts", []))
               for upload in unfinished_parts(rs, key))


@pytest.mark.slow
@pytest.mark.parametrize("source", ["aws", "gcp"])
def test_a_worker_killed_mid_copy_converges(api, stager, settings, replicas, stack, source):
    data = os.urandom(65 * MiB)  # two parts: one of 64 MiB, and a short last one
    checksums = compute_checksums_of_bytes(data)
    key = checksums.blob_key()
    dest = replicas[OTHER[source]]
    log_offset = worker_log(stack).stat().st_size
    # Until the kill, the sync queue and the worker hide a received message for 4 s rather than the stack's 10 s,
    # so that it comes back that much sooner; the worker that resumes the copy has the stack's settings again.
    sqs = stack.aws_client("sqs")
    queue_url = sqs.get_queue_url(QueueName=Topology(settings.stage).queue("sync"))["QueueUrl"]
    visibility = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["VisibilityTimeout"])["Attributes"]
    saved_env = dict(stack.extra_env)
    stack.kill("worker")
    try:
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": "4"})
        stack.extra_env["DSS_QUEUE_VISIBILITY_SECONDS"] = "4"
        stack.respawn("worker")
        uuid, version = str(uuidlib.uuid4()), new_version()
        r = api.put_file(uuid, version, stage_large(source, data, settings, stager))
        assert r.status_code == 202, r.text  # above the 64 MiB threshold: copied in the background
        # The short last part lands first, while the 64 MiB part is still on its way: kill the worker then
        # (once the file is stored on the source, so as not to kill the large-file copy that stores it).
        wait_for(lambda: finished_parts(dest, key) >= 1 and head_file(api, uuid, source).status_code == 200,
                 timeout=120, interval=0.05, what="a part to be copied")
        stack.kill("worker")  # SIGKILL
        assert not dest.store.exists(dest.bucket, key), "the copy finished before the kill"
    finally:
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes=visibility)
        stack.extra_env.clear()
        stack.extra_env.update(saved_env)
        if "worker" in stack.pids():
            stack.kill("worker")
        stack.respawn("worker")
    # The message comes back after the visibility timeout; the copy resumes from the finished parts.
    check_large_copy(api, replicas, uuid, source, hashlib.sha256(data).hexdigest(), checksums)
    with open(worker_log(stack), "rb") as log:
        log.seek(log_offset)
        text = log.read().decode(errors="replace")
    resumed = [line for line in text.splitlines() if f"copying {source}->{OTHER[source]} {key}" in line][-1]
    assert "(0 there already)" not in resumed, resumed
    assert len([m for m in REPLICATED_LINE.finditer(text) if m["key"] == key]) == 1  # copied once


@pytest.mark.slow
def test_a_crashed_worker_is_restarted_by_the_stack_and_pending_replication_converges(api, stager, stack, replicas):
    """SIGKILL the worker (not through the stack: a crash) while a batch waits in the queues, some of it received
    by the worker: the stack restarts the worker, the rest of the stack stays up, and the batch reaches gcp."""
    worker = stack.pids()["worker"]
    others = {name: pid for name, pid in stack.pids().items() if name != "worker"}
    os.kill(worker, signal.SIGSTOP)  # frozen, not dead: the batch stays pending, and what it received stays hidden
    try:
        files = [put_new_file(api, stager, "aws", os.urandom(1024 + i)) for i in range(16)]
        bundles = [put_bundle(api, "aws", files[i:i + 4]) for i in range(0, len(files), 4)]
    finally:
        os.killpg(worker, signal.SIGKILL)
    keys = [ObjectId("files", u, v).to_key() for u, v in files] + [ObjectId("bundles", u, v).to_key()
                                                                     for u, v in bundles]
    gcp = replicas["gcp"]
    assert not any(gcp.store.exists(gcp.bucket, key) for key in keys), "the frozen worker replicated"
    wait_for(lambda: stack.pids().get("worker") not in (None, worker), timeout=30, what="a new worker")
    wait_for(lambda: all(gcp.store.exists(gcp.bucket, key) for key in keys), timeout=120, interval=1,
             what="the batch to reach gcp")
    assert {name: pid for name, pid in stack.pids().items() if name != "worker"} == others
    assert stack.dead_children() == []
    assert get_bundle(api, bundles[-1][0], "gcp").status_code == 200


# --- failures ------------------------------------------------------------------------------------------------

def dead_letters(*args) -> str:
    result = subprocess.run([sys.executable, str(DEAD_LETTERS), *args, "--queue", "sync"], capture_output=True,
                            text=True, env=dict(os.environ), timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_poisoned_messages_are_dead_lettered_without_blocking_others(deps, quiet, replicas):
    marker = str(uuidlib.uuid4())
    sqs, topology = deps.bus.sqs, deps.bus.topology
    queue, dead_letter_queue = deps.bus.queue_url(topology.queue("sync")), deps.bus.queue_url(
        topology.dead_letter_queue("sync"))

    def dead_lettered() -> int:
        counts = sqs.get_queue_attributes(QueueUrl=dead_letter_queue, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return sum(map(int, counts.values()))

    # A failing message goes to the dead-letter queue after the queue's maxReceiveCount receives (5: 1 + 2 + 4 + 8 +
    # 16 s apart with DSS_BACKOFF_BASE_SECONDS=1); 2 here, so it takes 1 + 2 s. SQS counts, DSS only backs off.
    policy = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"]
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"RedrivePolicy": json.dumps(
        {**json.loads(policy), "maxReceiveCount": "2"})})
    try:
        before = dead_lettered()
        # Not JSON; and an event for a blob that exists nowhere (the copy fails every time).
        missing_blob = compute_checksums_of_bytes(marker.encode()).blob_key()
        poisoned = [f"not json {marker}", json.dumps(s3_record(quiet["aws"].bucket, missing_blob, 36, ""))]
        good = put_file_quietly(replicas, "aws", os.urandom(100), version=new_version())
        for body in poisoned[:1] + [json.dumps(s3_record(quiet["aws"].bucket, good["blob_key"], 100, ""))] + \
                poisoned[1:] + [json.dumps(s3_record(quiet["aws"].bucket, good["metadata_key"], 100, ""))]:
            sqs.send_message(QueueUrl=queue, MessageBody=body)

        gcp = quiet["gcp"]
        wait_for(lambda: gcp.store.exists(gcp.bucket, good["metadata_key"]), what="the good events to replicate")
        wait_for(lambda: dead_lettered() >= before + 2, timeout=60, what="two more dead-lettered messages")
    finally:
        sqs.set_queue_attributes(QueueUrl=queue, Attributes={"RedrivePolicy": policy})

    def listed() -> str | None:
        out = dead_letters("list")
        return out if marker in out and missing_blob in out else None
    out = wait_for(listed, timeout=60, interval=5, what="both poisoned messages in the dead-letter queue")
    assert all(json.loads(line)["queue"] == "sync" for line in out.splitlines() if marker in line)
    time.sleep(6)  # `list` hid them for 5 s
    moved = dead_letters("redrive")
    assert int(moved.split("re-drove ")[1].split()[0]) >= 2, moved
    assert marker not in dead_letters("list")  # back in the sync queue, to fail again
