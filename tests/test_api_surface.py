"""The served spec, the UI, and the routes that later issues build (501 with the standard error body)."""
from __future__ import annotations

import json

import pytest
import yaml
from openapi_spec_validator import validate

from dss.app import SPEC_PATH
from dss.request_checks import MAX_BODY_BYTES

from .helpers import assert_problem

UUID = "ce55fd51-7833-469b-be0b-5da88ebebfcd"
VERSION = "2017-06-16T193604.240704Z"


def test_spec_is_valid_swagger_2():
    spec = yaml.safe_load(SPEC_PATH.read_text())
    validate(spec)
    assert spec["swagger"] == "2.0" and spec["basePath"] == "/v1"


def test_spec_and_ui_are_served(api):
    spec = api.request("GET", "/v1/swagger.json")
    assert spec.status_code == 200
    served = spec.json()
    assert set(served["paths"]) >= {"/search", "/files/{uuid}", "/bundles/{uuid}", "/bundles/all",
                                    "/bundles/{uuid}/checkout", "/bundles/checkout/{checkout_job_id}",
                                    "/subscriptions", "/subscriptions/{uuid}", "/collections",
                                    "/collections/{uuid}", "/events", "/events/{uuid}"}
    root = api.request("GET", "/", allow_redirects=True)
    assert root.status_code == 200 and "swagger-ui" in root.text.lower()
    assert api.request("GET", "/version").json()["version_info"]["version"]


def test_every_operation_has_one_declared_tag(api):
    """Swagger UI groups operations by tag: without one, everything lands under "default"."""
    served = api.request("GET", "/v1/swagger.json").json()
    declared = {tag["name"]: tag.get("description") for tag in served["tags"]}
    assert all(declared.values()), declared
    operations = {(path, method): op.get("tags") for path, ops in served["paths"].items()
                  for method, op in ops.items() if isinstance(op, dict) and "responses" in op}
    assert len(operations) == 22
    untagged = {key: tags for key, tags in operations.items() if not tags or len(tags) != 1 or tags[0] not in declared}
    assert not untagged
    assert {tags[0] for tags in operations.values()} == set(declared)  # no tag without an operation
    assert operations[("/bundles/{uuid}/checkout", "post")] == ["checkout"]
    assert operations[("/bundles/{uuid}", "put")] == ["bundles"]


def test_every_paging_operation_declares_206(api):
    paths = api.request("GET", "/v1/swagger.json").json()["paths"]
    paged = {(p, m) for p, ops in paths.items() for m, op in ops.items()
             if isinstance(op, dict) and "206" in op.get("responses", {})}
    assert paged == {("/search", "post"), ("/bundles/{uuid}", "get"), ("/bundles/all", "get"),
                     ("/collections", "get"), ("/events", "get")}


def test_unknown_route_is_404_problem(api):
    assert_problem(api.request("GET", "/v1/nothing-here"), 404, "not_found")


def test_validation_runs_before_the_handlers(api):
    assert_problem(api.request("GET", f"/v1/bundles/{UUID}", params={"replica": "aws", "per_page": 9}), 400,
                   "illegal_arguments")
    assert_problem(api.request("GET", "/v1/bundles/all", params={"replica": "aws", "prefix": "!@#"}), 400,
                   "illegal_arguments")


def test_unknown_query_parameters_are_rejected(api):
    r = api.request("GET", f"/v1/files/{UUID}", params={"replica": "aws", "colour": "blue"})
    assert_problem(r, 400, "illegal_arguments")


def test_read_only_mode_rejects_writes(in_process, api, stager):
    client = in_process(read_only=True)
    r = client.put(f"/v1/files/{UUID}", params={"version": VERSION}, headers=api.auth(),
                   json={"source_url": stager.stage("aws", b"ro"), "creator_uid": 1})
    assert r.status_code == 503
    assert r.json()["code"] == "read_only"
    # The original overwrote this with 10 for PUT and DELETE (a quirk); read-only periods are long.
    assert r.headers["Retry-After"] == "600"
    assert client.head(f"/v1/files/{UUID}", params={"replica": "aws"}).status_code == 404


