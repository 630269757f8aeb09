import datetime
import json

from dss.events.records import gcs_object, object_events, parse_time, s3_record, unwrap
from dss.events.runtime import backoff_seconds


def test_s3_records_round_trip_through_an_sns_envelope():
    record = s3_record("bucket", "files/a b+c", 12, "etag", event_time="2026-01-02T03:04:05.000006Z")
    envelope = json.dumps({"Type": "Notification", "Message": json.dumps(record)})
    [event] = object_events(envelope)
    assert (event.replica, event.bucket, event.key, event.size) == ("aws", "bucket", "files/a b+c", 12)
    assert parse_time(event.event_time) == datetime.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=datetime.timezone.utc)
    assert object_events(record) == [event]  # raw delivery (no envelope) too


def test_gcs_objects_and_deletions():
    [event] = object_events(json.dumps(gcs_object("b", "blobs/x", 5)))
    assert (event.replica, event.bucket, event.key, event.size) == ("gcp", "b", "blobs/x", 5)
    assert object_events({**gcs_object("b", "k", 1), "resourceState": "not_exists"}) == []


def test_other_messages_carry_no_object_events():
    assert object_events({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectRemoved:Delete"}]}) == []
    assert object_events({"Event": "s3:TestEvent"}) == []
    assert unwrap('{"a": 1}') == {"a": 1}


def test_event_age():
    event = object_events(s3_record("b", "k", 0, "e", event_time="2026-01-01T00:00:00Z"))[0]
    now = datetime.datetime(2026, 1, 1, 0, 0, 2, tzinfo=datetime.timezone.utc)
    assert event.age_seconds(now) == 2


def test_backoff_doubles_and_is_capped():
    assert [backoff_seconds(n) for n in (1, 2, 3, 4)] == [2, 4, 8, 16]
    assert backoff_seconds(50) == 300
