"""Collections through HTTP against the local stack: CRUD, links, PATCH, ownership, listing and immutability."""
from __future__ import annotations

import json
import threading
import uuid as uuidlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from dss.identifiers import new_version

from .helpers import assert_problem, put_file_quietly

MiB = 1024 * 1024
METADATA = {"describedBy": "https://schema.example.org/cell_suspension",
            "biomaterial_core": {"biomaterial_id": "cs-1", "ncbi_taxon_id": [9606]},
            "a/b": {"~c": True}}


def _uuid() -> str:
    return str(uuidlib.uuid4())


@pytest.fixture(scope="module")
def json_files(api, stager):
    """One JSON metadata file per replica, made through PUT /files: {replica: (uuid, version)}."""
    made = {}
    for replica in ("aws", "gcp"):
        uuid, version = _uuid(), new_version()
        source = stager.stage(replica, json.dumps(METADATA).encode(), content_type="application/json")
        assert api.put_file(uuid, version, source).status_code == 201
        made[replica] = (uuid, version)
    return made


def file_item(json_files, replica, **extra):
    uuid, version = json_files[replica]
    return {"type": "file", "uuid": uuid, "version": version, **extra}


def put_collection(api, replica, contents=(), *, uuid=None, version=None, auth=True, **fields):
    uuid, version = uuid or _uuid(), version or new_version()
    body = {"name": "a collection", "description": "for tests", "details": {}, "contents": list(contents), **fields}
    r = api.request("PUT", "/v1/collections", params={"replica": replica, "uuid": uuid, "version": version},
                    json=body, auth=auth)
    return uuid, version, r


def get_collection(api, uuid, replica, version=None, auth=True):
    params = {"replica": replica, **({"version": version} if version else {})}
    return api.request("GET", f"/v1/collections/{uuid}", params=params, auth=auth)


def patch_collection(api, uuid, replica, version, body, auth=True):
    return api.request("PATCH", f"/v1/collections/{uuid}", params={"replica": replica, "version": version},
                       json=body, auth=auth)


def delete_collection(api, uuid, replica, auth=True):
    return api.request("DELETE", f"/v1/collections/{uuid}", params={"replica": replica}, auth=auth)


def list_page(api, auth, **params):
    return api.request("GET", "/v1/collections", params=params, auth=auth)


# --- CRUD ----------------------------------------------------------------------------------------------

def test_put_get_delete(api, replica, json_files):
    item = file_item(json_files, replica)
    uuid, version, r = put_collection(api, replica, [item], details={"lab": {"pi": "x"}})
    assert r.status_code == 201, r.text
    assert r.json() == {"uuid": uuid, "version": version}

    r = get_collection(api, uuid, replica)
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "a collection", "description": "for tests", "details": {"lab": {"pi": "x"}},
                        "contents": [item], "owner": "dev@example.org"}
    assert get_collection(api, uuid, replica, version).json() == r.json()
    assert_problem(get_collection(api, uuid, replica, "2001-01-01T000000.000000Z"), 404, "not_found")

    r = delete_collection(api, uuid, replica)
    assert r.status_code == 200, r.text
    assert r.json() == {}
    assert_problem(get_collection(api, uuid, replica), 404, "not_found")
    assert_problem(get_collection(api, uuid, replica, version), 404, "not_found")
    # Deleting again is a harmless repeat; the uuid cannot be brought back to life.
    assert delete_collection(api, uuid, replica).status_code == 200
    assert_problem(put_collection(api, replica, uuid=uuid)[2], 409, "collection_tombstone_already_exists")


def test_unknown_collection_is_404(api, replica):
    assert_problem(get_collection(api, _uuid(), replica), 404, "not_found")
    assert_problem(delete_collection(api, _uuid(), replica), 404, "not_found")
    assert_problem(patch_collection(api, _uuid(), replica, new_version(), {"name": "x"}), 404, "not_found")


def test_uuids_are_lower_cased(api, replica):
    upper = _uuid().upper()
    uuid, version, r = put_collection(api, replica, uuid=upper)
    assert r.status_code == 201 and r.json() == {"uuid": upper.lower(), "version": version}
    assert get_collection(api, upper.lower(), replica).status_code == 200
    assert get_collection(api, upper, replica).status_code == 200