def test_server_errors_carry_retry_after(in_process):
    # A replica whose bucket does not exist makes the store fail: a server-side error, not the client's.
    client = in_process(s3_bucket="no-such-bucket-for-dss")
    r = client.get(f"/v1/files/{UUID}", params={"replica": "aws"})
    assert_problem(r, 500, "unhandled_exception")
    assert r.headers["Retry-After"] == "10"


# --- client input that the handlers and connexion's parsers cannot take: a 4xx, never a 500 ----------------------

def test_a_body_that_is_not_utf8_is_refused(api):
    r = api.request("POST", "/v1/search", params={"replica": "aws"}, data=b"\xff",
                    headers={"Content-Type": "application/json"})
    assert "not UTF-8" in assert_problem(r, 400, "illegal_arguments")["title"]


@pytest.mark.parametrize("path,params,auth", [("/v1/search", {"replica": "aws"}, False),
                                              ("/v1/collections", {"replica": "aws", "uuid": UUID,
                                                                   "version": VERSION}, True)])
def test_json_nested_too_deep_is_refused(api, path, params, auth):
    deep = b'{"es_query": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    r = api.request("POST" if path == "/v1/search" else "PUT", path, params=params, data=deep, auth=auth,
                    headers={"Content-Type": "application/json"})
    assert "deeper than" in assert_problem(r, 400, "illegal_arguments")["title"]
    # Nesting within the limit is JSON like any other: here refused by the schema, not by the depth check.
    shallow = b'{"es_query": ' + b"[" * 90 + b"]" * 90 + b"}"
    r = api.request("POST", "/v1/search", params={"replica": "aws"}, data=shallow,
                    headers={"Content-Type": "application/json"})
    assert "deeper than" not in assert_problem(r, 400, "illegal_arguments")["title"]


def test_a_lone_surrogate_is_refused(api):
    # Escaped, it is valid JSON text; decoded, it is no Unicode text that a UTF-8 key, header or table could hold.
    for data in (b'{"es_query": {"term": {"a": "\\ud800"}}}', b'{"es_query": {"\\udfff": {}}}'):
        r = api.request("POST", "/v1/search", params={"replica": "aws"}, data=data,
                        headers={"Content-Type": "application/json"})
        assert "surrogate" in assert_problem(r, 400, "illegal_arguments")["title"]
    r = api.request("POST", "/v1/search", params={"replica": "aws"}, data=b'{"es_query": {"a": "\\ud83d\\ude00"}}',
                    headers={"Content-Type": "application/json"})
    assert r.status_code in (200, 206, 400) and "surrogate" not in r.text  # a pair is one character


@pytest.mark.parametrize("data", [b'{"es_query": NaN}', b'{"es_query": {"n": ' + b"9" * 5000 + b"}}",
                                  b'{"es_query": {}'], ids=["NaN", "5000 digits", "truncated"])
def test_what_is_not_json_is_refused(api, data):
    r = api.request("POST", "/v1/search", params={"replica": "aws"}, data=data,
                    headers={"Content-Type": "application/json"})
    assert "not JSON" in assert_problem(r, 400, "illegal_arguments")["title"]


def test_a_body_without_content_type_is_refused(api, stager):
    body = json.dumps({"source_url": stager.stage("aws", b"no content type"), "creator_uid": 1}).encode()
    r = api.request("PUT", f"/v1/files/{UUID}", params={"version": VERSION}, data=body, auth=True)
    assert "Content-Type" in assert_problem(r, 415, "unsupported_media_type")["title"]
    # Authentication comes first, as for every other check of the request.
    assert_problem(api.request("PUT", f"/v1/files/{UUID}", params={"version": VERSION}, data=body), 401,
                   "OAuthProblem")
    r = api.request("PUT", f"/v1/files/{UUID}", params={"version": VERSION}, data=body, auth=True,
                    headers={"Content-Type": "application/json; charset=latin-1"})
    assert_problem(r, 415, "unsupported_media_type")


@pytest.mark.parametrize("source_url", ["s3://Bad_Bucket!/x", "gs://Bad_Bucket!/x", "s3://b/a\x00b"])
def test_a_source_url_no_store_can_name_is_refused(api, source_url):
    r = api.request("PUT", f"/v1/files/{UUID}", params={"version": VERSION}, auth=True,
                    json={"source_url": source_url, "creator_uid": 1})
    assert "source_url names no possible" in assert_problem(r, 400, "illegal_arguments")["title"]


