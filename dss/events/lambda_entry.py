"""Lambda entry points for the daemons: an SQS batch, handled message by message, with partial failures.

A failed message is reported in `batchItemFailures`, so SQS retries it alone (and dead-letters it after the
queue's maxReceiveCount) while the rest of the batch is deleted.
"""
from __future__ import annotations

from .runtime import Deps, process

_deps: Deps | None = None


def sqs_batch_handler(queue: str):
    def handler(event: dict, context=None) -> dict:
        global _deps
        _deps = _deps or Deps.from_env()
        failures = [{"itemIdentifier": record["messageId"]} for record in event.get("Records", [])
                    if not process(queue, record["body"], _deps)]
        return {"batchItemFailures": failures}
    return handler
