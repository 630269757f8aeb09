"""POST /search: an Elasticsearch query over the replica's bundle documents, paged with search_after."""
from __future__ import annotations

import functools

import flask
from opensearchpy import ConnectionError as SearchConnectionError
from opensearchpy import NotFoundError, RequestError, TransportError

from ..errors import DSSError
from ..index.backend import SearchBackend
from . import context
from .paging import paged

# Raw documents can be large; keep pages small enough for a Lambda response (6 MB), as the original did.
RAW_PER_PAGE = 10
SORT = [{"uuid": {"order": "desc"}}, {"manifest.version": {"order": "desc", "missing": "_last"}}]


@functools.lru_cache(maxsize=4)
def _backend(settings) -> SearchBackend:
    return SearchBackend(settings)


def post(replica: str, body: dict, output_format: str = "summary", per_page: int = 100,
         search_after: str | None = None):
    es_query = body["es_query"]
    raw = output_format == "raw"
    per_page = min(per_page, RAW_PER_PAGE) if raw else per_page
    # Sorting by anything but the score leaves hits unscored (`_score: null`) unless scores are asked for; a filter
    # then scores 0.0.
    request = {**es_query, "size": per_page + 1, "sort": SORT, "_source": raw, "track_total_hits": True,
               "track_scores": True}
    if search_after:
        request["search_after"] = search_after.split(",", 1)
    backend = _backend(context().settings)
    hits, total = _search(backend, replica, request)
    page, more = hits[:per_page], len(hits) > per_page
    base = flask.request.host_url
    results = []
    for hit in page:
        uuid, _, version = hit["_id"].partition(".")
        result = {"bundle_fqid": hit["_id"],
                  "bundle_url": f"{base}v1/bundles/{uuid}?version={version}&replica={replica}",
                  "search_score": hit.get("_score")}
        if raw:
            result["metadata"] = hit.get("_source", {})
        results.append(result)
    response = {"es_query": es_query, "results": results, "total_hits": total}
    next_after = ",".join(str(v) for v in page[-1]["sort"]) if more else None
    return paged(response, "results", more=more, search_after=next_after, per_page=per_page,
                 output_format=output_format, replica=replica)


def _search(backend: SearchBackend, replica: str, request: dict) -> tuple[list[dict], int]:
    try:
        response = backend.client.search(index=backend.alias(replica), body=request)
    except RequestError as e:
        if not _has_indices(backend, replica):
            return [], 0  # nothing indexed (yet, or since the engine restarted): not the query's fault
        raise DSSError(400, "elasticsearch_bad_request", f"The search backend rejected the query: {_reason(e)}") from e
    except NotFoundError as e:
        if "index_not_found" in str(e) or "no such index" in str(e):
            return [], 0  # nothing indexed yet in this replica
        raise DSSError(404, "elasticsearch_context_not_found", f"Search context not found: {_reason(e)}") from e
    except SearchConnectionError as e:
        raise DSSError(503, "service_unavailable", "The search backend is unavailable.") from e
    except TransportError as e:
        raise DSSError(500, "internal_server_error", f"The search backend failed: {_reason(e)}") from e
    if response.get("_shards", {}).get("failed"):
        raise DSSError(500, "internal_server_error", "The search failed on some shards.")
    total = response["hits"]["total"]
    return response["hits"]["hits"], total["value"] if isinstance(total, dict) else total


def _has_indices(backend: SearchBackend, replica: str) -> bool:
    try:
        return bool(backend.client.indices.get_alias(name=backend.alias(replica)))
    except NotFoundError:
        return False


def _reason(error: TransportError) -> str:
    info = getattr(error, "info", None)
    if isinstance(info, dict):
        detail = info.get("error", {})
        return str(detail.get("reason") if isinstance(detail, dict) else detail)[:500]
    return str(error)[:500]
