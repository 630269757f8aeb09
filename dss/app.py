"""The DSS API as a connexion app: dss-api.yml is the routing table and the validator."""
from __future__ import annotations

import copy
import json
import logging
import pathlib
import re
import traceback
from typing import Any

import connexion
import werkzeug.exceptions
import werkzeug.routing
import yaml
from connexion.exceptions import (
    BadRequestProblem,
    ExtraParameterProblem,
    OAuthProblem,
    OAuthScopeProblem,
    ProblemException,
)
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from connexion.middleware import MiddlewarePosition
from jsonschema import Draft4Validator
from starlette.exceptions import HTTPException

from . import api
from .auth import register_verifier
from .config import Settings
from .errors import PROBLEM_JSON, DSSError, problem_body
from .identifiers import is_version
from .request_checks import BodyCheck, PathCheck
from .served_spec import ServedSpec

logger = logging.getLogger(__name__)

SPEC_PATH = pathlib.Path(__file__).resolve().parent.parent / "dss-api.yml"
_STATUS_CODES = {401: "Unauthorized", 403: "Forbidden", 404: "not_found", 405: "method_not_allowed",
                 406: "not_acceptable", 415: "unsupported_media_type"}
# An error answer to these may be retried safely; tell clients when (contract §1.0).
_RETRYABLE_STATUSES = {500, 502, 503, 504}
_IDEMPOTENT_METHODS = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"}
_HTTP_METHODS = ("get", "head", "put", "post", "patch", "delete", "options")


@Draft4Validator.FORMAT_CHECKER.checks("DSS_VERSION")
def _dss_version_format(value) -> bool:
    return not isinstance(value, str) or is_version(value)


def load_spec(settings: Settings, token_info_func: str | None = None) -> dict:
    spec = yaml.safe_load(SPEC_PATH.read_text())
    if token_info_func:
        for scheme in spec.get("securityDefinitions", {}).values():
            if "x-tokenInfoFunc" in scheme:
                scheme["x-tokenInfoFunc"] = token_info_func
    if settings.api_domain_name:
        spec["host"] = settings.api_domain_name
        spec["schemes"] = ["https"]
    else:
        spec.pop("host", None)
        spec["schemes"] = ["http", "https"]  # the local stack serves plain http, so Swagger UI can try calls
    return spec


def _problem(request: ConnexionRequest | None, status: int, code: str, title: str, stacktrace: str = "",
             headers: dict | None = None) -> ConnexionResponse:
    headers = dict(headers or {})
    method = getattr(request, "method", "") or ""
    if status in _RETRYABLE_STATUSES and (method in _IDEMPOTENT_METHODS or request_is_search(request)):
        headers.setdefault("Retry-After", "10")
    return ConnexionResponse(status_code=status, mimetype=PROBLEM_JSON, content_type=PROBLEM_JSON,
                             body=json.dumps(problem_body(status, code, title, stacktrace)), headers=headers)


def request_is_search(request) -> bool:
    return request is not None and str(getattr(request, "url", "")).split("?")[0].endswith("/search")


def _dss_error(request, exc: DSSError):
    return _problem(request, exc.status, exc.code, exc.title, headers=exc.headers)


def _connexion_problem(request, exc: ProblemException):
    title = exc.detail or exc.title or ""
    if isinstance(exc, (BadRequestProblem, ExtraParameterProblem)) or exc.status == 400:
        code = "illegal_version" if "DSS_VERSION" in str(title) else "illegal_arguments"
    elif isinstance(exc, OAuthScopeProblem):
        code = "Forbidden"
    elif isinstance(exc, OAuthProblem):
        code = "OAuthProblem"  # the contract keeps connexion's class name for a missing token
    else:
        code = _STATUS_CODES.get(exc.status, type(exc).__name__)
    return _problem(request, exc.status, code, str(title), headers=getattr(exc, "headers", None))


def _http_exception_handler(allowed: AllowedMethods):
    def http_exception(request, exc: HTTPException):
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Connexion routes each method of a path on its own, so the router's Allow names one method at most.
            headers["Allow"] = allowed.of(request.url.path) or headers.get("Allow", "")
        return _problem(request, exc.status_code, _STATUS_CODES.get(exc.status_code, "http_error"), str(exc.detail),
                        headers=headers)
    return http_exception


def _unhandled_handler(debug: bool):
    def unhandled(request, exc: Exception):
        logger.error("unhandled exception", exc_info=exc)
        if debug:
            return _problem(request, 500, "unhandled_exception", f"{type(exc).__name__}: {exc}",
                            stacktrace="".join(traceback.format_exception(exc)))
        # The message and the traceback can name files, buckets and values: they stay in the log.
        return _problem(request, 500, "unhandled_exception", f"Unhandled {type(exc).__name__}; see the server log.")
    return unhandled


