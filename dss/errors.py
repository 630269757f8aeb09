"""One family of errors, turned into application/problem+json in one place (dss.app)."""
from __future__ import annotations

PROBLEM_JSON = "application/problem+json"


class DSSError(Exception):
    """An error with the HTTP status and the contract's `code`."""

    def __init__(self, status: int, code: str, title: str, headers: dict[str, str] | None = None):
        super().__init__(title)
        self.status = status
        self.code = code
        self.title = title
        self.headers = headers or {}


def problem_body(status: int, code: str, title: str, stacktrace: str = "") -> dict:
    return {"status": status, "code": code, "title": title, "stacktrace": stacktrace}


def not_implemented(feature: str) -> DSSError:
    return DSSError(501, "not_implemented", f"{feature} is not implemented yet in this DSS.")


def not_built(feature: str):
    """A handler for a route of the spec that a later issue builds: 501 after validation and authentication."""
    def handler(**_):
        raise not_implemented(feature)
    handler.__name__ = f"not_built_{feature}"
    return handler
