"""The API Lambda (chalice/app.py) answers API Gateway proxy events and direct invocations as the HTTP server
answers the same requests, and answers 503 timed_out before API Gateway's limit."""
from __future__ import annotations

import asyncio
import importlib.util
import json
import pathlib

import pytest

from dss.lambda_api import SAFETY_SECONDS, ApiLambda, gateway_routes, proxy_event_from_direct

UUID = "ce55fd51-7833-469b-be0b-5da88ebebfcd"
ROOT = pathlib.Path(__file__).resolve().parent.parent
READS = [("HEAD", f"/v1/files/{UUID}", {"replica": "aws"}),
         ("GET", f"/v1/files/{UUID}", {"replica": "gcp"}),
         ("GET", f"/v1/files/{UUID}", {}),
         ("GET", "/v1/files/not-a-uuid", {"replica": "aws"}),
         ("GET", f"/v1/bundles/{UUID}", {"replica": "aws"}),
         ("GET", "/v1/bundles/all", {"replica": "aws", "prefix": "!"}),
         ("GET", "/v1/bundles/all", {"replica": "gcp", "per_page": "10", "prefix": "0000000"}),
         ("GET", "/v1/no/such/route", {}),
         ("GET", "/internal/health", {})]


@pytest.fixture(scope="module")
def chalice_app(stack):
    spec = importlib.util.spec_from_file_location("dss_api_lambda", ROOT / "chalice" / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


def proxy_event(method: str, path: str, query: dict | None = None, headers: dict | None = None,
                body: str | None = None) -> dict:
    query = query or {}
    headers = {"host": "dss.example.org", "x-forwarded-proto": "https", **(headers or {})}
    if body is not None:  # API Gateway passes the client's Content-Length through
        headers["content-length"] = str(len(body.encode()))
    return {
        "resource": "/{proxy+}", "path": path, "httpMethod": method, "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} or None,
        "pathParameters": {"proxy": path.lstrip("/")}, "stageVariables": None,
        "requestContext": {"resourcePath": "/{proxy+}", "httpMethod": method, "path": path, "stage": "dev",
                           "requestId": "test", "identity": {"sourceIp": "127.0.0.1"}},
        "body": body, "isBase64Encoded": False,
    }


def _same_answer(over_http, via_lambda: dict, method: str, lambda_base: str) -> None:
    """The same status, type and body; links in a body name the host each request was sent to."""
    assert via_lambda["statusCode"] == over_http.status_code
    headers = {k.lower(): v for k, v in via_lambda["headers"].items()}
    assert headers.get("content-type") == over_http.headers.get("content-type")
    if method != "HEAD":
        http_base = over_http.url.split("/v1/")[0].split("/internal/")[0].rstrip("/")
        assert _comparable(via_lambda["body"].replace(lambda_base, "BASE")) == _comparable(
            over_http.text.replace(http_base, "BASE"))


def _comparable(body: str):
    """A body without the time it was answered (listings carry one)."""
    try:
        document = json.loads(body)
    except ValueError:
        return body
    if isinstance(document, dict):
        document.pop("event_timestamp", None)
    return document


@pytest.mark.parametrize("method,path,query", READS)
def test_proxy_event_matches_http(chalice_app, api, method, path, query):
    _same_answer(api.request(method, path, params=query), chalice_app(proxy_event(method, path, query), None), method,
                 "https://dss.example.org")


@pytest.mark.parametrize("method,path,query", READS)
def test_direct_invocation_matches_http(chalice_app, api, method, path, query):
    event = {"method": method, "path": path, "params": query, "headers": {}, "body": None}
    _same_answer(api.request(method, path, params=query), chalice_app(event, None), method, "https://lambda.invalid")


def test_put_through_a_proxy_event(chalice_app, api, stager, version):
    body = json.dumps({"source_url": stager.stage("aws", b"via lambda"), "creator_uid": 3})
    event = proxy_event("PUT", f"/v1/files/{UUID[:-4]}beef", {"version": version},
                        {"content-type": "application/json", **api.auth()}, body)
    response = chalice_app(event, None)
    assert response["statusCode"] == 201, response
    head = api.request("HEAD", f"/v1/files/{UUID[:-4]}beef", params={"replica": "aws", "version": version})
    assert head.headers["X-DSS-CREATOR-UID"] == "3"


def test_put_through_a_direct_invocation(chalice_app, api, stager, version, new_uuid):
    new_uuid = new_uuid()
    body = {"source_url": stager.stage("gcp", b"invoked directly"), "creator_uid": 4}
    event = {"method": "PUT", "path": f"/v1/files/{new_uuid}", "params": {"version": version},
             "headers": api.auth(), "body": body}
    response = chalice_app(event, None)
    assert response["statusCode"] == 201, response
    again = chalice_app(event, None)
    assert again["statusCode"] == 200  # the same PUT again is idempotent
    assert json.loads(again["body"])["version"] == version
    head = api.request("HEAD", f"/v1/files/{new_uuid}", params={"replica": "gcp", "version": version})
    assert head.status_code == 200 and head.headers["X-DSS-CREATOR-UID"] == "4"


def test_direct_invocation_errors_have_the_problem_shape(chalice_app):
    response = chalice_app({"method": "PUT", "path": f"/v1/files/{UUID}", "params": {"version": "nope"},
                            "headers": {}, "body": {"source_url": "s3://x/y", "creator_uid": 1}}, None)
    assert response["statusCode"] in (400, 401)
    problem = json.loads(response["body"])
    assert problem["status"] == response["statusCode"] and problem["code"] and "title" in problem


def test_direct_invocation_event_conversion():
    event = proxy_event_from_direct({"method": "post", "path": "v1/search", "headers": {"X-Trace": "1"},
                                     "params": {"replica": "aws", "tag": ["a", "b"]}, "body": {"es_query": {}}})
    assert event["httpMethod"] == "POST" and event["path"] == "/v1/search"
    assert event["headers"]["content-type"] == "application/json" and event["headers"]["x-trace"] == "1"
    assert event["headers"]["content-length"] == str(len(event["body"]))
    assert event["multiValueQueryStringParameters"] == {"replica": ["aws"], "tag": ["a", "b"]}
    assert event["queryStringParameters"] == {"replica": "aws", "tag": "b"}
    binary = proxy_event_from_direct({"method": "PUT", "path": "/x", "body": b"\x00\x01"})
    assert binary["isBase64Encoded"] and binary["headers"]["content-length"] == "2"


def test_routes_declared_to_api_gateway_are_the_spec(chalice_app):
    declared = {}
    for path, methods in chalice_app.routes.items():
        declared[path] = sorted(methods)
    assert declared == gateway_routes(ROOT / "dss-api.yml")
    assert declared["/v1/files/{uuid}"] == ["GET", "HEAD", "PUT"]
    assert declared["/v1/bundles/{uuid}"] == ["DELETE", "GET", "PATCH", "PUT"]


class _Context:
    def __init__(self, remaining_seconds: float):
        self.remaining = remaining_seconds

    def get_remaining_time_in_millis(self) -> int:
        return int(self.remaining * 1000)


def test_a_request_near_the_gateway_limit_is_answered_503_timed_out():
    async def slow_app(scope, receive, send):  # an app that takes longer than the time left
        await asyncio.sleep(5)

    handler = ApiLambda(lambda: slow_app)
    response = handler(proxy_event("GET", "/v1/bundles/all"), _Context(SAFETY_SECONDS + 0.5))
    assert response["statusCode"] == 503
    assert response["headers"]["Retry-After"]
    assert json.loads(response["body"])["code"] == "timed_out"


def test_the_budget_never_exceeds_api_gateway():
    handler = ApiLambda(lambda: None)
    assert handler.budget_seconds(_Context(300)) == 29 - SAFETY_SECONDS
    assert handler.budget_seconds(_Context(10)) == 10 - SAFETY_SECONDS
    assert handler.budget_seconds(None) == 29 - SAFETY_SECONDS
