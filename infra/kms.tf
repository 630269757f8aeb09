# One customer-managed key for the deployment's queues, topics, tables, log groups, secret and search domain.
# The S3 buckets are not encrypted with it: SSE-KMS changes S3 ETags, which the DSS verifies as checksums (buckets.tf).
# The Lambda policies (iam/) find the key by its alias, through the kms:ResourceAliases condition.

locals {
  kms_alias = "alias/dss-${var.stage}"
}

data "aws_iam_policy_document" "kms" {
  # checkov:skip=CKV_AWS_109: a key policy: its "*" resource is this key alone, and kms:* for the account root is what lets IAM policies grant use of the key
  # checkov:skip=CKV_AWS_111: a key policy: its "*" resource is this key alone; writers are the account (through IAM) and the logs, S3 and SNS services
  # checkov:skip=CKV_AWS_356: a key policy: "*" is the only resource a key policy can name, and means this key
  statement {
    sid       = "AccountAdministersTheKeyThroughIAM"
    actions   = ["kms:*"]
    resources = ["*"] # in a key policy, "*" is this key
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogsOfThisAccount"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.aws_region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${var.aws_region}:${local.account_id}:log-group:*"]
    }
  }

  # S3 publishes object events to the encrypted topic; SNS delivers them into the encrypted queues.
  statement {
    sid       = "EventDeliveryIntoEncryptedTopicsAndQueues"
    actions   = ["kms:GenerateDataKey*", "kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com", "sns.amazonaws.com"]
    }
  }
}

resource "aws_kms_key" "dss" {
  description             = "DSS ${var.stage}: queues, topics, tables, logs, secrets and search"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "dss" {
  name          = local.kms_alias
  target_key_id = aws_kms_key.dss.key_id
}
