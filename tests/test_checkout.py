"""Checkout through the local stack: GET /files and GET /bundles serve checkout copies, made inline or by the
worker's checkout jobs; POST /bundles/{uuid}/checkout and GET /bundles/checkout/{id}."""
from __future__ import annotations

import dataclasses
import json
import math
import time
import urllib.parse
import uuid as uuidlib

import pytest
import requests

from dss.checkout import handle_message
from dss.checkout_rules import RetryToken, marker_key, status_key
from dss.checksums import compute_checksums_of_bytes
from dss.events.runtime import Deps
from dss.identifiers import new_version
from dss.storage.stats import stat

from .helpers import assert_problem, follow_301s, wait_for


# --- helpers ---------------------------------------------------------------------------------------------------

def put_file(api, stager, replica: str, data: bytes, version: str | None = None) -> str:
    uuid = str(uuidlib.uuid4())
    r = api.put_file(uuid, version or new_version(), stager.stage(replica, data))
    assert r.status_code == 201, r.text
    return uuid


def put_bundle(api, stager, replica: str, contents: dict[str, bytes]) -> tuple[str, str]:
    version = new_version()
    files = [{"uuid": put_file(api, stager, replica, data, version), "version": version, "name": name,
              "indexed": False} for name, data in contents.items()]
    uuid = str(uuidlib.uuid4())
    r = api.request("PUT", f"/v1/bundles/{uuid}", params={"replica": replica, "version": version}, auth=True,
                    json={"files": files, "creator_uid": 1})
    assert r.status_code == 201, r.text
    return uuid, version


def follow(get, url: str, *, limit: float = 60):
    """Follow 301s after their Retry-After, as clients should. The final response and the 301s on the way."""
    r, redirects = follow_301s(get(url), get, timeout=limit)
    assert all(urllib.parse.urlsplit(x.headers["Location"]).path == urllib.parse.urlsplit(url).path
               for x in redirects), [x.headers["Location"] for x in redirects]
    return r, redirects


def token_of(response) -> dict:
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(response.headers["Location"]).query)
    return json.loads(query["token"][0])


def scheme(replica: str) -> str:
    return "s3" if replica == "aws" else "gs"


def live_get(api):
    return lambda url: api.session.get(url if url.startswith("http") else api.base_url + url,
                                       allow_redirects=False, timeout=60)


def client_get(client):
    return lambda url: client.get(url, follow_redirects=False)


def blob_key(data: bytes) -> str:
    return compute_checksums_of_bytes(data).blob_key()


def write_job(rs, job_id: str, status: str, start_time: float, **extra) -> None:
    """A job record as a job writes it: how tests make a job that runs (or failed) for as long as they need."""
    doc = {"status": status, "job_id": job_id, "kind": "file", "replica": rs.replica.value,
           "started_at": start_time, "updated_at": start_time, "attempts": 1, **extra}
    rs.store.put(rs.checkout_bucket, status_key(job_id), json.dumps(doc).encode(), content_type="application/json")


def status_of(api, replica: str, job_id: str):
    return api.request("GET", f"/v1/bundles/checkout/{job_id}", params={"replica": replica})


def wait_for_job(api, replica: str, job_id: str, limit: float = 60) -> dict:
    def finished() -> dict | None:
        r = status_of(api, replica, job_id)
        assert r.status_code == 200, r.text
        return r.json() if r.json()["status"] != "RUNNING" else None

    return wait_for(finished, timeout=limit, interval=0.3, what=f"checkout job {job_id} to finish")


# --- GET /files ------------------------------------------------------------------------------------------------

def test_small_file_is_checked_out_inline(api, stager, replicas, replica):
    data = b"small and served at once"
    uuid = put_file(api, stager, replica, data)
    rs = replicas[replica]
    r = api.request("GET", f"/v1/files/{uuid}", params={"replica": replica})
    assert r.status_code == 302, r.text  # served at once: no 301 to come back later
    assert f"/{rs.checkout_bucket}/{blob_key(data)}" in r.headers["Location"]
    assert "Retry-After" not in r.headers and r.headers["X-DSS-SIZE"] == str(len(data))
    assert requests.get(r.headers["Location"], timeout=30).content == data
    assert rs.store.get(rs.checkout_bucket, blob_key(data)) == data
    direct = api.request("GET", f"/v1/files/{uuid}", params={"replica": replica, "directurl": "true"})
    assert direct.status_code == 302
    assert direct.headers["Location"] == f"{scheme(replica)}://{rs.checkout_bucket}/{blob_key(data)}"


