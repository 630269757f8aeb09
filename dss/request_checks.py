"""Checks on the raw request, as ASGI middleware in front of connexion's routing and validation.

Connexion and the handlers assume a path it can route and a JSON body it can parse; a client can send neither, and
must get a 4xx for it rather than a 500. `PathCheck` runs before routing: a path that connexion's router cannot
match (a control character: its mount pattern stops at a newline) would otherwise fall through to the Flask
routes outside any operation. `BodyCheck` runs after authentication, just before connexion validates the body of
an operation that takes one: it reads the body once (bounded), and refuses what connexion's parser or the handlers
cannot take: no Content-Type, bytes that are not UTF-8, JSON that does not parse or nests too deep.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterable

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import DSSError

# API Gateway's own limit on a request; the local server buffers no more either.
MAX_BODY_BYTES = 10 * 1024 * 1024
# Deeper JSON is refused before anything recurses over it (json, jsonschema, the search and DynamoDB clients).
MAX_JSON_DEPTH = 100
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_ROUTING_CONTEXT = "connexion_routing"  # where connexion's router leaves the operation it chose


class PathCheck:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _CONTROL_CHARACTERS.search(scope["path"]):
            raise DSSError(400, "illegal_arguments", "The request path contains a control character.")
        await self.app(scope, receive, send)


class BodyCheck:
    """For the operations in `body_operations` (operation ids): the body, checked and replayed to the next app."""

    def __init__(self, app: ASGIApp, *, body_operations: frozenset[str]):
        self.app = app
        self.body_operations = body_operations

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _operation_id(scope) not in self.body_operations:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise _too_large()
        body = await _read_body(receive)
        if body:
            check_json_body(body, headers.get("content-type"))
        # What is passed on is the whole body, of a known length: connexion looks for a body only where
        # Content-Length announces one, and Flask reads none where Transfer-Encoding says chunked.
        scope = dict(scope)
        mutable = MutableHeaders(scope=scope)
        mutable["content-length"] = str(len(body))
        del mutable["transfer-encoding"]
        await self.app(scope, _replay(body, receive), send)


def check_json_body(body: bytes, content_type: str | None) -> None:
    """Raise the 4xx for a body the JSON operations cannot take; bodies of other media types are left to
    connexion, which refuses those the operation does not consume with 415."""
    if not content_type:
        raise DSSError(415, "unsupported_media_type", "A request body needs a Content-Type: application/json.")
    media_type, _, parameters = content_type.partition(";")
    if not _is_json(media_type.strip().lower()):
        return
    charset = _charset(parameters)
    if charset not in (None, "utf-8", "utf8"):
        raise DSSError(415, "unsupported_media_type", f"JSON bodies must be UTF-8, not {charset}.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DSSError(400, "illegal_arguments", f"The request body is not UTF-8: {e.reason} at byte {e.start}.") from e
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError as e:
        raise _too_deep() from e
    except ValueError as e:  # JSONDecodeError, and numbers Python will not convert (over 4,300 digits)
        raise DSSError(400, "illegal_arguments", f"The request body is not JSON: {e}") from e
    if checked_depth(document) > MAX_JSON_DEPTH:
        raise _too_deep()


def checked_depth(document: Any) -> int:
    """How deep arrays and objects nest (a scalar is 0), without recursion; raises the 400 for a string (key or
    value) with a lone surrogate, which JSON can escape (`\\ud800`) but no UTF-8 store or header can hold."""
    deepest, stack = 0, [(document, 1)]
    children: Iterable[Any]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value)
            continue
        if isinstance(value, dict):
            for key in value:
                _check_text(key)
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list, str)))
    return deepest


def _check_text(text: str) -> None:
    if _SURROGATE.search(text):
        raise DSSError(400, "illegal_arguments", "The request body holds a lone UTF-16 surrogate (an escape such as "
                                                 "\\ud800 that is not half of a pair), which is not Unicode text.")


def _operation_id(scope: Scope) -> str | None:
    return scope.get("extensions", {}).get(_ROUTING_CONTEXT, {}).get("operation_id")


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


def _charset(parameters: str) -> str | None:
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _too_deep() -> DSSError:
    return DSSError(400, "illegal_arguments", f"The request body nests deeper than {MAX_JSON_DEPTH} levels.")


def _too_large() -> DSSError:
    return DSSError(413, "payload_too_large", f"The request body is larger than {MAX_BODY_BYTES} bytes.")


async def _read_body(receive: Receive) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            raise DSSError(400, "illegal_arguments", "The request body was not received.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # a disconnect, when the app waits for one
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}
    return replayed
