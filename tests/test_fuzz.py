"""Property-based requests (schemathesis) over every operation of the served spec, with and without a token.

Every answer must be as the spec declares it: no 5xx, a declared status code, a declared media type and a body
that fits the declared schema, and on every error an `application/problem+json` body with the contract's fields.
Generated requests mostly name objects that do not exist, so each operation that addresses an object is also fuzzed
with the path (and version) of a real one, made for this module. Bodies no generator sends (not UTF-8, nested
10,000 deep, untyped) are sent to every operation that takes a body.

The app is served in-process from the stack's servers, with a short wait for the files of a bundle (each bundle
PUT or PATCH naming files that do not exist would otherwise wait the default 15 s before its 400).
"""
from __future__ import annotations

import dataclasses
import uuid as uuidlib

import hypothesis
import pytest
import schemathesis
import yaml
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_headers_conformance,
                                               response_schema_conformance, status_code_conformance)

from dss.app import SPEC_PATH, create_app
from dss.identifiers import format_version, new_version
from dss.notify.subscriptions import KINDS, SubscriptionStore

# Mostly valid versions, so that requests get past validation into the handlers.
schemathesis.openapi.format("DSS_VERSION", st.one_of(
    st.datetimes().map(format_version), st.sampled_from(["", "ABCD", "2017-06-16T19:36:04.240704Z"])))


def declared_content_type(ctx, response, case):
    """The media type is one the spec declares, where there is one: a redirect and a HEAD 200 have neither body
    nor type (a HEAD error has the type of the GET error, without its body)."""
    if response.content or "content-type" in response.headers:
        return content_type_conformance(ctx, response, case)
    return None


CHECKS = [not_a_server_error, status_code_conformance, declared_content_type, response_schema_conformance,
          response_headers_conformance]
EXAMPLES = 12  # per operation, token or not, and kind of strategy: under a minute for the module
FUZZER = "dev@example.org"  # the local stack's admin, so that DELETE /bundles gets past its check


@pytest.fixture(scope="module")
def app(settings):
    return create_app(dataclasses.replace(settings, bundle_file_wait_seconds=0.2))


@pytest.fixture(scope="module")
def api_schema(app):
    client = app.test_client()
    return schemathesis.openapi.from_dict(client.get("/v1/swagger.json").json())


@pytest.fixture(scope="module")
def seeded(api, stager, settings):
    """One of each kind of object, for the operations that address one: the fixed parts of their requests."""
    token = api.auth(email=FUZZER)
    file_uuid, file_version = str(uuidlib.uuid4()), new_version()
    source_url = stager.stage("aws", b'{"fuzz": true}', content_type="application/json")
    assert api.put_file(file_uuid, file_version, source_url).status_code == 201
    bundle_uuid, bundle_version = str(uuidlib.uuid4()), new_version()
    r = api.request("PUT", f"/v1/bundles/{bundle_uuid}", params={"replica": "aws", "version": bundle_version},
                    auth=token, json={"creator_uid": 1, "files": [
                        {"uuid": file_uuid, "version": file_version, "name": "fuzz.json", "indexed": True}]})
    assert r.status_code == 201, r.text
    collection_uuid, collection_version = str(uuidlib.uuid4()), new_version()
    r = api.request("PUT", "/v1/collections", auth=token,
                    params={"replica": "aws", "uuid": collection_uuid, "version": collection_version},
                    json={"name": "fuzz", "description": "fuzz", "details": {}, "contents": [
                        {"type": "file", "uuid": file_uuid, "version": file_version}]})
    assert r.status_code == 201, r.text
    r = api.request("PUT", "/v1/subscriptions", params={"replica": "aws"}, auth=token,
                    json={"callback_url": "https://example.org/fuzz", "jmespath_query": ""})
    assert r.status_code == 201, r.text
    subscription_uuid = r.json()["uuid"]
    r = api.request("POST", f"/v1/bundles/{bundle_uuid}/checkout", params={"replica": "aws"}, auth=token)
    assert r.status_code == 200, r.text
    checkout_job_id = r.json()["checkout_job_id"]
    file = {"path_parameters": {"uuid": file_uuid}, "query": {"replica": "aws", "version": file_version}}
    bundle = {"path_parameters": {"uuid": bundle_uuid}, "query": {"replica": "aws", "version": bundle_version}}
    subscription = {"path_parameters": {"uuid": subscription_uuid}, "query": {"replica": "aws"}}
    collection = {"path_parameters": {"uuid": collection_uuid}, "query": {"replica": "aws"}}
    yield {
        ("/files/{uuid}", "HEAD"): file, ("/files/{uuid}", "GET"): file,
        # The staged source again: the same version is 200, another one 201.
        ("/files/{uuid}", "PUT"): {"path_parameters": {"uuid": file_uuid},
                                   "body": {"source_url": source_url, "creator_uid": 4321}},
        ("/bundles/{uuid}", "GET"): bundle, ("/bundles/{uuid}", "PATCH"): bundle,
        ("/bundles/{uuid}", "PUT"): bundle, ("/bundles/{uuid}", "DELETE"): bundle,
        ("/bundles/{uuid}/checkout", "POST"): bundle,
        ("/bundles/checkout/{checkout_job_id}", "GET"): {"path_parameters": {"checkout_job_id": checkout_job_id},
                                                         "query": {"replica": "aws"}},
        ("/subscriptions/{uuid}", "GET"): subscription, ("/subscriptions/{uuid}", "DELETE"): subscription,
        ("/collections/{uuid}", "GET"): collection, ("/collections/{uuid}", "DELETE"): collection,
        ("/collections/{uuid}", "PATCH"): {"path_parameters": {"uuid": collection_uuid},
                                           "query": {"replica": "aws", "version": collection_version}},
        ("/events/{uuid}", "GET"): bundle,
    }
    # Generated subscriptions would be matched (and notified) for the rest of the session.
    store = SubscriptionStore(settings.subscriptions_table)
    for replica in ("aws", "gcp"):
        for kind in KINDS:
            for subscription in store.of_owner(FUZZER, replica, kind):
                store.delete(subscription.owner, subscription.uuid)


