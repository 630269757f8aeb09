"""PUT, GET, PATCH and DELETE /bundles/{uuid} on both replicas, through HTTP against the local stack."""
from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.parse
import uuid as uuidlib

import pytest
import requests

from dss.checksums import compute_checksums_of_bytes
from dss.identifiers import new_version

from .helpers import assert_problem, follow_301s, seed_file_metadata


class Bundles:
    """Makes files through PUT /files and bundles through PUT /bundles, on one replica."""

    def __init__(self, api, stager, replica):
        self.api, self.stager, self.replica = api, stager, replica

    def file(self, data: bytes, version: str | None = None, content_type="application/json") -> dict:
        file_uuid, version = str(uuidlib.uuid4()), version or new_version()
        r = self.api.put_file(file_uuid, version, self.stager.stage(self.replica, data, content_type=content_type))
        assert r.status_code == 201, r.text
        return {"uuid": file_uuid, "version": version}

    def put(self, files: list[dict], uuid: str | None = None, version: str | None = None, creator_uid=12345,
            **kwargs):
        uuid, version = uuid or str(uuidlib.uuid4()), version or new_version()
        r = self.api.request("PUT", f"/v1/bundles/{uuid}", params={"replica": self.replica, "version": version},
                             auth=kwargs.pop("auth", True), json={"files": files, "creator_uid": creator_uid},
                             **kwargs)
        return uuid, version, r

    def get(self, uuid: str, **params):
        return self.api.request("GET", f"/v1/bundles/{uuid}", params={"replica": self.replica, **params})

    def delete(self, uuid: str, reason="test", version=None, **kwargs):
        params = {"replica": self.replica, **({"version": version} if version else {})}
        return self.api.request("DELETE", f"/v1/bundles/{uuid}", params=params, json={"reason": reason},
                                auth=kwargs.pop("auth", True), **kwargs)


@pytest.fixture
def bundles(api, stager, replica):
    return Bundles(api, stager, replica)


def named(f: dict, name: str, indexed=False) -> dict:
    return {**f, "name": name, "indexed": indexed}


def test_put_get_round_trip(bundles):
    a, b = bundles.file(b'{"a": 1}'), bundles.file(b"binary", content_type="application/octet-stream")
    files = [named(a, "meta/a.json", True), named(b, "data.bin")]
    uuid, version, r = bundles.put(files)
    assert r.status_code == 201, r.text
    manifest = r.json()["manifest"]
    assert r.json()["version"] == version
    assert [f["name"] for f in manifest["files"]] == ["meta/a.json", "data.bin"]  # request order kept
    assert manifest["creator_uid"] == 12345 and manifest["version"] == version
    entry = manifest["files"][0]
    c = compute_checksums_of_bytes(b'{"a": 1}')
    assert (entry["sha256"], entry["s3-etag"], entry["size"], entry["indexed"]) == (c.sha256, c.s3_etag, 8, True)

    got = bundles.get(uuid)
    assert got.status_code == 200
    assert got.headers["X-OpenAPI-Pagination"] == "true"
    assert got.headers["X-OpenAPI-Paginated-Content-Key"] == "bundle.files"
    bundle = got.json()["bundle"]
    assert (bundle["uuid"], bundle["version"], bundle["creator_uid"]) == (uuid, version, 12345)
    shown = bundle["files"][0]
    assert shown["s3_etag"] == c.s3_etag and "s3-etag" not in shown
    assert {k for k in shown} >= {"name", "content-type", "size", "uuid", "version", "crc32c", "s3_etag", "sha1",
                                  "sha256", "indexed"}
    assert bundles.get(uuid, version=version).json() == got.json()


def test_identical_repeat_is_200_and_a_different_manifest_409(bundles):
    f = bundles.file(b"{}")
    uuid, version, first = bundles.put([named(f, "x.json")])
    assert first.status_code == 201
    assert bundles.put([named(f, "x.json")], uuid=uuid, version=version)[2].status_code == 200
    assert_problem(bundles.put([named(f, "y.json")], uuid=uuid, version=version)[2], 409, "bundle_already_exists")
    assert_problem(bundles.put([named(f, "x.json")], uuid=uuid, version=version, creator_uid=1)[2], 409,
                   "bundle_already_exists")


