"""Matching without servers: JMESPath, attachments, stable ids, the jobs, and rejected Elasticsearch queries."""
from __future__ import annotations

import json

import pytest
from opensearchpy import RequestError

from dss.errors import DSSError
from dss.notify.matching import (ATTACHMENTS_LIMIT, enqueue, es_matches, evaluate_attachments, jmespath_matches,
                                 notification_id, notify_job)
from dss.notify.subscriptions import ELASTICSEARCH, JMESPATH, Subscription, kind_of, validate

DOC = {"event_type": "CREATE", "bundle_info": {"uuid": "b", "version": "v"},
       "files": {"donor_organism_json": [{"sex": "female", "age": 40}]}}


def subscription(**document) -> Subscription:
    return Subscription("me@example.org", "s-1", "aws", kind_of(document), {"callback_url": "http://x/", **document})


def test_jmespath_matching():
    assert jmespath_matches(None, DOC) and jmespath_matches("", DOC)
    assert jmespath_matches("files.donor_organism_json[?sex=='female']", DOC)
    assert not jmespath_matches("files.donor_organism_json[?sex=='male']", DOC)
    assert not jmespath_matches("files.nothing", DOC)
    assert not jmespath_matches("abs(bundle_info.uuid)", DOC)  # a type error at search time is no match
    assert not jmespath_matches("[[", DOC)  # nor is a query that does not compile


def test_notification_ids_are_stable_and_distinct():
    nid = notification_id("s", "b", "v", "CREATE")
    assert nid == notification_id("s", "b", "v", "CREATE")
    assert len({nid, notification_id("s", "b", "v", "TOMBSTONE"), notification_id("s", "b", "v2", "CREATE"),
                notification_id("t", "b", "v", "CREATE")}) == 4


def test_attachments():
    definitions = {"sex": {"type": "jmespath", "expression": "files.donor_organism_json[0].sex"},
                   "missing": {"type": "jmespath", "expression": "files.nothing"},
                   "broken": {"type": "jmespath", "expression": "abs(bundle_info.uuid)"}}
    values = evaluate_attachments(definitions, DOC)
    assert values["sex"] == "female" and values["missing"] is None
    assert set(values["_errors"]) == {"broken"} and "broken" not in values
    big = {"files": {"x": ["a" * ATTACHMENTS_LIMIT]}}
    too_large = evaluate_attachments({"all": {"type": "jmespath", "expression": "files"}}, big)
    assert set(too_large) == {"_errors"} and too_large["_errors"].startswith("Attachments too large (")


def test_jobs_carry_the_schedule_and_attachments_where_the_original_sent_them():
    attachments = {"a": {"type": "jmespath", "expression": "bundle_info.uuid"}}
    v2 = subscription(jmespath_query="", attachments=attachments)
    job = notify_job(v2, "CREATE", "b", "v", DOC, "2020-01-01T000000.000000Z", (0, 5))
    assert job["notification_id"] == notification_id("s-1", "b", "v", "CREATE")
    assert job["attachments"] == {"a": "b"} and job["delays"] == [0, 5] and job["attempt"] == 0
    assert "attachments" not in notify_job(v2, "TOMBSTONE", "b", "v", DOC, "t", (0,))
    v1 = subscription(es_query={"query": {"match_all": {}}}, attachments=attachments)
    assert notify_job(v1, "TOMBSTONE", "b", "v", DOC, "t", (0,))["attachments"] == {"a": "b"}
    assert "attachments" not in notify_job(subscription(), "CREATE", "b", "v", DOC, "t", (0,))


class RejectingBackend:
    """Rejects any batch holding a query with "bad" in it, as osmem rejects a whole msearch."""

    def __init__(self):
        self.calls = 0

    def matching(self, replica, doc_id, queries, batch=200):
        self.calls += 1
        if any("bad" in q for q in queries):
            raise RequestError(400, "parsing_exception", {})
        return ["hit" in q for q in queries]


