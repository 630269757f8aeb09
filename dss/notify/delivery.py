"""Delivery of notify jobs: the handler of the "notify" queue (the dss-notify Lambda, or the local worker).

One job is one notification. An attempt POSTs (or PUTs) the payload to the subscription's callback, JSON or
multipart, HMAC-signed when the subscription has a secret, with no redirects followed; any 2xx is success.

Retries follow one schedule, `DSS_NOTIFY_DELAYS`: the seconds to wait before each attempt (by default 0, 1 min,
10 min, 1 h, 6 h, 16 h 49 min, then 1 day six times: 12 attempts over 7 days). A failed attempt re-sends the job
with the next delay and its attempt count; SQS delays a message at most 15 minutes, so a longer wait is a chain
of hops of at most 900 s, each a re-send of the job until its `not_before` time. After the last attempt the job
goes to the dead-letter queue `dss-notify-dlq-{stage}` with the reason; `scripts/dead_letters.py redrive --queue
notify` sends it back, and a re-driven job starts the schedule again.

Delivery is at least once, and effectively once when nothing crashes: each notification id is claimed in the
`dss-notifications-{stage}` table before it is sent (a lease, so a twin job waits instead of sending it too) and
recorded once delivered, so a duplicate job for a delivered id sends nothing. A crash between the subscriber's
2xx and the record sends the notification again when the lease ends. Records expire after `RECORD_DAYS`.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import math
import socket
import time
import urllib.parse

import requests
import urllib3

from ..events.runtime import NOT_READY_KEY, NotReady
from ..storage.dynamodb_tables import create_table_if_missing, dynamodb
from . import QUEUE
from .signing import key_id_of, signature_headers
from .subscriptions import ELASTICSEARCH, Subscription, SubscriptionStore

logger = logging.getLogger(__name__)

DEAD_LETTER_REASON = "_dead_letter_reason"  # as dss.events.runtime writes it
MAX_SQS_DELAY = 900
RECORD_DAYS = 30
LEASE_MARGIN_SECONDS = 60
CLAIMED, DELIVERED, BUSY = "claimed", "delivered", "busy"
TTL_ATTRIBUTE = "expires"  # epoch seconds after which DynamoDB may delete a record


def handle_message(body: dict, deps, *, now=time.time) -> None:
    if DEAD_LETTER_REASON in body:  # re-driven from the dead-letter queue: a fresh schedule
        body = {k: v for k, v in body.items() if k not in (DEAD_LETTER_REASON, NOT_READY_KEY)}
        body.update(attempt=0, not_before=0)
    started = now()
    wait = body["not_before"] - started
    if wait > 1:  # a hop of a wait longer than SQS can delay a message
        deps.bus.send_job(QUEUE, body, delay_seconds=min(MAX_SQS_DELAY, math.ceil(wait)))
        return
    settings = deps.settings
    nid = body["notification_id"]
    subscription = SubscriptionStore(settings.subscriptions_table).get(body["owner"], body["subscription_uuid"])
    if subscription is None or subscription.replica != body["replica"]:
        logger.info("notification %s dropped: subscription %s no longer exists", nid, body["subscription_uuid"])
        return
    refused = forbidden_target(subscription.document["callback_url"], settings.stage)
    if refused:
        dead_letter(deps, body, refused)
        return
    ledger = DeliveryLedger(settings.notifications_table)
    lease = settings.notify_timeout + LEASE_MARGIN_SECONDS
    state = ledger.claim(nid, subscription.uuid, lease, started)
    if state == DELIVERED:
        logger.info("notification %s was delivered already: not sent again", nid)
        return
    if state == BUSY:
        raise NotReady(f"notification {nid} is being delivered by another worker", retry_after=math.ceil(lease))
    try:
        failure = send(subscription, payload_of(body, subscription, settings.api_url), attempt=body["attempt"],
                       timeout=settings.notify_timeout)
    except BaseException:
        ledger.release(nid)
        raise
    if failure is None:
        ledger.mark_delivered(nid, now())
        logger.info("notification %s delivered to subscription %s (attempt %d)", nid, subscription.uuid,
                    body["attempt"] + 1)
        return
    ledger.release(nid)
    retry_later(deps, body, failure, started)


def payload_of(job: dict, subscription: Subscription, api_url: str) -> dict:
    uuid, version = job["bundle_uuid"], job["bundle_version"]
    payload = {
        # Unlike the original, the URL names the replica: GET /bundles requires it.
        "bundle_url": f"{api_url}/v1/bundles/{uuid}?version={version}&replica={job['replica']}",
        "dss_api": api_url,
        "subscription_id": subscription.uuid,
        "event_timestamp": job["event_timestamp"],
        "event_type": job["event_type"],
        "match": {"bundle_uuid": uuid, "bundle_version": version},
        "transaction_id": job["notification_id"],
    }
    if subscription.kind == ELASTICSEARCH:
        payload["es_query"] = subscription.es_query
    elif subscription.jmespath_query is not None:
        payload["jmespath_query"] = subscription.jmespath_query
    if "attachments" in job:
        payload["attachments"] = job["attachments"]
    return payload


def build_request(subscription: Subscription, payload: dict, *, attempt: int,
                  timestamp: float | None = None) -> tuple[str, str, dict[str, str], bytes]:
    """(method, url, headers, body) of one attempt."""
    doc = subscription.document
    if doc.get("encoding") == "multipart/form-data":
        fields = {**(doc.get("form_fields") or {}), doc.get("payload_form_field", "payload"): json.dumps(payload)}
        body, content_type = urllib3.encode_multipart_formdata(fields)
    else:
        body, content_type = json.dumps(payload).encode(), "application/json"
    headers = {"Content-Type": content_type, "X-DSS-Notification-Id": payload["transaction_id"],
               "X-DSS-Notify-Attempt": str(attempt + 1)}
    if doc.get("hmac_secret_key"):
        headers.update(signature_headers(body, doc["hmac_secret_key"].encode(),
                                         key_id_of(subscription.uuid, doc.get("hmac_key_id")), timestamp=timestamp))
    return doc.get("method", "POST"), doc["callback_url"], headers, body


def send(subscription: Subscription, payload: dict, *, attempt: int, timeout: float) -> str | None:
    """One attempt: None when delivered, otherwise why not."""
    method, url, headers, body = build_request(subscription, payload, attempt=attempt)
    try:
        response = requests.request(method, url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
    except requests.RequestException as e:
        return f"{type(e).__name__}: {e}"
    response.close()
    return None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"


def retry_later(deps, job: dict, failure: str, failed_at: float) -> None:
    attempt, delays = job["attempt"] + 1, job["delays"]
    nid = job["notification_id"]
    if attempt >= len(delays):
        logger.error("notification %s not delivered after %d attempts (%s): dead-lettered", nid, attempt, failure)
        dead_letter(deps, job, f"not delivered after {attempt} attempts; last: {failure}")
        return
    delay = delays[attempt]
    logger.warning("notification %s failed (%s); attempt %d of %d in %d s", nid, failure, attempt + 1,
                   len(delays), delay)
    deps.bus.send_job(QUEUE, {**job, "attempt": attempt, "not_before": failed_at + delay},
                      delay_seconds=min(MAX_SQS_DELAY, delay))


def dead_letter(deps, job: dict, reason: str) -> None:
    bus = deps.bus
    bus.sqs.send_message(QueueUrl=bus.queue_url(bus.topology.dead_letter_queue(QUEUE)),
                         MessageBody=json.dumps({DEAD_LETTER_REASON: reason, **job}))  # first: listings cut bodies


def forbidden_target(url: str, stage: str) -> str | None:
    """In prod, as in the original: https only, and only to hosts that resolve to global addresses."""
    if stage != "prod":
        return None
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "https":
        return f"callback_url {url} is not https"
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parsed.hostname, parsed.port or 443)}
    except OSError:
        return None  # name resolution failed: the attempt fails and is retried
    if any(not ipaddress.ip_address(str(address).split("%")[0]).is_global for address in addresses):
        return f"callback_url host {parsed.hostname} resolves to a non-global address"
    return None


def ensure_notifications_table(client, name: str) -> bool:
    return create_table_if_missing(client, name, hash_key="notification_id", ttl_attribute=TTL_ATTRIBUTE)


class DeliveryLedger:
    """Per notification id: `sending` (with a lease) while an attempt runs, `delivered` once it succeeded."""

    def __init__(self, table: str, client=None):
        self.table = table
        self.client = client or dynamodb()

    def claim(self, nid: str, subscription_uuid: str, lease_seconds: float, now: float) -> str:
        try:
            self.client.put_item(
                TableName=self.table,
                Item={"notification_id": {"S": nid}, "state": {"S": "sending"},
                      "subscription": {"S": subscription_uuid},
                      "lease_until": {"N": str(now + lease_seconds)}, "expires": {"N": str(_expires(now))}},
                ConditionExpression="attribute_not_exists(notification_id) OR (#s = :sending AND lease_until < :now)",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={":sending": {"S": "sending"}, ":now": {"N": str(now)}})
            return CLAIMED
        except self.client.exceptions.ConditionalCheckFailedException:
            return DELIVERED if self.is_delivered(nid) else BUSY

    def mark_delivered(self, nid: str, now: float) -> None:
        self.client.update_item(TableName=self.table, Key=self._key(nid),
                                UpdateExpression="SET #s = :delivered, delivered_at = :now, expires = :exp "
                                                 "REMOVE lease_until",
                                ExpressionAttributeNames={"#s": "state"},
                                ExpressionAttributeValues={":delivered": {"S": "delivered"},
                                                           ":now": {"N": str(now)},
                                                           ":exp": {"N": str(_expires(now))}})

    def is_delivered(self, nid: str) -> bool:
        item = self.client.get_item(TableName=self.table, Key=self._key(nid), ConsistentRead=True).get("Item")
        return bool(item) and item["state"]["S"] == "delivered"

    def release(self, nid: str) -> None:
        """Give up a claim after a failed attempt (a lost release only delays a retry until the lease ends)."""
        try:
            self.client.delete_item(TableName=self.table, Key=self._key(nid), ConditionExpression="#s = :sending",
                                    ExpressionAttributeNames={"#s": "state"},
                                    ExpressionAttributeValues={":sending": {"S": "sending"}})
        except Exception:
            logger.warning("could not release the claim on notification %s", nid, exc_info=True)

    @staticmethod
    def _key(nid: str) -> dict:
        return {"notification_id": {"S": nid}}


def _expires(now: float) -> int:
    return int(now + RECORD_DAYS * 86400)