def test_large_file_redirects_until_a_job_checked_it_out(api, stager, replicas, replica, in_process):
    # Files above the inline limit are copied by a job: 1 s + 2,500 B at 1,000 B/s + 0.05 s = 3.55 s expected.
    client = in_process(checkout_inline_max_bytes=0, checkout_throughput=1000)
    data = b"L" * 2500
    uuid = put_file(api, stager, replica, data)
    url = f"/v1/files/{uuid}?replica={replica}"
    final, redirects = follow(client_get(client), url)
    first = redirects[0]
    assert first.headers["Retry-After"] == "4"
    assert not any(h.startswith("X-DSS") for h in first.headers)
    token = token_of(first)
    assert token["attempts"] == 1 and token["job_id"] and abs(token["start_time"] - time.time()) < 30
    assert final.status_code == 302, final.text
    assert f"/{replicas[replica].checkout_bucket}/{blob_key(data)}" in final.headers["Location"]
    assert requests.get(final.headers["Location"], timeout=30).content == data
    # Checked out now: straight to the content, with or without a token.
    assert client.get(url, follow_redirects=False).status_code == 302
    assert client.get(redirects[-1].headers["Location"], follow_redirects=False).status_code == 302


def test_retry_after_counts_the_time_already_waited(api, stager, replicas, replica, in_process):
    # 1 s + 5,500 B at 1,000 B/s + 0.05 s = 6.55 s expected; the job here is a record that stays RUNNING.
    client = in_process(checkout_inline_max_bytes=0, checkout_throughput=1000)
    rs = replicas[replica]
    uuid = put_file(api, stager, replica, b"R" * 5500)
    job_id, started = str(uuidlib.uuid4()), time.time() - 3
    write_job(rs, job_id, "RUNNING", started)
    token = RetryToken(2, job_id, started).encode()
    before = time.time()
    r = client.get(f"/v1/files/{uuid}", params={"replica": replica, "token": token}, follow_redirects=False)
    after = time.time()
    assert r.status_code == 301
    # ceil(6.55 - elapsed), elapsed being 3 s and the moment the request took
    assert math.ceil(6.55 - (after - started)) <= int(r.headers["Retry-After"]) <= math.ceil(6.55 - (before - started))
    assert token_of(r) == {"attempts": 3, "job_id": job_id, "start_time": started}
    # Past the estimate: back off with the time spent (a tenth of it), never below 1 s.
    late = time.time() - 35  # ceil(35 s / 10)
    write_job(rs, job_id, "RUNNING", late)
    r = client.get(f"/v1/files/{uuid}", params={"replica": replica, "token": RetryToken(9, job_id, late).encode()},
                   follow_redirects=False)
    assert r.headers["Retry-After"] == "4" and token_of(r)["job_id"] == job_id


def test_a_running_job_is_joined_and_a_stale_one_replaced(api, stager, replicas, replica, in_process):
    client = in_process(checkout_inline_max_bytes=0, checkout_throughput=1000)
    rs = replicas[replica]
    data = b"J" * 3000
    uuid = put_file(api, stager, replica, data)

    def job_copying_this_file(start_time: float) -> str:
        """A job record that stays RUNNING, named as the file's latest job."""
        job_id = str(uuidlib.uuid4())
        write_job(rs, job_id, "RUNNING", start_time)
        rs.store.put(rs.checkout_bucket, marker_key(blob_key(data)),
                     json.dumps({"job_id": job_id, "start_time": start_time}).encode())
        return job_id
    # No token: a reader joins the job already copying this file instead of starting another.
    running = job_copying_this_file(time.time())
    r = client.get(f"/v1/files/{uuid}", params={"replica": replica}, follow_redirects=False)
    assert r.status_code == 301 and token_of(r)["job_id"] == running
    # A job far past its estimate (expected 4.05 s; stale after 3 x that + 120 s) is presumed lost: a new one starts.
    lost = time.time() - 200
    stale = job_copying_this_file(lost)
    r = client.get(f"/v1/files/{uuid}", params={"replica": replica, "token": RetryToken(5, stale, lost).encode()},
                   follow_redirects=False)
    assert r.status_code == 301 and token_of(r)["job_id"] not in (running, stale) and token_of(r)["attempts"] == 6
    final, _ = follow(client_get(client), r.headers["Location"])
    assert final.status_code == 302