def test_a_rejected_query_spoils_no_other():
    queries = [{"hit": {}}, {"miss": {}}, {"bad": {}}, {"hit": {}}] * 8
    backend = RejectingBackend()
    assert es_matches(backend, "aws", "d", queries) == [True, False, False, True] * 8
    many = [{"hit": {}}, {"miss": {}}] * 500 + [{"bad": {}}]  # several batches, in parallel, in order
    assert es_matches(backend, "aws", "d", many) == [True, False] * 500 + [False]
    assert es_matches(backend, "aws", "d", []) == []


def test_validation():
    validate({"callback_url": "http://x", "jmespath_query": ""})
    validate({"callback_url": "http://x", "es_query": {"query": {"match_all": {}}}, "jmespath_query": "[["})
    validate({"callback_url": "http://x", "es_query": {"bool": {}}})  # any object, as the original took
    cases = [({"attachments": {"_x": {"type": "jmespath", "expression": "a"}}}, "invalid_attachment_name"),
             ({"attachments": {"x": {"type": "jmespath", "expression": ""}}}, "invalid_attachment_expression"),
             ({"attachments": {"x": {"type": "jmespath", "expression": "[["}}}, "invalid_attachment_expression"),
             ({"jmespath_query": "[["}, "invalid_jmespath")]
    for body, code in cases:
        with pytest.raises(DSSError) as e:
            validate({"callback_url": "http://x", **body})
        assert (e.value.status, e.value.code) == (400, code), body
    assert kind_of({"es_query": {}}) == JMESPATH and kind_of({"es_query": {"query": {}}}) == ELASTICSEARCH


def test_the_percolated_query_is_es_query_query():
    assert subscription(es_query={"query": {"match_all": {}}}).percolated_query == {"match_all": {}}
    assert subscription(es_query={"bool": {}}).percolated_query is None  # stored; matches nothing
    assert subscription(jmespath_query="a").percolated_query is None


class FakeSqs:
    def __init__(self, fail_ids=()):
        self.batches, self.fail_ids = [], set(fail_ids)

    def send_message_batch(self, QueueUrl, Entries):
        self.batches.append((QueueUrl, Entries))
        return {"Failed": [{"Id": e["Id"]} for e in Entries if e["Id"] in self.fail_ids]}


class FakeBus:
    def __init__(self, sqs):
        from dss.events.bus import Topology
        self.topology, self.sqs = Topology("t"), sqs

    def queue_url(self, name):
        return f"url:{name}"


def test_enqueue_in_batches_of_ten():
    sqs = FakeSqs()
    jobs = [{"n": i, "delays": [3]} for i in range(23)]
    enqueue(FakeBus(sqs), jobs)
    assert sorted(len(entries) for _, entries in sqs.batches) == [3, 10, 10]
    assert {url for url, _ in sqs.batches} == {"url:dss-notify-t"}
    sent = [json.loads(e["MessageBody"])["n"] for _, entries in sqs.batches for e in entries]
    assert sorted(sent) == list(range(23))
    assert all(e["DelaySeconds"] == 3 for _, entries in sqs.batches for e in entries)
    with pytest.raises(RuntimeError, match="could not be queued"):
        enqueue(FakeBus(FakeSqs(fail_ids={"1"})), jobs[:5])


class CountingStore:
    def __init__(self):
        self.generation_value, self.scans = 0, 0

    def generation(self):
        return self.generation_value

    def of_replica(self, replica):
        self.scans += 1
        return [f"{replica}-{self.scans}"]


def test_subscriptions_are_reread_when_they_change_or_grow_old():
    from dss.notify.subscriptions import ReplicaSubscriptions
    store, now = CountingStore(), [0.0]
    cache = ReplicaSubscriptions(store, max_age=10, clock=lambda: now[0])
    assert cache("aws") == ["aws-1"] and cache("aws") == ["aws-1"]
    assert cache("gcp") == ["gcp-2"]  # each replica has its own list
    store.generation_value += 1  # a subscription was created or deleted
    assert cache("aws") == ["aws-3"] and cache("aws") == ["aws-3"]
    now[0] = 10.5
    assert cache("aws") == ["aws-4"]
