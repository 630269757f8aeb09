# The DSS buckets on both replicas: primary (the data), checkout (served copies, expired by lifecycle) and staging
# (submitters' uploads), plus one access-log bucket per cloud.
#
# S3 buckets use SSE-S3 (AES256), not SSE-KMS: with SSE-KMS an object's ETag is no longer the MD5 of its content (or
# of its parts), and the DSS stores and verifies that ETag as the file's `s3_etag` checksum (dss/storage/files.py).

locals {
  s3_access_log_bucket = coalesce(var.s3_access_log_bucket, "${var.s3_bucket}-access-logs")
  gs_access_log_bucket = coalesce(var.gs_access_log_bucket, "${var.gs_bucket}-access-logs")
  s3_logged_buckets    = [var.s3_bucket, var.s3_checkout_bucket, var.s3_staging_bucket, local.lambda_artifacts_bucket]
}

# Requests without TLS are refused by every bucket.
data "aws_iam_policy_document" "s3_tls_only" {
  for_each = toset(concat(local.s3_logged_buckets, [local.s3_access_log_bucket]))

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = ["arn:${local.partition}:s3:::${each.key}", "arn:${local.partition}:s3:::${each.key}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

# --- S3 primary ----------------------------------------------------------------------------------------------------

resource "aws_s3_bucket" "primary" {
  # checkov:skip=CKV_AWS_145: SSE-KMS would change S3 ETags, which the DSS verifies as the s3_etag checksum; SSE-S3 (AES256) is used
  # checkov:skip=CKV_AWS_144: the second copy of every object is the GCS replica, made by the dss-sync daemon
  bucket = var.s3_bucket
}

resource "aws_s3_bucket_public_access_block" "primary" {
  bucket                  = aws_s3_bucket.primary.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "primary" {
  bucket = aws_s3_bucket.primary.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "primary" {
  bucket = aws_s3_bucket.primary.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

# Objects are written create-only; versioning keeps what a deletion (a repair, a failed copy's cleanup) removed.
resource "aws_s3_bucket_versioning" "primary" {
  bucket = aws_s3_bucket.primary.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "primary" {
  bucket     = aws_s3_bucket.primary.id
  depends_on = [aws_s3_bucket_versioning.primary]

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
    expiration {
      expired_object_delete_marker = true
    }
  }

  # Large copies resume their multipart upload after a crash (dss/storage/copy_jobs.py) within the copy timeout.
  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

resource "aws_s3_bucket_logging" "primary" {
  bucket        = aws_s3_bucket.primary.id
  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "${var.s3_bucket}/"
}

resource "aws_s3_bucket_policy" "primary" {
  bucket     = aws_s3_bucket.primary.id
  policy     = data.aws_iam_policy_document.s3_tls_only[var.s3_bucket].json
  depends_on = [aws_s3_bucket_public_access_block.primary]
}

# --- S3 checkout ---------------------------------------------------------------------------------------------------

# The lifecycle deletes every object checkout_ttl_days after its last write (dss/checkout_rules.py).
resource "aws_s3_bucket" "checkout" {
  # checkov:skip=CKV_AWS_145: SSE-KMS would change S3 ETags, which checkout compares with the s3_etag checksum; SSE-S3 (AES256) is used
  # checkov:skip=CKV_AWS_144: a cache of copies of the primary bucket, re-made on demand; replicating it would copy garbage
  # checkov:skip=CKV_AWS_21: a cache expired by lifecycle; noncurrent versions would only keep expired copies
  # checkov:skip=CKV2_AWS_62: nothing consumes events of the checkout bucket; the DSS writes every object itself
  bucket = var.s3_checkout_bucket
}

resource "aws_s3_bucket_public_access_block" "checkout" {
  bucket                  = aws_s3_bucket.checkout.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "checkout" {
  bucket = aws_s3_bucket.checkout.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "checkout" {
  bucket = aws_s3_bucket.checkout.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "checkout" {
  bucket = aws_s3_bucket.checkout.id

  rule {
    id     = "expire-checkout-copies"
    status = "Enabled"
    filter {}
    expiration {
      days = var.checkout_ttl_days
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

resource "aws_s3_bucket_logging" "checkout" {
  bucket        = aws_s3_bucket.checkout.id
  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "${var.s3_checkout_bucket}/"
}

resource "aws_s3_bucket_policy" "checkout" {
  bucket     = aws_s3_bucket.checkout.id
  policy     = data.aws_iam_policy_document.s3_tls_only[var.s3_checkout_bucket].json
  depends_on = [aws_s3_bucket_public_access_block.checkout]
}

# --- S3 staging ----------------------------------------------------------------------------------------------------

resource "aws_s3_bucket" "staging" {
  # checkov:skip=CKV_AWS_145: submitters' uploads carry their s3_etag as a tag that must match the ETag; SSE-KMS would change ETags
  # checkov:skip=CKV_AWS_144: a transit area: PUT /files copies what it needs into the primary bucket, which is replicated
  # checkov:skip=CKV_AWS_21: submitters re-stage a changed file; PUT /files pins the ETag it verified, so old versions are never read
  # checkov:skip=CKV2_AWS_62: files are registered by PUT /files, not by upload events
  bucket = var.s3_staging_bucket
}

resource "aws_s3_bucket_public_access_block" "staging" {
  bucket                  = aws_s3_bucket.staging.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "staging" {
  bucket = aws_s3_bucket.staging.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "staging" {
  bucket = aws_s3_bucket.staging.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "staging" {
  bucket = aws_s3_bucket.staging.id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

resource "aws_s3_bucket_logging" "staging" {
  bucket        = aws_s3_bucket.staging.id
  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "${var.s3_staging_bucket}/"
}

resource "aws_s3_bucket_policy" "staging" {
  bucket     = aws_s3_bucket.staging.id
  policy     = data.aws_iam_policy_document.s3_tls_only[var.s3_staging_bucket].json
  depends_on = [aws_s3_bucket_public_access_block.staging]
}

# --- S3 access logs ------------------------------------------------------------------------------------------------

resource "aws_s3_bucket" "access_logs" {
  # checkov:skip=CKV_AWS_18: this is the access-log target; logging it into itself would log its own log deliveries
  # checkov:skip=CKV_AWS_145: S3 server access log delivery supports only SSE-S3 target buckets
  # checkov:skip=CKV_AWS_144: audit logs kept for access_log_days in one region; no second copy is required
  # checkov:skip=CKV_AWS_21: log objects are written once by the S3 logging service and expire by lifecycle
  # checkov:skip=CKV2_AWS_62: nothing consumes events of the access-log bucket
  bucket = local.s3_access_log_bucket
}

resource "aws_s3_bucket_public_access_block" "access_logs" {
  bucket                  = aws_s3_bucket.access_logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"
    filter {}
    expiration {
      days = var.access_log_days
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

data "aws_iam_policy_document" "access_logs" {
  source_policy_documents = [data.aws_iam_policy_document.s3_tls_only[local.s3_access_log_bucket].json]

  statement {
    sid       = "S3ServerAccessLogDelivery"
    actions   = ["s3:PutObject"]
    resources = [for b in local.s3_logged_buckets : "${aws_s3_bucket.access_logs.arn}/${b}/*"]
    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [for b in local.s3_logged_buckets : "arn:${local.partition}:s3:::${b}"]
    }
  }
}

resource "aws_s3_bucket_policy" "access_logs" {
  bucket     = aws_s3_bucket.access_logs.id
  policy     = data.aws_iam_policy_document.access_logs.json
  depends_on = [aws_s3_bucket_public_access_block.access_logs]
}

# --- GCS ---------------------------------------------------------------------------------------------------------

resource "google_storage_bucket" "primary" {
  name                        = var.gs_bucket
  location                    = var.gcs_location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = 7
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  logging {
    log_bucket        = google_storage_bucket.access_logs.name
    log_object_prefix = var.gs_bucket
  }
}

resource "google_storage_bucket" "checkout" {
  # checkov:skip=CKV_GCP_78: a cache expired by lifecycle; noncurrent versions would only keep expired copies
  name                        = var.gs_checkout_bucket
  location                    = var.gcs_location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  # Age counts from the creation of the object's generation, i.e. its last write (dss/storage/stats.py).
  lifecycle_rule {
    condition {
      age = var.checkout_ttl_days
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  logging {
    log_bucket        = google_storage_bucket.access_logs.name
    log_object_prefix = var.gs_checkout_bucket
  }
}

resource "google_storage_bucket" "staging" {
  # checkov:skip=CKV_GCP_78: submitters re-stage a changed file; PUT /files pins the generation it verified, so old ones are never read
  name                        = var.gs_staging_bucket
  location                    = var.gcs_location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  lifecycle_rule {
    condition {
      age = 7
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  logging {
    log_bucket        = google_storage_bucket.access_logs.name
    log_object_prefix = var.gs_staging_bucket
  }
}

resource "google_storage_bucket" "access_logs" {
  # checkov:skip=CKV_GCP_62: this is the usage-log target; logging it into itself would log its own log deliveries
  # checkov:skip=CKV_GCP_78: log objects are written once by Cloud Storage and expire by lifecycle
  name                        = local.gs_access_log_bucket
  location                    = var.gcs_location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  lifecycle_rule {
    condition {
      age = var.access_log_days
    }
    action {
      type = "Delete"
    }
  }
}

# Cloud Storage writes usage logs as this group.
resource "google_storage_bucket_iam_member" "access_log_writer" {
  bucket = google_storage_bucket.access_logs.name
  role   = "roles/storage.objectCreator"
  member = "group:cloud-storage-analytics@google.com"
}
