"""Collections in a replica: versions under `collections/{uuid}.{version}`, the tombstone `collections/{uuid}.dead`,
and the check that every link of a collection resolves in that replica."""
from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor

from ..collections import describe, is_object_link, link_problem, linked_key, resolve_fragment
from ..errors import DSSError
from ..identifiers import ObjectId, ObjectIdentifierError, uuid_prefix
from .blobstore import BlobNotFound
from .files import blob_key_of, read_json, write_immutable_json
from .replicas import ReplicaStore

logger = logging.getLogger(__name__)

MAX_LINKED_SIZE = 1024 * 1024  # linked objects and fragment-bearing files are read whole, so they are capped
VERIFY_CONCURRENCY = 16


def collection_key(uuid: str, version: str) -> str:
    return ObjectId("collections", uuid, version).to_key()


def tombstone_key(uuid: str) -> str:
    return ObjectId("collections", uuid, tombstone=True).to_key()


def not_found(uuid: str, version: str | None = None) -> DSSError:
    return DSSError(404, "not_found", f"Cannot find collection {uuid}" + (f" version {version}" if version else ""))


def scan(rs: ReplicaStore, uuid: str) -> tuple[str | None, bool]:
    """The latest version of a collection (None if it has none) and whether it is deleted, from one listing."""
    latest, deleted = None, False
    for key in rs.store.list(rs.bucket, uuid_prefix("collections", uuid)):
        try:
            oid = ObjectId.from_key(key)
        except ObjectIdentifierError:
            continue
        if oid.uuid != uuid:
            continue
        if oid.tombstone:
            deleted = deleted or oid.version is None
        elif oid.version is not None and (latest is None or oid.version > latest):  # live: has a version
            latest = oid.version
    return latest, deleted


def load(rs: ReplicaStore, uuid: str, version: str | None = None, *,
         include_deleted: bool = False) -> tuple[str, dict]:
    """(version, document) of the given or the latest version; 404 if it is missing or the collection deleted."""
    latest, deleted = scan(rs, uuid)
    if deleted and not include_deleted:
        raise not_found(uuid, version)
    version = version or latest
    if not version:
        raise not_found(uuid, version)
    document = read_json(rs, collection_key(uuid, version))
    if document is None:
        raise not_found(uuid, version)
    return version, document


def read(rs: ReplicaStore, uuid: str, version: str) -> dict | None:
    return read_json(rs, collection_key(uuid, version))


def save(rs: ReplicaStore, uuid: str, version: str, document: dict) -> bool:
    """Create-only: True if written now, False if this very document was already there; 409 if another was."""
    conflict = DSSError(409, "collection_already_exists",
                        f"Collection {uuid} version {version} already exists with different content.")
    return write_immutable_json(rs, collection_key(uuid, version), document, conflict=conflict)


def write_tombstone(rs: ReplicaStore, uuid: str, email: str) -> bool:
    conflict = DSSError(409, "collection_tombstone_already_exists",
                        f"Collection {uuid} was already deleted by someone else.")
    return write_immutable_json(rs, tombstone_key(uuid), {"email": email}, conflict=conflict)


def verify_links(rs: ReplicaStore, items: list[dict]) -> None:
    """422 invalid_link unless every item resolves in this replica; items are looked up concurrently."""
    if not items:
        return
    with ThreadPoolExecutor(max_workers=min(VERIFY_CONCURRENCY, len(items)),
                            thread_name_prefix="verify-link") as pool:
        problems = list(pool.map(lambda item: _link_problem(rs, item), items))
    failures = [(item, problem) for item, problem in zip(items, problems, strict=True) if problem]
    if failures:
        item, problem = failures[0]
        more = f" (and {len(failures) - 1} more of {len(items)} items)" if len(failures) > 1 else ""
        raise DSSError(422, "invalid_link", f"Invalid link {describe(item)}: {problem}{more}")


def _link_problem(rs: ReplicaStore, item: dict) -> str | None:
    problem = link_problem(item)
    if problem:
        return problem
    key = linked_key(item)
    if is_object_link(item):
        return _size_problem(rs, key)
    metadata = read_json(rs, key)
    if metadata is None:
        return f"{key} does not exist in {rs.replica.value}"
    try:
        blob_key = blob_key_of(metadata)
    except (KeyError, TypeError, ValueError):
        return f"{key} is not the metadata of a file"
    problem = _size_problem(rs, blob_key)
    if problem:
        return problem
    try:
        document = json.loads(rs.store.get(rs.bucket, blob_key))
    except ValueError:
        return f"file {item['uuid']}.{item['version']} is not JSON"
    except BlobNotFound:
        return f"the content of file {item['uuid']}.{item['version']} is missing"
    try:
        resolve_fragment(document, item["fragment"])
    except LookupError as e:
        return str(e)
    return None


def _size_problem(rs: ReplicaStore, key: str) -> str | None:
    try:
        size = rs.store.head(rs.bucket, key).size
    except BlobNotFound:
        return f"{key} does not exist in {rs.replica.value}"
    if size > MAX_LINKED_SIZE:
        return f"{key} is {size} bytes, more than the {MAX_LINKED_SIZE} a collection may link"
    return None