def test_failed_job_is_reported(api, stager, replicas, replica, in_process):
    client = in_process(checkout_inline_max_bytes=0)
    rs = replicas[replica]
    uuid = put_file(api, stager, replica, b"F" * 100)
    job_id = str(uuidlib.uuid4())
    write_job(rs, job_id, "FAILED", time.time(), cause="the copy went wrong")
    r = client.get(f"/v1/files/{uuid}", params={"replica": replica,
                                                 "token": RetryToken(1, job_id, time.time()).encode()},
                   follow_redirects=False)
    body = assert_problem(r, 500, "checkout_error")
    assert "the copy went wrong" in body["title"]


@pytest.mark.parametrize("ttl,age,at_once", [(4, 3.2, True), (7, 3.5, False)], ids=["stale", "ageing"])
def test_copies_are_refreshed(api, stager, replicas, replica, in_process, ttl, age, at_once):
    """URLs live 1 s, copies `ttl` s: a copy is served while younger than ttl - 1 s. Older ones (stale) are copied
    again before they are served; from half that age on (ageing), a job copies them again while they are served."""
    client = in_process(signed_url_ttl=1, checkout_ttl=ttl)
    rs = replicas[replica]
    data = f"refresh me after {age} s".encode()
    uuid = put_file(api, stager, replica, data)
    assert client.get(f"/v1/files/{uuid}", params={"replica": replica}, follow_redirects=False).status_code == 302
    first = stat(rs.store, rs.checkout_bucket, blob_key(data)).modified
    time.sleep(age)
    assert client.get(f"/v1/files/{uuid}", params={"replica": replica}, follow_redirects=False).status_code == 302
    wait_for(lambda: stat(rs.store, rs.checkout_bucket, blob_key(data)).modified > first,
             timeout=0 if at_once else 20, interval=0.3, what="the checked-out copy to be refreshed")


# --- POST /bundles/{uuid}/checkout and GET /bundles/checkout/{id} ----------------------------------------------

CONTENTS = {"a.json": b'{"a": 1}', "dir/sub/b.bin": b"\x00\x01bundle bytes", "c.txt": b"c" * 1000}


def test_bundle_checkout_to_the_checkout_bucket(api, stager, replicas, replica):
    rs = replicas[replica]
    uuid, version = put_bundle(api, stager, replica, CONTENTS)
    r = api.request("POST", f"/v1/bundles/{uuid}/checkout", params={"replica": replica}, json={})
    assert r.status_code == 200, r.text
    job_id = r.json()["checkout_job_id"]
    # RUNNING is recorded before the job is queued; the local worker may have finished it already.
    assert status_of(api, replica, job_id).json()["status"] in ("RUNNING", "SUCCEEDED")
    status = wait_for_job(api, replica, job_id)
    assert status == {"status": "SUCCEEDED", "location": f"{scheme(replica)}://{rs.checkout_bucket}/bundles/"
                                                         f"{uuid}.{version}"}
    for name, data in CONTENTS.items():
        assert rs.store.get(rs.checkout_bucket, f"bundles/{uuid}.{version}/{name}") == data


