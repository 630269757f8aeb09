"""The API Lambda entry point answers API Gateway proxy events as the HTTP server answers requests."""
from __future__ import annotations

import importlib.util
import pathlib

import pytest

UUID = "ce55fd51-7833-469b-be0b-5da88ebebfcd"


@pytest.fixture(scope="module")
def lambda_handler(stack):
    path = pathlib.Path(__file__).resolve().parent.parent / "chalice" / "app.py"
    spec = importlib.util.spec_from_file_location("dss_api_lambda", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


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


def test_proxy_event_matches_http(lambda_handler, api):
    for method, path, query in [("HEAD", f"/v1/files/{UUID}", {"replica": "aws"}),
                                ("GET", f"/v1/files/{UUID}", {"replica": "gcp"}),
                                ("GET", f"/v1/files/{UUID}", {}),
                                ("GET", f"/v1/bundles/{UUID}", {"replica": "aws"}),
                                ("GET", "/v1/bundles/all", {"replica": "aws", "prefix": "!"})]:
        over_http = api.request(method, path, params=query)
        via_lambda = lambda_handler(proxy_event(method, path, query), None)
        assert via_lambda["statusCode"] == over_http.status_code, (method, path)
        if method != "HEAD":
            assert via_lambda["body"] == over_http.text


def test_put_through_lambda(lambda_handler, api, stager, version):
    import json
    body = json.dumps({"source_url": stager.stage("aws", b"via lambda"), "creator_uid": 3})
    event = proxy_event("PUT", f"/v1/files/{UUID[:-4]}beef", {"version": version},
                        {"content-type": "application/json", **api.auth()}, body)
    response = lambda_handler(event, None)
    assert response["statusCode"] == 201, response
    head = api.request("HEAD", f"/v1/files/{UUID[:-4]}beef", params={"replica": "aws", "version": version})
    assert head.headers["X-DSS-CREATOR-UID"] == "3"