def test_latest_version_and_versions(bundles):
    f = bundles.file(b"{}")
    uuid = str(uuidlib.uuid4())
    for v, name in (("2021-01-01T000000.000000Z", "new.json"), ("2020-01-01T000000.000000Z", "old.json")):
        assert bundles.put([named(f, name)], uuid=uuid, version=v)[2].status_code == 201
    assert bundles.get(uuid).json()["bundle"]["files"][0]["name"] == "new.json"
    assert bundles.get(uuid.upper()).json()["bundle"]["version"] == "2021-01-01T000000.000000Z"
    assert bundles.get(uuid, version="2020-01-01T000000.000000Z").json()["bundle"]["files"][0]["name"] == "old.json"
    assert_problem(bundles.get(uuid, version="2022-01-01T000000.000000Z"), 404, "not_found")
    assert_problem(bundles.get(str(uuidlib.uuid4())), 404, "not_found")


def test_duplicate_names_and_shared_files(bundles):
    f = bundles.file(b"{}")
    assert_problem(bundles.put([named(f, "same"), named(f, "same")])[2], 400, "duplicate_filename")
    assert bundles.put([named(f, "one"), named(f, "two")])[2].status_code == 201  # one file, two names


def test_missing_file_with_the_default_wait(api):
    bundles = Bundles(api, None, "aws")
    ghost = {"uuid": str(uuidlib.uuid4()), "version": new_version(), "name": "ghost", "indexed": False}
    started = time.monotonic()
    body = assert_problem(bundles.put([ghost])[2], 400, "file_missing")
    assert ghost["uuid"] in body["title"]
    assert time.monotonic() - started < 25  # bounded well below API Gateway's 29 s


ILLEGAL_NAMES = [".", "..", "~/pa2th", "./", "../path", "path/../path", "2path/..", "/path", "C:\\", "a/./b",
                 "", "nul\x00.json", "cr\r.json", "lf\n.json", "tab\t.json", "del\x7f", "c1\x85", "path.json2/",
                 "a//b", "x" * 201, "a/" + "é" * 101, ("s" * 199 + "/") * 4 + "x" * 154, "x" * 10_000]


@pytest.mark.parametrize("name", ILLEGAL_NAMES, ids=lambda n: repr(n[:12]) + f"({len(n)})")
def test_illegal_file_names(bundles, name):
    """Refused before any lookup: the file need not exist."""
    f = {"uuid": str(uuidlib.uuid4()), "version": new_version(), "indexed": False, "name": name}
    uuid, _, r = bundles.put([f])
    body = assert_problem(r, 400, "illegal_file_name")
    assert len(body["title"]) < 300  # a 10,000-character name is not echoed whole
    assert_problem(bundles.get(uuid), 404, "not_found")


def test_patch_may_not_add_illegal_names(bundles):
    real = bundles.file(b"{}")
    uuid, version, r = bundles.put([named(real, "ok.json")])
    assert r.status_code == 201, r.text
    for name in ILLEGAL_NAMES:
        patch = bundles.api.request("PATCH", f"/v1/bundles/{uuid}", params={"replica": bundles.replica,
                                    "version": version}, auth=True, json={"add_files": [named(real, name)]})
        assert_problem(patch, 400, "illegal_file_name")
    assert bundles.get(uuid).json()["bundle"]["version"] == version


