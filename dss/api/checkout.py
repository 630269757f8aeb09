"""Checkout over HTTP: POST /bundles/{uuid}/checkout, GET /bundles/checkout/{id}, and the redirects of GET /files
and GET /bundles while a checkout runs (301 back to the same URL with a `token` and an honest `Retry-After`)."""
from __future__ import annotations

import json
import time

import flask

from ..checkout import api_bus, checkout_bundle, checkout_file, job_status, start_bundle_checkout
from ..checkout_rules import Pending, RetryToken, bundle_object_key, public_status
from ..errors import DSSError
from ..file_metadata import dss_headers
from ..storage.files import blob_key_of
from ..storage.replicas import ReplicaStore
from . import AppContext, assert_writable, bodiless_response, context, parse_retry_token
from .paging import next_url


def post(uuid: str, replica: str, version: str | None = None, body: dict | bytes | None = None):
    assert_writable()
    ctx = context()
    body = _checkout_request(body)
    job_id = start_bundle_checkout(ctx.settings, ctx.replicas[replica], api_bus(ctx.settings.stage), uuid, version,
                                   destination=body.get("destination"), email=body.get("email"), now=time.time())
    return {"checkout_job_id": job_id}, 200


def _checkout_request(body) -> dict:
    """The optional body. Sent without a JSON content type it arrives unparsed (connexion passes b'{}' for none)."""
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body or "{}")
        except ValueError as e:
            raise DSSError(400, "illegal_arguments", "The body is not JSON.") from e
    body = {} if body is None else body
    if not isinstance(body, dict) or not all(isinstance(body.get(k), (str, type(None)))
                                             for k in ("destination", "email")):
        raise DSSError(400, "illegal_arguments", "The body must be a JSON object with string fields.")
    return body


def get(checkout_job_id: str, replica: str):
    status = job_status(context().replicas[replica], checkout_job_id.lower())
    if status is None:
        raise DSSError(404, "not_found", f"No checkout job {checkout_job_id} in replica {replica}.")
    return public_status(status), 200


def _token(raw: str | None) -> RetryToken | None:
    return None if raw is None else RetryToken.parse(parse_retry_token(raw))


def _come_back(pending: Pending, token: RetryToken | None, now: float, **pinned) -> flask.Response:
    """301 to this same URL carrying the job in the token, after the time the job is expected to need."""
    location = next_url(token=pending.token(token).encode(), **pinned)
    return bodiless_response(301, {"Location": location, "Retry-After": str(pending.retry_after(now))})


def file_response(ctx: AppContext, replica: str, document: dict, *, token: str | None, directurl: bool,
                  content_disposition: str | None) -> flask.Response:
    """GET /files: 302 to the file's checkout copy, or 301 while a job makes it."""
    rs, retry, now = ctx.replicas[replica], _token(token), time.time()
    pending = checkout_file(ctx.settings, rs, api_bus(ctx.settings.stage), document, retry, now)
    if pending:
        return _come_back(pending, retry, now, version=document["version"])
    key = blob_key_of(document)
    if directurl:
        location = rs.store.direct_url(rs.checkout_bucket, key)
    else:
        location = rs.store.signed_url(rs.checkout_bucket, key, ttl=ctx.settings.signed_url_ttl,
                                       content_disposition=content_disposition)
    return bodiless_response(302, {"Location": location, **dss_headers(document)})


def bundle_urls(ctx: AppContext, rs: ReplicaStore, uuid: str, manifest: dict, page: list[dict], *,
                token: str | None, direct: bool) -> list[str] | flask.Response:
    """GET /bundles with directurls/presignedurls: the URLs of a page's files in the bundle's checkout, or a 301."""
    retry, now = _token(token), time.time()
    pending = checkout_bundle(ctx.settings, rs, api_bus(ctx.settings.stage), uuid, manifest, retry, now)
    if pending:
        return _come_back(pending, retry, now, version=manifest["version"])
    keys = [bundle_object_key(uuid.lower(), manifest["version"], entry["name"]) for entry in page]
    if direct:
        return [rs.store.direct_url(rs.checkout_bucket, key) for key in keys]
    return [rs.store.signed_url(rs.checkout_bucket, key, ttl=ctx.settings.signed_url_ttl) for key in keys]