def test_names_at_the_limits_of_the_rule_check_out(api, stager, replicas, replica):
    """The name rule of PUT /bundles fits the checkout's keys: the longest name (953 bytes), the longest segments
    (200 bytes, in 1- and 2-byte characters), a deep path and a dot-file at the top all land where they should."""
    rs = replicas[replica]
    contents = {("s" * 199 + "/") * 4 + "é" * 76 + "x": b"1", "x" * 200: b"2", "d/" + "é" * 100: b"3",
                "a/2b/c/22d2": b"4", ".2bashrc": b"5", "good..path": b"6"}
    uuid, version = put_bundle(api, stager, replica, contents)
    r = api.request("POST", f"/v1/bundles/{uuid}/checkout", params={"replica": replica}, json={})
    assert r.status_code == 200, r.text
    status = wait_for_job(api, replica, r.json()["checkout_job_id"])
    assert status["status"] == "SUCCEEDED", status
    for name, data in contents.items():
        assert rs.store.get(rs.checkout_bucket, f"bundles/{uuid}.{version}/{name}") == data


def test_bundle_checkout_to_a_user_bucket(api, stager, replicas, replica):
    rs = replicas[replica]
    bucket = f"dss-user-{uuidlib.uuid4().hex[:12]}"
    rs.store.create_bucket(bucket)
    uuid, version = put_bundle(api, stager, replica, CONTENTS)
    r = api.request("POST", f"/v1/bundles/{uuid}/checkout", params={"replica": replica, "version": version},
                    json={"destination": bucket})
    assert r.status_code == 200, r.text
    status = wait_for_job(api, replica, r.json()["checkout_job_id"])
    assert status == {"status": "SUCCEEDED", "location": f"{scheme(replica)}://{bucket}/bundles/{uuid}.{version}"}
    for name, data in CONTENTS.items():
        assert rs.store.get(bucket, f"bundles/{uuid}.{version}/{name}") == data
    assert not list(rs.store.list(bucket, "touch/"))  # the writability probe is gone


def test_bad_destinations_are_refused_at_once(api, stager, replicas, replica):
    uuid, _ = put_bundle(api, stager, replica, {"x.json": b"{}"})

    def post(destination):
        return api.request("POST", f"/v1/bundles/{uuid}/checkout", params={"replica": replica},
                           json={"destination": destination})
    missing = f"dss-missing-{uuidlib.uuid4().hex[:12]}"
    assert "does not exist" in assert_problem(post(missing), 400, "illegal_arguments")["title"]
    for destination in ("bucket/path", f"{scheme(replica)}://bucket", "Not A Bucket", ""):
        assert_problem(post(destination), 400, "illegal_arguments")
    assert "DSS bucket" in assert_problem(post(replicas[replica].bucket), 400, "illegal_arguments")["title"]


def test_unknown_bundle_and_unknown_job(api, replica):
    assert_problem(api.request("POST", f"/v1/bundles/{uuidlib.uuid4()}/checkout", params={"replica": replica}),
                   404, "not_found")
    assert_problem(status_of(api, replica, str(uuidlib.uuid4())), 404, "not_found")


def test_email_on_completion(api, stager, stack, replica):
    address = f"user-{uuidlib.uuid4().hex[:8]}@example.org"
    uuid, version = put_bundle(api, stager, replica, {"x.json": b"{}"})
    r = api.request("POST", f"/v1/bundles/{uuid}/checkout", params={"replica": replica}, json={"email": address})
    status = wait_for_job(api, replica, r.json()["checkout_job_id"])
    assert status["status"] == "SUCCEEDED" and status["notification"] == f"sent to {address}"
    sent = requests.get(stack.url("moto") + "/moto-api/data.json", timeout=10).json()["ses"]["Message"]
    mine = [m for m in sent if address in m["destinations"]["ToAddresses"]]
    assert len(mine) == 1 and f"{uuid}.{version}" in mine[0]["subject"] and "SUCCEEDED" in mine[0]["subject"]


def test_failing_email_does_not_fail_the_checkout(api, stager, settings, replicas, replica):
    deps = Deps(dataclasses.replace(settings, notification_sender="unverified@example.org"), replicas, bus=None)
    uuid, version = put_bundle(api, stager, replica, {"x.json": b"{}"})
    job = bundle_job(replica, uuid, version, email="someone@example.org")
    handle_message(job, deps)
    status = status_of(api, replica, job["job_id"]).json()
    assert status["status"] == "SUCCEEDED" and status["notification"].startswith("not sent")


