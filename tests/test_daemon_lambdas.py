"""The daemon Lambdas (daemons/*/app.py, Chalice apps) on real SQS batches: a message that fails is reported alone in
batchItemFailures and comes back after the worker's backoff, while the rest of the batch is done."""
from __future__ import annotations

import importlib.util
import json
import pathlib

import boto3
import pytest

from dss.events import lambda_entry
from dss.events.bus import Bus, Topology

from .helpers import wait_for

ROOT = pathlib.Path(__file__).resolve().parent.parent
STAGE = "lambdatest"  # queues of their own: the local stack's worker consumes the `local` ones
S3_TEST_EVENT = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "dss-primary-lambdatest"}


class _Context:
    function_name = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


@pytest.fixture
def lambda_stage(stack, monkeypatch):
    monkeypatch.setenv("DSS_DEPLOYMENT_STAGE", STAGE)
    monkeypatch.setattr(lambda_entry, "_deps", None)
    bus = Bus(Topology(STAGE))
    bus.ensure()
    return bus


def load_app(daemon: str):
    spec = importlib.util.spec_from_file_location(f"daemon_{daemon.replace('-', '_')}",
                                                  ROOT / "daemons" / daemon / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def receive_batch(sqs, url: str, count: int, wait: float = 10) -> list[dict]:
    """Messages as an SQS event source hands them to Lambda."""
    records = []

    def received_enough() -> bool:
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                     AttributeNames=["ApproximateReceiveCount"]).get("Messages", []):
            records.append({"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                            "attributes": m["Attributes"], "eventSource": "aws:sqs",
                            "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{url.rsplit('/', 1)[-1]}"})
        return len(records) >= count

    wait_for(received_enough, timeout=wait, interval=0, what=f"{count} message(s)")  # each receive waits 1 s
    return records


@pytest.mark.parametrize("daemon,queue", [("dss-sync", "sync"), ("dss-index", "index")])
def test_a_poisoned_message_fails_alone_and_comes_back_after_the_backoff(lambda_stage, daemon, queue):
    app = load_app(daemon)
    sqs = boto3.client("sqs")
    url = lambda_stage.queue_url(Topology(STAGE).queue(queue))
    sqs.purge_queue(QueueUrl=url)
    sqs.send_message(QueueUrl=url, MessageBody="this is not JSON")
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(S3_TEST_EVENT))  # nothing to do: handled
    records = receive_batch(sqs, url, 2)
    assert len(records) == 2
    poisoned = next(r for r in records if r["body"] == "this is not JSON")

    # The Lambda handler Chalice deploys: app.<name> takes the raw SQS event.
    handler = getattr(app, queue)
    answer = handler({"Records": records}, _Context())
    assert answer == {"batchItemFailures": [{"itemIdentifier": poisoned["messageId"]}]}

    # The event source deletes the rest; the failed one is visible again after the backoff (1 s in the tests),
    # not after the queue's visibility timeout.
    for record in records:
        if record is not poisoned:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=record["receiptHandle"])
    again = receive_batch(sqs, url, 1, wait=8)
    assert [r["body"] for r in again] == ["this is not JSON"]
    assert again[0]["attributes"]["ApproximateReceiveCount"] == "2"


def test_every_daemon_app_is_wired_to_its_queue():
    import os
    expected = {"dss-sync": "sync", "dss-index": "index", "dss-notify": "notify", "dss-checkout": "checkout",
                "dss-copy": "copy"}
    for daemon, queue in expected.items():
        app = load_app(daemon).app
        assert app.app_name == daemon
        sources = [s for s in app.event_sources if type(s).__name__ == "SQSEventConfig"]
        assert [s.queue for s in sources] == [Topology(os.environ.get("DSS_DEPLOYMENT_STAGE") or "local").queue(queue)]
    steps = {f.name for f in load_app("dss-copy").app.pure_lambda_functions}
    assert steps == {"setup", "copy_parts", "finalize", "write_metadata", "record_failure"}