def test_contents_are_deduplicated(api, replica, json_files):
    item = file_item(json_files, replica)
    uuid, _, r = put_collection(api, replica, [item] * 8)
    assert r.status_code == 201, r.text
    assert get_collection(api, uuid, replica).json()["contents"] == [item]


def test_versions_are_immutable(api, replica):
    uuid, version, r = put_collection(api, replica, name="first")
    assert r.status_code == 201
    _, _, repeat = put_collection(api, replica, uuid=uuid, version=version, name="first")
    assert repeat.status_code == 200 and repeat.json() == {"uuid": uuid, "version": version}
    assert_problem(put_collection(api, replica, uuid=uuid, version=version, name="second")[2], 409,
                   "collection_already_exists")
    assert get_collection(api, uuid, replica, version).json()["name"] == "first"
    # A new version of the same uuid is fine, and becomes the latest.
    later = new_version()
    assert put_collection(api, replica, uuid=uuid, version=later, name="second")[2].status_code == 201
    assert get_collection(api, uuid, replica).json()["name"] == "second"


def test_racing_puts_have_one_winner(api, replica):
    uuid, version = _uuid(), new_version()
    racers = 8
    barrier = threading.Barrier(racers)

    def race(i):
        barrier.wait()
        return put_collection(api, replica, uuid=uuid, version=version, name=f"racer {i}")[2]

    with ThreadPoolExecutor(racers) as pool:
        results = list(pool.map(race, range(racers)))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201] + [409] * (len(results) - 1), statuses
    winner = next(i for i, r in enumerate(results) if r.status_code == 201)
    assert get_collection(api, uuid, replica).json()["name"] == f"racer {winner}"


@pytest.mark.parametrize("same_version", [False, True], ids=["own-versions", "one-version"])
def test_users_racing_for_a_new_uuid_leave_one_owner(api, replica, same_version):
    """Users who PUT first versions of one uuid at the same moment: one owns it (201), every other gets 403 and
    leaves no version and no listing entry behind. Several rounds, since a race may not be lost every time."""
    racers, rounds = 5, 4
    run = uuidlib.uuid4().hex[:8]
    users = [f"racer{i}-{run}@example.org" for i in range(racers)]
    tokens = [api.auth(email=user) for user in users]
    for round_ in range(rounds):
        uuid = _uuid()
        versions = [f"2020-01-01T{round_:02d}00{0 if same_version else i:02d}.000000Z" for i in range(racers)]
        barrier = threading.Barrier(racers)

        def race(i):
            barrier.wait()
            return put_collection(api, replica, uuid=uuid, version=versions[i], auth=tokens[i], name=users[i])[2]

        with ThreadPoolExecutor(racers) as pool:
            results = list(pool.map(race, range(racers)))
        statuses = sorted(r.status_code for r in results)
        assert statuses == [201] + [403] * (racers - 1), (round_, [r.text[:200] for r in results])
        winner = next(i for i, r in enumerate(results) if r.status_code == 201)
        for i, r in enumerate(results):
            if i != winner:
                assert_problem(r, 403, "forbidden")
                assert_problem(get_collection(api, uuid, replica, auth=tokens[i]), 403, "forbidden")
                if versions[i] != versions[winner]:
                    assert_problem(get_collection(api, uuid, replica, versions[i], auth=tokens[winner]), 404,
                                   "not_found")
        shown = get_collection(api, uuid, replica, auth=tokens[winner])
        assert (shown.status_code, shown.json()["name"]) == (200, users[winner])
    # Nobody lost a race and kept a listing entry: the 4 uuids are listed, each once, by its owner alone.
    listed = [pair for token in tokens for pair in
              _pairs(list_page(api, token, per_page=500).json()["collections"])]
    assert len(listed) == rounds and len({uuid for uuid, _ in listed}) == rounds


