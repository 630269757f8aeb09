"""Lambda entry points for the daemons: an SQS batch, handled message by message, with partial failures.

A failed message is reported in `batchItemFailures` (the event source mapping has ReportBatchItemFailures), so SQS
retries it alone, and dead-letters it after the queue's maxReceiveCount, while the rest of the batch is deleted.
Before it is reported, its visibility is cut to the same backoff the local worker uses (2, 4, 8 ... s), so a
failure is retried soon rather than after the queue's long visibility timeout.
"""
from __future__ import annotations

import logging
from typing import Mapping

from ..cloud_credentials import install_gcp_credentials
from ..config import Settings
from .bus import Topology
from .runtime import Deps, process, retry_later

logger = logging.getLogger(__name__)

_deps: Deps | None = None


def queue_name(queue: str, environ: Mapping[str, str] | None = None) -> str:
    """The name of a daemon's queue in this stage (read when Chalice packages the app, and again in the Lambda)."""
    return Topology(Settings.from_env(environ).stage).queue(queue)


def deps() -> Deps:
    global _deps
    if _deps is None:
        install_gcp_credentials()
        _deps = Deps.from_env()
    return _deps


def sqs_batch_handler(queue: str):
    def handler(event: dict, context=None) -> dict:
        failures = []
        for record in event.get("Records", []):
            if process(queue, record["body"], deps()):
                continue
            failures.append({"itemIdentifier": record["messageId"]})
            _back_off(queue, record)
        return {"batchItemFailures": failures}
    return handler


def sqs_daemon(app, queue: str, batch_size: int):
    """Wire a Chalice app to the queue `queue` with its handler. Bind the result to the module attribute named
    `queue`: Chalice deploys the Lambda with the handler `app.<queue>`."""
    handle_batch = sqs_batch_handler(queue)

    def on_batch(event) -> dict:
        return handle_batch(event.to_dict(), event.context)
    on_batch.__name__ = on_batch.__qualname__ = queue
    return app.on_sqs_message(queue=queue_name(queue), batch_size=batch_size, name=queue)(on_batch)


def _back_off(queue: str, record: dict) -> None:
    try:
        d = deps()
        bus = d.bus
        retry_later(bus.sqs, bus.queue_url(bus.topology.queue(queue)), record["receiptHandle"],
                    int(record.get("attributes", {}).get("ApproximateReceiveCount", 1)),
                    d.settings.backoff_base_seconds)
    except Exception:  # the message still comes back, after the queue's visibility timeout
        logger.warning("could not shorten the visibility of %s", record.get("messageId"), exc_info=True)
