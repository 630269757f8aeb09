"""The request-body rules, without a server: what is refused with which status, and what passes."""
from __future__ import annotations

import pytest

from dss.errors import DSSError
from dss.request_checks import MAX_JSON_DEPTH, check_json_body, checked_depth
from dss.served_spec import spec_for_request


def refused(body: bytes, content_type: str | None = "application/json") -> tuple[int, str]:
    with pytest.raises(DSSError) as e:
        check_json_body(body, content_type)
    return e.value.status, e.value.code


def test_depth_counts_arrays_and_objects():
    assert [checked_depth(d) for d in (1, "s", [], {}, [[]], {"a": [1, {"b": None}]})] == [0, 0, 1, 1, 2, 3]
    deep: list = []
    for _ in range(4999):
        deep = [deep]
    assert checked_depth(deep) == 5000  # deeper than Python's recursion limit


@pytest.mark.parametrize("body,content_type,expected", [
    (b"{}", None, (415, "unsupported_media_type")),
    (b"{}", "application/json; charset=latin-1", (415, "unsupported_media_type")),
    (b"\xff", "application/json", (400, "illegal_arguments")),
    (b"{", "application/json", (400, "illegal_arguments")),
    (b"[Infinity]", "application/json", (400, "illegal_arguments")),
    (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), "application/json", (400, "illegal_arguments")),
    (b'{"\\ud800": 1}', "application/json", (400, "illegal_arguments")),
    (b'["a\\udc00"]', "application/problem+json", (400, "illegal_arguments")),
])
def test_refused(body, content_type, expected):
    assert refused(body, content_type) == expected


@pytest.mark.parametrize("body,content_type", [
    (b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH, "application/json"),
    (b'{"a": "\\ud83d\\ude00"}', 'application/json; charset="UTF-8"'),
    (b"\xff", "text/plain"),  # another media type: connexion answers 415 for operations that take JSON
])
def test_passed(body, content_type):
    check_json_body(body, content_type)


def scope(headers: dict[str, str], scheme="http", root_path="") -> dict:
    return {"type": "http", "scheme": scheme, "root_path": root_path,
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}


def test_the_served_host():
    spec = {"swagger": "2.0", "basePath": "/v1", "schemes": ["http", "https"]}
    assert spec_for_request(spec, scope({"Host": "127.0.0.1:5000"})) | {} == {
        **spec, "host": "127.0.0.1:5000", "schemes": ["http"]}
    proxied = spec_for_request(spec, scope({"Host": "10.0.0.5", "X-Forwarded-Host": "dss.example.org, lb",
                                            "X-Forwarded-Proto": "HTTPS"}, root_path="/api"))
    assert (proxied["host"], proxied["schemes"], proxied["basePath"]) == ("dss.example.org", ["https"], "/api/v1")
    assert "host" not in spec_for_request(spec, scope({"Host": "bad host/<x>"}))
    configured = {**spec, "host": "dss.example.com", "schemes": ["https"]}
    assert spec_for_request(configured, scope({"Host": "elsewhere"}))["host"] == "dss.example.com"
    assert "host" not in spec  # the document itself is never changed