def test_claims_are_create_only(settings):
    """CollectionOwners.claim against the stack's DynamoDB: 16 racing claimants all read back one of them."""
    from dss.storage.collection_owners import CollectionOwners
    owners, uuid = CollectionOwners(settings.collections_table), _uuid()
    barrier = threading.Barrier(16)

    def claim(i):
        barrier.wait()
        return owners.claim(uuid, f"claimant{i}@example.org")

    with ThreadPoolExecutor(16) as pool:
        seen = set(pool.map(claim, range(16)))
    assert len(seen) == 1 and seen <= {f"claimant{i}@example.org" for i in range(16)}
    assert owners.claim(uuid, "late@example.org") == seen.pop()


def test_a_collection_from_before_claims_stays_its_owners(api, replicas):
    """A collection whose first version predates ownership claims (written here straight into the store) keeps
    its owner: the documents decide, and the owner's next PUT writes the claim."""
    from dss.collections import collection_document
    from dss.storage.collections import collection_key

    from .helpers import quiet_replicas
    uuid, first, owner = _uuid(), "2019-01-01T000000.000000Z", "legacy-owner@example.org"
    rs = quiet_replicas(replicas)["aws"]
    body = {"name": "old", "description": "", "details": {}, "contents": []}
    rs.store.put(rs.bucket, collection_key(uuid, first), json.dumps(collection_document(body, owner)).encode(),
                 content_type="application/json")
    assert_problem(put_collection(api, "aws", uuid=uuid, auth=api.auth(email="usurper@example.org"))[2], 403,
                   "forbidden")
    assert put_collection(api, "aws", uuid=uuid, auth=api.auth(email=owner))[2].status_code == 201


# --- links ---------------------------------------------------------------------------------------------

def test_every_kind_of_link_resolves(api, replica, replicas, json_files):
    bundle_uuid, bundle_version = _uuid(), new_version()
    rs = replicas[replica]
    # Bundles are built elsewhere; a manifest object in the real store is all a link needs.
    rs.store.put(rs.bucket, f"bundles/{bundle_uuid}.{bundle_version}", b'{"files": []}',
                 content_type="application/json")
    linked_uuid, linked_version, r = put_collection(api, replica)
    assert r.status_code == 201
    contents = [
        file_item(json_files, replica),
        {"type": "bundle", "uuid": bundle_uuid, "version": bundle_version},
        {"type": "collection", "uuid": linked_uuid, "version": linked_version},
        file_item(json_files, replica, type="cell_suspension", fragment="/biomaterial_core/ncbi_taxon_id/0"),
        file_item(json_files, replica, type="cell_suspension", fragment="/a~1b/~0c"),
        file_item(json_files, replica, type="whole_document", fragment=""),
    ]
    uuid, _, r = put_collection(api, replica, contents)
    assert r.status_code == 201, r.text
    assert get_collection(api, uuid, replica).json()["contents"] == contents


@pytest.fixture(scope="module")
def invalid_links(api, stager, json_files, replicas):
    """{case: {replica: item}} of links that must not resolve."""
    cases = {}
    for replica in ("aws", "gcp"):
        big = json.dumps({"padding": "x" * MiB}).encode()
        not_json = b"not json at all"
        made = {}
        for name, data in (("big", big), ("not_json", not_json)):
            uuid, version = _uuid(), new_version()
            assert api.put_file(uuid, version, stager.stage(replica, data)).status_code == 201
            made[name] = {"uuid": uuid, "version": version}
        other = "aws" if replica == "gcp" else "gcp"
        # Written without write events, so replication never brings it over to `replica`.
        elsewhere = put_file_quietly(replicas, other, json.dumps(METADATA).encode(), version=new_version(),
                                     content_type="application/json")
        cases[replica] = {
            "missing file": {"type": "file", "uuid": _uuid(), "version": new_version()},
            "missing bundle": {"type": "bundle", "uuid": _uuid(), "version": new_version()},
            "missing collection": {"type": "collection", "uuid": _uuid(), "version": new_version()},
            "file of the other replica": {"type": "file", "uuid": elsewhere["uuid"], "version": elsewhere["version"]},
            "file version missing": file_item(json_files, replica, version=new_version()),
            "unknown type without fragment": file_item(json_files, replica, type="biomaterial"),
            "fragment that does not resolve": file_item(json_files, replica, type="x", fragment="/nothing/here"),
            "fragment past an array": file_item(json_files, replica, type="x",
                                                fragment="/biomaterial_core/ncbi_taxon_id/1"),
            "fragment that is no pointer": file_item(json_files, replica, type="x", fragment="biomaterial_core"),
            "fragment of a file over 1 MiB": {"type": "x", **made["big"], "fragment": "/padding"},
            "fragment of a file that is not JSON": {"type": "x", **made["not_json"], "fragment": ""},
        }
    return cases


