"""dss-notify: the Lambda that delivers notifications from the SQS queue `dss-notify-{stage}` (see dss.notify)."""
from dss.events.lambda_entry import sqs_batch_handler

handler = sqs_batch_handler("notify")
