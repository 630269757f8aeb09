"""The events journal: an append-only, replayable log of bundle metadata documents, one per replica.

The original journaled events with flashflood, which is abandoned. This journal needs nothing but the replica's
primary bucket, under `events/`, a prefix that replication, the replica checker and the bundle listings ignore:
each replica's indexer journals what it indexed, in its own bucket.

Objects
- `events/journal/{recorded_at}.{uuid}.{version}.{event_type}`: one immutable entry per event, written
  create-only. `recorded_at` is a DSS_VERSION (fixed width, so key order is time order); the event type is
  CREATE, TOMBSTONE or DELETE. The body is `{event_id, event_type, recorded_at, document}`, where `event_id` is
  `{uuid}.{version}` and `document` the bundle metadata document (dss.index.documents.metadata_document).
- `events/by-id/{uuid}.{version}.{event_type}`: a marker naming the entry of that event, `{journal_key,
  recorded_at}`. It makes recording idempotent (one entry per bundle version and event type, however often the
  indexer re-processes the bundle) and answers GET /events/{uuid}?version without a scan.

Append-only: a tombstone does not remove the CREATE entry (the original deleted it); it is an event of its own,
and GET /events/{uuid}?version answers the most recent document of that version, the TOMBSTONE after a tombstone.

Reading. Entries are listed in key order. A cursor is an entry name; reading resumes strictly after it. GET
/events groups the entries of a window into streams: runs of at most STREAM_MAX_EVENTS consecutive entries within
one UTC hour, each with the entries' ids, types, timestamps and signed URLs of the entry objects.

Ordering guarantee. Recorders run concurrently, so an entry can become visible after a later-stamped one. Readers
therefore see only entries older than SETTLE_SECONDS, and a recorder whose write completed more than half of that
after its timestamp records the event again with a fresh timestamp. So a cursor never skips an entry: everything
that appears later sorts after it. The price is rare duplicates (also after a recorder crashed between marker and
entry): consumers deduplicate on (event_id, event_type), as they must anyway, since delivery is at least once.
"""
from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass
from typing import Callable, Iterator

from ..identifiers import UUID_PATTERN, VERSION_FORMAT, VERSION_PATTERN, format_version, is_uuid, is_version
from ..storage.blobstore import BlobAlreadyExists
from ..storage.files import read_json
from ..storage.replicas import ReplicaStore

JOURNAL_PREFIX = "events/journal/"
BY_ID_PREFIX = "events/by-id/"
EVENT_TYPES = ("CREATE", "TOMBSTONE", "DELETE")  # also the order of events recorded at the same instant
SETTLE_SECONDS = 10.0
STREAM_MAX_EVENTS = 100
MAX_RECORD_ATTEMPTS = 3
_HOUR_WIDTH = len("2000-01-01T00")
_NAME = re.compile(f"^(?P<at>{VERSION_PATTERN})\\.(?P<uuid>{UUID_PATTERN})\\.(?P<version>{VERSION_PATTERN})"
                   f"\\.(?P<type>{'|'.join(EVENT_TYPES)})$")

Clock = Callable[[], datetime.datetime]


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


@dataclass(frozen=True, order=True)
class Entry:
    """One journal entry, as its key names it."""
    recorded_at: str
    uuid: str
    version: str
    event_type: str

    @property
    def name(self) -> str:
        return f"{self.recorded_at}.{self.uuid}.{self.version}.{self.event_type}"

    @property
    def key(self) -> str:
        return JOURNAL_PREFIX + self.name

    @property
    def event_id(self) -> str:
        return f"{self.uuid}.{self.version}"

    @property
    def hour(self) -> str:
        return self.recorded_at[:_HOUR_WIDTH]

    @classmethod
    def from_name(cls, name: str) -> "Entry | None":
        match = _NAME.match(name)
        return cls(match["at"], match["uuid"], match["version"], match["type"]) if match else None


def marker_key(uuid: str, version: str, event_type: str) -> str:
    return f"{BY_ID_PREFIX}{uuid}.{version}.{event_type}"


def record(target, *args, clock: Clock = utcnow) -> bool:
    """Journal one bundle metadata document; True if this call wrote its entry, False if it was already there.

    `record(rs, document)` with a ReplicaStore, or `record(deps_or_replicas, replica, document)`.
    """
    if len(args) not in (1, 2):
        raise TypeError("record(rs, document) or record(deps_or_replicas, replica, document)")
    rs = _replica_store(target, *args[:-1])
    document = args[-1]
    uuid, version, event_type = _identify(document)
    marker = read_json(rs, marker_key(uuid, version, event_type))
    if marker is not None and rs.store.exists(rs.bucket, marker["journal_key"]):
        return False
    body = {"event_id": f"{uuid}.{version}", "event_type": event_type, "document": document}
    for attempt in range(MAX_RECORD_ATTEMPTS):
        entry = Entry(format_version(clock()), uuid, version, event_type)
        pointer = json.dumps({"journal_key": entry.key, "recorded_at": entry.recorded_at}).encode()
        try:
            # First recorder: claim the event create-only. Otherwise (a recorder crashed between marker and entry,
            # or this one was late) point the marker at the new entry.
            rs.store.put(rs.bucket, marker_key(uuid, version, event_type), pointer, content_type="application/json",
                         create_only=marker is None and attempt == 0)
        except BlobAlreadyExists:
            return False  # a concurrent recorder claimed it and writes the entry
        try:
            rs.store.put(rs.bucket, entry.key, json.dumps({**body, "recorded_at": entry.recorded_at}).encode(),
                         content_type="application/json", create_only=True)
        except BlobAlreadyExists:
            return False
        if (clock() - _parse_stamp(entry.recorded_at)).total_seconds() <= SETTLE_SECONDS / 2:
            break
    return True