INVALID_CASES = ["missing file", "missing bundle", "missing collection", "file of the other replica",
                 "file version missing", "unknown type without fragment", "fragment that does not resolve",
                 "fragment past an array", "fragment that is no pointer", "fragment of a file over 1 MiB",
                 "fragment of a file that is not JSON"]


@pytest.mark.parametrize("case", INVALID_CASES)
def test_invalid_link_is_422(api, replica, json_files, invalid_links, case):
    good = file_item(json_files, replica)
    uuid, _, r = put_collection(api, replica, [good, invalid_links[replica][case]])
    body = assert_problem(r, 422, "invalid_link")
    assert invalid_links[replica][case]["uuid"] in body["title"]
    assert_problem(get_collection(api, uuid, replica), 404, "not_found")  # nothing was stored


def test_a_large_file_may_be_linked_as_a_file(api, replica, invalid_links):
    # Only reading a fragment needs the file's bytes; a link to the file itself checks its (small) metadata.
    big = {k: v for k, v in invalid_links[replica]["fragment of a file over 1 MiB"].items() if k != "fragment"}
    assert put_collection(api, replica, [{**big, "type": "file"}])[2].status_code == 201


def test_all_invalid_links_are_counted(api, json_files):
    missing = [{"type": "file", "uuid": _uuid(), "version": new_version()} for _ in range(40)]
    body = assert_problem(put_collection(api, "aws", [file_item(json_files, "aws"), *missing])[2], 422,
                          "invalid_link")
    assert missing[0]["uuid"] in body["title"] and "39 more of 41" in body["title"]


def test_a_link_with_an_ill_formed_uuid_is_refused_by_the_schema(api):
    item = {"type": "file", "uuid": "not-a-uuid", "version": new_version()}
    assert_problem(put_collection(api, "aws", [item])[2], 400, "illegal_arguments")


# --- PATCH ---------------------------------------------------------------------------------------------

def test_patch(api, replica, json_files, replicas):
    a = file_item(json_files, replica)
    b = file_item(json_files, replica, type="cell_suspension", fragment="/biomaterial_core")
    c = file_item(json_files, replica, type="cell_suspension", fragment="/describedBy")
    uuid, version, r = put_collection(api, replica, [a, b], details={"keep": "no"})
    assert r.status_code == 201

    r = patch_collection(api, uuid, replica, version, {
        "name": "renamed", "description": "new words", "details": {1: "one", "nested": {"x": [1]}},
        "remove_contents": [a, {**a, "type": "bundle"}], "add_contents": [c, c, b]})
    assert r.status_code == 200, r.text
    new = r.json()["version"]
    assert r.json() == {"uuid": uuid, "version": new} and new > version
    assert get_collection(api, uuid, replica).json() == {
        "name": "renamed", "description": "new words", "details": {"1": "one", "nested": {"x": [1]}},
        "contents": [b, c], "owner": "dev@example.org"}
    # The base version is untouched.
    assert get_collection(api, uuid, replica, version).json()["contents"] == [a, b]

    # Patch an older version: the result starts from it, not from the latest.
    r = patch_collection(api, uuid, replica, version, {"description": "from the first"})
    assert r.status_code == 200
    patched = get_collection(api, uuid, replica, r.json()["version"]).json()
    assert patched["name"] == "a collection" and patched["contents"] == [a, b]
    assert patched["description"] == "from the first" and patched["details"] == {"keep": "no"}


def test_patch_with_an_invalid_link_changes_nothing(api, replica, json_files):
    uuid, version, _ = put_collection(api, replica)
    missing = {"type": "bundle", "uuid": _uuid(), "version": new_version()}
    assert_problem(patch_collection(api, uuid, replica, version, {"add_contents": [missing]}), 422, "invalid_link")
    assert get_collection(api, uuid, replica).json()["contents"] == []
    assert_problem(patch_collection(api, uuid, replica, new_version(), {"name": "x"}), 404, "not_found")


