"""The local worker: long-polls the queues on the local stack and calls the handlers a Lambda would call.

    python -m dss.events.worker [--queues sync copy checkout] [--concurrency 8]
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .runtime import HANDLERS, Deps, process, retry_later

logger = logging.getLogger(__name__)


class Worker:
    def __init__(self, deps: Deps, queues: list[str], concurrency: int = 8, poll_seconds: int = 1):
        self.deps, self.queues, self.poll_seconds = deps, queues, poll_seconds
        self.stopping = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=concurrency)
        self._slots = threading.Semaphore(concurrency)  # bounded: never more received than can run
        self._in_flight: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def run(self) -> None:
        pollers = [threading.Thread(target=self._poll, args=(q,), name=f"poll-{q}", daemon=True)
                   for q in self.queues]
        heartbeat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        for thread in pollers + [heartbeat]:
            thread.start()
        logger.info("worker polling %s", ", ".join(self.queues))
        self.stopping.wait()
        for thread in pollers:
            thread.join()
        self._pool.shutdown(wait=True)
        logger.info("worker stopped")

    def stop(self, *_) -> None:
        self.stopping.set()

    def _poll(self, queue: str) -> None:
        url = self.deps.bus.queue_url(self.deps.bus.topology.queue(queue))
        sqs = self.deps.bus.sqs
        while not self.stopping.is_set():
            try:
                messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                               WaitTimeSeconds=self.poll_seconds,
                                               AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
            except Exception:
                logger.exception("receive from %s failed", queue)
                time.sleep(1)
                continue
            for message in messages:
                self._slots.acquire()
                self._pool.submit(self._handle, queue, url, message)

    def _handle(self, queue: str, url: str, message: dict) -> None:
        receipt = message["ReceiptHandle"]
        with self._lock:
            self._in_flight[receipt] = (url, queue)
        try:
            done = process(queue, message["Body"], self.deps)
            sqs = self.deps.bus.sqs
            if done:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=receipt)
            else:
                retry_later(sqs, url, receipt, int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1)))
        except Exception:
            logger.exception("could not settle a message of %s", queue)
        finally:
            with self._lock:
                self._in_flight.pop(receipt, None)
            self._slots.release()

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
                except Exception:
                    logger.warning("could not extend a message's visibility", exc_info=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queues", nargs="*", default=list(HANDLERS), choices=list(HANDLERS))
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("DSS_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker = Worker(Deps.from_env(), args.queues, args.concurrency)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    worker.run()


if __name__ == "__main__":
    main()
