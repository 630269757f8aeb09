"""Indexing (by the worker, from bundle events), POST /search, tombstones, and reindexing from the buckets."""
from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.parse
import uuid as uuidlib

import pytest

from dss.identifiers import new_version
from dss.index.backend import SearchBackend

from .helpers import assert_problem, wait_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def schema_server():
    """Serves one closed schema, as schema.humancellatlas.org would."""
    schema = {"type": "object", "additionalProperties": False,
              "properties": {"describedBy": {}, "marker": {}, "name": {}, "age": {}}}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(schema).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/type/biomaterial/5.1.0/donor_organism"
    server.shutdown()


class Submitter:
    def __init__(self, api, stager, replica):
        self.api, self.stager, self.replica = api, stager, replica

    def file(self, data: bytes, content_type="application/json") -> dict:
        file_uuid, version = str(uuidlib.uuid4()), new_version()
        r = self.api.put_file(file_uuid, version, self.stager.stage(self.replica, data, content_type=content_type))
        assert r.status_code == 201, r.text
        return {"uuid": file_uuid, "version": version}

    def bundle(self, named_files: list[tuple[str, dict, bool]], uuid: str | None = None) -> tuple[str, str]:
        uuid, version = uuid or str(uuidlib.uuid4()), new_version()
        files = [{**f, "name": name, "indexed": indexed} for name, f, indexed in named_files]
        r = self.api.request("PUT", f"/v1/bundles/{uuid}", params={"replica": self.replica, "version": version},
                             auth=True, json={"files": files, "creator_uid": 1})
        assert r.status_code == 201, r.text
        return uuid, version

    def search(self, es_query: dict, **params):
        return self.api.request("POST", "/v1/search", params={"replica": self.replica, **params},
                                json={"es_query": es_query})

    def wait_hits(self, es_query: dict, expected: int, timeout: float = 60, **params):
        def found():
            r = self.search(es_query, **params)
            assert r.status_code in (200, 206), r.text
            return r if r.json()["total_hits"] == expected else None

        return wait_for(found, timeout=timeout, interval=0.3, what=f"{expected} hit(s) for {es_query}")


@pytest.fixture
def submitter(api, stager, replica):
    return Submitter(api, stager, replica)


def marker_query(marker: str, field="files.donor_organism_json.marker") -> dict:
    return {"query": {"term": {field: marker}}}


def test_bundle_is_indexed_and_found(submitter, schema_server):
    marker = uuidlib.uuid4().hex
    donor = submitter.file(json.dumps({"describedBy": schema_server, "marker": marker, "name": "Donor",
                                       "secret_extra": "scrubbed"}).encode())
    plain = submitter.file(json.dumps({"marker": marker, "free_form": {"n": 3}}).encode())  # no schema at all
    unreachable = submitter.file(json.dumps({"describedBy": "http://127.0.0.1:9/type/x/1.0.0/sample",
                                             "marker": marker, "kept": True}).encode())
    broken = submitter.file(b"{not json")
    text = submitter.file(b"plain text", content_type="text/plain")
    uuid, version = submitter.bundle([("donor_organism_0.json", donor, True), ("notes.json", plain, True),
                                      ("sample_0.json", unreachable, True), ("broken.json", broken, True),
                                      ("readme.txt", text, True), ("ignored.json", plain, False)])
    r = submitter.wait_hits(marker_query(marker), 1, output_format="raw")
    [hit] = r.json()["results"]
    assert hit["bundle_fqid"] == f"{uuid}.{version}"
    assert hit["bundle_url"].endswith(f"/v1/bundles/{uuid}?version={version}&replica={submitter.replica}")
    doc = hit["metadata"]
    assert doc["uuid"] == uuid and doc["manifest"]["version"] == version
    assert doc["files"]["donor_organism_json"] == [{"describedBy": schema_server, "marker": marker, "name": "Donor"}]
    assert doc["files"]["notes_json"] == [{"marker": marker, "free_form": {"n": 3}}]  # indexed as it is
    assert doc["files"]["sample_json"][0]["kept"] is True  # its schema could not be fetched: kept, unscrubbed
    assert set(doc["files"]) == {"donor_organism_json", "notes_json", "sample_json"}
    assert submitter.wait_hits(marker_query(marker, "files.notes_json.free_form.n") | {
        "query": {"bool": {"must": [{"term": {"files.notes_json.marker": marker}},
                                    {"range": {"files.notes_json.free_form.n": {"gte": 3}}}]}}}, 1)


