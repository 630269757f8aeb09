"""dss-notify: the Chalice app whose Lambda delivers notifications to subscribers (dss.notify.delivery).

Trigger: the SQS queue `dss-notify-{stage}`, in batches of 1, reporting partial batch failures; the local worker
calls the same handler. Settings (timeout, memory, concurrency) are in scripts/package_lambdas.py.
"""
import logging
import os

from chalice import Chalice

from dss.events.lambda_entry import queue_name, sqs_batch_handler

logging.getLogger().setLevel(os.environ.get("DSS_LOG_LEVEL", "INFO"))

app = Chalice(app_name="dss-notify")
handle_batch = sqs_batch_handler("notify")


@app.on_sqs_message(queue=queue_name("notify"), batch_size=1, name="notify")
def notify(event) -> dict:
    return handle_batch(event.to_dict(), event.context)
