"""The DSS API as a connexion app: dss-api.yml is the routing table and the validator."""
from __future__ import annotations

import json
import logging
import pathlib
import traceback

import connexion
import yaml
from connexion.exceptions import (BadRequestProblem, ExtraParameterProblem, OAuthProblem, OAuthScopeProblem,
                                  ProblemException)
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from jsonschema import Draft4Validator
from starlette.exceptions import HTTPException

from . import api
from .auth import register_verifier
from .config import Settings
from .errors import PROBLEM_JSON, DSSError, problem_body
from .identifiers import is_version

logger = logging.getLogger(__name__)

SPEC_PATH = pathlib.Path(__file__).resolve().parent.parent / "dss-api.yml"
_STATUS_CODES = {401: "Unauthorized", 403: "Forbidden", 404: "not_found", 405: "method_not_allowed",
                 406: "not_acceptable", 415: "unsupported_media_type"}
# An error answer to these may be retried safely; tell clients when (contract §1.0).
_RETRYABLE_STATUSES = {500, 502, 503, 504}
_IDEMPOTENT_METHODS = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"}


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


def _http_exception(request, exc: HTTPException):
    return _problem(request, exc.status_code, _STATUS_CODES.get(exc.status_code, "http_error"), str(exc.detail))


def _unhandled(request, exc: Exception):
    logger.exception("unhandled exception")
    return _problem(request, 500, "unhandled_exception", f"{type(exc).__name__}: {exc}",
                    stacktrace="".join(traceback.format_exception(exc)))


def create_app(settings: Settings | None = None) -> connexion.FlaskApp:
    settings = settings or Settings.from_env()
    app = connexion.FlaskApp(__name__, specification_dir=str(SPEC_PATH.parent))
    context = app.app.extensions["dss"] = api.configure(settings)
    app.add_api(load_spec(settings, register_verifier(context.verifier)), strict_validation=True, validate_responses=False,
                swagger_ui_options=connexion.options.SwaggerUIOptions(swagger_ui=True))
    app.add_error_handler(DSSError, _dss_error)
    app.add_error_handler(ProblemException, _connexion_problem)
    app.add_error_handler(HTTPException, _http_exception)
    app.add_error_handler(Exception, _unhandled)
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
        from importlib.metadata import PackageNotFoundError, version as pkg_version
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


def __getattr__(name: str):
    # `uvicorn dss.app:asgi_app` builds the app on first access, from the environment of that process.
    if name == "asgi_app":
        global asgi_app
        asgi_app = create_app()
        return asgi_app
    raise AttributeError(name)