@pytest.mark.parametrize("key", ["add_contents", "remove_contents"])
def test_patch_takes_at_most_1000_items(api, replica, json_files, key):
    uuid, version, _ = put_collection(api, replica)
    items = [file_item(json_files, replica, fragment=f"/{i}") for i in range(1001)]
    assert_problem(patch_collection(api, uuid, replica, version, {key: items}), 400, "illegal_arguments")
    assert patch_collection(api, uuid, replica, version, {key: items[:1000]}).status_code == 200


def test_deleted_collection_cannot_be_patched(api):
    uuid, version, _ = put_collection(api, "aws")
    assert delete_collection(api, uuid, "aws").status_code == 200
    assert_problem(patch_collection(api, uuid, "aws", version, {"name": "x"}), 404, "not_found")


# --- validation and authorization ----------------------------------------------------------------------

def test_missing_or_bad_parameters_are_400(api):
    uuid, version = _uuid(), new_version()
    body = {"name": "n", "description": "d", "details": {}, "contents": []}
    full = {"replica": "aws", "uuid": uuid, "version": version}
    for missing in full:
        params = {k: v for k, v in full.items() if k != missing}
        assert_problem(api.request("PUT", "/v1/collections", params=params, json=body, auth=True), 400,
                       "illegal_arguments")
    for missing in body:
        partial = {k: v for k, v in body.items() if k != missing}
        assert_problem(api.request("PUT", "/v1/collections", params=full, json=partial, auth=True), 400,
                       "illegal_arguments")
    assert_problem(api.request("PUT", "/v1/collections", params={**full, "replica": "azure"}, json=body,
                               auth=True), 400, "illegal_arguments")
    assert_problem(api.request("PUT", "/v1/collections", params={**full, "version": "2017-06-16T19:36:04Z"},
                               json=body, auth=True), 400, "illegal_version")
    assert_problem(api.request("GET", f"/v1/collections/{uuid}", auth=True), 400, "illegal_arguments")
    assert_problem(api.request("DELETE", f"/v1/collections/{uuid}", auth=True), 400, "illegal_arguments")
    assert_problem(api.request("PATCH", f"/v1/collections/{uuid}", params={"replica": "aws"}, json={},
                               auth=True), 400, "illegal_arguments")
    assert_problem(api.request("GET", "/v1/collections/not-a-uuid", params={"replica": "aws"}, auth=True), 400,
                   "illegal_arguments")


def test_only_the_owner_may_read_change_or_delete(api, replica):
    uuid, version, _ = put_collection(api, replica)
    other = api.auth(email="other@example.org")
    assert_problem(get_collection(api, uuid, replica, auth=other), 403, "forbidden")
    assert_problem(get_collection(api, uuid, replica, version, auth=other), 403, "forbidden")
    assert_problem(patch_collection(api, uuid, replica, version, {"name": "mine"}, auth=other), 403, "forbidden")
    assert_problem(delete_collection(api, uuid, replica, auth=other), 403, "forbidden")
    # Nor may another user add versions to someone else's collection.
    assert_problem(put_collection(api, replica, uuid=uuid, auth=other)[2], 403, "forbidden")
    assert get_collection(api, uuid, replica).json()["name"] == "a collection"


def test_tokens_are_required(api):
    uuid, version, _ = put_collection(api, "aws")
    assert api.request("GET", "/v1/collections").status_code == 401
    assert get_collection(api, uuid, "aws", auth=False).status_code == 401
    assert put_collection(api, "aws", auth=False)[2].status_code == 401
    wrong_group = api.auth(group="public")
    assert_problem(get_collection(api, uuid, "aws", auth=wrong_group), 403, "Forbidden")
    assert_problem(list_page(api, wrong_group), 403, "Forbidden")