def test_a_name_stored_before_the_rule_can_be_removed(bundles, replicas):
    """remove_files is not held to the rule: a bundle written before it (here, straight into the store, without
    write events) can be repaired by a PATCH that removes the entry."""
    from dss.bundle_manifest import bundle_document
    from dss.storage.bundles import bundle_key

    from .helpers import quiet_replicas
    f = bundles.file(b"{}")
    uuid, version, r = bundles.put([named(f, "ok.json")])
    legacy = {**r.json()["manifest"]["files"][0], "name": "legacy/"}
    legacy_version = new_version()
    rs = quiet_replicas(replicas)[bundles.replica]
    rs.store.put(rs.bucket, bundle_key(uuid, legacy_version),
                 json.dumps(bundle_document([legacy], version=legacy_version, creator_uid=1)).encode(),
                 content_type="application/json")
    patch = bundles.api.request("PATCH", f"/v1/bundles/{uuid}", params={"replica": bundles.replica,
                                "version": legacy_version}, auth=True, json={"remove_files": [named(f, "legacy/")]})
    assert patch.status_code == 200, patch.text
    assert bundles.get(uuid, version=patch.json()["version"]).json()["bundle"]["files"] == []


def test_a_name_that_is_also_a_directory_is_refused(bundles):
    """`d` and `d/e` cannot both be checked out (objects kept as files) or downloaded into one directory tree."""
    f = bundles.file(b"{}")
    uuid, _, r = bundles.put([named(f, "d"), named(f, "d/e")])
    assert_problem(r, 400, "illegal_file_name")
    assert_problem(bundles.get(uuid), 404, "not_found")
    uuid, version, r = bundles.put([named(f, "d/e")])
    assert r.status_code == 201, r.text
    patch = bundles.api.request("PATCH", f"/v1/bundles/{uuid}", params={"replica": bundles.replica,
                                "version": version}, auth=True, json={"add_files": [named(f, "d")]})
    assert_problem(patch, 400, "illegal_file_name")


def test_a_lone_surrogate_is_an_illegal_name(bundles):
    """The request-body check refuses a lone surrogate escape anywhere in a body, before the name rule sees it."""
    f = bundles.file(b"{}")
    body = '{"files": [{"uuid": "%s", "version": "%s", "name": "a\\ud800b", "indexed": false}], "creator_uid": 1}'
    r = bundles.api.request("PUT", f"/v1/bundles/{uuidlib.uuid4()}", params={"replica": bundles.replica,
                            "version": new_version()}, auth=True, headers={"Content-Type": "application/json"},
                            data=body % (f["uuid"], f["version"]))
    assert_problem(r, 400, "illegal_arguments")


def test_legal_odd_file_names(bundles):
    f = bundles.file(b"{}")
    names = ["good..path", ".2bashrc", "a/2b/c/22d2", "with space.txt", "ünïcödé.json", "x" * 200, "é" * 100,
             ("s" * 199 + "/") * 4 + "é" * 76 + "x", "15a5b_qc.bait_bias_summary_metrics.txt"]
    uuid, _, r = bundles.put([named(f, n) for n in names])
    assert r.status_code == 201, r.text
    assert [x["name"] for x in bundles.get(uuid).json()["bundle"]["files"]] == names


def test_bad_requests(bundles, version):
    f = {"uuid": str(uuidlib.uuid4()), "version": version, "name": "n", "indexed": False}
    api, uuid = bundles.api, str(uuidlib.uuid4())
    assert_problem(api.request("PUT", f"/v1/bundles/{uuid}", params={"replica": bundles.replica}, auth=True,
                               json={"files": [f], "creator_uid": 1}), 400, "illegal_arguments")
    for bad in ("ABCD", ""):
        assert_problem(api.request("PUT", f"/v1/bundles/{uuid}", params={"replica": bundles.replica,
                                                                         "version": bad}, auth=True,
                                   json={"files": [f], "creator_uid": 1}), 400, "illegal_version")
    assert_problem(api.request("PUT", "/v1/bundles/12345", params={"replica": bundles.replica, "version": version},
                               auth=True, json={"files": [f], "creator_uid": 1}), 400, "illegal_arguments")
    assert_problem(api.request("PUT", f"/v1/bundles/{uuid}", params={"version": version}, auth=True,
                               json={"files": [f], "creator_uid": 1}), 400, "illegal_arguments")
    assert_problem(api.request("PUT", f"/v1/bundles/{uuid}", params={"replica": bundles.replica,
                                                                     "version": version}, auth=True,
                               json={"creator_uid": 1}), 400, "illegal_arguments")
    assert api.request("PUT", f"/v1/bundles/{uuid}", params={"replica": bundles.replica, "version": version},
                       json={"files": [f], "creator_uid": 1}).status_code == 401


