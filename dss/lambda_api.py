"""The API Lambda: API Gateway proxy events and direct invocations, answered by the same connexion app that `make run`
serves, within API Gateway's time limit.

- dss-api.yml stays the only routing table: `gateway_routes` derives the API Gateway resources from it, and every
  event is handed whole to the connexion app (through mangum), never to a second router.
- A direct invocation (`lambda:InvokeFunction` with `{"method", "path", "headers", "params", "body"}`, as HSDS on
  Lambda takes) is turned into a proxy event first, so both kinds get the same answer.
- API Gateway gives up after 29 s, and clients retry a 504, which in the original duplicated bundles. Long work here
  is asynchronous by design (202 for large PUT /files, 301 + Retry-After for checkouts, a bounded wait for files of
  a bundle PUT). As a backstop, a request still running `SAFETY_SECONDS` before the deadline is answered 503
  `timed_out` with Retry-After, which clients retry; every write is create-only or idempotent, so a retry is safe.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import pathlib
import threading
import urllib.parse
from typing import Callable

import yaml

from .errors import PROBLEM_JSON, problem_body

logger = logging.getLogger(__name__)

API_GATEWAY_TIMEOUT_SECONDS = 29
# Time kept for the answer to travel back through API Gateway.
SAFETY_SECONDS = 4
RETRY_AFTER_SECONDS = 10
_METHODS = ("get", "head", "put", "post", "patch", "delete")
# Served by the app outside the spec: the Swagger UI and its files, the spec itself, and the plain routes.
EXTRA_ROUTES = {"/": ["GET"], "/version": ["GET"], "/internal/health": ["GET"], "/v1/swagger.json": ["GET"],
                "/v1/ui": ["GET"], "/v1/ui/{asset}": ["GET"]}
# Text bodies travel as they are; anything else (the UI's images) is base64, which API Gateway decodes.
TEXT_MIME_TYPES = ["application/json", "application/problem+json", "application/javascript", "text/"]


def gateway_routes(spec_path: pathlib.Path) -> dict[str, list[str]]:
    """Path -> HTTP methods, for API Gateway: every operation of the spec under its basePath, plus EXTRA_ROUTES."""
    spec = yaml.safe_load(spec_path.read_text())
    base = spec.get("basePath", "").rstrip("/")
    routes = {f"{base}{path}": sorted(m.upper() for m in operations if m in _METHODS)
              for path, operations in spec["paths"].items()}
    return {**routes, **EXTRA_ROUTES}


def is_direct_invocation(event: dict) -> bool:
    return isinstance(event, dict) and "method" in event and "path" in event and "httpMethod" not in event


def proxy_event_from_direct(event: dict) -> dict:
    """A REST API proxy event carrying the request of a direct invocation."""
    method = str(event["method"]).upper()
    path = "/" + str(event["path"]).lstrip("/")
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    params = {str(k): [str(x) for x in (v if isinstance(v, list) else [v])]
              for k, v in (event.get("params") or {}).items()}
    body = event.get("body")
    is_base64 = bool(event.get("isBase64Encoded"))
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
        headers.setdefault("content-type", "application/json")
    elif isinstance(body, bytes):
        body, is_base64 = base64.b64encode(body).decode(), True
    if body is not None:
        headers.setdefault("content-length", str(len(base64.b64decode(body) if is_base64 else body.encode())))
    headers.setdefault("host", "lambda.invalid")
    headers.setdefault("x-forwarded-proto", "https")
    return {
        "resource": path, "path": path, "httpMethod": method,
        "headers": headers, "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in params.items()} or None,
        "multiValueQueryStringParameters": params or None,
        "pathParameters": None, "stageVariables": None,
        "requestContext": {"resourcePath": path, "httpMethod": method, "path": path, "stage": "direct",
                           "requestId": "direct-invocation", "identity": {"sourceIp": "127.0.0.1"}},
        "body": body, "isBase64Encoded": is_base64,
    }


def timed_out_response() -> dict:
    body = problem_body(503, "timed_out", "The request did not finish in time; it is safe to retry it")
    return {"statusCode": 503, "isBase64Encoded": False, "body": json.dumps(body),
            "headers": {"Content-Type": PROBLEM_JSON, "Retry-After": str(RETRY_AFTER_SECONDS)}}


class ApiLambda:
    """The Lambda handler: `ApiLambda(create_app)(event, context)`. The app is built on the first event."""

    def __init__(self, app_factory: Callable[[], object], timeout_seconds: float = API_GATEWAY_TIMEOUT_SECONDS):
        self._app_factory = app_factory
        self._handler = None
        self._lock = threading.Lock()
        self.timeout_seconds = timeout_seconds

    def _mangum(self):
        with self._lock:
            if self._handler is None:
                from mangum import Mangum
                self._handler = Mangum(self._app_factory(), lifespan="off", api_gateway_base_path="/",
                                       text_mime_types=TEXT_MIME_TYPES)
            return self._handler

    def budget_seconds(self, context) -> float:
        limit = self.timeout_seconds
        if context is not None and hasattr(context, "get_remaining_time_in_millis"):
            limit = min(limit, context.get_remaining_time_in_millis() / 1000)
        return max(limit - SAFETY_SECONDS, 1.0)

    def __call__(self, event: dict, context=None) -> dict:
        if is_direct_invocation(event):
            event = proxy_event_from_direct(event)
        handler = self._mangum()
        outcome: dict = {}

        def run():
            # mangum drives the ASGI app on the calling thread's event loop; this thread has none yet.
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                outcome["response"] = handler(event, context)
            except BaseException as e:  # handed to the caller's thread below
                outcome["error"] = e
            finally:
                loop.close()

        budget = self.budget_seconds(context)
        worker = threading.Thread(target=run, name="dss-api-request", daemon=True)
        worker.start()
        worker.join(budget)
        if worker.is_alive():
            logger.error("%s %s still running after %.0f s: answered 503 timed_out", event.get("httpMethod"),
                         urllib.parse.quote(event.get("path", "")), budget)
            return timed_out_response()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["response"]
