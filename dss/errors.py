"""One family of errors, turned into application/problem+json in one place (dss.app)."""
from __future__ import annotations

from typing import Any

PROBLEM_JSON = "application/problem+json"


class DSSError(Exception):
    """An error with the HTTP status and the contract's `code`."""

    def __init__(self, status: int, code: str, title: str, headers: dict[str, str] | None = None):
        super().__init__(title)
        self.status = status
        self.code = code
        self.title = title
        self.headers = headers or {}


def problem_body(status: int, code: str, title: str, stacktrace: str = "") -> dict[str, Any]:
    return {"status": status, "code": code, "title": title, "stacktrace": stacktrace}

