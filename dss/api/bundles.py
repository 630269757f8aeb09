"""GET, PUT, PATCH and DELETE /bundles/{uuid}, and GET /bundles/all."""
from __future__ import annotations

import itertools

import flask

from ..bundle_manifest import api_file, check_file_names, check_unique_names, patched_files
from ..errors import DSSError
from ..identifiers import new_version
from ..storage.bundles import FileLookup, enumerate_live, load_manifest, save_manifest, tombstone
from . import assert_writable, caller_email, context, parse_retry_token
from .checkout import bundle_urls
from .paging import next_url, paged


def _lookup(rs) -> FileLookup:
    s = context().settings
    return FileLookup(rs, concurrency=s.bundle_lookup_concurrency, wait_seconds=s.bundle_file_wait_seconds)


def get(uuid: str, replica: str, version: str | None = None, directurls: bool = False, presignedurls: bool = False,
        token: str | None = None, per_page: int = 500, start_at: int = 0):
    if directurls and presignedurls:
        raise DSSError(400, "only_one_urltype", "Only one of directurls and presignedurls may be set.")
    if token is not None:
        parse_retry_token(token)
    if start_at < 0:
        raise DSSError(400, "illegal_arguments", "start_at must not be negative.")
    ctx = context()
    rs = ctx.replicas[replica]
    manifest = load_manifest(rs, uuid, version)
    page = manifest["files"][start_at:start_at + per_page]
    files = [api_file(entry) for entry in page]
    if directurls or presignedurls:
        # URLs point at the bundle's checkout; 301 with a token while a job makes it.
        urls = bundle_urls(ctx, rs, uuid, manifest, page, token=token, direct=directurls)
        if isinstance(urls, flask.Response):
            return urls
        for shown, url in zip(files, urls, strict=True):
            shown["url"] = url
    body = {"bundle": {"uuid": uuid.lower(), "version": manifest["version"], "files": files,
                       "creator_uid": manifest["creator_uid"]}}
    more = len(manifest["files"]) - start_at > per_page
    return paged(body, "bundle.files", more=more, start_at=start_at + per_page, version=manifest["version"],
                 token=None)


def put(uuid: str, replica: str, version: str, body: dict):
    assert_writable()
    rs = context().replicas[replica]
    check_file_names(body["files"])  # before any lookup: cheap client mistakes
    check_unique_names(body["files"])
    files = _lookup(rs).resolve(body["files"])
    status, document = save_manifest(rs, uuid, version, files, body["creator_uid"])
    return {"version": version, "manifest": document}, status


def patch(uuid: str, replica: str, version: str, body: dict):
    assert_writable()
    rs = context().replicas[replica]
    # Only added names: an entry named before the rule was tightened can still be removed.
    check_file_names(body.get("add_files") or [])
    manifest = load_manifest(rs, uuid, version)
    added = _lookup(rs).resolve(body.get("add_files") or [])
    files = patched_files(manifest["files"], remove=body.get("remove_files") or [], add=added)
    patched_version = new_version()
    save_manifest(rs, uuid, patched_version, files, manifest["creator_uid"])
    return {"uuid": uuid.lower(), "version": patched_version}, 200


def delete(uuid: str, replica: str, body: dict, version: str | None = None):
    assert_writable()
    ctx = context()
    email = caller_email()  # of group hca, as the spec requires; deleting also takes an administrator
    if email not in ctx.settings.admin_emails:
        raise DSSError(403, "Forbidden", "Only administrators may delete bundles.")
    tombstone(ctx.replicas[replica], uuid, version, email=email, reason=body["reason"])
    return {}, 200


def enumerate(replica: str, prefix: str | None = None, token: str | None = None, per_page: int = 100,
              search_after: str | None = None):
    ctx = context()
    prefix = (prefix or "").lower()
    # The continuation token is the last key of the previous page, the same as search_after.
    live = enumerate_live(ctx.replicas[replica], prefix, search_after=search_after or token)
    page = list(itertools.islice(live, per_page))
    more = next(live, None) is not None
    body = {"dss_api": _api_root(ctx.settings.api_domain_name), "object": "list", "per_page": per_page,
            "search_prefix": f"bundles/{prefix}", "event_timestamp": new_version(),
            "bundles": [{"uuid": u, "version": v} for u, v, _ in page], "page_count": len(page), "has_more": more}
    if not more:
        return paged(body, "bundles", more=False)
    last_key = page[-1][2]
    body.update(search_after=last_key, token=last_key, link=next_url(search_after=last_key, token=None))
    return paged(body, "bundles", more=True, search_after=last_key, token=None)


def _api_root(domain: str) -> str:
    return f"https://{domain}" if domain else flask.request.host_url.rstrip("/")
