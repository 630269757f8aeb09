"""dss-checkout: the Lambda that runs checkout jobs from the SQS queue `dss-checkout-{stage}` (see dss.checkout)."""
from dss.events.lambda_entry import sqs_batch_handler

handler = sqs_batch_handler("checkout")
