"""dss-checkout: the Chalice app whose Lambda runs bundle checkout jobs (dss.checkout).

Trigger: the SQS queue `dss-checkout-{stage}`, in batches of 1, reporting partial batch failures; the local worker
calls the same handler. Settings (timeout, memory, concurrency) are in scripts/package_lambdas.py.
"""
import logging
import os

from chalice import Chalice
from dss.events.lambda_entry import sqs_daemon

logging.getLogger().setLevel(os.environ.get("DSS_LOG_LEVEL", "INFO"))

app = Chalice(app_name="dss-checkout")
checkout = sqs_daemon(app, "checkout", batch_size=1)
