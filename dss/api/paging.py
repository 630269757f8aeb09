"""Paged responses: 206 plus a `Link: <url>; rel="next"` while more remain, and the X-OpenAPI-* headers."""
from __future__ import annotations

import urllib.parse

import flask


def next_url(**replace) -> str:
    """This request's absolute URL with some query parameters replaced (None removes one).

    Repeated keys collapse to one: the hca client re-appends its own parameters to the Link it follows.
    """
    url = urllib.parse.urlsplit(flask.request.url)
    params = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
    for key, value in replace.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return urllib.parse.urlunsplit(url._replace(query=urllib.parse.urlencode(params)))


def paged(body: dict, content_key: str, *, more: bool, **next_params) -> tuple[dict, int, dict]:
    headers = {"X-OpenAPI-Pagination": "true", "X-OpenAPI-Paginated-Content-Key": content_key}
    if not more:
        return body, 200, headers
    headers["Link"] = f'<{next_url(**next_params)}>; rel="next"'
    return body, 206, headers
