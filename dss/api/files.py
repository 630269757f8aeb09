"""HEAD, GET and PUT /files/{uuid}."""
from __future__ import annotations

import flask

from . import assert_writable, authorize, context, parse_retry_token
from ..file_metadata import dss_headers
from ..storage.files import blob_key_of, file_metadata, put_file


def head(uuid: str, replica: str, version: str | None = None):
    document = file_metadata(context().replicas, replica, uuid, version)
    return flask.Response(status=200, headers=dss_headers(document))


def get(uuid: str, replica: str, version: str | None = None, token: str | None = None, directurl: bool = False,
        content_disposition: str | None = None):
    if token is not None:
        parse_retry_token(token)
    ctx = context()
    document = file_metadata(ctx.replicas, replica, uuid, version)
    rs = ctx.replicas[replica]
    key = blob_key_of(document)
    if directurl:
        location = rs.store.direct_url(rs.bucket, key)
    else:
        location = rs.store.signed_url(rs.bucket, key, ttl=ctx.settings.signed_url_ttl,
                                       content_disposition=content_disposition)
    return flask.Response(status=302, headers={"Location": location, **dss_headers(document)})


def put(uuid: str, version: str, body: dict):
    assert_writable()
    authorize({"hca"})
    status = put_file(context().replicas, uuid, version, body["source_url"], body["creator_uid"])
    return {"version": version}, status