def test_file_arriving_during_the_wait(api, stager, replicas, in_process):
    """A file whose metadata appears while the PUT waits (as a replicating file does) is found."""
    client = in_process(bundle_file_wait_seconds=20)
    data = b"late arrival"
    file_uuid, version = str(uuidlib.uuid4()), new_version()
    source = stager.stage("aws", data)

    def arrive_later():
        time.sleep(2)
        assert api.put_file(file_uuid, version, source).status_code == 201

    late = threading.Thread(target=arrive_later)
    late.start()
    r = client.put(f"/v1/bundles/{uuidlib.uuid4()}", params={"replica": "aws", "version": version},
                   headers=api.auth(), json={"files": [{"uuid": file_uuid, "version": version, "name": "late",
                                                        "indexed": False}], "creator_uid": 1})
    late.join()
    assert r.status_code == 201, r.text


def test_wait_budget_is_configurable(api, in_process, replica):
    client = in_process(bundle_file_wait_seconds=1)
    started = time.monotonic()
    r = client.put(f"/v1/bundles/{uuidlib.uuid4()}", params={"replica": replica, "version": new_version()},
                   headers=api.auth(), json={"files": [{"uuid": str(uuidlib.uuid4()), "version": new_version(),
                                                        "name": "x", "indexed": False}], "creator_uid": 1})
    assert (r.status_code, r.json()["code"]) == (400, "file_missing")
    assert time.monotonic() - started < 5


def _pages(api, first_url: str, *, reappend: dict | None = None):
    """Follow Link headers as the hca client does (it re-appends its own query parameters)."""
    pages, url = [], first_url
    while url:
        r = api.session.get(url, params=reappend, allow_redirects=False, timeout=60)
        assert r.status_code in (200, 206), r.text
        pages.append(r)
        link = r.headers.get("Link")
        assert (r.status_code == 206) == bool(link)
        url = link[link.index("<") + 1:link.index(">")] if link else None
    return pages


@pytest.mark.parametrize("count,per_page,sizes", [(25, 10, [10, 10, 5]), (20, 10, [10, 10]), (10, 10, [10]),
                                                  (3, 500, [3]), (11, 11, [11])])
def test_manifest_paging(api, replicas, replica, count, per_page, sizes):
    version = new_version()
    files = seed_file_metadata(replicas, replica, count, version=version)
    b = Bundles(api, None, replica)
    uuid, bversion, r = b.put(files)
    assert r.status_code == 201, r.text
    first = f"{api.base_url}/v1/bundles/{uuid}?" + urllib.parse.urlencode({"replica": replica,
                                                                           "per_page": per_page})
    pages = _pages(api, first, reappend={"replica": replica})
    assert [len(p.json()["bundle"]["files"]) for p in pages] == sizes
    assert [f["name"] for p in pages for f in p.json()["bundle"]["files"]] == [f["name"] for f in files]
    for p in pages[:-1]:
        link = p.headers["Link"]
        assert f"version={bversion}" in link and 'rel="next"' in link
        assert p.headers["X-OpenAPI-Paginated-Content-Key"] == "bundle.files"


@pytest.mark.parametrize("per_page", [9, 501])
def test_per_page_bounds(bundles, per_page):
    assert_problem(bundles.get(str(uuidlib.uuid4()), per_page=per_page), 400, "illegal_arguments")


