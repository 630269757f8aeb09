"""PUT, HEAD and GET /files on both replicas, through HTTP against the local stack."""
from __future__ import annotations

import threading
import urllib.parse
import uuid as uuidlib

import pytest
import requests

from dss.checksums import MiB, compute_checksums_of_bytes
from dss.identifiers import new_version

from .helpers import assert_problem, downloaded_sha256, poll_while_404, stage_in_parts

X_DSS = ["X-DSS-CREATOR-UID", "X-DSS-VERSION", "X-DSS-CONTENT-TYPE", "X-DSS-SIZE", "X-DSS-CRC32C",
         "X-DSS-S3-ETAG", "X-DSS-SHA1", "X-DSS-SHA256"]


def _put_new(api, stager, replica, data=b"hello world\n", content_type="text/plain", uuid=None, version=None,
             **stage_kwargs):
    uuid = uuid or str(uuidlib.uuid4())
    version = version or new_version()
    source = stager.stage(replica, data, content_type=content_type, **stage_kwargs)
    return uuid, version, api.put_file(uuid, version, source)


def test_put_head_get_round_trip(api, stager, replica):
    data = b"hello world\n"
    uuid, version, r = _put_new(api, stager, replica, data, content_type='application/json; dcp-type="metadata"')
    assert r.status_code == 201, r.text
    assert r.json() == {"version": version}

    head = api.request("HEAD", f"/v1/files/{uuid}", params={"replica": replica, "version": version})
    assert head.status_code == 200
    c = compute_checksums_of_bytes(data)
    # The content type is stored verbatim, parameters included.
    assert {h: head.headers[h] for h in X_DSS} == {
        "X-DSS-CREATOR-UID": "4321", "X-DSS-VERSION": version,
        "X-DSS-CONTENT-TYPE": 'application/json; dcp-type="metadata"', "X-DSS-SIZE": str(len(data)),
        "X-DSS-CRC32C": "f0ff7292", "X-DSS-S3-ETAG": c.s3_etag, "X-DSS-SHA1": c.sha1, "X-DSS-SHA256": c.sha256}

    assert head.content == b"" and head.headers.get("Content-Length") in (None, "0")
    get = api.request("GET", f"/v1/files/{uuid}", params={"replica": replica, "version": version})
    assert get.status_code == 302 and get.content == b""
    assert get.headers["X-DSS-SHA256"] == c.sha256
    fetched = requests.get(get.headers["Location"], timeout=30)
    assert fetched.status_code == 200 and fetched.content == data


def test_latest_version_is_served(api, stager, replica, new_uuid):
    uuid = new_uuid()
    older, newer = "2020-01-01T000000.000000Z", "2021-01-01T000000.000000Z"
    for version, body in ((newer, b"newer"), (older, b"older")):
        assert _put_new(api, stager, replica, body, uuid=uuid, version=version)[2].status_code == 201
    head = api.request("HEAD", f"/v1/files/{uuid}", params={"replica": replica})
    assert head.headers["X-DSS-VERSION"] == newer
    get = api.request("GET", f"/v1/files/{uuid.upper()}", params={"replica": replica})
    assert requests.get(get.headers["Location"], timeout=30).content == b"newer"
    older_get = api.request("GET", f"/v1/files/{uuid}", params={"replica": replica, "version": older})
    assert requests.get(older_get.headers["Location"], timeout=30).content == b"older"


def test_identical_repeat_is_200_and_conflict_is_409(api, stager, replica):
    uuid, version, first = _put_new(api, stager, replica, b"same")
    assert first.status_code == 201
    again = api.put_file(uuid, version, stager.stage(replica, b"same", content_type="text/plain"))
    assert again.status_code == 200 and again.json() == {"version": version}
    different = api.put_file(uuid, version, stager.stage(replica, b"different", content_type="text/plain"))
    assert_problem(different, 409, "file_already_exists")
    other_creator = api.put_file(uuid, version, stager.stage(replica, b"same", content_type="text/plain"),
                                 creator_uid=1)
    assert_problem(other_creator, 409, "file_already_exists")


def test_same_bytes_under_new_uuid_share_one_blob(api, stager, replica, replicas):
    data = b"deduplicated content " + replica.encode()
    assert _put_new(api, stager, replica, data)[2].status_code == 201
    assert _put_new(api, stager, replica, data)[2].status_code == 201
    rs = replicas[replica]
    blob_key = compute_checksums_of_bytes(data).blob_key()
    assert list(rs.store.list(rs.bucket, blob_key)) == [blob_key]


def test_upper_case_checksums_are_accepted(api, stager, replica):
    data = b"upper case"
    checksums = {k: v.upper() for k, v in compute_checksums_of_bytes(data).as_dict().items()}
    uuid, version, r = _put_new(api, stager, replica, data, checksums=checksums)
    assert r.status_code == 201, r.text
    head = api.request("HEAD", f"/v1/files/{uuid}", params={"replica": replica})
    assert head.headers["X-DSS-SHA1"] == compute_checksums_of_bytes(data).sha1


