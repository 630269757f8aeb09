"""The local stack's moto: the retention check of a receive decides as moto's own does, without scanning the queue."""
from __future__ import annotations

import os

import boto3
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sqs import models

from dss.local import moto_server

ORIGINAL = models.SQSBackend.is_message_valid_based_on_retention_period


def test_the_retention_check_decides_as_motos_own(monkeypatch):
    monkeypatch.setattr(models.SQSBackend, "is_message_valid_based_on_retention_period", ORIGINAL)  # restored after
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:  # in this process, not a stack's moto
        monkeypatch.delenv(name)
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="q", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
        for i in range(3):
            sqs.send_message(QueueUrl=url, MessageBody=str(i))
        backend = models.sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        fresh, old, _ = backend.get_queue("q")._messages
        old.sent_timestamp -= 61_000  # past the 60 s retention
        expected = [ORIGINAL(backend, "q", fresh), ORIGINAL(backend, "q", old)]
        assert expected == [True, False]
        assert moto_server.patch()
        assert models.SQSBackend.is_message_valid_based_on_retention_period is moto_server.within_retention
        assert [backend.is_message_valid_based_on_retention_period("q", m) for m in (fresh, old)] == expected
        # A receive through the patched backend hands out what is within the retention.
        bodies = [m["Body"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]]
        assert bodies and "1" not in bodies