def test_a_body_that_is_too_large_is_refused(api):
    r = api.request("POST", "/v1/search", params={"replica": "aws"}, data=b" " * (MAX_BODY_BYTES + 1),
                    headers={"Content-Type": "application/json"})
    assert_problem(r, 413, "payload_too_large")


@pytest.mark.parametrize("method,path", [("DELETE", "/v1/subscriptions/a%0Ab"), ("GET", "/v1/files/a%00b"),
                                         ("GET", f"/v1/bundles/{UUID}%0A"), ("GET", "/v1/events/%7F")])
def test_a_control_character_in_the_path_is_refused(api, method, path):
    assert_problem(api.request(method, path, params={"replica": "aws"}), 400, "illegal_arguments")


def test_server_errors_show_no_traceback_unless_debugging(in_process, caplog):
    # A replica whose bucket does not exist: the store fails with an error no handler expects.
    hidden = in_process(s3_bucket="no-such-bucket-for-dss").get(f"/v1/bundles/{UUID}", params={"replica": "aws"})
    body = assert_problem(hidden, 500, "unhandled_exception")
    assert body["stacktrace"] == "" and "Traceback" not in hidden.text and ".py" not in hidden.text
    logged = [r for r in caplog.records if r.name == "dss.app" and r.exc_info]
    assert logged, "the log keeps the traceback"
    shown = in_process(s3_bucket="no-such-bucket-for-dss", debug=True).get(f"/v1/bundles/{UUID}",
                                                                           params={"replica": "aws"})
    assert "Traceback" in assert_problem(shown, 500, "unhandled_exception")["stacktrace"]


# --- what the original's clients rely on ---------------------------------------------------------------------------

def test_the_served_spec_names_the_host_it_was_requested_on(api, in_process):
    served = api.request("GET", "/v1/swagger.json").json()
    scheme, host = api.base_url.split("://", 1)
    assert (served["host"], served["schemes"], served["basePath"]) == (host, [scheme], "/v1")
    # Behind a proxy: the host and scheme the client used, as the proxy reports them.
    proxied = api.request("GET", "/v1/swagger.json",
                          headers={"X-Forwarded-Host": "dss.example.org, inner", "X-Forwarded-Proto": "https"}).json()
    assert (proxied["host"], proxied["schemes"]) == ("dss.example.org", ["https"])
    assert yaml.safe_load(api.request("GET", "/v1/swagger.yaml").text)["host"] == host
    # A configured domain wins.
    configured = in_process(api_domain_name="dss.example.com").get("/v1/swagger.json").json()
    assert (configured["host"], configured["schemes"]) == ("dss.example.com", ["https"])


def test_the_served_spec_declares_problem_json(api):
    assert "application/problem+json" in api.request("GET", "/v1/swagger.json").json()["produces"]


@pytest.mark.parametrize("method,path,allow", [
    ("PATCH", "/v1/search", "POST"),
    ("POST", f"/v1/bundles/{UUID}", "DELETE, GET, HEAD, PATCH, PUT"),
    ("POST", "/v1/bundles/all", "GET, HEAD"),
    ("DELETE", "/v1/collections", "GET, HEAD, PUT"),
    ("POST", "/version", "GET, HEAD, OPTIONS"),
])
def test_405_names_the_allowed_methods(api, method, path, allow):
    r = api.request(method, path, params={"replica": "aws"})
    assert_problem(r, 405, "method_not_allowed")
    assert r.headers["Allow"] == allow


def test_every_operation_with_a_body_declares_413_and_415(api):
    paths = api.request("GET", "/v1/swagger.json").json()["paths"]
    with_body = [op for ops in paths.values() for op in ops.values()
                 if any(p.get("in") == "body" for p in op.get("parameters", []))]
    assert len(with_body) == 9
    assert all({"413", "415"} <= set(op["responses"]) for op in with_body)


def test_a_chunked_body_is_read(api):
    """A body sent without Content-Length (chunked) is validated and handled like any other."""
    chunks = iter([b'{"es_query": ', b'{"query": {"match_all": {}}}}'])
    r = api.request("POST", "/v1/search", params={"replica": "aws"}, data=chunks,
                    headers={"Content-Type": "application/json"})
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert r.status_code in (200, 206), r.text
    assert r.json()["es_query"] == {"query": {"match_all": {}}}
