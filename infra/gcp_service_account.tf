# The service account the DSS Lambdas use for the GCS replica: object admin on the DSS GCS buckets only. Its key
# (the JSON key file) is the Secrets Manager secret dss-gcp-credentials-{stage}, which each Lambda fetches at cold
# start (dss/cloud_credentials.py): it authenticates GCS calls and signs GCS URLs.

resource "google_service_account" "dss" {
  account_id   = "dss-${var.stage}"
  display_name = "DSS ${var.stage}"
  description  = "The DSS Lambdas in AWS: objects of the DSS GCS buckets. Key in AWS secret ${local.gcp_credentials_secret}."
}

resource "google_storage_bucket_iam_member" "dss" {
  for_each = {
    primary  = google_storage_bucket.primary.name
    checkout = google_storage_bucket.checkout.name
    staging  = google_storage_bucket.staging.name
  }
  bucket = each.value
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.dss.email}"
}

# The key is replaced by the first apply after gcp_key_rotation_days. Warm Lambdas keep the key they fetched at cold
# start, so the new key is created before the old one is deleted, and `make deploy` after the apply restarts them.
resource "time_rotating" "dss_key" {
  rotation_days = var.gcp_key_rotation_days
}

resource "google_service_account_key" "dss" {
  service_account_id = google_service_account.dss.name
  keepers = {
    rotation = time_rotating.dss_key.id
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_secretsmanager_secret" "gcp_credentials" {
  # checkov:skip=CKV2_AWS_57: the value is a GCP service-account key that only Terraform can mint; it is rotated by Terraform (time_rotating.dss_key), not by a rotation Lambda
  name                    = local.gcp_credentials_secret
  description             = "JSON key of the GCP service account ${google_service_account.dss.email}"
  kms_key_id              = aws_kms_key.dss.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "gcp_credentials" {
  secret_id     = aws_secretsmanager_secret.gcp_credentials.id
  secret_string = base64decode(google_service_account_key.dss.private_key)
}