def test_tombstone_replaces_the_document(submitter, api):
    marker = uuidlib.uuid4().hex
    f = submitter.file(json.dumps({"marker": marker}).encode())
    uuid, version = submitter.bundle([("donor_organism_0.json", f, True)])
    submitter.wait_hits(marker_query(marker), 1)
    r = api.request("DELETE", f"/v1/bundles/{uuid}", params={"replica": submitter.replica}, auth=True,
                    json={"reason": "withdrawn"})
    assert r.status_code == 200
    query = {"query": {"bool": {"must": [{"term": {"uuid": uuid}}, {"term": {"admin_deleted": True}}]}}}
    hit = submitter.wait_hits(query, 1, output_format="raw").json()["results"][0]["metadata"]
    assert hit["reason"] == "withdrawn" and hit["manifest"] == {"version": version}
    assert submitter.search(marker_query(marker)).json()["total_hits"] == 0


def test_search_paging(submitter, api):
    marker = uuidlib.uuid4().hex
    f = submitter.file(json.dumps({"marker": marker}).encode())
    fqids = sorted((submitter.bundle([("donor_organism_0.json", f, True)]) for _ in range(23)), reverse=True)
    submitter.wait_hits(marker_query(marker), 23)
    url = f"{api.base_url}/v1/search?" + urllib.parse.urlencode({"replica": submitter.replica, "per_page": 10})
    pages = []
    while url:
        # The hca client re-sends the body and re-appends its own query parameters to the Link URL.
        r = api.session.post(url, params={"replica": submitter.replica}, json={"es_query": marker_query(marker)},
                             timeout=60)
        assert r.status_code in (200, 206), r.text
        pages.append(r)
        assert r.json()["total_hits"] == 23
        assert r.headers["X-OpenAPI-Paginated-Content-Key"] == "results"
        link = r.headers.get("Link")
        assert (r.status_code == 206) == bool(link)
        url = link[link.index("<") + 1:link.index(">")] if link else None
    assert [len(p.json()["results"]) for p in pages] == [10, 10, 3]
    assert [x["bundle_fqid"] for p in pages for x in p.json()["results"]] == [f"{u}.{v}" for u, v in fqids]


def test_exact_multiple_has_no_empty_last_page(submitter):
    marker = uuidlib.uuid4().hex
    f = submitter.file(json.dumps({"marker": marker}).encode())
    for _ in range(10):
        submitter.bundle([("donor_organism_0.json", f, True)])
    r = submitter.wait_hits(marker_query(marker), 10, per_page=10)
    assert r.status_code == 200 and len(r.json()["results"]) == 10 and "Link" not in r.headers


def test_raw_pages_are_capped(submitter):
    marker = uuidlib.uuid4().hex
    f = submitter.file(json.dumps({"marker": marker}).encode())
    for _ in range(12):
        submitter.bundle([("donor_organism_0.json", f, True)])
    r = submitter.wait_hits(marker_query(marker), 12, output_format="raw", per_page=11)
    assert r.status_code == 206 and len(r.json()["results"]) == 10
    assert all("metadata" in x for x in r.json()["results"])