def test_read_only_mode_refuses_writes(api, in_process):
    uuid, version, _ = put_collection(api, "aws")
    client = in_process(read_only=True)
    auth = api.auth()
    body = {"name": "n", "description": "d", "details": {}, "contents": []}
    writes = [
        client.put("/v1/collections", params={"replica": "aws", "uuid": _uuid(), "version": new_version()},
                   json=body, headers=auth),
        client.patch(f"/v1/collections/{uuid}", params={"replica": "aws", "version": version}, json={},
                     headers=auth),
        client.delete(f"/v1/collections/{uuid}", params={"replica": "aws"}, headers=auth),
    ]
    for r in writes:
        assert r.status_code == 503 and r.json()["code"] == "read_only"
    assert client.get(f"/v1/collections/{uuid}", params={"replica": "aws"}, headers=auth).status_code == 200


# --- listing -------------------------------------------------------------------------------------------

def _owner_with(api, count: int, replica: str | None = None) -> tuple[dict, set[tuple[str, str]]]:
    """A fresh owner with `count` collections (on both replicas unless one is given): their auth header and
    (uuid, version) pairs. The listing is one for all replicas."""
    auth = api.auth(email=f"lister-{_uuid()}@example.org")
    made = set()
    for i in range(count):
        uuid, version, r = put_collection(api, replica or ("aws", "gcp")[i % 2], auth=auth)
        assert r.status_code == 201
        made.add((uuid, version))
    return auth, made


def _follow(api, auth, per_page):
    """Every page of the owner's listing, following the Link headers: [(status, entries)]."""
    pages = []
    r = list_page(api, auth, per_page=per_page)
    while True:
        assert r.headers["X-OpenAPI-Pagination"] == "true"
        assert r.headers["X-OpenAPI-Paginated-Content-Key"] == "collections"
        pages.append((r.status_code, r.json()["collections"]))
        if r.status_code != 206:
            assert r.status_code == 200 and "Link" not in r.headers
            return pages
        assert r.links["next"]["url"]
        r = api.session.get(r.links["next"]["url"], headers=auth, timeout=60)


def _pairs(entries):
    return {(e["uuid"], e["version"]) for e in entries}


def test_listing_pages_through_every_collection(api):
    auth, made = _owner_with(api, 25)
    pages = _follow(api, auth, 10)
    assert [(status, len(entries)) for status, entries in pages] == [(206, 10), (206, 10), (200, 5)]
    listed = [(e["uuid"], e["version"]) for _, entries in pages for e in entries]
    assert len(listed) == 25 and set(listed) == made
    everything = list_page(api, auth)
    assert everything.status_code == 200 and _pairs(everything.json()["collections"]) == made
    # start_at is an offset; past the end the page is empty and final.
    r = list_page(api, auth, per_page=10, start_at=20)
    assert r.status_code == 200 and len(r.json()["collections"]) == 5
    r = list_page(api, auth, per_page=10, start_at=100)
    assert r.status_code == 200 and r.json() == {"collections": []}


def test_an_exact_multiple_has_no_empty_last_page(api):
    auth, made = _owner_with(api, 20)
    pages = _follow(api, auth, 10)
    # The second page is full, and is the last: 200 without a Link, no empty third page.
    assert [(status, len(entries)) for status, entries in pages] == [(206, 10), (200, 10)]
    assert _pairs(pages[0][1] + pages[1][1]) == made


def test_listing_follows_patch_and_delete(api):
    auth, made = _owner_with(api, 2, "aws")
    (first, first_version), (second, _) = sorted(made)
    r = patch_collection(api, first, "aws", first_version, {"name": "patched"}, auth=auth)
    assert r.status_code == 200
    made.add((first, r.json()["version"]))
    assert _pairs(list_page(api, auth).json()["collections"]) == made  # a patched version is listed too
    assert delete_collection(api, first, "aws", auth=auth).status_code == 200
    assert _pairs(list_page(api, auth).json()["collections"]) == {p for p in made if p[0] == second}


def test_an_owner_without_collections_has_an_empty_list(api):
    r = list_page(api, api.auth(email=f"nobody-{_uuid()}@example.org"))
    assert r.status_code == 200 and r.json() == {"collections": []}


@pytest.mark.parametrize("params", [{"per_page": 9}, {"per_page": 501}, {"start_at": "x"}, {"start_at": -1}])
def test_listing_parameters_are_checked(api, params):
    assert_problem(list_page(api, True, **params), 400, "illegal_arguments")
