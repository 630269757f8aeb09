# What the Chalice deploys place and harden the Lambdas with (scripts/package_lambdas.py, DEPLOYMENT_OUTPUTS):
# the VPC (network.tf), code signing, the key that encrypts their environment (kms.tf), a dead-letter queue for
# failed asynchronous invocations, and the bucket the code zips are uploaded to and signed in.

locals {
  lambda_artifacts_bucket = coalesce(var.lambda_artifacts_bucket, "${var.s3_bucket}-lambda-artifacts")
}

resource "aws_signer_signing_profile" "lambda" {
  name        = "dss_lambda_${replace(var.stage, "-", "_")}"
  platform_id = "AWSLambda-SHA384-ECDSA"

  signature_validity_period {
    value = 5
    type  = "YEARS"
  }
}

resource "aws_lambda_code_signing_config" "dss" {
  description = "DSS ${var.stage}: only code signed with ${aws_signer_signing_profile.lambda.name} deploys"

  allowed_publishers {
    signing_profile_version_arns = [aws_signer_signing_profile.lambda.version_arn]
  }

  policies {
    untrusted_artifact_on_deployment = "Enforce"
  }
}

resource "aws_sqs_queue" "lambda_dead_letter" {
  name                              = "dss-lambda-dlq-${var.stage}"
  message_retention_seconds         = local.retention_14days
  kms_master_key_id                 = aws_kms_key.dss.arn
  kms_data_key_reuse_period_seconds = 300
}

# --- Code artifacts ------------------------------------------------------------------------------------------------

resource "aws_s3_bucket" "lambda_artifacts" {
  # checkov:skip=CKV_AWS_145: the zips are code, not data; their integrity is the Signer signature, SSE-S3 encrypts them at rest
  # checkov:skip=CKV_AWS_144: every deploy uploads the zips again; a second region would only hold stale copies
  # checkov:skip=CKV2_AWS_62: the deploy starts the signing jobs itself; nothing consumes upload events
  bucket = local.lambda_artifacts_bucket
}

resource "aws_s3_bucket_public_access_block" "lambda_artifacts" {
  bucket                  = aws_s3_bucket.lambda_artifacts.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "lambda_artifacts" {
  bucket = aws_s3_bucket.lambda_artifacts.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "lambda_artifacts" {
  bucket = aws_s3_bucket.lambda_artifacts.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

# Signer signs a specific object version.
resource "aws_s3_bucket_versioning" "lambda_artifacts" {
  bucket = aws_s3_bucket.lambda_artifacts.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "lambda_artifacts" {
  bucket     = aws_s3_bucket.lambda_artifacts.id
  depends_on = [aws_s3_bucket_versioning.lambda_artifacts]

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
  }

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_logging" "lambda_artifacts" {
  bucket        = aws_s3_bucket.lambda_artifacts.id
  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "${local.lambda_artifacts_bucket}/"
}

resource "aws_s3_bucket_policy" "lambda_artifacts" {
  bucket     = aws_s3_bucket.lambda_artifacts.id
  policy     = data.aws_iam_policy_document.s3_tls_only[local.lambda_artifacts_bucket].json
  depends_on = [aws_s3_bucket_public_access_block.lambda_artifacts]
}
