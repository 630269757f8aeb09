"""HTTP handlers, named by the operationIds of dss-api.yml. They validate nothing the spec already declares."""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import flask
from connexion.context import context as request_context

from ..auth import TokenVerifier
from ..config import Settings
from ..errors import DSSError
from ..storage.copy_jobs import CopyQueue
from ..storage.replicas import Replicas


@dataclass
class AppContext:
    settings: Settings
    replicas: Replicas
    verifier: TokenVerifier

    @functools.cached_property
    def copies(self) -> CopyQueue:
        """The large-file copies of PUT /files: the async-state table and the copy queue."""
        from ..events.bus import Bus, Topology
        return CopyQueue.from_settings(self.settings, Bus(Topology(self.settings.stage)))


_context: AppContext | None = None


def configure(settings: Settings) -> AppContext:
    """A new context; the latest one is also the default outside a Flask app (token checks run before Flask)."""
    global _context
    _context = AppContext(settings, Replicas(settings), TokenVerifier(settings))
    return _context


def context() -> AppContext:
    """The context of the app serving this request: each app built by create_app carries its own."""
    if flask.has_app_context() and "dss" in flask.current_app.extensions:
        return flask.current_app.extensions["dss"]
    if _context is None:
        return configure(Settings.from_env())
    return _context


def verify_token(token: str) -> dict:
    """connexion's x-tokenInfoFunc, as the spec file names it: the verifier of the latest app.

    It lives here, not in dss.auth, so that dss.auth needs nothing from the API layer above it."""
    return context().verifier.verify(token)


def token_info() -> dict:
    """The verified token of a secured operation. Its groups were checked before the handler runs, against the
    groups the operation's `security` lists in dss-api.yml (dss.auth.check_groups)."""
    return request_context.get("token_info") or {}


def caller_email() -> str:
    return token_info()["email"]


def assert_writable() -> None:
    if context().settings.read_only:
        raise DSSError(503, "read_only", "The DSS is currently read-only", headers={"Retry-After": "600"})


def parse_retry_token(token: str) -> dict:
    """The token of a checkout redirect (GET /files, GET /bundles): JSON with an `attempts` count."""
    try:
        parsed = json.loads(token)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or "attempts" not in parsed:
        raise DSSError(400, "illegal_token", "Could not parse the token.")
    return parsed


def bodiless_response(status: int, headers: dict[str, str]) -> flask.Response:
    """A HEAD answer or a redirect: headers only, and so no Content-Type (Flask would say text/html)."""
    response = flask.Response(status=status, headers=headers)
    del response.headers["Content-Type"]
    return response
