"""Object-created events as each cloud delivers them, reduced to one shape. Pure: no I/O.

S3 sends event-notification records (through SNS, then SQS); GCS object-change events are relayed as the raw
object resource JSON. Both arrive in an SQS body, possibly wrapped in an SNS envelope.
"""
from __future__ import annotations

import datetime
import json
import urllib.parse
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ObjectEvent:
    replica: str          # "aws" or "gcp"
    bucket: str
    key: str
    size: int
    event_time: str       # ISO 8601, UTC

    def age_seconds(self, now: datetime.datetime | None = None) -> float:
        now = now or datetime.datetime.now(datetime.timezone.utc)
        return (now - parse_time(self.event_time)).total_seconds()

    def as_dict(self) -> dict:
        return asdict(self)


def parse_time(value: str) -> datetime.datetime:
    moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def unwrap(body: str | dict) -> dict:
    """The payload of an SQS body, with any SNS envelope removed."""
    message = json.loads(body) if isinstance(body, str) else body
    if isinstance(message, dict) and message.get("Type") == "Notification" and "Message" in message:
        message = json.loads(message["Message"])
    return message


def object_events(body: str | dict) -> list[ObjectEvent]:
    """Every object-created event in one message; anything else (test events, deletions) gives []."""
    message = unwrap(body)
    if "Records" in message:
        return [e for e in (_from_s3_record(r) for r in message["Records"]) if e]
    if message.get("kind") == "storage#object":
        event = _from_gcs_object(message)
        return [event] if event else []
    return []


def _from_s3_record(record: dict) -> ObjectEvent | None:
    if record.get("eventSource") != "aws:s3" or not record.get("eventName", "").startswith("ObjectCreated"):
        return None
    s3 = record["s3"]
    return ObjectEvent("aws", s3["bucket"]["name"], urllib.parse.unquote_plus(s3["object"]["key"]),
                       int(s3["object"].get("size", 0)), record.get("eventTime") or now_iso())


def _from_gcs_object(resource: dict) -> ObjectEvent | None:
    if resource.get("resourceState") == "not_exists":
        return None
    return ObjectEvent("gcp", resource["bucket"], resource["name"], int(resource.get("size", 0)),
                       resource.get("timeCreated") or resource.get("updated") or now_iso())


def s3_record(bucket: str, key: str, size: int, etag: str, event_time: str | None = None) -> dict:
    """An S3 event notification, as S3 publishes one for PutObject."""
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "eventTime": event_time or now_iso(),
        "s3": {"bucket": {"name": bucket}, "object": {"key": urllib.parse.quote_plus(key, safe="/"), "size": size,
                                                      "eTag": etag}}}]}


def gcs_object(bucket: str, key: str, size: int, crc32c_b64: str = "", event_time: str | None = None) -> dict:
    """A GCS object resource, as the event relay publishes it."""
    return {"kind": "storage#object", "bucket": bucket, "name": key, "size": str(size), "crc32c": crc32c_b64,
            "timeCreated": event_time or now_iso(), "metageneration": "1"}
