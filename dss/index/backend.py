"""The search backend: OpenSearch through opensearch-py (Amazon OpenSearch Service signed with SigV4 in the cloud,
osmem-server locally). One index per replica, mapping version and bundle shape, all behind one alias.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import urllib.parse
from typing import Any

from opensearchpy import NotFoundError, OpenSearch, RequestError

from ..config import Settings

logger = logging.getLogger(__name__)

# Bump when the mapping changes: new indices get new names, and a reindex fills them.
MAPPING_VERSION = 1

DOCS_MAPPING = {
    "settings": {"analysis": {"normalizer": {"keyword_lowercase": {"type": "custom", "filter": ["lowercase"]}}}},
    "mappings": {
        "date_detection": True,
        "dynamic_date_formats": ["yyyy-MM-dd HH:mm:ss", "strict_date_optional_time"],
        "dynamic_templates": [{"strings": {"match_mapping_type": "string", "mapping": {
            "type": "keyword", "normalizer": "keyword_lowercase", "ignore_above": 256,
            "fields": {"text": {"type": "text"}}}}}],
        "properties": {"uuid": {"type": "keyword"}, "manifest": {"properties": {"version": {"type": "keyword"}}}},
    },
}


class SearchBackend:
    def __init__(self, settings: Settings, client: OpenSearch | None = None):
        self.settings = settings
        self.client = client or _client(settings)

    def alias(self, replica: str) -> str:
        return f"dss-{self.settings.stage}-{replica}-docs"

    def index_name(self, replica: str, shape: str) -> str:
        digest = hashlib.sha1(shape.encode()).hexdigest()[:16]
        return f"dss-{self.settings.stage}-{replica}-docs-m{MAPPING_VERSION}-{digest}"

    def ensure_index(self, replica: str, shape: str) -> str:
        """Create the index with its mapping if needed. Checked on every write, not cached: an engine that lost its
        indices (osmem keeps them in memory) must not get documents in indices created without our mapping."""
        name = self.index_name(replica, shape)
        if not self.client.indices.exists(index=name):
            try:
                self.client.indices.create(index=name, body=DOCS_MAPPING)
                logger.info("created index %s", name)
            except RequestError as e:
                if "already_exists" not in str(e):
                    raise
            self.client.indices.put_alias(index=name, name=self.alias(replica))
        return name

    def find(self, replica: str, doc_id: str) -> list[tuple[str, dict]]:
        """(index, source) of every copy of a document behind the alias (one, unless a shape change moved it)."""
        try:
            hits = self.client.search(index=self.alias(replica), body={"query": {"ids": {"values": [doc_id]}},
                                                                        "size": 10})["hits"]["hits"]
        except NotFoundError:
            return []
        return [(hit["_index"], hit["_source"]) for hit in hits]

    def put(self, replica: str, doc_id: str, shape: str, document: dict) -> bool:
        """Index a document idempotently: False if an identical one is already there. Stale copies elsewhere go."""
        target = self.ensure_index(replica, shape)
        existing = self.find(replica, doc_id)
        for index, _ in existing:
            if index != target:
                self.client.delete(index=index, id=doc_id, ignore=[404])
        if any(index == target and source == document for index, source in existing):
            return False
        self.client.index(index=target, id=doc_id, body=document, refresh=True)
        return True

    def delete(self, replica: str, doc_id: str) -> None:
        for index, _ in self.find(replica, doc_id):
            self.client.delete(index=index, id=doc_id, ignore=[404], refresh=True)

    def count(self, replica: str) -> int:
        try:
            return self.client.count(index=self.alias(replica))["count"]
        except NotFoundError:
            return 0

    def matching(self, replica: str, doc_id: str, queries: list[dict], batch: int = 200) -> list[bool]:
        """Which of the stored queries match one document: each query restricted to that id, batched with msearch.

        This is percolation on engines without a percolator (osmem): cost is one msearch per `batch` queries.
        """
        results: list[bool] = []
        for start in range(0, len(queries), batch):
            body: list[dict] = []
            for query in queries[start:start + batch]:
                body.append({"index": self.alias(replica)})
                body.append({"size": 0,
                             "query": {"bool": {"must": [query], "filter": [{"ids": {"values": [doc_id]}}]}}})
            for response in self.client.msearch(body=body)["responses"]:
                total = response.get("hits", {}).get("total", {}) if "error" not in response else {}
                results.append(bool(total.get("value", 0) if isinstance(total, dict) else total))
        return results


def _client(settings: Settings) -> OpenSearch:
    endpoint = settings.es_endpoint
    parsed = urllib.parse.urlparse(endpoint)
    kwargs: dict[str, Any] = {"hosts": [endpoint], "timeout": settings.es_timeout, "maxsize": 32}
    if parsed.hostname and parsed.hostname.endswith(".amazonaws.com"):
        import boto3
        from opensearchpy import AWSV4SignerAuth, RequestsHttpConnection
        region = parsed.hostname.split(".")[1]
        kwargs.update(http_auth=AWSV4SignerAuth(boto3.Session().get_credentials(), region, "es"),
                      use_ssl=True, verify_certs=True, connection_class=RequestsHttpConnection)
    return OpenSearch(**kwargs)


@functools.lru_cache(maxsize=4)
def search_backend(settings: Settings) -> SearchBackend:
    """One backend per settings, shared by the subscription handlers."""
    return SearchBackend(settings)