def test_checksums_in_s3_metadata_are_read_too(api, stager):
    assert _put_new(api, stager, "aws", b"in metadata", as_metadata=True)[2].status_code == 201


@pytest.mark.parametrize("missing", ["sha256", "sha1", "s3_etag", "crc32c"])
def test_missing_checksum(api, stager, replica, missing):
    assert_problem(_put_new(api, stager, replica, b"x", drop=[missing])[2], 422, "missing_checksum")


def test_malformed_checksum(api, stager, replica):
    bad = {**compute_checksums_of_bytes(b"x").as_dict(), "sha1": "NOT-A-SHA1"}
    assert_problem(_put_new(api, stager, replica, b"x", checksums=bad)[2], 422, "invalid_checksum")


def test_native_checksum_mismatch_is_rejected(api, stager, replica, replicas):
    data = b"the real bytes"
    lie = compute_checksums_of_bytes(b"other bytes")
    claimed = {**compute_checksums_of_bytes(data).as_dict(),
               ("s3_etag" if replica == "aws" else "crc32c"): getattr(lie, "s3_etag" if replica == "aws" else "crc32c")}
    r = _put_new(api, stager, replica, data, checksums=claimed)[2]
    assert_problem(r, 422, "missing_checksum")
    rs = replicas[replica]
    assert not rs.store.exists(rs.bucket, compute_checksums_of_bytes(data).blob_key())


def test_source_url_errors(api, stager, new_uuid, version):
    assert_problem(api.put_file(new_uuid(), version, "wasb://container/key"), 400, "unknown_source_schema")
    assert_problem(api.put_file(new_uuid(), version, "s3://bucket-only"), 400, "unknown_source_schema")
    assert_problem(api.put_file(new_uuid(), version, "http://example.org/x"), 400, "illegal_arguments")
    missing = f"s3://{api.settings.s3_staging_bucket}/no/such/object"
    assert_problem(api.put_file(new_uuid(), version, missing), 400, "illegal_arguments")
    missing_gs = f"gs://{api.settings.gs_staging_bucket}/no/such/object"
    assert_problem(api.put_file(new_uuid(), version, missing_gs), 400, "illegal_arguments")


@pytest.mark.parametrize("bad_version", ["", "ABCD", "1985-04-12T23:20:50.52Z", "2017-06-16T193604.24070Z"])
def test_illegal_versions(api, stager, new_uuid, bad_version):
    source = stager.stage("aws", b"v")
    assert_problem(api.put_file(new_uuid(), bad_version, source), 400, "illegal_version")


