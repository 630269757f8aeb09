"""Recording and reading the events journal against an in-memory store: idempotence, crashes, late writers."""
import datetime
import json
import types

import pytest

from dss.events import journal
from dss.identifiers import format_version
from dss.index.documents import metadata_document
from dss.storage.blobstore import BlobAlreadyExists, BlobNotFound
from dss.storage.replicas import Replica, ReplicaStore

U = "0f8b1c1e-2a3b-4c5d-8e9f-0a1b2c3d4e5f"
V = "2020-01-02T030405.000001Z"
T0 = datetime.datetime(2021, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc)


class MemoryStore:
    """The few blobstore operations the journal uses, with create-only enforced."""

    def __init__(self):
        self.objects: dict[str, bytes] = {}
        self.fail_next_put_under: str | None = None

    def put(self, bucket, key, data, *, content_type="", create_only=False, **_):
        if self.fail_next_put_under and key.startswith(self.fail_next_put_under):
            self.fail_next_put_under = None
            raise RuntimeError("crash")
        if create_only and key in self.objects:
            raise BlobAlreadyExists(key)
        self.objects[key] = data

    def get(self, bucket, key):
        if key not in self.objects:
            raise BlobNotFound(key)
        return self.objects[key]

    def exists(self, bucket, key):
        return key in self.objects

    def list(self, bucket, prefix, *, start_after=None, **_):
        return iter(sorted(k for k in self.objects if k.startswith(prefix) and (not start_after or k > start_after)))

    def signed_url(self, bucket, key, *, ttl):
        return f"https://signed/{key}?ttl={ttl}"


@pytest.fixture
def rs():
    return ReplicaStore(Replica.aws, MemoryStore(), "primary", "checkout", "staging")


def clock_at(*moments):
    """A clock that answers these moments in turn, then keeps answering the last."""
    remaining = list(moments)
    return lambda: remaining.pop(0) if len(remaining) > 1 else remaining[0]


def journal_keys(rs):
    return [k for k in rs.store.objects if k.startswith(journal.JOURNAL_PREFIX)]


CREATE = metadata_document("CREATE", U, V, manifest={"version": V, "files": []}, files={})
TOMBSTONE = metadata_document("TOMBSTONE", U, V, tombstone={"email": "a@b.org", "reason": "r", "admin_deleted": True})


def test_record_once_then_idempotent(rs):
    assert journal.record(rs, CREATE, clock=clock_at(T0)) is True
    assert journal.record(rs, CREATE, clock=clock_at(T0 + datetime.timedelta(hours=1))) is False
    [key] = journal_keys(rs)
    assert key == f"events/journal/2021-05-06T070809.000000Z.{U}.{V}.CREATE"
    stored = json.loads(rs.store.objects[key])
    assert stored == {"event_id": f"{U}.{V}", "event_type": "CREATE", "recorded_at": "2021-05-06T070809.000000Z",
                      "document": CREATE}
    assert journal.lookup(rs, U, V) == CREATE


def test_tombstone_is_a_later_event_and_the_latest_document(rs):
    journal.record(rs, CREATE, clock=clock_at(T0))
    assert journal.record(rs, TOMBSTONE, clock=clock_at(T0 + datetime.timedelta(seconds=1))) is True
    assert journal.record(rs, TOMBSTONE, clock=clock_at(T0 + datetime.timedelta(seconds=2))) is False
    assert len(journal_keys(rs)) == 2
    assert journal.lookup(rs, U, V) == TOMBSTONE
    assert journal.lookup(rs, U, "2020-01-02T030405.000002Z") is None


def test_same_instant_tombstone_wins(rs):
    journal.record(rs, TOMBSTONE, clock=clock_at(T0))
    journal.record(rs, CREATE, clock=clock_at(T0))
    assert journal.lookup(rs, U, V) == TOMBSTONE


def test_the_three_ways_to_name_the_replica(rs):
    replicas = {"aws": rs}
    assert journal.record(replicas, "aws", CREATE, clock=clock_at(T0)) is True
    assert journal.record(types.SimpleNamespace(replicas=replicas), "aws", CREATE) is False
    assert journal.record(rs, CREATE) is False
    with pytest.raises(TypeError):
        journal.record(rs)


