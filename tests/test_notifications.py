"""Notifications end to end: matching, the notify queue, the stack's worker, and a local HTTP receiver that checks
every signature itself. Retries, outages, dead letters and re-drive; 1,000 Elasticsearch subscriptions.
"""
from __future__ import annotations

import dataclasses
import http.server
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid as uuidlib

import pytest
import requests
from requests_http_signature import HTTPSignatureAuth

from dss.config import Settings
from dss.events.bus import Bus, Topology
from dss.events.runtime import Deps
from dss.identifiers import new_version
from dss.index.backend import SearchBackend
from dss.index.documents import index_document, metadata_document
from dss.notify.matching import notification_id, notify_for_event
from dss.notify.subscriptions import Subscription, SubscriptionStore
from dss.notify.subscriptions import _item as subscription_item
from dss.notify.subscriptions import _key as subscription_key

from .helpers import wait_for
from .unit.test_notify_delivery import parse_form
from .unit.test_notify_signing import verify_cavage

logger = logging.getLogger(__name__)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "notification secret"


@dataclasses.dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int  # the status sent back; 0 when the connection was dropped
    key_id: str | None = None  # of a signature that verified (independently, and with the library)
    signature_error: str | None = None  # why it did not

    @property
    def payload(self) -> dict:
        if self.headers["Content-Type"].startswith("multipart/form-data"):
            return json.loads(self.form()["payload"])
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return parse_form(self.headers["Content-Type"], self.body)