def lookup(rs: ReplicaStore, uuid: str, version: str) -> dict | None:
    """The most recent document journaled for a bundle version (TOMBSTONE after CREATE), or None."""
    markers = []
    for key in rs.store.list(rs.bucket, f"{BY_ID_PREFIX}{uuid}.{version}."):
        event_type = key.rsplit(".", 1)[-1]
        marker = read_json(rs, key) if event_type in EVENT_TYPES else None
        if marker is not None:
            markers.append((marker["recorded_at"], EVENT_TYPES.index(event_type), marker["journal_key"]))
    for _, _, journal_key in sorted(markers, reverse=True):
        entry = read_json(rs, journal_key)
        if entry is not None:  # else its recorder crashed before writing it: an older event is the latest
            return entry["document"]
    return None


def entries(rs: ReplicaStore, *, after: str | None = None, from_date: str | None = None,
            to_date: str | None = None, clock: Clock = utcnow, settle: float = SETTLE_SECONDS) -> Iterator[Entry]:
    """Entries in key order: after the cursor `after` (an entry name) or from `from_date` (inclusive), before
    `to_date` (exclusive) and before the settle horizon. Dates are DSS_VERSIONs."""
    horizon = format_version(clock() - datetime.timedelta(seconds=settle))
    end = min(horizon, to_date) if to_date else horizon
    start_after = JOURNAL_PREFIX + (after if after is not None else from_date or "")
    for key in rs.store.list(rs.bucket, JOURNAL_PREFIX, start_after=start_after):
        entry = Entry.from_name(key[len(JOURNAL_PREFIX):])
        if entry is None:
            continue
        if entry.recorded_at >= end:
            return
        yield entry


def group_streams(found: Iterator[Entry], per_page: int,
                  max_events: int = STREAM_MAX_EVENTS) -> tuple[list[list[Entry]], bool]:
    """Up to per_page streams (runs of at most max_events entries within one hour); True if more entries follow."""
    streams: list[list[Entry]] = []
    current: list[Entry] = []
    for entry in found:
        if current and (len(current) >= max_events or entry.hour != current[0].hour):
            streams.append(current)
            current = []
            if len(streams) == per_page:
                return streams, True
        current.append(entry)
    if current:
        streams.append(current)
    return streams, False


def stream_manifest(rs: ReplicaStore, stream: list[Entry], ttl: int) -> dict:
    """A stream as GET /events shows it; `cursor` resumes reading after its last entry."""
    return {"journal_id": stream[0].name, "from_date": stream[0].recorded_at, "to_date": stream[-1].recorded_at,
            "size": len(stream), "cursor": stream[-1].name,
            "events": [{"event_id": e.event_id, "event_type": e.event_type, "timestamp": e.recorded_at,
                        "url": rs.store.signed_url(rs.bucket, e.key, ttl=ttl)} for e in stream]}


def read_entry(rs: ReplicaStore, entry: Entry) -> dict | None:
    """The stored entry `{event_id, event_type, recorded_at, document}`, or None."""
    return read_json(rs, entry.key)


def _replica_store(target, replica=None) -> ReplicaStore:
    if isinstance(target, ReplicaStore):
        return target
    replicas = getattr(target, "replicas", target)
    return replicas[replica]


def _identify(document: dict) -> tuple[str, str, str]:
    info = document.get("bundle_info") or {}
    uuid, version, event_type = str(info.get("uuid", "")).lower(), info.get("version"), document.get("event_type")
    if event_type not in EVENT_TYPES or not is_uuid(uuid) or not isinstance(version, str) or not is_version(version):
        raise ValueError(f"not a bundle metadata document: {event_type!r} {info!r}")
    return uuid, version, event_type


def _parse_stamp(stamp: str) -> datetime.datetime:
    return datetime.datetime.strptime(stamp, VERSION_FORMAT).replace(tzinfo=datetime.timezone.utc)


def parse_date(value: str) -> str:
    """A DSS_VERSION, or any ISO 8601 date or time (UTC unless it says otherwise), as a DSS_VERSION."""
    if is_version(value):
        return value
    moment = datetime.datetime.fromisoformat(value)
    stamp = format_version(moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc))
    if not is_version(stamp):  # years before 1000 do not format to four digits
        raise ValueError(f"out of range: {value!r}")
    return stamp