def test_every_result_has_a_numeric_score(submitter):
    """Results are sorted by bundle, not by score; they are scored all the same, as the spec's `number` says (a
    filter scores 0)."""
    marker = uuidlib.uuid4().hex
    f = submitter.file(json.dumps({"marker": marker}).encode())
    submitter.bundle([("donor_organism_0.json", f, True)])
    scored = submitter.wait_hits(marker_query(marker), 1).json()["results"][0]["search_score"]
    assert isinstance(scored, float) and scored > 0
    filtered = submitter.search({"query": {"bool": {"filter": [marker_query(marker)["query"]]}}}, output_format="raw")
    assert filtered.json()["results"][0]["search_score"] == 0.0


def test_search_errors(submitter, api, settings):
    # At least one document, whatever ran before (with no index yet, a bad query would find nothing rather than fail).
    marker = uuidlib.uuid4().hex
    submitter.bundle([("donor_organism_0.json", submitter.file(json.dumps({"marker": marker}).encode()), True)])
    submitter.wait_hits(marker_query(marker), 1)
    assert_problem(submitter.search({"query": {"no_such_query_type": {}}}), 400, "elasticsearch_bad_request")
    assert_problem(submitter.search({"query": {"match_all": {}}}, per_page=9), 400, "illegal_arguments")
    assert_problem(submitter.search({"query": {"match_all": {}}}, per_page=501), 400, "illegal_arguments")
    assert_problem(api.request("POST", "/v1/search", params={"replica": submitter.replica}, json={}), 400,
                   "illegal_arguments")
    assert_problem(api.request("POST", "/v1/search", json={"es_query": {}}), 400, "illegal_arguments")
    backend = SearchBackend(settings)

    def matches_everything():  # an empty query matches every document; others may be indexing meanwhile
        before = backend.count(submitter.replica)
        r = submitter.search({})
        assert r.status_code in (200, 206), r.text
        return r if before == r.json()["total_hits"] == backend.count(submitter.replica) else None

    assert wait_for(matches_everything, timeout=30, what="an empty query counting every document")


def test_reindex_from_an_empty_index_gives_the_same_results(submitter, settings, tmp_path):
    prefix = uuidlib.uuid4().hex[:6]
    marker = uuidlib.uuid4().hex
    f = submitter.file(json.dumps({"marker": marker}).encode())
    uuids = [f"{prefix}{uuidlib.uuid4().hex[6:8]}-{str(uuidlib.uuid4())[9:]}" for _ in range(12)]
    for uuid in uuids:
        submitter.bundle([("donor_organism_0.json", f, True)], uuid=uuid)
    before = submitter.wait_hits(marker_query(marker), 12, per_page=100).json()["results"]
    backend = SearchBackend(settings)
    for index in backend.client.indices.get_alias(name=backend.alias(submitter.replica)):
        backend.client.indices.delete(index=index)
    assert submitter.search(marker_query(marker)).json()["total_hits"] == 0
    result = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "reindex.py"), "--replica",
                             submitter.replica, "--prefix", prefix, "--no-progress", "--state",
                             str(tmp_path / "state.json")], capture_output=True, text=True, env=dict(os.environ),
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"{submitter.replica}: 12 bundle uuid(s) walked" in result.stdout
    after = submitter.wait_hits(marker_query(marker), 12, per_page=100).json()["results"]
    assert [x["bundle_fqid"] for x in after] == [x["bundle_fqid"] for x in before]
    again = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "reindex.py"), "--replica",
                            submitter.replica, "--prefix", prefix, "--no-progress", "--state",
                            str(tmp_path / "state.json")], capture_output=True, text=True, env=dict(os.environ),
                           timeout=300)
    assert "12 bundle uuid(s) walked, 0 document(s) written" in again.stdout  # idempotent
    resumed = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "reindex.py"), "--replica",
                              submitter.replica, "--prefix", prefix, "--no-progress", "--resume", "--state",
                              str(tmp_path / "state.json")], capture_output=True, text=True, env=dict(os.environ),
                             timeout=300)
    assert "0 bundle uuid(s) walked" in resumed.stdout  # the checkpoint is past every uuid
