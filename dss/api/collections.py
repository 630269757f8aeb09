"""GET /collections, PUT /collections, and GET, PATCH and DELETE /collections/{uuid}.

Every route needs a token of group `hca`; a collection belongs to the email of the token that created it, and only
that user may read, change or delete it. Versions are immutable: PUT creates one (an identical repeat answers 200),
PATCH derives a new one stamped with the current time.
"""
from __future__ import annotations

import logging

from ..collections import apply_patch, collection_document, new_items
from ..errors import DSSError
from ..identifiers import new_version
from ..storage import collections as store
from ..storage.collection_owners import CollectionOwners
from . import assert_writable, caller_email, context
from .paging import paged

logger = logging.getLogger(__name__)


def list_collections(per_page: int = 500, start_at: int | None = None):
    email = caller_email()
    start_at = start_at or 0
    if start_at < 0:
        raise DSSError(400, "illegal_arguments", "start_at must not be negative.")
    entries, more = _owners().page(email, start_at, per_page)
    body = {"collections": [{"uuid": uuid, "version": version} for uuid, version in entries]}
    return paged(body, "collections", more=more, start_at=start_at + len(entries), per_page=per_page)


def put(replica: str, uuid: str, version: str, body: dict):
    assert_writable()
    email = caller_email()
    uuid = uuid.lower()
    rs = context().replicas[replica]
    document = collection_document(body, email)
    latest, deleted = store.scan(rs, uuid)
    if deleted:
        raise DSSError(409, "collection_tombstone_already_exists",
                       f"Collection {uuid} was deleted; its uuid cannot be used again.")
    existing = None
    if latest:
        # A uuid belongs to whoever created its first version: nobody else may add versions to it.
        _check_owner(store.read(rs, uuid, latest), email, uuid)
        existing = store.read(rs, uuid, version)
    if existing is None:
        store.verify_links(rs, document["contents"])
    owners = _owners()
    # Before any version is written: of users racing for a new uuid, the one whose claim was created owns it.
    if owners.claim(uuid, email) != email:
        raise _not_yours(uuid)
    written = store.save(rs, uuid, version, document)
    # After the document, so that a failed registration is repaired by repeating the PUT.
    owners.add(email, uuid, version)
    logger.info("collection %s.%s on %s: %s", uuid, version, replica, "created" if written else "repeat")
    return {"uuid": uuid, "version": version}, 201 if written else 200


def get(uuid: str, replica: str, version: str | None = None):
    email = caller_email()
    uuid = uuid.lower()
    _, document = store.load(context().replicas[replica], uuid, version)
    _check_owner(document, email, uuid)
    return document, 200


def patch(uuid: str, replica: str, version: str, body: dict):
    assert_writable()
    email = caller_email()
    uuid = uuid.lower()
    rs = context().replicas[replica]
    latest, document = store.load(rs, uuid)
    _check_owner(document, email, uuid)
    if version != latest:
        _, document = store.load(rs, uuid, version)
    updated = apply_patch(document, body)
    store.verify_links(rs, new_items(document["contents"], updated["contents"]))
    new = new_version()
    store.save(rs, uuid, new, updated)
    _owners().add(email, uuid, new)  # unlike the original, a patched version is listed too
    logger.info("collection %s.%s on %s: patched from %s", uuid, new, replica, version)
    return {"uuid": uuid, "version": new}, 200


def delete(uuid: str, replica: str):
    assert_writable()
    email = caller_email()
    uuid = uuid.lower()
    rs = context().replicas[replica]
    # A deleted collection is still found here, so that repeating a DELETE answers 200 as the first did.
    _, document = store.load(rs, uuid, include_deleted=True)
    _check_owner(document, email, uuid)
    store.write_tombstone(rs, uuid, email)
    _owners().remove_uuid(email, uuid)
    logger.info("collection %s on %s: deleted", uuid, replica)
    return {}, 200


def _owners() -> CollectionOwners:
    return CollectionOwners(context().settings.collections_table)


def _check_owner(document: dict | None, email: str, uuid: str) -> None:
    if document is None or document.get("owner") != email:
        raise _not_yours(uuid)


def _not_yours(uuid: str) -> DSSError:
    return DSSError(403, "forbidden", f"Collection {uuid} belongs to another user.")
