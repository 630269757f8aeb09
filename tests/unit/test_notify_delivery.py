"""Delivery without servers: payloads, requests, signatures, the retry schedule and its hops."""
from __future__ import annotations

import email.parser
import email.policy
import json
from types import SimpleNamespace

from dss.config import Settings
from dss.events.bus import Topology
from dss.notify.delivery import (DEAD_LETTER_REASON, MAX_SQS_DELAY, build_request, forbidden_target,
                                 handle_message, payload_of, retry_later)
from dss.notify.subscriptions import Subscription, kind_of

from .test_notify_signing import verify_cavage

JOB = {"notification_id": "n-1", "replica": "gcp", "owner": "me@example.org", "subscription_uuid": "s-1",
       "event_type": "CREATE", "bundle_uuid": "b", "bundle_version": "v", "event_timestamp": "ts",
       "attempt": 0, "not_before": 0, "delays": [0, 60, 3600]}


def subscription(**document) -> Subscription:
    return Subscription("me@example.org", "s-1", "gcp", kind_of(document),
                        {"callback_url": "https://hook.example.org/x", **document})


def test_payload():
    payload = payload_of({**JOB, "attachments": {"a": 1}}, subscription(jmespath_query="q"), "https://dss.org")
    assert payload == {"bundle_url": "https://dss.org/v1/bundles/b?version=v&replica=gcp", "dss_api": "https://dss.org",
                       "subscription_id": "s-1", "event_timestamp": "ts", "event_type": "CREATE",
                       "match": {"bundle_uuid": "b", "bundle_version": "v"}, "transaction_id": "n-1",
                       "jmespath_query": "q", "attachments": {"a": 1}}
    v1 = payload_of(JOB, subscription(es_query={"query": {"match_all": {}}}), "")
    assert v1["es_query"] == {"query": {"match_all": {}}} and "jmespath_query" not in v1 and "attachments" not in v1
    assert "jmespath_query" not in payload_of(JOB, subscription(), "")


def test_json_request_signed_with_the_default_key_id():
    payload = payload_of(JOB, subscription(), "")
    method, url, headers, body = build_request(subscription(hmac_secret_key="k"), payload, attempt=2)
    assert (method, url) == ("POST", "https://hook.example.org/x")
    assert json.loads(body) == payload and headers["Content-Type"] == "application/json"
    assert headers["X-DSS-Notify-Attempt"] == "3" and headers["X-DSS-Notification-Id"] == "n-1"
    assert verify_cavage(headers, body, b"k") == "hca-dss:s-1"
    _, _, unsigned, _ = build_request(subscription(), payload, attempt=0)
    assert "Authorization" not in unsigned and "Digest" not in unsigned


def test_multipart_request_with_form_fields():
    sub = subscription(method="PUT", encoding="multipart/form-data", form_fields={"foo": "bar"},
                       payload_form_field="notification", hmac_secret_key="k", hmac_key_id="mine")
    payload = payload_of(JOB, sub, "")
    method, _, headers, body = build_request(sub, payload, attempt=0)
    assert method == "PUT" and headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert verify_cavage(headers, body, b"k") == "mine"
    fields = parse_form(headers["Content-Type"], body)
    assert fields == {"foo": "bar", "notification": json.dumps(payload)}


def parse_form(content_type: str, body: bytes) -> dict[str, str]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    return {part.get_param("name", header="content-disposition"): part.get_content() for part in message.iter_parts()}


class FakeBus:
    def __init__(self):
        self.topology, self.jobs, self.dead = Topology("t"), [], []
        self.sqs = SimpleNamespace(send_message=lambda QueueUrl, MessageBody: self.dead.append(
            (QueueUrl, json.loads(MessageBody))))

    def queue_url(self, name):
        return name

    def send_job(self, queue, body, delay_seconds=0):
        self.jobs.append((queue, body, delay_seconds))


def deps() -> SimpleNamespace:
    return SimpleNamespace(settings=Settings(), bus=FakeBus())


def test_failed_attempts_follow_the_schedule_then_dead_letter():
    d = deps()
    retry_later(d, JOB, "HTTP 503", failed_at=1000.0)
    [(queue, job, delay)] = d.bus.jobs
    assert (queue, delay, job["attempt"], job["not_before"]) == ("notify", 60, 1, 1060.0)
    retry_later(d, job, "HTTP 503", failed_at=2000.0)
    assert d.bus.jobs[-1][1]["not_before"] == 5600.0 and d.bus.jobs[-1][2] == MAX_SQS_DELAY
    retry_later(d, d.bus.jobs[-1][1], "timeout", failed_at=9000.0)
    [(dlq, dead)] = d.bus.dead
    assert dlq == "dss-notify-dlq-t" and dead["attempt"] == 2
    assert dead[DEAD_LETTER_REASON] == "not delivered after 3 attempts; last: timeout"


def test_long_waits_hop_at_most_fifteen_minutes():
    d = deps()
    handle_message({**JOB, "not_before": 10_000.0}, d, now=lambda: 1000.0)
    [(queue, job, delay)] = d.bus.jobs
    assert (queue, delay, job["not_before"]) == ("notify", MAX_SQS_DELAY, 10_000.0)
    handle_message(job, d, now=lambda: 9_500.0)
    assert d.bus.jobs[-1][2] == 500


def test_a_redriven_job_starts_the_schedule_again(monkeypatch):
    seen = []
    monkeypatch.setattr("dss.notify.delivery.SubscriptionStore", lambda table: SimpleNamespace(
        get=lambda owner, uuid: seen.append(uuid)))
    handle_message({**JOB, "attempt": 2, "not_before": 10**12, DEAD_LETTER_REASON: "gave up", "_not_ready": 3},
                   deps(), now=lambda: 1000.0)
    assert seen == ["s-1"]  # attempted at once (the subscription is gone, so nothing more happens)


def test_prod_callbacks_must_be_https_to_global_hosts():
    assert forbidden_target("http://127.0.0.1:1/", "dev") is None
    assert "not https" in forbidden_target("http://example.org/", "prod")
    assert "non-global" in forbidden_target("https://127.0.0.1/", "prod")
    assert "non-global" in forbidden_target("https://[::1]:8443/", "prod")