def test_start_at_past_the_end_is_an_empty_page(bundles):
    f = bundles.file(b"{}")
    uuid, _, _ = bundles.put([named(f, "only")])
    r = bundles.get(uuid, start_at=5)
    assert r.status_code == 200 and r.json()["bundle"]["files"] == []
    assert_problem(bundles.get(uuid, start_at=-1), 400, "illegal_arguments")


def test_urls(bundles, settings):
    """URLs point into the bundle's checkout (see test_checkout.py), made while the client follows 301s."""
    data = b'{"url": true}'
    uuid, version, _ = bundles.put([named(bundles.file(data), "u.json")])
    assert_problem(bundles.get(uuid, directurls="true", presignedurls="true"), 400, "only_one_urltype")
    r, _ = follow_301s(bundles.get(uuid, directurls="true"),
                       lambda url: bundles.api.session.get(url, allow_redirects=False, timeout=60))
    assert r.status_code == 200, r.text
    scheme, bucket = (("s3", settings.s3_checkout_bucket) if bundles.replica == "aws" else
                      ("gs", settings.gs_checkout_bucket))
    assert r.json()["bundle"]["files"][0]["url"] == f"{scheme}://{bucket}/bundles/{uuid}.{version}/u.json"
    presigned = bundles.get(uuid, presignedurls="true").json()["bundle"]["files"][0]["url"]
    assert hashlib.sha256(requests.get(presigned, timeout=30).content).hexdigest() == \
        compute_checksums_of_bytes(data).sha256
    assert_problem(bundles.get(uuid, token="nope"), 400, "illegal_token")


def test_patch(bundles):
    a, b, c = (bundles.file(f'{{"n": {i}}}'.encode()) for i in range(3))
    uuid, v1, _ = bundles.put([named(a, "a.json"), named(b, "b.json")])
    api = bundles.api
    r = api.request("PATCH", f"/v1/bundles/{uuid}", params={"replica": bundles.replica, "version": v1}, auth=True,
                    json={"add_files": [named(c, "c.json")], "remove_files": [named(a, "a.json")]})
    assert r.status_code == 200, r.text
    v2 = r.json()["version"]
    assert r.json()["uuid"] == uuid and v2 > v1
    assert [f["name"] for f in bundles.get(uuid).json()["bundle"]["files"]] == ["b.json", "c.json"]
    assert [f["name"] for f in bundles.get(uuid, version=v1).json()["bundle"]["files"]] == ["a.json", "b.json"]
    # Removing needs the exact (name, uuid, version); a near miss is a no-op.
    r = api.request("PATCH", f"/v1/bundles/{uuid}", params={"replica": bundles.replica, "version": v2}, auth=True,
                    json={"remove_files": [named(c, "other-name.json")]})
    assert [f["name"] for f in bundles.get(uuid, version=r.json()["version"]).json()["bundle"]["files"]] == \
        ["b.json", "c.json"]
    clash = api.request("PATCH", f"/v1/bundles/{uuid}", params={"replica": bundles.replica, "version": v2},
                        auth=True, json={"add_files": [named(a, "b.json")]})
    assert_problem(clash, 400, "duplicate_filename")
    too_many = [named(a, f"n{i}") for i in range(1001)]
    assert_problem(api.request("PATCH", f"/v1/bundles/{uuid}", params={"replica": bundles.replica, "version": v2},
                               auth=True, json={"add_files": too_many}), 400, "illegal_arguments")
    assert_problem(api.request("PATCH", f"/v1/bundles/{uuid}", params={"replica": bundles.replica}, auth=True,
                               json={"add_files": []}), 400, "illegal_arguments")
    assert_problem(api.request("PATCH", f"/v1/bundles/{uuidlib.uuid4()}",
                               params={"replica": bundles.replica, "version": v2}, auth=True,
                               json={"add_files": []}), 404, "not_found")