def test_missing_version_and_body_fields(api, stager, new_uuid, version):
    source = stager.stage("aws", b"v")
    assert_problem(api.put_file(new_uuid(), None, source), 400, "illegal_arguments")
    r = api.request("PUT", f"/v1/files/{new_uuid()}", params={"version": version}, auth=True,
                    json={"source_url": source})
    assert_problem(r, 400, "illegal_arguments")
    r = api.request("PUT", f"/v1/files/{new_uuid()}", params={"version": version}, auth=True,
                    json={"source_url": source, "creator_uid": "not an int"})
    assert_problem(r, 400, "illegal_arguments")
    r = api.request("PUT", f"/v1/files/{new_uuid()}", params={"version": version}, auth=True,
                    data="not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400


def test_extra_body_keys_are_ignored(api, stager, new_uuid, version):
    r = api.request("PUT", f"/v1/files/{new_uuid()}", params={"version": version}, auth=True,
                    json={"source_url": stager.stage("aws", b"extra"), "creator_uid": 1, "bundle_uuid": "x"})
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("bad_uuid", ["ABCD", "1234", "12345"])
def test_illegal_uuids(api, stager, version, bad_uuid):
    assert_problem(api.put_file(bad_uuid, version, stager.stage("aws", b"u")), 400, "illegal_arguments")
    assert api.request("HEAD", f"/v1/files/{bad_uuid}", params={"replica": "aws"}).status_code == 400
    assert_problem(api.request("GET", f"/v1/files/{bad_uuid}", params={"replica": "aws"}), 400,
                   "illegal_arguments")


def test_unknown_files_are_404(api, replica, new_uuid, version):
    uuid = new_uuid()
    assert_problem(api.request("GET", f"/v1/files/{uuid}", params={"replica": replica}), 404, "not_found")
    assert api.request("HEAD", f"/v1/files/{uuid}", params={"replica": replica}).status_code == 404
    assert_problem(api.request("GET", f"/v1/files/{uuid}", params={"replica": replica, "version": version}),
                   404, "not_found")


def test_replica_is_required_and_checked(api, new_uuid):
    assert_problem(api.request("GET", f"/v1/files/{new_uuid()}"), 400, "illegal_arguments")
    assert_problem(api.request("GET", f"/v1/files/{new_uuid()}", params={"replica": "azure"}), 400,
                   "illegal_arguments")


def test_a_file_appears_on_the_other_replica_with_identical_headers(api, stager):
    """Replication is asynchronous: the copy shows up on gcp a little later, with the very same X-DSS-* headers."""
    uuid, version, r = _put_new(api, stager, "aws", b"replicated to gcp")
    assert r.status_code == 201
    on_aws = api.request("HEAD", f"/v1/files/{uuid}", params={"replica": "aws"})
    on_gcp = poll_while_404(lambda: api.request("HEAD", f"/v1/files/{uuid}", params={"replica": "gcp"}), timeout=30)
    assert on_gcp.status_code == 200
    assert {k: v for k, v in on_gcp.headers.items() if k.startswith("X-DSS-")} == \
        {k: v for k, v in on_aws.headers.items() if k.startswith("X-DSS-")}


def test_directurl_and_content_disposition(api, stager, replica, settings):
    data = b"disposition"
    uuid, version, r = _put_new(api, stager, replica, data)
    assert r.status_code == 201
    direct = api.request("GET", f"/v1/files/{uuid}", params={"replica": replica, "directurl": "true"})
    assert direct.status_code == 302
    # Reads are served from the checkout bucket (the contract's directurl is s3://checkout_bucket/blobs/...).
    scheme, bucket = ("s3", settings.s3_checkout_bucket) if replica == "aws" else ("gs", settings.gs_checkout_bucket)
    assert direct.headers["Location"] == f"{scheme}://{bucket}/{compute_checksums_of_bytes(data).blob_key()}"
    assert direct.headers["X-DSS-SIZE"] == str(len(data))
    assert "Retry-After" not in direct.headers
    disposition = 'attachment; filename="x.txt"'
    signed = api.request("GET", f"/v1/files/{uuid}", params={"replica": replica,
                                                             "content_disposition": disposition})
    query = urllib.parse.parse_qs(urllib.parse.urlparse(signed.headers["Location"]).query)
    assert disposition in (query.get("response-content-disposition") or query.get("response_disposition") or [""])
    fetched = requests.get(signed.headers["Location"], timeout=30)
    assert fetched.content == data


def test_checkout_token_must_be_json(api, stager):
    uuid, version, r = _put_new(api, stager, "aws", b"token")
    for token in ("{}", "not json", "[]"):
        assert_problem(api.request("GET", f"/v1/files/{uuid}", params={"replica": "aws", "token": token}), 400,
                       "illegal_token")
    ok = api.request("GET", f"/v1/files/{uuid}", params={"replica": "aws", "token": '{"attempts": 1}'})
    assert ok.status_code == 302


def test_racing_creates_have_one_winner(api, stager, replica, new_uuid):
    uuid, version = new_uuid(), new_version()
    sources = [stager.stage(replica, f"racer {i}".encode()) for i in range(8)]
    results = [None] * len(sources)
    barrier = threading.Barrier(len(sources))

    def race(i):
        barrier.wait()
        results[i] = api.put_file(uuid, version, sources[i])

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(sources))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201] + [409] * (len(sources) - 1), statuses
    winner = next(r for r in results if r.status_code == 201)
    assert winner.json() == {"version": version}


@pytest.mark.slow
def test_large_file_is_copied_in_the_background(api, s3, settings, new_uuid, version):
    """Above the default 64 MiB threshold, staged as the hca client stages it: 202, HEAD 404 until copied, then 200."""
    data = bytes(range(256)) * (65 * MiB // 256)
    c = compute_checksums_of_bytes(data)
    key = stage_in_parts(s3, settings.s3_staging_bucket, data, part_size=64 * MiB)
    assert c.s3_etag.endswith("-2")
    uuid = new_uuid()
    r = api.put_file(uuid, version, f"s3://{settings.s3_staging_bucket}/{key}")
    assert r.status_code == 202, r.text
    assert r.json()["version"] == version and r.json()["task_id"]
    head = poll_while_404(lambda: api.request("HEAD", f"/v1/files/{uuid}", params={"replica": "aws",
                                                                                  "version": version}))
    assert head.status_code == 200
    assert (head.headers["X-DSS-SIZE"], head.headers["X-DSS-S3-ETAG"]) == (str(len(data)), c.s3_etag)
    assert downloaded_sha256(api, uuid, "aws") == c.sha256


@pytest.mark.slow
def test_large_file_staged_in_other_parts_is_422(api, s3, settings, new_uuid, version):
    """The store's multipart ETag cannot vouch for bytes staged in 8 MiB parts (the original's 422 too)."""
    key = stage_in_parts(s3, settings.s3_staging_bucket, b"\x01" * (70 * MiB), part_size=8 * MiB)
    assert_problem(api.put_file(new_uuid(), version, f"s3://{settings.s3_staging_bucket}/{key}"), 422,
                   "missing_checksum")


def test_small_file_staged_in_parts_is_verified_from_its_bytes(api, s3, settings, new_uuid, version):
    """boto3 stages files over 8 MiB in parts; below 64 MiB the DSS recomputes the single-part ETag."""
    key = stage_in_parts(s3, settings.s3_staging_bucket, b"\x02" * (9 * MiB), part_size=5 * MiB)
    r = api.put_file(new_uuid(), version, f"s3://{settings.s3_staging_bucket}/{key}")
    assert r.status_code == 201, r.text
