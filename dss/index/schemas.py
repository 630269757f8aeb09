"""Schemas named by `describedBy`: fetched (with a cache) to scrub properties the schema does not allow.

A schema that cannot be fetched never drops a file: the file is indexed as it is (the original dropped it, and
dropped every file without schema information, so bundles uploaded without schema URLs were never found).
"""
from __future__ import annotations

import logging
import threading
import time

import requests

logger = logging.getLogger(__name__)


def scrub(content, schema: dict):
    """Remove the properties an `additionalProperties: false` object schema would reject, recursively."""
    if isinstance(content, list) and isinstance(schema.get("items"), dict):
        return [scrub(item, schema["items"]) for item in content]
    if not isinstance(content, dict):
        return content
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        properties = {}
    closed = schema.get("additionalProperties") is False
    return {key: scrub(value, properties[key]) if isinstance(properties.get(key), dict) else value
            for key, value in content.items() if not closed or key in properties}


class SchemaCache:
    """Fetched schemas by URL; failures are remembered for a while so an unreachable host costs one timeout."""

    def __init__(self, timeout: float = 2.0, failure_ttl: float = 300.0, http: requests.Session | None = None):
        self.timeout, self.failure_ttl = timeout, failure_ttl
        self._http = http or requests.Session()
        self._schemas: dict[str, dict] = {}
        self._failed: dict[str, float] = {}
        self._lock = threading.Lock()

    def get(self, url: str) -> dict | None:
        with self._lock:
            if url in self._schemas:
                return self._schemas[url]
            if time.monotonic() - self._failed.get(url, -1e9) < self.failure_ttl:
                return None
        try:
            response = self._http.get(url if url.endswith(".json") else url, timeout=self.timeout)
            response.raise_for_status()
            schema = response.json()
            if not isinstance(schema, dict):
                raise ValueError("not a JSON object")
        except (requests.RequestException, ValueError) as e:
            logger.warning("schema %s cannot be fetched (%s): the file is indexed unscrubbed", url, e)
            with self._lock:
                self._failed[url] = time.monotonic()
            return None
        with self._lock:
            self._schemas[url] = schema
        return schema

    def scrubbed(self, content):
        url = content.get("describedBy") if isinstance(content, dict) else None
        schema = self.get(url) if isinstance(url, str) and url.startswith(("http://", "https://")) else None
        return scrub(content, schema) if schema else content
