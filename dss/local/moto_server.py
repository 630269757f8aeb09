"""moto's server for the local stack, with moto's SQS receive made independent of the queue's length.

    python -m dss.local.moto_server -H 127.0.0.1 -p 5001      (the arguments of `python -m moto.server`)

moto checks every message a receive hands out against the queue's retention period by computing all the queue's
attributes, three of which scan every message in it: a receive cost about 0.2 ms per queued message for each
message received (0.2 s a message with 1,000 queued), so a backlog, once formed, slowed its own draining, and
replication under load fell further and further behind. The check here reads the retention period alone; what it
decides is unchanged.
"""
from __future__ import annotations

import logging
import sys

from moto.core.utils import unix_time
from moto.sqs import models

logger = logging.getLogger(__name__)


def within_retention(backend, queue_name: str, message) -> bool:
    """moto's is_message_valid_based_on_retention_period, without computing the queue's other attributes."""
    retention_seconds = int(backend.get_queue(queue_name).message_retention_period)
    return retention_seconds + message.sent_timestamp / 1000 > unix_time()


def patch() -> bool:
    """Install the check; False (moto left as it is) if this moto has no such method to replace."""
    if not hasattr(models.SQSBackend, "is_message_valid_based_on_retention_period"):
        logger.warning("moto's SQS has changed: receives stay O(queue length)")
        return False
    # Replacing the method is the point; mypy rightly sees a patched class.
    models.SQSBackend.is_message_valid_based_on_retention_period = within_retention  # type: ignore[method-assign,assignment]
    return True


def main(argv: list[str] | None = None) -> int:
    from moto.server import main as moto_main
    patch()
    moto_main(sys.argv[1:] if argv is None else argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