SPEC = yaml.safe_load(SPEC_PATH.read_text())
OPERATIONS = [(path, method.upper()) for path, ops in SPEC["paths"].items() for method in ops
              if method in ("get", "head", "put", "post", "patch", "delete")]


def test_every_operation_of_the_served_spec_is_fuzzed(api_schema):
    served = {(path, method.upper()) for path in api_schema for method in api_schema[path]}
    assert served == set(OPERATIONS) and len(OPERATIONS) == 22


# Destructive operations on the seeded objects run last, so that the others find them alive.
ORDERED = sorted(OPERATIONS, key=lambda op: op[1] == "DELETE")


@pytest.mark.parametrize("with_token", [True, False], ids=["token", "no token"])
@pytest.mark.parametrize("path,method", ORDERED, ids=[f"{m} {p}" for p, m in ORDERED])
def test_every_answer_is_as_declared(api_schema, app, api, seeded, settings, path, method, with_token):
    operation = api_schema[path][method]
    headers = api.auth(email=FUZZER) if with_token else {}
    strategies = [operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)]
    if (path, method) in seeded:
        strategies.append(operation.as_strategy(GenerationMode.POSITIVE, **seeded[(path, method)]))

    @hypothesis.given(case=st.one_of(strategies))
    @hypothesis.settings(max_examples=EXAMPLES * len(strategies), deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck), phases=[hypothesis.Phase.generate])
    def check(case):
        response = case.call(app=app, headers=headers)
        if (path, method) == ("/subscriptions", "PUT") and response.status_code == 201:
            # Its callback URL is generated: no notification must wait on it while other tests run.
            SubscriptionStore(settings.subscriptions_table).delete(FUZZER, response.json()["uuid"])
        case.validate_response(response, checks=CHECKS, headers=headers)
        if response.status_code >= 400 and case.method != "HEAD":
            assert response.headers["content-type"][0].startswith("application/problem+json"), response.text
            assert {"status", "code", "title"} <= set(response.json()), response.text
            assert response.json()["status"] == response.status_code

    check()


# --- bodies that are no JSON a handler could take, on every operation that takes a body --------------------------

HOSTILE_BODIES = {
    "not UTF-8": (b'{"a": "\xff"}', "application/json", 400),
    "nested 10,000 deep": (b"[" * 10_000 + b"]" * 10_000, "application/json", 400),
    "lone surrogate": (b'{"\\ud800": 1}', "application/json", 400),
    "no Content-Type": (b"{}", None, 415),
    "Latin-1": (b"{}", "application/json; charset=latin-1", 415),
}
BODY_OPERATIONS = [(path, method) for path, method in OPERATIONS
                   if any(p.get("in") == "body" for p in SPEC["paths"][path][method.lower()].get("parameters", []))]


def request_for(spec: dict, path: str, method: str) -> tuple[str, dict]:
    """The URL and query of a request to the operation that passes routing and parameter validation."""
    operation = spec["paths"][path][method.lower()]
    uuid, version = "0b4c2d1e-1f2a-4b3c-8d4e-5f6a7b8c9d0e", "2017-06-16T193604.240704Z"
    query = {}
    for parameter in operation.get("parameters", []):
        if "$ref" in parameter:
            parameter = spec["parameters"][parameter["$ref"].rsplit("/", 1)[-1]]
        if parameter["in"] == "query" and parameter.get("required"):
            query[parameter["name"]] = (parameter["enum"][0] if "enum" in parameter
                                        else version if parameter["name"] == "version" else uuid)
    url = spec["basePath"] + path.replace("{uuid}", uuid)
    return url, query


@pytest.mark.parametrize("kind", list(HOSTILE_BODIES))
@pytest.mark.parametrize("path,method", BODY_OPERATIONS, ids=[f"{m} {p}" for p, m in BODY_OPERATIONS])
def test_a_body_no_handler_could_take_is_refused(app, api, path, method, kind):
    assert len(BODY_OPERATIONS) == 9
    client = app.test_client()
    spec = client.get("/v1/swagger.json").json()
    data, content_type, status = HOSTILE_BODIES[kind]
    url, query = request_for(spec, path, method)
    headers = api.auth(email=FUZZER) | ({"Content-Type": content_type} if content_type else {})
    r = client.request(method, url, params=query, content=data, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert str(status) in spec["paths"][path][method.lower()]["responses"]
