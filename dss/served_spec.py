"""The spec as clients download it (GET /v1/swagger.json and .yaml), as ASGI middleware in front of connexion's own.

Clients build their base URL from `host`, `schemes` and `basePath` (the `hca` CLI: `https://{host}{basePath}`), so
the served spec always has a host: API_DOMAIN_NAME when one is configured, otherwise the host the spec was
requested on (the proxy's `X-Forwarded-Host` and `-Proto` when it sends them), as connexion does for `basePath`.
The document is dss-api.yml itself; connexion runs from a copy that differs in what only connexion needs.
"""
from __future__ import annotations

import copy
import json
import re

import yaml
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")


class ServedSpec:
    def __init__(self, app: ASGIApp, *, spec: dict):
        self.app = app
        self.spec = spec
        base_path = spec.get("basePath", "").rstrip("/")
        self.paths = {f"{base_path}/swagger.json": "json", f"{base_path}/swagger.yaml": "yaml"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = self.paths.get(scope.get("path", "")) if scope["type"] == "http" else None
        if kind is None or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        document = spec_for_request(self.spec, scope)
        if kind == "json":
            body, media_type = json.dumps(document, default=str).encode(), b"application/json"
        else:
            body, media_type = yaml.safe_dump(document, sort_keys=False).encode(), b"text/yaml"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", media_type), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


def spec_for_request(spec: dict, scope: Scope) -> dict:
    """The spec with the host and scheme of this request, unless it names its host already; basePath under the
    request's root path (an ASGI server mounted below a prefix)."""
    document = copy.copy(spec)
    root_path = scope.get("root_path", "").rstrip("/")
    if root_path:
        document["basePath"] = root_path + spec.get("basePath", "")
    if document.get("host"):
        return document
    headers = Headers(scope=scope)
    host = _first(headers.get("x-forwarded-host")) or headers.get("host", "")
    scheme = _first(headers.get("x-forwarded-proto")).lower() or scope.get("scheme", "http")
    if _HOST.match(host):
        document["host"] = host
        if scheme in ("http", "https"):
            document["schemes"] = [scheme]
    return document


def _first(value: str | None) -> str:
    """The first of a proxy header's comma-separated values: the one the client's proxy set."""
    return (value or "").split(",")[0].strip()
