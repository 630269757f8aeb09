"""HEAD, GET and PUT /files/{uuid}."""
from __future__ import annotations

from ..file_metadata import dss_headers
from ..storage.files import file_metadata, put_file
from . import assert_writable, bodiless_response, context, parse_retry_token
from .checkout import file_response


def head(uuid: str, replica: str, version: str | None = None):
    ctx = context()
    document = file_metadata(ctx.replicas, replica, uuid, version, ctx.copies)
    return bodiless_response(200, dss_headers(document))


def get(uuid: str, replica: str, version: str | None = None, token: str | None = None, directurl: bool = False,
        content_disposition: str | None = None):
    if token is not None:
        parse_retry_token(token)
    ctx = context()
    document = file_metadata(ctx.replicas, replica, uuid, version, ctx.copies)
    # --- checkout (dss.api.checkout): 302 to the checkout copy, 301 + Retry-After while a job makes it ---
    return file_response(ctx, replica, document, token=token, directurl=directurl,
                         content_disposition=content_disposition)


def put(uuid: str, version: str, body: dict):
    assert_writable()
    ctx = context()
    result = put_file(ctx.replicas, uuid, version, body["source_url"], body["creator_uid"], ctx.copies)
    return {"version": version, **({"task_id": result.task_id} if result.task_id else {})}, result.status

