# Object events and job queues, named as dss/events/bus.py (Topology) names them:
#   topics dss-s3-events-{stage} (S3 event notifications) and dss-gs-events-{stage} (the GCS relay, gcs_relay.tf),
#   both fanned out with raw message delivery to the queues of the event consumers, sync and index;
#   queues dss-{name}-{stage}, each with a dead-letter queue dss-{name}-dlq-{stage} taking a message after 5 receives.

locals {
  # Lambda timeout (s) of each queue's consumer (scripts/package_lambdas.py; copy: dss-copy's launch function).
  # A received message stays hidden 6x as long, as AWS advises for Lambda event sources.
  queue_consumer_timeouts = {
    sync     = 900
    index    = 300
    copy     = 60
    checkout = 900
    notify   = 300
  }
  event_consumers  = ["sync", "index"]
  max_receives     = 5
  retention_14days = 1209600
  # (topic, consumer) pairs of the fan-out.
  event_subscriptions = {
    for pair in setproduct(["s3", "gs"], local.event_consumers) : "${pair[0]}-${pair[1]}" => {
      topic_arn = pair[0] == "s3" ? aws_sns_topic.s3_events.arn : aws_sns_topic.gs_events.arn
      queue     = pair[1]
    }
  }
}

# --- Topics ------------------------------------------------------------------------------------------------------

resource "aws_sns_topic" "s3_events" {
  name              = "dss-s3-events-${var.stage}"
  kms_master_key_id = aws_kms_key.dss.arn
}

resource "aws_sns_topic" "gs_events" {
  name              = "dss-gs-events-${var.stage}"
  kms_master_key_id = aws_kms_key.dss.arn
}

# S3 publishes the primary bucket's events; the relay's role publishes to dss-gs-events through its own policy.
data "aws_iam_policy_document" "s3_events_topic" {
  statement {
    sid       = "PrimaryBucketEvents"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.s3_events.arn]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [aws_s3_bucket.primary.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_sns_topic_policy" "s3_events" {
  arn    = aws_sns_topic.s3_events.arn
  policy = data.aws_iam_policy_document.s3_events_topic.json
}

resource "aws_s3_bucket_notification" "primary" {
  bucket = aws_s3_bucket.primary.id
  topic {
    topic_arn = aws_sns_topic.s3_events.arn
    events    = ["s3:ObjectCreated:*"]
  }
  depends_on = [aws_sns_topic_policy.s3_events]
}

# --- Queues ------------------------------------------------------------------------------------------------------

resource "aws_sqs_queue" "dead_letter" {
  for_each                          = local.queue_consumer_timeouts
  name                              = "dss-${each.key}-dlq-${var.stage}"
  message_retention_seconds         = local.retention_14days
  kms_master_key_id                 = aws_kms_key.dss.arn
  kms_data_key_reuse_period_seconds = 300
}

resource "aws_sqs_queue" "queue" {
  for_each                          = local.queue_consumer_timeouts
  name                              = "dss-${each.key}-${var.stage}"
  visibility_timeout_seconds        = 6 * each.value
  message_retention_seconds         = local.retention_14days
  kms_master_key_id                 = aws_kms_key.dss.arn
  kms_data_key_reuse_period_seconds = 300
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead_letter[each.key].arn
    maxReceiveCount     = local.max_receives
  })
}

# Only its own queue may dead-letter into a dead-letter queue (scripts/dead_letters.py re-drives them).
resource "aws_sqs_queue_redrive_allow_policy" "dead_letter" {
  for_each  = local.queue_consumer_timeouts
  queue_url = aws_sqs_queue.dead_letter[each.key].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.queue[each.key].arn]
  })
}

# --- Fan-out -----------------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "event_queue" {
  for_each = toset(local.event_consumers)

  statement {
    sid       = "ObjectEventTopics"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.queue[each.key].arn]
    principals {
      type        = "Service"
      identifiers = ["sns.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_sns_topic.s3_events.arn, aws_sns_topic.gs_events.arn]
    }
  }
}

resource "aws_sqs_queue_policy" "event_queue" {
  for_each  = toset(local.event_consumers)
  queue_url = aws_sqs_queue.queue[each.key].id
  policy    = data.aws_iam_policy_document.event_queue[each.key].json
}

resource "aws_sns_topic_subscription" "event_queue" {
  for_each             = local.event_subscriptions
  topic_arn            = each.value.topic_arn
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.queue[each.value.queue].arn
  raw_message_delivery = true
  depends_on           = [aws_sqs_queue_policy.event_queue]
}
