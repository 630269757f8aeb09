"""The local worker: long-polls the queues on the local stack and calls the handlers a Lambda would call.

    python -m dss.events.worker [--queues sync copy checkout] [--concurrency 8] [--queue-concurrency sync=24]

Each queue has handler threads of its own (as each daemon is a Lambda of its own), so a busy queue never holds up
another: replication under load does not wait behind indexing, nor a checkout behind replication. A poller
receives only as many messages as its queue has free threads, so memory and concurrency stay bounded.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from queue import Empty, SimpleQueue

from .runtime import HANDLERS, Deps, process, retry_later

logger = logging.getLogger(__name__)


# Handler threads per queue where the default is not enough: replication spends its time waiting on the stores,
# and a write through the API makes two sync messages (blob and metadata; the cloud adds the echo of each copy).
QUEUE_CONCURRENCY = {"sync": 24}
DEFAULT_CONCURRENCY = 8


def concurrency_of(queues: list[str], default: int = DEFAULT_CONCURRENCY,
                   overrides: dict[str, int] | None = None) -> dict[str, int]:
    """Handler threads for each queue: the override given, else QUEUE_CONCURRENCY's, else the default."""
    chosen = {**QUEUE_CONCURRENCY, **(overrides or {})}
    counts = {queue: chosen.get(queue, default) for queue in queues}
    bad = {queue: n for queue, n in counts.items() if n < 1}
    if bad:
        raise ValueError(f"a queue needs at least one handler thread: {bad}")
    return counts


class Worker:
    def __init__(self, deps: Deps, queues: list[str], concurrency: int = DEFAULT_CONCURRENCY,
                 poll_seconds: int = 1, queue_concurrency: dict[str, int] | None = None):
        self.deps, self.queues, self.poll_seconds = deps, queues, poll_seconds
        self.concurrency = concurrency_of(queues, concurrency, queue_concurrency)
        self.stopping = threading.Event()
        self._pools = {queue: ThreadPoolExecutor(max_workers=n, thread_name_prefix=f"handle-{queue}")
                       for queue, n in self.concurrency.items()}
        # Bounded: never more received than can run at once, per queue.
        self._slots = {queue: threading.Semaphore(n) for queue, n in self.concurrency.items()}
        self._batch = {queue: receive_batch(n) for queue, n in self.concurrency.items()}
        self._deleters = {queue: _Deleter(deps.bus.sqs, deps.bus.queue_url(deps.bus.topology.queue(queue)), queue)
                          for queue in queues}
        self._in_flight: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def run(self) -> None:
        pollers = [threading.Thread(target=self._poll, args=(q,), name=f"poll-{q}", daemon=True)
                   for q in self.queues]
        heartbeat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        deleters = [threading.Thread(target=d.run, name=f"delete-{q}", daemon=True) for q, d in self._deleters.items()]
        for thread in pollers + [heartbeat] + deleters:
            thread.start()
        logger.info("worker polling %s", ", ".join(f"{q} ({n} threads)" for q, n in self.concurrency.items()))
        self.stopping.wait()
        for thread in pollers:
            thread.join()
        for pool in self._pools.values():
            pool.shutdown(wait=True)
        for deleter in self._deleters.values():
            deleter.close()
        for thread in deleters:
            thread.join()
        logger.info("worker stopped")

    def stop(self, *_) -> None:
        self.stopping.set()

    def _poll(self, queue: str) -> None:
        url = self.deps.bus.queue_url(self.deps.bus.topology.queue(queue))
        sqs = self.deps.bus.sqs
        slots, pool = self._slots[queue], self._pools[queue]
        while not self.stopping.is_set():
            # Receive no more than there are free threads for (a received message waits for nothing), and under
            # load, several at a time: moto's SQS scans the queue once per receive, on top of per message.
            free = _acquire_up_to(slots, self._batch[queue])
            try:
                messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=free,
                                               WaitTimeSeconds=self.poll_seconds,
                                               AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
            except Exception:
                logger.exception("receive from %s failed", queue)
                messages = []
                self.stopping.wait(1)
            for _ in range(free - len(messages)):
                slots.release()
            for message in messages:
                pool.submit(self._handle, queue, url, message)

    def _handle(self, queue: str, url: str, message: dict) -> None:
        receipt = message["ReceiptHandle"]
        with self._lock:
            self._in_flight[receipt] = (url, queue)
        try:
            if process(queue, message["Body"], self.deps):
                self._deleters[queue].add(receipt)
            else:
                retry_later(self.deps.bus.sqs, url, receipt,
                            int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
                            self.deps.settings.backoff_base_seconds)
        except Exception:
            logger.exception("could not settle a message of %s", queue)
        finally:
            with self._lock:
                self._in_flight.pop(receipt, None)
            self._slots[queue].release()

    def _heartbeat(self) -> None:
        """Long jobs keep their message invisible, so no other worker starts the same job meanwhile."""
        timeout = self.deps.bus.topology.visibility_timeout
        while not self.stopping.wait(timeout / 3):
            with self._lock:
                in_flight = list(self._in_flight.items())
            for receipt, (url, _) in in_flight:
                try:
                    self.deps.bus.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt,
                                                                VisibilityTimeout=timeout)
                except Exception as e:
                    with self._lock:
                        settled = receipt not in self._in_flight
                    if not settled:  # else it was deleted since the list was taken: nothing to extend
                        logger.warning("could not extend a message's visibility: %s", e)