def _connexion_spec(spec: dict) -> dict:
    """The spec connexion runs from. Handlers answer application/json and the error handlers set their own type;
    connexion picks a handler's media type only when an operation declares one, so problem+json is left out."""
    runtime = copy.deepcopy(spec)
    for holder in [runtime] + [op for ops in runtime["paths"].values() for op in ops.values() if isinstance(op, dict)]:
        if "produces" in holder:
            holder["produces"] = [t for t in holder["produces"] if t != PROBLEM_JSON]
    return runtime


def _body_operations(spec: dict) -> frozenset[str]:
    """Operation ids of the operations that take a JSON body."""
    def has_body(op: dict) -> bool:
        return any(p.get("in") == "body" for p in op.get("parameters", []))
    return frozenset(op["operationId"] for ops in spec["paths"].values() for method, op in ops.items()
                     if method in _HTTP_METHODS and has_body(op))


class AllowedMethods:
    """The methods a path answers (the `Allow` of a 405), with HEAD wherever GET is: those of the operations whose
    path parameters' patterns it fits (so /bundles/all is not a bundle uuid), else of those it fits at all, else of
    the plain Flask routes."""

    def __init__(self, spec: dict, url_map: werkzeug.routing.Map):
        self.url_map = url_map
        base = spec.get("basePath", "").rstrip("/")
        self.routes: list[tuple[re.Pattern, re.Pattern, str]] = []
        for path, ops in spec["paths"].items():
            for method, op in ops.items():
                if method not in _HTTP_METHODS:
                    continue
                patterns = {}
                for parameter in op.get("parameters", []):
                    if "$ref" in parameter:
                        parameter = spec["parameters"][parameter["$ref"].rsplit("/", 1)[-1]]
                    if parameter.get("in") == "path" and "pattern" in parameter:
                        patterns[parameter["name"]] = parameter["pattern"].removeprefix("^").removesuffix("$")
                parts = re.split(r"{([^}]*)}", base + path)  # literal, name, literal, ...
                strict = "".join(f"(?:{patterns.get(part, '[^/]+')})" if i % 2 else re.escape(part)
                                 for i, part in enumerate(parts))
                loose = "".join("[^/]+" if i % 2 else re.escape(part) for i, part in enumerate(parts))
                self.routes.append((re.compile(strict), re.compile(loose), method.upper()))

    def of(self, path: str) -> str:
        methods = ({m for strict, _, m in self.routes if strict.fullmatch(path)}
                   or {m for _, loose, m in self.routes if loose.fullmatch(path)})
        if "GET" in methods:
            methods.add("HEAD")
        if not methods:
            try:
                self.url_map.bind("localhost").match(path, method="-")
            except werkzeug.exceptions.MethodNotAllowed as e:
                methods = set(e.valid_methods or ())
            except werkzeug.exceptions.HTTPException:
                pass
        return ", ".join(sorted(methods))


def create_app(settings: Settings | None = None) -> connexion.FlaskApp:
    settings = settings or Settings.from_env()
    app = connexion.FlaskApp(__name__, specification_dir=str(SPEC_PATH.parent))
    context = app.app.extensions["dss"] = api.configure(settings)
    spec = load_spec(settings, register_verifier(context.verifier))
    app.add_api(_connexion_spec(spec), strict_validation=True, validate_responses=False,
                swagger_ui_options=connexion.options.SwaggerUIOptions(swagger_ui=True))
    app.add_middleware(ServedSpec, position=MiddlewarePosition.BEFORE_SWAGGER, spec=spec)
    app.add_middleware(PathCheck, position=MiddlewarePosition.BEFORE_ROUTING)
    app.add_middleware(BodyCheck, position=MiddlewarePosition.BEFORE_VALIDATION, body_operations=_body_operations(spec))
    app.add_error_handler(DSSError, _dss_error)
    app.add_error_handler(ProblemException, _connexion_problem)
    app.add_error_handler(HTTPException, _http_exception_handler(AllowedMethods(spec, app.app.url_map)))
    app.add_error_handler(Exception, _unhandled_handler(settings.debug))
    # Manifests of thousands of files: no indentation, and fields in the order they were built.
    app.app.json.compact = True
    app.app.json.sort_keys = False
    _add_plain_routes(app.app, settings)
    return app


def _add_plain_routes(flask_app, settings: Settings) -> None:
    import flask

    @flask_app.route("/")
    def swagger_ui():
        return flask.redirect("/v1/ui/", code=302)

    @flask_app.route("/version")
    def version():
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as pkg_version
        try:
            number = pkg_version("dss")
        except PackageNotFoundError:
            number = "unknown"
        return {"version_info": {"version": number, "stage": settings.stage}}

    @flask_app.route("/internal/health")
    def health():
        return {"Healthy": True}


def create_asgi_app():
    """uvicorn --factory entry point."""
    return create_app()


asgi_app: Any  # not bound until first access: see __getattr__


def __getattr__(name: str):
    # `uvicorn dss.app:asgi_app` builds the app on first access, from the environment of that process.
    if name == "asgi_app":
        global asgi_app
        asgi_app = create_app()
        return asgi_app
    raise AttributeError(name)
