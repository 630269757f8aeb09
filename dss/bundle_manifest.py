"""Bundle manifests, tombstones and the enumeration rules. Pure: no I/O."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

from .errors import DSSError
from .identifiers import ObjectId, ObjectIdentifierError

BUNDLE_FORMAT = "0.0.1"
CHECKSUM_FIELDS = ("crc32c", "s3-etag", "sha1", "sha256")


def check_unique_names(files: Iterable[dict]) -> None:
    seen: set[str] = set()
    for entry in files:
        if entry["name"] in seen:
            raise DSSError(400, "duplicate_filename", f"Duplicate file name in bundle: {entry['name']!r}")
        seen.add(entry["name"])


def manifest_entry(requested: dict, file_metadata: dict) -> dict:
    """The user's name, uuid, version and indexed flag, with the stored type, size and checksums."""
    return {
        "name": requested["name"],
        "uuid": requested["uuid"].lower(),
        "version": requested["version"],
        "content-type": file_metadata["content-type"],
        "size": file_metadata["size"],
        "indexed": bool(requested["indexed"]),
        **{field: file_metadata[field] for field in CHECKSUM_FIELDS},
    }


def bundle_document(files: list[dict], *, version: str, creator_uid: int) -> dict:
    return {"format": BUNDLE_FORMAT, "version": version, "files": files, "creator_uid": creator_uid}


def api_file(entry: dict) -> dict:
    """A manifest entry as the API shows it: `s3-etag` in storage is `s3_etag` on the wire."""
    shown = {k: v for k, v in entry.items() if k != "s3-etag"}
    shown["s3_etag"] = entry["s3-etag"]
    return shown


def patched_files(files: list[dict], *, remove: Iterable[dict], add: list[dict]) -> list[dict]:
    """Drop entries matching a (name, uuid, version) triple to remove, then append the added ones."""
    doomed = {(f["name"], f["uuid"].lower(), f["version"]) for f in remove}
    kept = [f for f in files if (f["name"], f["uuid"], f["version"]) not in doomed]
    result = kept + add
    check_unique_names(result)
    return result


def tombstone_document(email: str, reason: str, version: str | None = None) -> dict:
    doc = {"email": email, "reason": reason, "admin_deleted": True}
    if version:
        doc["version"] = version
    return doc


@dataclass
class VersionListing:
    """What a listing of `bundles/{uuid}.` says about one uuid."""
    versions: set[str]
    dead_versions: set[str]
    all_dead: bool

    @classmethod
    def of(cls, uuid: str, keys: Iterable[str]) -> "VersionListing":
        listing = cls(set(), set(), False)
        for key in keys:
            oid = _parse(key)
            if oid is None or oid.uuid != uuid:
                continue
            if oid.tombstone and oid.version is None:
                listing.all_dead = True
            elif oid.tombstone:
                listing.dead_versions.add(oid.version)
            else:
                listing.versions.add(oid.version)
        return listing

    def is_live(self, version: str) -> bool:
        return not self.all_dead and version in self.versions and version not in self.dead_versions

    def latest_live(self) -> str | None:
        if self.all_dead:
            return None
        return max(self.versions - self.dead_versions, default=None)


def live_bundles(keys: Iterable[str]) -> Iterator[tuple[str, str, str]]:
    """(uuid, version, key) of every live bundle in a sorted listing of bundles/ keys, in listing order.

    Tombstones sort after the versions they kill (`uuid.v`, `uuid.v.dead`, ..., `uuid.dead`), so one uuid's keys
    are contiguous: they are held until the uuid changes, which keeps memory to one uuid's versions.
    """
    group_uuid, group = None, []
    for key in keys:
        oid = _parse(key)
        if oid is None:
            continue
        if oid.uuid != group_uuid:
            yield from _live_in_group(group)
            group_uuid, group = oid.uuid, []
        group.append((oid, key))
    yield from _live_in_group(group)


def _live_in_group(group: list[tuple[ObjectId, str]]) -> Iterator[tuple[str, str, str]]:
    if any(oid.tombstone and oid.version is None for oid, _ in group):
        return
    dead = {oid.version for oid, _ in group if oid.tombstone}
    for oid, key in group:
        if not oid.tombstone and oid.version not in dead:
            yield oid.uuid, oid.version, key


def _parse(key: str) -> ObjectId | None:
    try:
        oid = ObjectId.from_key(key)
    except ObjectIdentifierError:
        return None
    return oid if oid.kind == "bundles" else None
