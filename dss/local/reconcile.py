"""Reconciliation at the start of the local stack: queue again the work whose messages a restart lost.

    python -m dss.local.reconcile        (the stack runs it once its worker polls; settings from the environment)

moto keeps the queues in memory, so stopping the stack drops every message still waiting. What each message
stood for is recorded somewhere that persists, and is queued again from there:

- copy jobs (the 202 path of PUT /files): every RUNNING job of the async-state table (DynamoDB, on disk) goes back
  on the copy queue. The job resumes from its checkpoints; one past its deadline is recorded FAILED.
- replication: every key that one primary bucket holds and the other lacks goes on the sync queue as an operator
  message {source_replica, dest_replica, key}. The two sorted listings are merged page by page, as the replica
  checker walks them, in dependency order (blobs, files, bundles, collections); only listings are read.
- the search index (osmem-server, in memory) is rebuilt by `make run` when empty: scripts/reindex.py --if-empty.

Everything is streamed (one page of a listing or a scan in memory at a time) and sent in batches of ten, so memory
stays constant whatever the store holds. A message queued twice is harmless: every handler is idempotent.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Iterable, Iterator

from ..events.runtime import Deps
from ..replica_check import KINDS_IN_DEPENDENCY_ORDER, REPLICAS, key_kind, merge_sorted, other
from ..storage.async_state import AsyncState

logger = logging.getLogger(__name__)

PAGE_SIZE = 1000
SQS_BATCH = 10  # SendMessageBatch's limit
PROGRESS_EVERY = 10000


class Batcher:
    """Sends message bodies to one queue, ten to a request."""

    def __init__(self, deps: Deps, queue: str):
        self.sqs, self.url = deps.bus.sqs, deps.bus.queue_url(deps.bus.topology.queue(queue))
        self.pending: list[dict] = []
        self.sent = 0

    def add(self, body: dict) -> None:
        self.pending.append(body)
        if len(self.pending) == SQS_BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        entries = [{"Id": str(i), "MessageBody": json.dumps(body)} for i, body in enumerate(self.pending)]
        failed = self.sqs.send_message_batch(QueueUrl=self.url, Entries=entries).get("Failed", [])
        if failed:
            raise RuntimeError(f"{len(failed)} messages were refused: {failed[0]}")
        self.sent += len(self.pending)
        self.pending = []


def requeue_copy_jobs(deps: Deps, state: AsyncState) -> int:
    """Queue every RUNNING copy job again (one past its deadline too: its handler then records it FAILED)."""
    batcher = Batcher(deps, "copy")
    for item in state.running(PAGE_SIZE):
        batcher.add({"key": item["key"], "task_id": item["task_id"]})
        logger.info("copy job %s (task %s) queued again", item["key"], item["task_id"])
    batcher.flush()
    return batcher.sent


def one_sided(listings: dict[str, Iterable[str]]) -> Iterator[tuple[str, str]]:
    """(replica that has it, key) for each DSS key in exactly one of two ascending listings."""
    for key, in_aws, in_gcp in merge_sorted(listings["aws"], listings["gcp"]):
        if in_aws != in_gcp and key_kind(key) is not None:
            yield ("aws" if in_aws else "gcp"), key


def requeue_missing(deps: Deps) -> int:
    batcher = Batcher(deps, "sync")
    walked = 0
    for prefix in KINDS_IN_DEPENDENCY_ORDER:
        listings = {r: deps.replicas[r].store.list(deps.replicas[r].bucket, prefix, page_size=PAGE_SIZE)
                    for r in REPLICAS}
        for source, key in one_sided(listings):
            batcher.add({"source_replica": source, "dest_replica": other(source), "key": key})
            walked += 1
            if walked % PROGRESS_EVERY == 0:
                logger.info("%d keys missing on one replica queued so far (at %s)", walked, key)
    batcher.flush()
    return batcher.sent


def main() -> int:
    logging.basicConfig(level=os.environ.get("DSS_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    deps = Deps.from_env()
    jobs = requeue_copy_jobs(deps, AsyncState(deps.settings.async_state_table))
    logger.info("%d unfinished copy job(s) queued again", jobs)
    missing = requeue_missing(deps)
    logger.info("%d key(s) present on one replica only queued for replication", missing)
    logger.info("reconciliation done in %.1f s", time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
