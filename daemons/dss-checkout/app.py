"""dss-checkout: the Chalice app whose Lambda runs bundle checkout jobs (dss.checkout).

Trigger: the SQS queue `dss-checkout-{stage}`, in batches of 1, reporting partial batch failures; the local worker
calls the same handler. Settings (timeout, memory, concurrency) are in scripts/package_lambdas.py.
"""
import logging
import os

from chalice import Chalice

from dss.events.lambda_entry import queue_name, sqs_batch_handler

logging.getLogger().setLevel(os.environ.get("DSS_LOG_LEVEL", "INFO"))

app = Chalice(app_name="dss-checkout")
handle_batch = sqs_batch_handler("checkout")


@app.on_sqs_message(queue=queue_name("checkout"), batch_size=1, name="checkout")
def checkout(event) -> dict:
    return handle_batch(event.to_dict(), event.context)
