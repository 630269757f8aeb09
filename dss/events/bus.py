"""The topics and queues events travel through, on SNS and SQS (moto locally, AWS in the cloud).

Object events: a topic per replica (S3 notifications / the GCS relay publish there), fanned out to one queue per
event daemon. Jobs (large-file copies, checkouts): a queue each. Every queue has a dead-letter queue that takes a
message after `max_receives` failed attempts.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import boto3

from ..config import Settings

logger = logging.getLogger(__name__)

# Daemons that consume object events, and job queues that carry work items.
EVENT_CONSUMERS = ("sync", "index")
# The object events a consumer is sent on the local stack, by key prefix (by default all): the indexer reads only
# bundles, and every message it is not sent is one fewer for moto's SQS, which scans a whole queue on each send and
# receive. The filter is on the message body, in each topic's message shape. (Terraform's subscriptions send the
# index Lambda everything; it ignores what it does not read.)
CONSUMER_PREFIXES = {"index": ("bundles/",)}
JOB_QUEUES = ("copy", "checkout", "notify")


@dataclass(frozen=True)
class Topology:
    stage: str
    max_receives: int = 5
    # How long a received message stays hidden; the local worker's heartbeat renews it while a handler runs.
    visibility_timeout: int = Settings.queue_visibility_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> "Topology":
        return cls(settings.stage, visibility_timeout=settings.queue_visibility_seconds)

    def topic(self, replica: str) -> str:
        return f"dss-{'s3' if replica == 'aws' else 'gs'}-events-{self.stage}"

    def queue(self, name: str) -> str:
        return f"dss-{name}-{self.stage}"

    def dead_letter_queue(self, name: str) -> str:
        return f"dss-{name}-dlq-{self.stage}"

    @property
    def queues(self) -> tuple[str, ...]:
        return EVENT_CONSUMERS + JOB_QUEUES


class Bus:
    def __init__(self, topology: Topology, sqs=None, sns=None):
        self.topology = topology
        self.sqs = sqs or boto3.client("sqs")
        self.sns = sns or boto3.client("sns")
        # Looked up once per bus: the names are a stage's few queues and topics, which never move.
        self._queue_urls: dict[str, str] = {}
        self._topic_arns: dict[str, str] = {}

    def queue_url(self, queue_name: str) -> str:
        if queue_name not in self._queue_urls:
            self._queue_urls[queue_name] = self.sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
        return self._queue_urls[queue_name]

    def topic_arn(self, topic_name: str) -> str:
        if topic_name not in self._topic_arns:  # create_topic is idempotent: returns the existing topic
            self._topic_arns[topic_name] = self.sns.create_topic(Name=topic_name)["TopicArn"]
        return self._topic_arns[topic_name]

    def ensure(self) -> None:
        """Create every topic, queue, dead-letter queue and subscription (idempotent). Terraform does it in AWS."""
        t = self.topology
        for name in t.queues:
            dlq_url = self.sqs.create_queue(QueueName=t.dead_letter_queue(name))["QueueUrl"]
            dlq_arn = self.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
                "Attributes"]["QueueArn"]
            self.sqs.create_queue(QueueName=t.queue(name), Attributes={
                "VisibilityTimeout": str(t.visibility_timeout),
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(t.max_receives)}),
            })
        for replica in ("aws", "gcp"):
            topic = self.topic_arn(t.topic(replica))
            for name in EVENT_CONSUMERS:
                url = self.queue_url(t.queue(name))
                arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
                    "QueueArn"]
                self.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn,
                                   Attributes={"RawMessageDelivery": "true", **event_filter(replica, name)})

    def publish_object_event(self, replica: str, message: dict) -> None:
        self.sns.publish(TopicArn=self.topic_arn(self.topology.topic(replica)), Message=json.dumps(message))

    def send_job(self, queue: str, body: dict, delay_seconds: int = 0) -> None:
        self.sqs.send_message(QueueUrl=self.queue_url(self.topology.queue(queue)), MessageBody=json.dumps(body),
                              DelaySeconds=delay_seconds)


def event_filter(replica: str, consumer: str) -> dict[str, str]:
    """Subscription attributes that send `consumer` only the events of its key prefixes ({} for all events): an
    S3 notification names the key in Records[].s3.object.key, the GCS relay's object resource in `name`."""
    prefixes = CONSUMER_PREFIXES.get(consumer)
    if not prefixes:
        return {}
    match = [{"prefix": prefix} for prefix in prefixes]
    policy = {"Records": {"s3": {"object": {"key": match}}}} if replica == "aws" else {"name": match}
    return {"FilterPolicyScope": "MessageBody", "FilterPolicy": json.dumps(policy)}
