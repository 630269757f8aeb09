"""The events journal through the local stack: recording into both replicas' buckets, GET /events windows and
paging, GET /events/{uuid}?version, and (with the indexer) a bundle PUT that ends up journaled."""
from __future__ import annotations

import datetime
import importlib
import random
import uuid as uuidlib

import pytest
import requests

from dss.events import journal
from dss.identifiers import format_version
from dss.index.documents import metadata_document

from .helpers import assert_problem, poll_while_404
from .test_bundles import Bundles, named

_rng = random.Random()


@pytest.fixture
def base():
    """A moment of its own for each test (whole seconds, far in the past), so windows hold only its events."""
    return datetime.datetime(1980, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(
        hours=_rng.randrange(24 * 365 * 20))


@pytest.fixture
def rs(replicas, replica):
    return replicas[replica]


def at(moment: datetime.datetime):
    return lambda: moment


def created(uuid: str, version: str) -> dict:
    manifest = {"format": "0.0.1", "version": version, "creator_uid": 1, "files": []}
    return metadata_document("CREATE", uuid, version, manifest=manifest, files={"a_json": [{"a": 1}]})


def record_bundles(rs, moments) -> list[dict]:
    documents = []
    for moment in moments:
        document = created(str(uuidlib.uuid4()), format_version(moment))
        assert journal.record(rs, document, clock=at(moment)) is True
        documents.append(document)
    return documents


def list_events(api, replica, **params):
    return api.request("GET", "/v1/events", params={"replica": replica, **params})


def event_ids(streams: list[dict]) -> list[str]:
    return [e["event_id"] for s in streams for e in s["events"]]


def fqid(document: dict) -> str:
    return "{uuid}.{version}".format(**document["bundle_info"])


def test_window_is_from_inclusive_to_exclusive(api, rs, replica, base):
    seconds = [datetime.timedelta(seconds=s) for s in range(4)]
    documents = record_bundles(rs, [base + s for s in seconds])
    r = list_events(api, replica, from_date=format_version(base + seconds[1]),
                    to_date=format_version(base + seconds[3]), per_page=10)
    assert r.status_code == 200, r.text
    assert r.headers["X-OpenAPI-Paginated-Content-Key"] == "event_streams" and "Link" not in r.headers
    [stream] = r.json()["event_streams"]
    assert event_ids([stream]) == [fqid(d) for d in documents[1:3]]
    assert stream["from_date"] == format_version(base + seconds[1])
    assert stream["to_date"] == format_version(base + seconds[2])
    assert stream["size"] == 2 and stream["journal_id"] == f"{stream['from_date']}.{fqid(documents[1])}.CREATE"
    assert [e["event_type"] for e in stream["events"]] == ["CREATE", "CREATE"]
    # Each event's URL is a signed URL of its journal entry, which holds the document.
    entry = requests.get(stream["events"][0]["url"], timeout=60).json()
    assert entry == {"event_id": fqid(documents[1]), "event_type": "CREATE", "recorded_at": stream["from_date"],
                     "document": documents[1]}
    # ISO 8601 dates work too.
    r = list_events(api, replica, from_date=(base + seconds[1]).isoformat(), to_date=(base + seconds[2]).isoformat())
    assert event_ids(r.json()["event_streams"]) == [fqid(documents[1])]


def test_paging_by_token(api, rs, replica, base):
    moments = [base + datetime.timedelta(hours=h, minutes=m) for h in range(3) for m in (0, 30)]
    documents = record_bundles(rs, moments)
    window = {"from_date": format_version(base), "to_date": format_version(base + datetime.timedelta(hours=3))}
    r = list_events(api, replica, per_page=2, **window)
    pages = [r]
    while r.status_code == 206:
        assert r.headers["X-OpenAPI-Pagination"] == "true"
        r = api.session.get(r.links["next"]["url"], timeout=60)
        pages.append(r)
    assert [p.status_code for p in pages] == [206, 200]
    streams = [s for p in pages for s in p.json()["event_streams"]]
    assert [s["size"] for s in streams] == [2, 2, 2]  # one stream per hour
    assert event_ids(streams) == [fqid(d) for d in documents]
    # A stream's cursor resumes after it, like the Link's token.
    r = list_events(api, replica, per_page=10, token=streams[1]["cursor"], to_date=window["to_date"])
    assert event_ids(r.json()["event_streams"]) == [fqid(d) for d in documents[4:]]
    # per_page 1 needs three pages.
    statuses = []
    r = list_events(api, replica, per_page=1, **window)
    while True:
        statuses.append(r.status_code)
        if r.status_code != 206:
            break
        r = api.session.get(r.links["next"]["url"], timeout=60)
    assert statuses == [206, 206, 200]


def test_empty_and_equal_windows(api, replica, base):
    day = format_version(base)
    for params in ({"from_date": day, "to_date": day}, {"to_date": "1970-01-02"}):
        r = list_events(api, replica, **params)
        assert r.status_code == 200 and r.json() == {"event_streams": []}, r.text


def test_bad_requests(api, replica):
    assert_problem(list_events(api, replica, from_date="2021-01-02", to_date="2021-01-01"), 400, "bad_request")
    for per_page in (0, 11):
        assert_problem(list_events(api, replica, per_page=per_page), 400, "illegal_arguments")
    assert_problem(list_events(api, replica, from_date="yesterday"), 400, "illegal_arguments")
    assert_problem(list_events(api, replica, token="not-a-cursor"), 400, "illegal_arguments")
    assert_problem(list_events(api, "azure"), 400, "illegal_arguments")
    assert_problem(api.request("GET", "/v1/events"), 400, "illegal_arguments")


def get_event(api, replica, uuid, version):
    return api.request("GET", f"/v1/events/{uuid}", params={"replica": replica, "version": version})


def test_get_the_latest_document(api, rs, replica, base):
    [document] = record_bundles(rs, [base])
    uuid, version = document["bundle_info"]["uuid"], document["bundle_info"]["version"]
    r = get_event(api, replica, uuid.upper(), version)
    assert r.status_code == 200 and r.json() == document, r.text
    assert journal.record(rs, document, clock=at(base + datetime.timedelta(minutes=1))) is False  # idempotent
    tombstone = metadata_document("TOMBSTONE", uuid, version,
                                  tombstone={"email": "admin@example.org", "reason": "gone", "admin_deleted": True})
    assert journal.record(rs, tombstone, clock=at(base + datetime.timedelta(minutes=2))) is True
    assert journal.record(rs, tombstone, clock=at(base + datetime.timedelta(minutes=3))) is False
    assert get_event(api, replica, uuid, version).json() == tombstone
    # Append-only: the window still holds the CREATE, followed by the TOMBSTONE, once each.
    r = list_events(api, replica, from_date=format_version(base), per_page=10,
                    to_date=format_version(base + datetime.timedelta(hours=1)))
    [stream] = r.json()["event_streams"]
    assert [(e["event_id"], e["event_type"]) for e in stream["events"]] == [(fqid(document), "CREATE"),
                                                                           (fqid(document), "TOMBSTONE")]


def test_replicas_keep_their_own_journals(api, replicas, base):
    [document] = record_bundles(replicas["aws"], [base])
    uuid, version = document["bundle_info"]["uuid"], document["bundle_info"]["version"]
    assert get_event(api, "aws", uuid, version).status_code == 200
    assert_problem(get_event(api, "gcp", uuid, version), 404, "not_found")


def test_get_unknown_and_bad(api, replica, version):
    assert_problem(get_event(api, replica, str(uuidlib.uuid4()), version), 404, "not_found")
    assert_problem(get_event(api, replica, str(uuidlib.uuid4()), "yesterday"), 400, "illegal_version")
    assert_problem(api.request("GET", f"/v1/events/{uuidlib.uuid4()}", params={"replica": replica}),
                   400, "illegal_arguments")


@pytest.mark.slow
def test_a_bundle_put_is_journaled_by_the_indexer(api, stager, replica):
    importlib.import_module("dss.index.indexer")  # the worker journals with it: that it will not import is a failure
    bundles = Bundles(api, stager, replica)
    a = bundles.file(b'{"describedBy": "x", "name": "a"}')
    uuid, version, r = bundles.put([named(a, "a.json", True)])
    assert r.status_code == 201, r.text
    r = poll_while_404(lambda: get_event(api, replica, uuid, version), timeout=90, interval=0.5)
    assert r.status_code == 200, r.text
    document = r.json()
    assert document["event_type"] == "CREATE" and document["bundle_info"] == {"uuid": uuid, "version": version}
    assert [f["name"] for f in document["manifest"]["files"]] == ["a.json"]
    assert document["files"] == {"a_json": [{"describedBy": "x", "name": "a"}]}