class _Deleter:
    """Deletes the handled messages of one queue, up to 10 in one request: under load, one request where there
    were ten, for a queue server whose every request costs (moto's SQS scans the whole queue). A message is
    never held back waiting for others: whatever is there when a request can go, goes. A delete that is lost
    (a crash before it is sent) only means the message is handled again, as every handler is idempotent."""

    def __init__(self, sqs, url: str, queue: str):
        self._sqs, self._url, self._queue = sqs, url, queue
        self._receipts: SimpleQueue[str | None] = SimpleQueue()

    def add(self, receipt: str) -> None:
        self._receipts.put(receipt)

    def close(self) -> None:
        self._receipts.put(None)

    def run(self) -> None:
        closing = False
        while not closing:
            batch = next_batch(self._receipts, 10)
            closing = None in batch
            receipts = [r for r in batch if r is not None]
            if receipts:
                self._delete(receipts)

    def _delete(self, receipts: list[str]) -> None:
        try:
            answer = self._sqs.delete_message_batch(QueueUrl=self._url, Entries=[
                {"Id": str(i), "ReceiptHandle": receipt} for i, receipt in enumerate(receipts)])
        except Exception:
            logger.exception("could not delete %d handled messages of %s; they will be handled again",
                             len(receipts), self._queue)
            return
        for failure in answer.get("Failed", []):
            logger.warning("could not delete a handled message of %s (%s: %s); it will be handled again",
                           self._queue, failure.get("Code"), failure.get("Message"))


def next_batch(items: SimpleQueue, most: int) -> list:
    """Wait for one item, then take as many more as are already there, up to `most` in all."""
    batch = [items.get()]
    while len(batch) < most:
        try:
            batch.append(items.get_nowait())
        except Empty:
            break
    return batch


def receive_batch(concurrency: int) -> int:
    """How many free handler threads a poller waits for before it receives: up to SQS's 10 a request, and never
    more than a third of the threads, so most stay busy while it waits."""
    return max(1, min(10, concurrency // 3))


def _acquire_up_to(slots: threading.Semaphore, most: int) -> int:
    """Take `most` slots, waiting for each (all of them are free when the queue is quiet)."""
    for _ in range(most):
        slots.acquire()
    return most


def _queue_threads(text: str) -> tuple[str, int]:
    queue, sep, count = text.partition("=")
    if not sep or queue not in HANDLERS or not count.isdigit():
        raise argparse.ArgumentTypeError(f"expected QUEUE=N with QUEUE one of {', '.join(HANDLERS)}: {text!r}")
    return queue, int(count)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queues", nargs="*", default=list(HANDLERS), choices=list(HANDLERS))
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                        help="handler threads of each queue not given --queue-concurrency")
    parser.add_argument("--queue-concurrency", nargs="*", default=[], metavar="QUEUE=N", type=_queue_threads,
                        help=f"handler threads of one queue (defaults: {QUEUE_CONCURRENCY})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("DSS_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker = Worker(Deps.from_env(), args.queues, args.concurrency, queue_concurrency=dict(args.queue_concurrency))
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    worker.run()


if __name__ == "__main__":
    main()
