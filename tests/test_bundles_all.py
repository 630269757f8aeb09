"""GET /bundles/all: prefix, tombstone filtering and search_after paging, streamed from the listing."""
from __future__ import annotations

import urllib.parse
import uuid as uuidlib

import pytest

from dss.identifiers import new_version

from .helpers import assert_problem, seed_file_metadata


@pytest.fixture
def family(api, replicas, replica):
    """Bundles whose uuids share a fresh prefix, so a listing of that prefix sees only them."""
    prefix = uuidlib.uuid4().hex[:8]
    f = seed_file_metadata(replicas, replica, 1, version=new_version())[0]

    def make(count: int, versions=("2020-01-01T000000.000000Z",)) -> list[str]:
        uuids = sorted(f"{prefix}-{uuidlib.uuid4().hex[:4]}-{uuidlib.uuid4().hex[:4]}-"
                       f"{uuidlib.uuid4().hex[:4]}-{uuidlib.uuid4().hex[:12]}" for _ in range(count))
        for uuid in uuids:
            for version in versions:
                r = api.request("PUT", f"/v1/bundles/{uuid}", params={"replica": replica, "version": version},
                                auth=True, json={"files": [{**f, "name": "x"}], "creator_uid": 1})
                assert r.status_code == 201, r.text
        return uuids
    make.prefix = prefix
    return make


def list_all(api, replica, prefix, per_page, **extra):
    """Every page, following Link as the hca client does (re-appending its own parameters)."""
    url = f"{api.base_url}/v1/bundles/all?" + urllib.parse.urlencode({"replica": replica, "prefix": prefix,
                                                                      "per_page": per_page, **extra})
    pages = []
    while url:
        r = api.session.get(url, params={"replica": replica}, timeout=60)
        assert r.status_code in (200, 206), r.text
        body = r.json()
        pages.append(body)
        assert body["page_count"] == len(body["bundles"]) and body["has_more"] == (r.status_code == 206)
        assert r.headers["X-OpenAPI-Paginated-Content-Key"] == "bundles"
        if r.status_code == 206:
            link = r.headers["Link"]
            url = link[link.index("<") + 1:link.index(">")]
            assert body["search_after"] and body["link"] == url
        else:
            assert "Link" not in r.headers and "search_after" not in body and "token" not in body
            url = None
    return pages


@pytest.mark.parametrize("count,per_page,sizes", [(25, 10, [10, 10, 5]), (20, 10, [10, 10]), (10, 10, [10]),
                                                  (0, 10, [0])])
def test_paging_boundaries(api, replica, family, count, per_page, sizes):
    uuids = family(count)
    pages = list_all(api, replica, family.prefix, per_page)
    assert [len(p["bundles"]) for p in pages] == sizes  # an exact multiple ends without an empty page
    assert [b["uuid"] for p in pages for b in p["bundles"]] == uuids
    assert pages[0]["search_prefix"] == f"bundles/{family.prefix}" and pages[0]["object"] == "list"


def test_every_version_is_listed_and_tombstones_are_left_out(api, replica, family):
    versions = ("2020-01-01T000000.000000Z", "2021-01-01T000000.000000Z", "2022-01-01T000000.000000Z")
    keep, keep2, keep3, one_dead, all_dead = family(5, versions)
    delete = lambda uuid, **params: api.request("DELETE", f"/v1/bundles/{uuid}", auth=True,
                                                params={"replica": replica, **params}, json={"reason": "t"})
    assert delete(one_dead, version=versions[1]).status_code == 200
    assert delete(all_dead).status_code == 200
    pages = list_all(api, replica, family.prefix, 10)
    listed = [(b["uuid"], b["version"]) for p in pages for b in p["bundles"]]
    expected = {(u, v) for u in (keep, keep2, keep3) for v in versions} | {(one_dead, versions[0]),
                                                                           (one_dead, versions[2])}
    assert sorted(listed) == listed and set(listed) == expected and len(listed) == 11
    # 11 live entries in pages of 10: the cut falls between two versions of one uuid, and resumes exactly.
    assert [len(p["bundles"]) for p in pages] == [10, 1]


def test_prefix_rules(api, replica, family):
    uuids = family(2)
    upper = list_all(api, replica, family.prefix.upper(), 10)
    assert [b["uuid"] for b in upper[0]["bundles"]] == uuids
    assert_problem(api.request("GET", "/v1/bundles/all", params={"replica": replica, "prefix": "!@#$%^&*"}), 400,
                   "illegal_arguments")
    for per_page in (9, 501):
        assert_problem(api.request("GET", "/v1/bundles/all", params={"replica": replica, "per_page": per_page}),
                       400, "illegal_arguments")
