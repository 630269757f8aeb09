"""Bundle manifests, tombstones and the enumeration rules. Pure: no I/O."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from .checkout_rules import bundle_object_key
from .errors import DSSError
from .identifiers import ObjectId, ObjectIdentifierError

BUNDLE_FORMAT = "0.0.1"
CHECKSUM_FIELDS = ("crc32c", "s3-etag", "sha1", "sha256")

# S3 and GCS both cap an object key at 1024 bytes of UTF-8. A bundle is checked out file by file to
# `bundles/{uuid}.{version}/{name}`, so a name may take what that prefix leaves: 953 bytes.
STORE_KEY_LIMIT_BYTES = 1024
MAX_FILE_NAME_BYTES = STORE_KEY_LIMIT_BYTES - len(
    bundle_object_key("00000000-0000-0000-0000-000000000000", "2000-01-01T000000.000000Z", ""))
# A client's download makes a directory tree of the names. File systems cap a path segment at 255 bytes, and
# downloaders (aria2c's `.aria2`, partial-file suffixes) and file-backed stores (fake-gcs-server's temporary files)
# append to a segment while writing it; 200 bytes leaves them room.
MAX_SEGMENT_BYTES = 200
_TITLE_NAME_CHARS = 80


def file_name_problem(name: str) -> str | None:
    """Why `name` cannot name a file in a bundle; None if it can.

    A name is a relative path of `/`-separated segments that must also be a key of the checkout (in S3, in GCS, and
    in a client's directory tree): 1 to MAX_FILE_NAME_BYTES bytes of UTF-8, each segment at most MAX_SEGMENT_BYTES;
    no control character (U+0000-U+001F, U+007F-U+009F, so no NUL, CR or LF), no backslash; no empty segment (no
    leading or trailing `/`, no `//`); not `.` or `..`, no `./` or `/.` (so no `.` or `..` segment and no dot-file
    below a directory), no leading `~/`. The last three are the original's rules; the others keep out names that
    could be stored but never checked out.
    """
    if not name:
        return "it is empty"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "it is not valid Unicode (a lone surrogate)"
    if size > MAX_FILE_NAME_BYTES:
        return f"it is {size} bytes of UTF-8, more than {MAX_FILE_NAME_BYTES}"
    longest = max(len(segment.encode("utf-8")) for segment in name.split("/"))
    if longest > MAX_SEGMENT_BYTES:
        return f"a path segment is {longest} bytes of UTF-8, more than {MAX_SEGMENT_BYTES}"
    control = next((c for c in name if ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f), None)
    if control is not None:
        return f"it contains the control character U+{ord(control):04X}"
    if "\\" in name:
        return "it contains a backslash"
    if "" in name.split("/"):
        return "it has an empty path segment (a leading or trailing '/', or '//')"
    if name in (".", "..") or name.startswith("~/") or "./" in name or "/." in name:
        return "it has a '.' or '..' segment, a dot-file below a directory, or a leading '~/'"
    return None


def check_file_names(files: Iterable[dict[str, Any]]) -> None:
    """400 `illegal_file_name` for the first entry whose name breaks the rule of file_name_problem."""
    for entry in files:
        problem = file_name_problem(entry["name"])
        if problem:
            shown = entry["name"][:_TITLE_NAME_CHARS] + ("..." if len(entry["name"]) > _TITLE_NAME_CHARS else "")
            raise DSSError(400, "illegal_file_name", f"Illegal file name {shown!r} in bundle: {problem}.")


def check_unique_names(files: Iterable[dict[str, Any]]) -> None:
    """400 `duplicate_filename` for a name given twice, and `illegal_file_name` for a name that is also a directory
    of another (`d` and `d/e`): no store that keeps objects as files, and no client's download, can hold both."""
    seen: set[str] = set()
    directories: dict[str, str] = {}  # each directory the names make -> one name below it
    for entry in files:
        name = entry["name"]
        if name in seen:
            raise DSSError(400, "duplicate_filename", f"Duplicate file name in bundle: {name!r}")
        seen.add(name)
        segments = name.split("/")
        for i in range(1, len(segments)):
            directories.setdefault("/".join(segments[:i]), name)
    clash = next((name for name in seen if name in directories), None)
    if clash is not None:
        raise DSSError(400, "illegal_file_name", f"Illegal file name {clash[:_TITLE_NAME_CHARS]!r} in bundle: it is "
                       f"also a directory of {directories[clash][:_TITLE_NAME_CHARS]!r}.")


def manifest_entry(requested: dict[str, Any], file_metadata: dict[str, Any]) -> dict[str, Any]:
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


def bundle_document(files: list[dict[str, Any]], *, version: str, creator_uid: int) -> dict[str, Any]:
    return {"format": BUNDLE_FORMAT, "version": version, "files": files, "creator_uid": creator_uid}


def api_file(entry: dict[str, Any]) -> dict[str, Any]:
    """A manifest entry as the API shows it: `s3-etag` in storage is `s3_etag` on the wire."""
    shown = {k: v for k, v in entry.items() if k != "s3-etag"}
    shown["s3_etag"] = entry["s3-etag"]
    return shown


def patched_files(files: list[dict[str, Any]], *, remove: Iterable[dict[str, Any]],
                  add: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop entries matching a (name, uuid, version) triple to remove, then append the added ones."""
    doomed = {(f["name"], f["uuid"].lower(), f["version"]) for f in remove}
    kept = [f for f in files if (f["name"], f["uuid"], f["version"]) not in doomed]
    result = kept + add
    check_unique_names(result)
    return result


def tombstone_document(email: str, reason: str, version: str | None = None) -> dict[str, Any]:
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
            if oid.version is None:  # only a tombstone may lack a version (ObjectId checks)
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
    group_uuid: str | None = None
    group: list[tuple[ObjectId, str]] = []
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
        if oid.version is not None and not oid.tombstone and oid.version not in dead:
            yield oid.uuid, oid.version, key


def _parse(key: str) -> ObjectId | None:
    try:
        oid = ObjectId.from_key(key)
    except ObjectIdentifierError:
        return None
    return oid if oid.kind == "bundles" else None
