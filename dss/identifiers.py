"""Identifiers, versions and object keys. Pure functions: no I/O, no project imports."""
from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

UUID_PATTERN = "[a-z0-9]{8}-[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{12}"
VERSION_PATTERN = r"\d{4}-\d{2}-\d{2}T\d{6}\.\d{6}Z"
UUID_REGEX = re.compile(f"^{UUID_PATTERN}$")
VERSION_REGEX = re.compile(f"^{VERSION_PATTERN}$")
VERSION_FORMAT = "%Y-%m-%dT%H%M%S.%fZ"

# `dead` sorts after any version, so a listing yields uuid.v1, uuid.v1.dead, ..., uuid.dead.
TOMBSTONE_SUFFIX = "dead"

_KEY_REGEX = re.compile(
    f"^(?P<kind>bundles|files|collections)/(?P<uuid>{UUID_PATTERN})"
    f"(?:\\.(?P<version>{VERSION_PATTERN}))?(?P<dead>\\.{TOMBSTONE_SUFFIX})?$"
)


class ObjectIdentifierError(ValueError):
    pass


def is_uuid(value: str) -> bool:
    return bool(UUID_REGEX.match(value))


def is_version(value: str) -> bool:
    """True for a canonical DSS version: UTC, no colons, exactly six fractional digits, a real date."""
    if not isinstance(value, str) or not VERSION_REGEX.match(value):
        return False
    try:
        parsed = datetime.datetime.strptime(value, VERSION_FORMAT)
    except ValueError:
        return False
    return format_version(parsed) == value


def format_version(moment: datetime.datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return moment.strftime(VERSION_FORMAT)


def new_version(now: datetime.datetime | None = None) -> str:
    return format_version(now or datetime.datetime.now(datetime.timezone.utc))


@dataclass(frozen=True)
class ObjectId:
    """A key in a primary bucket: files/, bundles/ or collections/, with an optional version and tombstone."""
    kind: str
    uuid: str
    version: str | None = None
    tombstone: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("files", "bundles", "collections"):
            raise ObjectIdentifierError(f"unknown kind {self.kind!r}")
        if not is_uuid(self.uuid):
            raise ObjectIdentifierError(f"not a uuid: {self.uuid!r}")
        if self.version is not None and not VERSION_REGEX.match(self.version):
            raise ObjectIdentifierError(f"not a version: {self.version!r}")
        if self.version is None and not self.tombstone:
            raise ObjectIdentifierError("a live object needs a version")

    def __str__(self) -> str:
        parts = [self.uuid] + ([self.version] if self.version else []) + ([TOMBSTONE_SUFFIX] if self.tombstone else [])
        return ".".join(parts)

    def to_key(self) -> str:
        return f"{self.kind}/{self}"

    def to_key_prefix(self) -> str:
        return f"{self.kind}/{self.uuid}.{self.version}" if self.version else uuid_prefix(self.kind, self.uuid)

    @classmethod
    def from_key(cls, key: str) -> "ObjectId":
        match = _KEY_REGEX.match(key)
        if not match:
            raise ObjectIdentifierError(f"not an object key: {key!r}")
        return cls(match["kind"], match["uuid"], match["version"], bool(match["dead"]))


def file_key(uuid: str, version: str) -> str:
    return ObjectId("files", uuid, version).to_key()


def uuid_prefix(kind: str, uuid: str) -> str:
    """The listing prefix of every version of one uuid; the trailing dot keeps uuid prefixes apart."""
    return f"{kind}/{uuid}."


def version_from_key(key: str, kind: str, uuid: str) -> str | None:
    """The version of a live object key for this uuid, or None for tombstones and foreign keys."""
    try:
        oid = ObjectId.from_key(key)
    except ObjectIdentifierError:
        return None
    if oid.kind != kind or oid.uuid != uuid or oid.tombstone:
        return None
    return oid.version
