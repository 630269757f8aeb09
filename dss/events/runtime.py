"""How one queue message is processed, the same in the local worker and in a Lambda.

- A handler is a plain, idempotent function `handle(body: dict, deps: Deps) -> None`.
- Success deletes the message. An exception leaves it to come back after a backoff; after the queue's
  `maxReceiveCount` receives, SQS moves it to the dead-letter queue.
- `NotReady` (a dependency is missing, e.g. a bundle's files have not replicated yet) re-sends the message with a
  delay and does not count as a failure; after `MAX_NOT_READY` such delays it is dead-lettered with the reason.
"""
from __future__ import annotations

import functools
import importlib
import json
import logging
from dataclasses import dataclass

from ..config import Settings
from ..storage.replicas import Replicas
from .bus import Bus, Topology

logger = logging.getLogger(__name__)

# Queue name -> handler, by dotted path so a Lambda imports only its own handler.
HANDLERS = {
    "sync": "dss.replication.handle_message",
    "copy": "dss.storage.copy_jobs.handle_message",
    "checkout": "dss.checkout.handle_message",
    "index": "dss.index.indexer.handle_message",
    "notify": "dss.notify.delivery.handle_message",
}
BACKOFF_MAX_SECONDS = 300
MAX_NOT_READY = 100
NOT_READY_KEY = "_not_ready"


class NotReady(Exception):
    """The message cannot be handled yet; try again after `retry_after` seconds."""

    def __init__(self, reason: str, retry_after: int = 5):
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass
class Deps:
    settings: Settings
    replicas: Replicas
    bus: Bus

    @classmethod
    def from_env(cls) -> "Deps":
        settings = Settings.from_env()
        return cls(settings, Replicas(settings), Bus(Topology.from_settings(settings)))


@functools.lru_cache(maxsize=None)
def handler_for(queue: str):
    module, _, name = HANDLERS[queue].rpartition(".")
    return getattr(importlib.import_module(module), name)


def backoff_seconds(receive_count: int, base: int = Settings.backoff_base_seconds) -> int:
    """base, 2 base, 4 base, ... seconds (Settings.backoff_base_seconds), at most BACKOFF_MAX_SECONDS."""
    return min(BACKOFF_MAX_SECONDS, base * 2 ** max(0, receive_count - 1))


def retry_later(sqs, queue_url: str, receipt: str, receive_count: int, base: int) -> None:
    """Make a failed message visible again after the backoff for its receive count, not the queue's long timeout."""
    sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=receipt,
                                  VisibilityTimeout=backoff_seconds(receive_count, base))


def process(queue: str, body: str, deps: Deps) -> bool:
    """Handle one message body. True: done (delete it). False: failed (let it come back later)."""
    try:
        payload = json.loads(body)
    except ValueError:
        logger.error("poisoned message on %s (not JSON); it will be dead-lettered: %.200s", queue, body)
        return False
    try:
        handler_for(queue)(payload, deps)
        return True
    except NotReady as e:
        requeue_not_ready(queue, payload, deps, e)
        return True
    except Exception:
        logger.exception("handler of %s failed on %.300s", queue, body)
        return False


def requeue_not_ready(queue: str, payload: dict, deps: Deps, reason: NotReady) -> None:
    attempts = int(payload.get(NOT_READY_KEY, 0)) + 1 if isinstance(payload, dict) else MAX_NOT_READY + 1
    if attempts > MAX_NOT_READY:
        logger.error("%s: still not ready after %d tries (%s); dead-lettering", queue, attempts - 1, reason)
        deps.bus.sqs.send_message(QueueUrl=deps.bus.queue_url(deps.bus.topology.dead_letter_queue(queue)),
                                  MessageBody=json.dumps({**payload, "_dead_letter_reason": str(reason)}))
        return
    logger.info("%s: not ready (%s); retry %d in %d s", queue, reason, attempts, reason.retry_after)
    deps.bus.send_job(queue, {**payload, NOT_READY_KEY: attempts}, delay_seconds=min(900, reason.retry_after))