def bundle_job(replica: str, uuid: str, version: str, **extra) -> dict:
    return {"kind": "bundle", "job_id": str(uuidlib.uuid4()), "start_time": time.time(), "replica": replica,
            "uuid": uuid, "version": version, "destination": None, "email": None, "refresh_before": None, **extra}


def test_job_failures_are_recorded(api, stager, settings, replicas, replica):
    """A destination bucket deleted after the POST, or a bundle deleted: FAILED with the cause, never RUNNING."""
    deps = Deps(settings, replicas, bus=None)
    uuid, version = put_bundle(api, stager, replica, {"x.json": b"{}"})
    gone = bundle_job(replica, uuid, version, destination=f"dss-gone-{uuidlib.uuid4().hex[:12]}")
    handle_message(gone, deps)
    status = status_of(api, replica, gone["job_id"]).json()
    assert status["status"] == "FAILED" and "does not exist" in status["cause"]
    missing = bundle_job(replica, str(uuidlib.uuid4()), version)
    handle_message(missing, deps)
    assert "does not exist" in status_of(api, replica, missing["job_id"]).json()["cause"]
    # Finished jobs are not re-run when the message comes again.
    handle_message(gone, deps)
    assert status_of(api, replica, gone["job_id"]).json() == status


# --- GET /bundles with URLs ------------------------------------------------------------------------------------

def test_bundle_urls_come_from_the_bundle_checkout(api, stager, replicas, replica):
    rs = replicas[replica]
    uuid, version = put_bundle(api, stager, replica, CONTENTS)
    url = f"/v1/bundles/{uuid}?replica={replica}&directurls=true"
    final, redirects = follow(live_get(api), url)
    assert final.status_code == 200, final.text
    assert redirects, "a new bundle is checked out first"
    first = redirects[0]
    size = sum(len(d) for d in CONTENTS.values())
    # 1 s + bytes / 100 MB/s + one round of 3 parallel copies (0.05 s): 2 s.
    assert first.headers["Retry-After"] == str(math.ceil(1 + size / 1e8 + 0.05))
    assert f"version={version}" in first.headers["Location"]
    files = {f["name"]: f["url"] for f in final.json()["bundle"]["files"]}
    assert files == {name: f"{scheme(replica)}://{rs.checkout_bucket}/bundles/{uuid}.{version}/{name}"
                     for name in CONTENTS}
    presigned = api.request("GET", f"/v1/bundles/{uuid}", params={"replica": replica, "presignedurls": "true"})
    assert presigned.status_code == 200  # already checked out: no redirect
    for f in presigned.json()["bundle"]["files"]:
        assert requests.get(f["url"], timeout=30).content == CONTENTS[f["name"]]
    assert_problem(api.request("GET", f"/v1/bundles/{uuid}", params={
        "replica": replica, "directurls": "true", "presignedurls": "true"}), 400, "only_one_urltype")


def test_failed_bundle_checkout_is_a_500(api, stager, replicas, replica):
    rs = replicas[replica]
    uuid, _ = put_bundle(api, stager, replica, {"x.json": b"{}"})
    job_id = str(uuidlib.uuid4())
    write_job(rs, job_id, "FAILED", time.time(), cause="bucket gone")
    r = api.request("GET", f"/v1/bundles/{uuid}", params={
        "replica": replica, "presignedurls": "true", "token": RetryToken(1, job_id, time.time()).encode()})
    assert "bucket gone" in assert_problem(r, 500, "checkout_error")["title"]
    assert_problem(api.request("GET", f"/v1/bundles/{uuid}", params={
        "replica": replica, "directurls": "true", "token": '{"attempts": "x"}'}), 400, "illegal_token")


@pytest.mark.parametrize("token", ['{"attempts": 1, "job_id": 5, "start_time": 1}', '{"attempts": -1}'])
def test_malformed_tokens(api, stager, token):
    uuid = put_file(api, stager, "aws", b"tokens")
    assert_problem(api.request("GET", f"/v1/files/{uuid}", params={"replica": "aws", "token": token}), 400,
                   "illegal_token")