@pytest.mark.parametrize("document", [{}, {"event_type": "CREATE", "bundle_info": {"uuid": U, "version": "v1"}},
                                      {"event_type": "UPDATE", "bundle_info": {"uuid": U, "version": V}}])
def test_refuses_what_is_not_a_metadata_document(rs, document):
    with pytest.raises(ValueError):
        journal.record(rs, document)


def test_upper_case_uuids_are_journaled_lower_case(rs):
    journal.record(rs, {**CREATE, "bundle_info": {"uuid": U.upper(), "version": V}}, clock=clock_at(T0))
    assert journal.lookup(rs, U, V)["bundle_info"]["uuid"] == U.upper()


def test_a_crash_between_marker_and_entry_is_recovered_by_the_retry(rs):
    rs.store.fail_next_put_under = journal.JOURNAL_PREFIX
    with pytest.raises(RuntimeError):
        journal.record(rs, CREATE, clock=clock_at(T0))
    assert journal_keys(rs) == [] and journal.lookup(rs, U, V) is None
    later = T0 + datetime.timedelta(minutes=5)
    assert journal.record(rs, CREATE, clock=clock_at(later)) is True
    [key] = journal_keys(rs)
    assert journal.Entry.from_name(key[len(journal.JOURNAL_PREFIX):]).recorded_at == "2021-05-06T071309.000000Z"
    assert journal.lookup(rs, U, V) == CREATE


def test_a_late_write_is_recorded_again_with_a_fresh_stamp(rs):
    late = T0 + datetime.timedelta(seconds=journal.SETTLE_SECONDS)
    assert journal.record(rs, CREATE, clock=clock_at(T0, late, late)) is True
    stamps = [journal.Entry.from_name(k[len(journal.JOURNAL_PREFIX):]).recorded_at for k in journal_keys(rs)]
    assert sorted(stamps) == ["2021-05-06T070809.000000Z", "2021-05-06T070819.000000Z"]
    marker = json.loads(rs.store.objects[journal.marker_key(U, V, "CREATE")])
    assert marker["recorded_at"] == "2021-05-06T070819.000000Z"


def test_entries_window_cursor_and_settle_horizon(rs):
    stamps = [T0 + datetime.timedelta(seconds=s) for s in range(5)]
    for n, moment in enumerate(stamps):
        journal.record(rs, metadata_document("CREATE", U, f"2020-01-02T030405.00000{n}Z", manifest={}),
                       clock=clock_at(moment))
    rs.store.objects["events/journal/not-an-entry"] = b"{}"

    an_hour_later = clock_at(T0 + datetime.timedelta(hours=1))
    every = list(journal.entries(rs, clock=an_hour_later))
    assert [e.recorded_at for e in every] == [format_version(m) for m in stamps]
    window = list(journal.entries(rs, from_date=every[1].recorded_at, to_date=every[3].recorded_at,
                                  clock=an_hour_later))
    assert window == every[1:3]
    assert list(journal.entries(rs, after=every[2].name, clock=an_hour_later)) == every[3:]
    # Entries younger than the settle time are not shown yet.
    settling = list(journal.entries(rs, clock=clock_at(stamps[2] + datetime.timedelta(
        seconds=journal.SETTLE_SECONDS))))
    assert settling == every[:2]


def test_stream_manifest(rs):
    journal.record(rs, CREATE, clock=clock_at(T0))
    journal.record(rs, TOMBSTONE, clock=clock_at(T0 + datetime.timedelta(seconds=1)))
    found = list(journal.entries(rs, clock=clock_at(T0 + datetime.timedelta(hours=1))))
    manifest = journal.stream_manifest(rs, found, ttl=60)
    assert manifest == {
        "journal_id": found[0].name, "from_date": "2021-05-06T070809.000000Z",
        "to_date": "2021-05-06T070810.000000Z", "size": 2, "cursor": found[1].name,
        "events": [{"event_id": f"{U}.{V}", "event_type": t, "timestamp": e.recorded_at,
                    "url": f"https://signed/{e.key}?ttl=60"} for t, e in zip(["CREATE", "TOMBSTONE"], found)]}
    assert journal.read_entry(rs, found[1])["document"] == TOMBSTONE