class Receiver:
    """A subscriber on 127.0.0.1: records every request, verifies signatures, and can refuse for a while."""

    def __init__(self, secret: str | None = SECRET):
        self.secret = secret.encode() if secret else None
        self.received: list[Received] = []
        self.refusals = 0  # answer this many of the next requests with `refuse_with`
        self.refuse_with = 503  # or 0: drop the connection without an answer
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                receiver._handle(self)

            do_PUT = do_POST

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/notify"

    def _handle(self, request: http.server.BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length", 0)))
        with self.lock:
            refuse = self.refusals > 0
            self.refusals -= refuse
            status = self.refuse_with if refuse else 200
        record = Received(request.command, request.path, dict(request.headers.items()), body, status)
        if self.secret:
            try:
                record.key_id = verify_signature(record, self.secret)
            except AssertionError as e:  # recorded without a key_id, so the test that looks at it fails
                record.signature_error = repr(e)
        if status:
            request.send_response(status)
            request.send_header("Content-Length", "0")
            request.end_headers()
        else:
            request.close_connection = True
        with self.lock:
            self.received.append(record)

    def delivered(self, count: int, timeout: float = 60) -> list[Received]:
        """Wait until `count` requests got a 2xx; returns them."""
        def answered() -> list[Received]:
            with self.lock:
                return [r for r in self.received if r.answered == 200]

        return wait_for(lambda: len(ok := answered()) >= count and ok, timeout=timeout, interval=0.05,
                        what=lambda: f"{count} notifications; arrived: {self.received}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def verify_signature(record: Received, secret: bytes) -> str:
    """The keyId of a signature that verifies both from the draft's text and with the library subscribers use."""
    key_id = verify_cavage(record.headers, record.body, secret)  # also compares the Digest with the body
    request = requests.Request(record.method, "http://127.0.0.1" + record.path, headers=record.headers,
                               data=record.body).prepare()
    resolved = []
    HTTPSignatureAuth.verify(request, key_resolver=lambda key_id, algorithm: resolved.append((key_id, algorithm))
                             or secret)
    assert resolved == [(key_id, "hmac-sha256")], resolved
    return key_id


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def make_deps(settings, replicas):
    """Deps for in-process matching, with a short retry schedule the jobs carry to the stack's worker."""
    def make(delays=(0, 1, 1, 2)) -> Deps:
        return Deps(dataclasses.replace(settings, notify_delays=tuple(delays)), replicas,
                    Bus(Topology(settings.stage)))
    return make


@pytest.fixture
def subscribe(api, settings):
    """PUT /subscriptions as a fresh user; every subscription is deleted after the test."""
    store, made = SubscriptionStore(settings.subscriptions_table), []

    def put(replica: str, **body) -> Subscription:
        email = f"{uuidlib.uuid4().hex[:12]}@example.org"
        r = api.request("PUT", "/v1/subscriptions", params={"replica": replica}, json=body,
                        auth=api.auth(email=email))
        assert r.status_code == 201, r.text
        made.append(store.get(email, r.json()["uuid"]))
        return made[-1]
    yield put
    for s in made:
        store.delete(s.owner, s.uuid)


def bundle_event(marker: str, event_type: str = "CREATE") -> tuple[str, str, dict]:
    uuid, version = str(uuidlib.uuid4()), new_version()
    manifest = {"format": "0.0.1", "version": version, "files": [
        {"name": "donor_organism_0.json", "uuid": str(uuidlib.uuid4()), "version": version, "indexed": True,
         "content-type": "application/json", "size": 10}]}
    files = {"donor_organism_json": [{"marker": marker, "sex": "female", "age": 40}]}
    if event_type == "TOMBSTONE":
        return uuid, version, metadata_document("TOMBSTONE", uuid, version, tombstone={"reason": "test"})
    return uuid, version, metadata_document("CREATE", uuid, version, manifest=manifest, files=files)


def test_jmespath_notification(receiver, subscribe, make_deps, replica, api):
    marker = uuidlib.uuid4().hex
    sub = subscribe(replica, callback_url=receiver.url, hmac_secret_key=SECRET,
                    jmespath_query=f"files.donor_organism_json[?marker=='{marker}']",
                    attachments={"sex": {"type": "jmespath", "expression": "files.donor_organism_json[0].sex"},
                                 "fixed": {"type": "jmespath", "expression": "`\"literal\"`"},
                                 "missing": {"type": "jmespath", "expression": "files.nothing_json"},
                                 "broken": {"type": "jmespath", "expression": "abs(bundle_info.uuid)"}})
    deps = make_deps()
    uuid, version, doc = bundle_event(marker)
    assert notify_for_event(deps, replica, "CREATE", uuid, version, doc, index_doc_id=None) == 1
    assert notify_for_event(deps, replica, "CREATE", uuid, version, bundle_event("other")[2],
                            index_doc_id=None) == 0
    [got] = receiver.delivered(1)
    nid = notification_id(sub.uuid, uuid, version, "CREATE")
    assert got.method == "POST" and got.headers["Content-Type"] == "application/json"
    assert got.key_id == f"hca-dss:{sub.uuid}"
    assert got.headers["X-DSS-Notification-Id"] == nid and got.headers["X-DSS-Notify-Attempt"] == "1"
    payload = got.payload
    assert payload.pop("event_timestamp")
    api_url = api.base_url
    assert payload == {
        "bundle_url": f"{api_url}/v1/bundles/{uuid}?version={version}&replica={replica}", "dss_api": api_url,
        "subscription_id": sub.uuid, "event_type": "CREATE", "transaction_id": nid,
        "match": {"bundle_uuid": uuid, "bundle_version": version},
        "jmespath_query": f"files.donor_organism_json[?marker=='{marker}']",
        "attachments": {"sex": "female", "fixed": "literal", "missing": None,
                        "_errors": {"broken": payload["attachments"]["_errors"]["broken"]}}}
    assert "invalid type" in payload["attachments"]["_errors"]["broken"]

    # The same event again: the same notification id, which is not delivered twice.
    assert notify_for_event(deps, replica, "CREATE", uuid, version, doc, index_doc_id=None) == 1
    time.sleep(4)
    assert len(receiver.received) == 1


def test_tombstones_and_deletes_notify_empty_queries(receiver, subscribe, make_deps):
    sub = subscribe("aws", callback_url=receiver.url, hmac_secret_key=SECRET, hmac_key_id="my-key",
                    attachments={"reason": {"type": "jmespath", "expression": "reason"}})
    uuid, version, tombstone = bundle_event("x", "TOMBSTONE")
    deps = make_deps()
    assert notify_for_event(deps, "aws", "TOMBSTONE", uuid, version, tombstone, index_doc_id=None) == 1
    assert notify_for_event(deps, "aws", "DELETE", uuid, version, metadata_document("DELETE", uuid, version),
                            index_doc_id=None) == 1
    def ours() -> dict[str, Received]:  # an empty query matches any bundle: the others' are left out
        return {r.payload["event_type"]: r for r in receiver.delivered(1) if r.payload["match"]["bundle_uuid"] == uuid}

    ours = wait_for(lambda: len(found := ours()) >= 2 and found, timeout=60, what="both notifications")
    assert set(ours) == {"TOMBSTONE", "DELETE"}
    for event_type, record in ours.items():
        assert record.key_id == "my-key"
        payload = record.payload
        assert payload["transaction_id"] == notification_id(sub.uuid, uuid, version, event_type)
        assert "attachments" not in payload and "jmespath_query" not in payload  # JMESPath: CREATE only


def test_multipart_put_with_form_fields(receiver, subscribe, make_deps):
    marker = uuidlib.uuid4().hex
    sub = subscribe("gcp", callback_url=receiver.url, hmac_secret_key=SECRET, method="PUT",
                    encoding="multipart/form-data", form_fields={"foo": "bar", "project": "hca"},
                    payload_form_field="notification", jmespath_query=f"files.donor_organism_json[0].marker=='{marker}'")
    uuid, version, doc = bundle_event(marker)
    assert notify_for_event(make_deps(), "gcp", "CREATE", uuid, version, doc, index_doc_id=None) == 1
    [got] = receiver.delivered(1)
    assert got.method == "PUT" and got.key_id == f"hca-dss:{sub.uuid}"  # signed over the multipart body
    form = got.form()
    assert set(form) == {"foo", "project", "notification"} and form["foo"] == "bar"
    payload = json.loads(form["notification"])
    assert payload["match"] == {"bundle_uuid": uuid, "bundle_version": version}
    assert payload["transaction_id"] == notification_id(sub.uuid, uuid, version, "CREATE")


@pytest.fixture
def indexed(settings):
    """Documents put straight into the docs alias (for Elasticsearch matching), removed afterwards."""
    backend, made = SearchBackend(settings), []

    def put(replica: str, marker: str) -> tuple[str, str, dict]:
        uuid, version, doc = bundle_event(marker)
        backend.put(replica, f"{uuid}.{version}", "v5", index_document(uuid, doc["manifest"], doc["files"]))
        made.append((replica, f"{uuid}.{version}"))
        return uuid, version, doc
    yield put
    for replica, doc_id in made:
        backend.delete(replica, doc_id)


def es_query(marker: str) -> dict:
    return {"query": {"bool": {"must": [{"term": {"files.donor_organism_json.marker": marker}},
                                        {"range": {"files.donor_organism_json.age": {"gte": 18}}}]}}}


def test_elasticsearch_notification(receiver, subscribe, make_deps, indexed, replica):
    marker = uuidlib.uuid4().hex
    sub = subscribe(replica, callback_url=receiver.url, hmac_secret_key=SECRET, es_query=es_query(marker),
                    attachments={"age": {"type": "jmespath", "expression": "files.donor_organism_json[0].age"}})
    subscribe(replica, callback_url=receiver.url, es_query=es_query("no such marker"))
    uuid, version, doc = indexed(replica, marker)
    deps = make_deps()
    assert notify_for_event(deps, replica, "CREATE", uuid, version, doc, index_doc_id=f"{uuid}.{version}",
                            backend=SearchBackend(deps.settings)) == 1
    assert notify_for_event(deps, replica, "CREATE", uuid, version, doc, index_doc_id=None) == 0
    [got] = receiver.delivered(1)
    payload = got.payload
    assert payload["transaction_id"] == notification_id(sub.uuid, uuid, version, "CREATE")
    assert payload["es_query"] == es_query(marker) and payload["attachments"] == {"age": 40}
    assert payload["subscription_id"] == sub.uuid and "jmespath_query" not in payload


def test_queries_the_engine_cannot_match_spoil_no_other(receiver, subscribe, make_deps, indexed, settings):
    """Any es_query object is stored, as by the original: one without `query` matches nothing, and one whose query
    the engine rejects (stored before anything was indexed to check it against) matches nothing either; neither
    keeps the other subscriptions from being notified."""
    marker = uuidlib.uuid4().hex
    good = subscribe("aws", callback_url=receiver.url, hmac_secret_key=SECRET, es_query=es_query(marker))
    subscribe("aws", callback_url=receiver.url, es_query={"bool": {}})
    store = SubscriptionStore(settings.subscriptions_table)
    rejected = Subscription.new(f"{uuidlib.uuid4().hex[:12]}@example.org", "aws",
                                {"callback_url": receiver.url, "es_query": {"query": {"no_such_query": {}}}})
    store.put(rejected)
    try:
        uuid, version, doc = indexed("aws", marker)
        assert notify_for_event(make_deps(), "aws", "CREATE", uuid, version, doc,
                                index_doc_id=f"{uuid}.{version}", backend=SearchBackend(settings)) == 1
        [got] = receiver.delivered(1)
        assert got.payload["subscription_id"] == good.uuid
    finally:
        store.delete(rejected.owner, rejected.uuid)


@pytest.mark.slow
@pytest.mark.parametrize("refuse_with", [503, 0], ids=["503", "dropped connection"])
def test_an_outage_loses_no_notification(receiver, subscribe, make_deps, refuse_with):
    marker = uuidlib.uuid4().hex
    sub = subscribe("aws", callback_url=receiver.url, hmac_secret_key=SECRET,
                    jmespath_query=f"files.donor_organism_json[0].marker=='{marker}'")
    receiver.refuse_with, receiver.refusals = refuse_with, 7
    deps = make_deps(delays=(0, 1, 1, 2, 2, 2))
    events = [bundle_event(marker) for _ in range(3)]
    for uuid, version, doc in events:
        assert notify_for_event(deps, "aws", "CREATE", uuid, version, doc, index_doc_id=None) == 1
    delivered = receiver.delivered(3)
    assert sorted(r.payload["transaction_id"] for r in delivered) == sorted(
        notification_id(sub.uuid, uuid, version, "CREATE") for uuid, version, _ in events)
    assert len(receiver.received) == 10  # 7 refused, then each notification exactly once
    assert max(int(r.headers["X-DSS-Notify-Attempt"]) for r in delivered) > 1
    assert all(r.key_id for r in receiver.received)


def dead_letters(stack, *args: str) -> str:
    result = subprocess.run([sys.executable, "scripts/dead_letters.py", *args, "--queue", "notify"], cwd=REPO,
                            env={**os.environ, **stack.env()}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_exhausted_retries_are_dead_lettered_then_redriven(receiver, subscribe, make_deps, stack):
    marker = uuidlib.uuid4().hex
    sub = subscribe("aws", callback_url=receiver.url, hmac_secret_key=SECRET,
                    jmespath_query=f"files.donor_organism_json[0].marker=='{marker}'")
    receiver.refusals = 10**6
    sqs, topology = stack.aws_client("sqs"), Topology(stack.env()["DSS_DEPLOYMENT_STAGE"])
    dead_letter_queue = sqs.get_queue_url(QueueName=topology.dead_letter_queue("notify"))["QueueUrl"]

    def dead_lettered(*states: str) -> int:  # messages in the dead-letter queue, visible or not (or as asked)
        names = [f"ApproximateNumberOfMessages{state}" for state in states or ("", "NotVisible")]
        return sum(map(int, sqs.get_queue_attributes(QueueUrl=dead_letter_queue, AttributeNames=names)[
            "Attributes"].values()))
    before = dead_lettered()
    uuid, version, doc = bundle_event(marker)
    nid = notification_id(sub.uuid, uuid, version, "CREATE")
    assert notify_for_event(make_deps(delays=(0, 1)), "aws", "CREATE", uuid, version, doc, index_doc_id=None) == 1
    # Waited for here: each `list` below hides what it shows for 5 s.
    wait_for(lambda: dead_lettered() > before, timeout=60, what="the notification in the dead-letter queue")
    listing = wait_for(lambda: nid in (out := dead_letters(stack, "list")) and out, timeout=60, interval=1,
                       what="the notification in the dead letters' listing")
    assert len(receiver.received) == 2  # the whole (short) schedule, then nothing more
    [line] = [json.loads(line) for line in listing.splitlines() if nid in line]
    assert "not delivered after 2 attempts; last: HTTP 503" in line["body"]

    receiver.refusals = 0
    wait_for(lambda: dead_lettered("") > 0, timeout=60, what="the dead letter, hidden by `list`, to be visible")
    wait_for(lambda: "re-drove 0 " not in dead_letters(stack, "redrive"), timeout=60, interval=1,
             what="a re-drive that moves the dead letter")
    [got] = receiver.delivered(1)
    assert got.payload["transaction_id"] == nid
    assert got.headers["X-DSS-Notify-Attempt"] == "1"  # a re-driven notification starts the schedule again


def test_a_deleted_subscription_gets_nothing_more(receiver, subscribe, make_deps, api):
    marker = uuidlib.uuid4().hex
    sub = subscribe("aws", callback_url=receiver.url, hmac_secret_key=SECRET,
                    jmespath_query=f"files.donor_organism_json[0].marker=='{marker}'")
    receiver.refusals = 1
    uuid, version, doc = bundle_event(marker)
    assert notify_for_event(make_deps(delays=(0, 3)), "aws", "CREATE", uuid, version, doc, index_doc_id=None) == 1
    wait_for(lambda: receiver.received, timeout=30, interval=0.1, what="the first (refused) attempt")
    r = api.request("DELETE", f"/v1/subscriptions/{sub.uuid}", params={"replica": "aws"},
                    auth=api.auth(email=sub.owner))
    assert r.status_code == 200
    time.sleep(6)
    assert len(receiver.received) == 1


@pytest.mark.slow
def test_matching_a_thousand_elasticsearch_subscriptions(receiver, make_deps, indexed, settings):
    """Not a benchmark with a bound: it shows the cost and that every match, and only those, is queued."""
    store = SubscriptionStore(settings.subscriptions_table)
    marker = uuidlib.uuid4().hex
    owners = [f"load-{uuidlib.uuid4().hex[:8]}@example.org" for _ in range(10)]
    subscriptions = [Subscription.new(owners[i % 10], "aws", {
        "callback_url": receiver.url, "hmac_secret_key": SECRET,
        "es_query": es_query(marker if i % 100 == 0 else f"{marker}-{i}")}) for i in range(1000)]
    # Written in batches of 25, as the store's put writes each one (its item), then the store's generation is bumped
    # once, as each put bumps it: 40 requests rather than 2,000 (moto spends milliseconds of CPU on each).
    write_in_batches(store, [{"PutRequest": {"Item": subscription_item(s)}} for s in subscriptions])
    try:
        uuid, version, doc = indexed("aws", marker)
        deps = make_deps()
        backend = SearchBackend(settings)
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            queued = notify_for_event(deps, "aws", "CREATE", uuid, version, doc, index_doc_id=f"{uuid}.{version}",
                                      backend=backend)
            timings.append(time.perf_counter() - started)
            assert queued == 10
        expected = {notification_id(s.uuid, uuid, version, "CREATE") for s in subscriptions[::100]}
        assert {r.payload["transaction_id"] for r in receiver.delivered(10)} == expected
        time.sleep(2)
        assert len(receiver.received) == 10  # three matchings, each notification once
        message = ("matching 1,000 Elasticsearch subscriptions: %.3f s (subscriptions read from the table), "
                   "then %.3f s and %.3f s (cached)" % tuple(timings))
        logger.warning(message)
        print(message)
    finally:
        write_in_batches(store, [{"DeleteRequest": {"Key": subscription_key(s.owner, s.uuid)}} for s in subscriptions])


def write_in_batches(store: SubscriptionStore, requests: list[dict]) -> None:
    for start in range(0, len(requests), 25):
        left = {store.table: requests[start:start + 25]}
        while left:
            left = store.client.batch_write_item(RequestItems=left).get("UnprocessedItems")
    store._bump_generation()


def test_end_to_end_through_the_indexer(receiver, subscribe, api, stager, replica):
    """A bundle PUT through the API: the worker indexes it and both kinds of subscription are notified."""
    marker = uuidlib.uuid4().hex
    v2 = subscribe(replica, callback_url=receiver.url, hmac_secret_key=SECRET,
                   jmespath_query=f"files.donor_organism_json[0].marker=='{marker}'",
                   attachments={"names": {"type": "jmespath", "expression": "manifest.files[].name"}})
    v1 = subscribe(replica, callback_url=receiver.url, hmac_secret_key=SECRET,
                   es_query={"query": {"term": {"files.donor_organism_json.marker": marker}}})
    file_uuid, file_version = str(uuidlib.uuid4()), new_version()
    source = stager.stage(replica, json.dumps({"marker": marker}).encode(), content_type="application/json")
    assert api.put_file(file_uuid, file_version, source).status_code == 201
    uuid, version = str(uuidlib.uuid4()), new_version()
    r = api.request("PUT", f"/v1/bundles/{uuid}", params={"replica": replica, "version": version}, auth=True,
                    json={"creator_uid": 1, "files": [{"uuid": file_uuid, "version": file_version,
                                                       "name": "donor_organism_0.json", "indexed": True}]})
    assert r.status_code == 201, r.text
    got = {r.payload["subscription_id"]: r.payload for r in receiver.delivered(2, timeout=120)}
    assert set(got) == {v1.uuid, v2.uuid}
    for sub_uuid, payload in got.items():
        assert payload["match"] == {"bundle_uuid": uuid, "bundle_version": version}
        assert payload["event_type"] == "CREATE"
        assert payload["transaction_id"] == notification_id(sub_uuid, uuid, version, "CREATE")
    assert got[v2.uuid]["attachments"] == {"names": ["donor_organism_0.json"]}
