"""The dss-index daemon: bundle and tombstone events in, search documents out, then journal and notifications.

`handle_message` is the handler of the "index" queue (fed by both replicas' object-event topics); the Lambda and
the local worker call it alike. Everything here is idempotent: the document is written only if it changed, the
journal entry is create-only, and notifications carry a stable id the delivery step deduplicates.
"""
from __future__ import annotations

import functools
import logging

from ..bundle_manifest import VersionListing
from ..events.records import object_events
from ..identifiers import ObjectId, ObjectIdentifierError
from ..storage.bundles import bundle_key, version_listing
from ..storage.files import read_json
from ..storage.replicas import ReplicaStore
from .backend import SearchBackend
from .bundle_content import json_files
from .documents import group_files, index_document, metadata_document, shape_descriptor, tombstone_index_document
from .schemas import SchemaCache

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def _backend(settings) -> SearchBackend:
    return SearchBackend(settings)


_schemas = SchemaCache()


def handle_message(body: dict, deps) -> None:
    for event in object_events(body):
        rs = deps.replicas[event.replica]
        if event.bucket != rs.bucket:
            continue
        index_key(deps, rs, event.key)


def index_key(deps, rs: ReplicaStore, key: str, *, notify: bool = True, journal: bool = True) -> int:
    """Index what one bundles/ key means; returns how many documents changed. Other keys are ignored."""
    try:
        oid = ObjectId.from_key(key)
    except ObjectIdentifierError:
        return 0
    if oid.kind != "bundles":
        return 0
    listing = version_listing(rs, oid.uuid)
    if oid.tombstone or oid.version is None:  # only a tombstone lacks a version
        versions = [oid.version] if oid.version else sorted(listing.versions)
        return sum(index_version(deps, rs, oid.uuid, v, listing, notify=notify, journal=journal) for v in versions)
    return index_version(deps, rs, oid.uuid, oid.version, listing, notify=notify, journal=journal)


def index_version(deps, rs: ReplicaStore, uuid: str, version: str, listing: VersionListing, *, notify: bool = True,
                  journal: bool = True) -> int:
    backend = _backend(deps.settings)
    doc_id = f"{uuid}.{version}"
    manifest = read_json(rs, bundle_key(uuid, version))
    if manifest is None:
        logger.warning("bundle %s not found in %s: not indexed", doc_id, rs.replica.value)
        return 0
    tombstone = _tombstone_of(rs, uuid, version, listing)
    contents = json_files(rs, manifest, only_indexed=False)
    indexed_names = {entry["name"] for entry in manifest.get("files", []) if entry.get("indexed")}
    indexed_files = group_files((name, _schemas.scrubbed(content)) for name, content in contents
                                if name in indexed_names)
    shape = str(shape_descriptor(indexed_files))
    if tombstone is not None:
        event_type = "TOMBSTONE"
        document = tombstone_index_document(uuid, version, tombstone)
        metadata = metadata_document("TOMBSTONE", uuid, version, tombstone=tombstone)
    else:
        event_type = "CREATE"
        document = index_document(uuid, manifest, indexed_files)
        metadata = None
    changed = backend.put(rs.replica.value, doc_id, shape, document)
    logger.info("indexed %s %s in %s (%s)", event_type.lower(), doc_id, rs.replica.value,
                "changed" if changed else "unchanged")
    if metadata is None:  # notifications and events carry every JSON file, indexed or not, unscrubbed
        metadata = metadata_document("CREATE", uuid, version, manifest=manifest, files=group_files(contents))
    if journal:
        from ..events import journal as event_journal
        event_journal.record(rs, metadata)
    if notify:
        from ..notify.matching import notify_for_event
        notify_for_event(deps, rs.replica.value, event_type, uuid, version, metadata, index_doc_id=doc_id,
                         backend=backend)
    return 1 if changed else 0


def _tombstone_of(rs: ReplicaStore, uuid: str, version: str, listing: VersionListing) -> dict | None:
    if listing.all_dead:
        return read_json(rs, ObjectId("bundles", uuid, None, tombstone=True).to_key())
    if version in listing.dead_versions:
        return read_json(rs, ObjectId("bundles", uuid, version, tombstone=True).to_key())
    return None