def test_delete_rules(bundles):
    f = bundles.file(b"{}")
    uuid = str(uuidlib.uuid4())
    v1, v2 = "2020-01-01T000000.000000Z", "2021-01-01T000000.000000Z"
    for v in (v1, v2):
        assert bundles.put([named(f, "x.json")], uuid=uuid, version=v)[2].status_code == 201
    assert_problem(bundles.delete(uuid, version=v2, auth=bundles.api.auth(email="someone@example.org")), 403,
                   "Forbidden")
    assert bundles.delete(uuid, version=v2, auth=False).status_code == 401
    assert bundles.delete(uuid, version=v2).status_code == 200
    assert bundles.delete(uuid, version=v2).status_code == 200  # identical: idempotent
    assert_problem(bundles.delete(uuid, version=v2, reason="another reason"), 409,
                   "bundle_tombstone_already_exists")
    assert_problem(bundles.get(uuid, version=v2), 404, "not_found")
    assert bundles.get(uuid).json()["bundle"]["version"] == v1  # the latest live version
    assert bundles.delete(uuid).status_code == 200
    assert_problem(bundles.get(uuid), 404, "not_found")
    assert_problem(bundles.get(uuid, version=v1), 404, "not_found")
    assert_problem(bundles.delete(str(uuidlib.uuid4())), 404, "not_found")
    assert_problem(bundles.delete(uuid, version="2019-01-01T000000.000000Z"), 404, "not_found")
    no_reason = bundles.api.request("DELETE", f"/v1/bundles/{uuid}", params={"replica": bundles.replica},
                                    auth=True, json={})
    assert_problem(no_reason, 400, "illegal_arguments")


def test_writes_need_group_hca(bundles):
    """A token of another group writes nothing: not a bundle, not a patched version, not a tombstone, even with an
    administrator's email (the admin list adds to the group; it does not replace it)."""
    f = bundles.file(b"{}")
    public = bundles.api.auth(group="public")  # the development email, an administrator
    uuid, version, r = bundles.put([named(f, "x.json")], auth=public)
    assert_problem(r, 403, "Forbidden")
    assert_problem(bundles.get(uuid), 404, "not_found")
    assert bundles.put([named(f, "x.json")], uuid=uuid, version=version)[2].status_code == 201
    patch = bundles.api.request("PATCH", f"/v1/bundles/{uuid}", params={"replica": bundles.replica,
                                "version": version}, auth=public, json={"add_files": [named(f, "y.json")]})
    assert_problem(patch, 403, "Forbidden")
    assert_problem(bundles.delete(uuid, auth=public), 403, "Forbidden")
    assert_problem(bundles.delete(uuid, version=version, auth=public), 403, "Forbidden")
    shown = bundles.get(uuid).json()["bundle"]
    assert (shown["version"], [x["name"] for x in shown["files"]]) == (version, ["x.json"])


def test_racing_creates_have_one_winner(bundles):
    f = bundles.file(b"{}")
    uuid, version = str(uuidlib.uuid4()), new_version()
    racers = 8
    results, barrier = [None] * racers, threading.Barrier(racers)

    def race(i):
        barrier.wait()
        results[i] = bundles.put([named(f, f"racer-{i}.json")], uuid=uuid, version=version)[2]

    threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201] + [409] * (racers - 1), statuses
    winner = next(r for r in results if r.status_code == 201).json()["manifest"]["files"][0]["name"]
    assert bundles.get(uuid).json()["bundle"]["files"][0]["name"] == winner


@pytest.mark.slow
def test_ten_thousand_files(api, replicas):
    """The original failed with a 500 at 2,757 files; a bundle of 10,000 is accepted and pages back whole."""
    version = new_version()
    files = seed_file_metadata(replicas, "aws", 10_000, version=version)
    b = Bundles(api, None, "aws")
    uuid, _, r = b.put(files)
    assert r.status_code == 201, r.text[:500]
    assert len(r.json()["manifest"]["files"]) == 10_000
    pages = _pages(api, f"{api.base_url}/v1/bundles/{uuid}?replica=aws&per_page=500")
    assert len(pages) == 20
    assert sum(len(p.json()["bundle"]["files"]) for p in pages) == 10_000
