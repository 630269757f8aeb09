"""Bundles in a replica: save manifests, read them honouring tombstones, tombstone them, enumerate them."""
from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

from ..bundle_manifest import (
    VersionListing,
    bundle_document,
    check_unique_names,
    live_bundles,
    manifest_entry,
    tombstone_document,
)
from ..errors import DSSError
from ..identifiers import ObjectId, file_key, uuid_prefix
from .files import read_json, write_immutable_json
from .replicas import ReplicaStore

logger = logging.getLogger(__name__)


class FileLookup:
    """Reads the metadata of many files with bounded concurrency, waiting (bounded) for ones still replicating."""

    def __init__(self, rs: ReplicaStore, *, concurrency: int, wait_seconds: float, poll_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.rs, self.concurrency = rs, concurrency
        self.wait_seconds, self.poll_seconds = wait_seconds, poll_seconds
        self.clock, self.sleep = clock, sleep

    def resolve(self, requested: list[dict]) -> list[dict]:
        """Manifest entries for the requested files, in request order; 400 file_missing if any stays absent."""
        wanted = list(dict.fromkeys((f["uuid"].lower(), f["version"]) for f in requested))
        found: dict[tuple[str, str], dict] = {}
        deadline = self.clock() + self.wait_seconds
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            while True:
                missing = [fqid for fqid in wanted if fqid not in found]
                for fqid, doc in zip(missing, pool.map(self._read, missing), strict=True):
                    if doc is not None:
                        found[fqid] = doc
                missing = [fqid for fqid in wanted if fqid not in found]
                if not missing:
                    break
                if self.clock() + self.poll_seconds > deadline:
                    shown = ", ".join(f"{u}.{v}" for u, v in missing[:5])
                    raise DSSError(400, "file_missing",
                                   f"{len(missing)} file(s) not found in {self.rs.replica.value}: {shown}"
                                   + (" ..." if len(missing) > 5 else ""))
                self.sleep(self.poll_seconds)  # a file PUT to the other replica may still be replicating
        return [manifest_entry(f, found[(f["uuid"].lower(), f["version"])]) for f in requested]

    def _read(self, fqid: tuple[str, str]) -> dict | None:
        return read_json(self.rs, file_key(*fqid))


class ManifestCache:
    """Manifests are immutable, so a few parsed ones are kept for paging through large bundles."""

    def __init__(self, size: int = 8):
        self._items: collections.OrderedDict = collections.OrderedDict()
        self._size, self._lock = size, threading.Lock()

    def get(self, key, load: Callable[[], dict | None]) -> dict | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = load()
        if value is not None:
            with self._lock:
                self._items[key] = value
                while len(self._items) > self._size:
                    self._items.popitem(last=False)
        return value


_manifests = ManifestCache()


def bundle_key(uuid: str, version: str) -> str:
    return ObjectId("bundles", uuid, version).to_key()


def version_listing(rs: ReplicaStore, uuid: str) -> VersionListing:
    return VersionListing.of(uuid, rs.store.list(rs.bucket, uuid_prefix("bundles", uuid)))


def load_manifest(rs: ReplicaStore, uuid: str, version: str | None) -> dict:
    """The manifest of a live version (the latest live one when none is given); 404 if absent or tombstoned."""
    uuid = uuid.lower()
    listing = version_listing(rs, uuid)
    version = listing.latest_live() if version is None else (version if listing.is_live(version) else None)
    manifest = _manifests.get((rs.replica.value, rs.bucket, uuid, version),
                              lambda: read_json(rs, bundle_key(uuid, version))) if version else None
    if manifest is None:
        raise DSSError(404, "not_found", "Cannot find bundle!")
    return manifest


def save_manifest(rs: ReplicaStore, uuid: str, version: str, files: list[dict], creator_uid: int) -> tuple[int, dict]:
    check_unique_names(files)
    document = bundle_document(files, version=version, creator_uid=creator_uid)
    conflict = DSSError(409, "bundle_already_exists",
                        f"Bundle {uuid} version {version} already exists with a different manifest.")
    written = write_immutable_json(rs, bundle_key(uuid.lower(), version), document, conflict=conflict)
    logger.info("bundle %s.%s on %s with %d files: %s", uuid, version, rs.replica.value, len(files),
                "created" if written else "repeat")
    return (201 if written else 200), document


def tombstone(rs: ReplicaStore, uuid: str, version: str | None, *, email: str, reason: str) -> bool:
    """Write the tombstone of one version, or of all versions. True if new; False if an identical one was there."""
    uuid = uuid.lower()
    prefix = f"bundles/{uuid}.{version}" if version else uuid_prefix("bundles", uuid)
    if not any(True for _ in itertools.islice(rs.store.list(rs.bucket, prefix, page_size=1), 1)):
        raise DSSError(404, "not_found", "Cannot find bundle!")
    key = ObjectId("bundles", uuid, version, tombstone=True).to_key()
    conflict = DSSError(409, "bundle_tombstone_already_exists",
                        "A tombstone with different content already exists for this bundle.")
    return write_immutable_json(rs, key, tombstone_document(email, reason, version), conflict=conflict)


def enumerate_live(rs: ReplicaStore, prefix: str, *, search_after: str | None,
                   page_size: int = 1000) -> Iterator[tuple[str, str, str]]:
    """(uuid, version, key) of live bundles under bundles/{prefix}, streamed page by page from the listing."""
    keys = rs.store.list(rs.bucket, f"bundles/{prefix}", start_after=search_after, page_size=page_size)
    return live_bundles(keys)
