"""Reads what the documents of §8.2 and §9.3 are built from: a bundle's manifest and its files' JSON."""
from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor

from ..storage.blobstore import BlobNotFound
from ..storage.files import blob_key_of
from ..storage.replicas import ReplicaStore
from .documents import is_json_file

logger = logging.getLogger(__name__)

# A metadata file larger than this is not indexed (it would not be metadata).
MAX_JSON_BYTES = 16 * 1024 * 1024


class BundleContentError(RuntimeError):
    """A file's bytes could not be read: the bundle is not indexed now (its event is retried)."""


def json_files(rs: ReplicaStore, manifest: dict, *, only_indexed: bool,
               concurrency: int = 16) -> list[tuple[str, object]]:
    """(name, parsed JSON) of the bundle's JSON files, in manifest order; files that are not JSON are skipped."""
    wanted = [f for f in manifest.get("files", []) if (f.get("indexed") or not only_indexed)]
    for entry in wanted:
        if entry.get("indexed") and not is_json_file(entry):
            logger.warning("bundle file %s has content type %r, not JSON: not indexed", entry["name"],
                           entry.get("content-type"))
    wanted = [f for f in wanted if is_json_file(f) and f.get("size", 0) <= MAX_JSON_BYTES]
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        contents = list(pool.map(lambda entry: _read_json(rs, entry), wanted))
    return [(entry["name"], content) for entry, content in zip(wanted, contents, strict=True) if content is not _SKIP]


_SKIP = object()


def _read_json(rs: ReplicaStore, entry: dict):
    try:
        raw = rs.store.get(rs.bucket, blob_key_of(entry))
    except BlobNotFound as e:
        raise BundleContentError(f"blob of {entry['name']} is missing in {rs.replica.value}") from e
    try:
        return json.loads(raw)
    except ValueError:
        logger.warning("bundle file %s is not valid JSON: skipped", entry["name"])
        return _SKIP
