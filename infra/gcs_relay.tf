# The GCS event relay: a Cloud Function (gen2) triggered by object finalization in the GCS primary bucket, which
# publishes the object resource JSON to the SNS topic dss-gs-events-{stage} (events.tf); code in gcs-event-relay/.
#
# No AWS keys: the function asks the metadata server for a Google-signed ID token of its service account and
# exchanges it (STS AssumeRoleWithWebIdentity) for credentials of an AWS role that trusts only that service account
# and may only publish to that topic.

locals {
  relay_name = "dss-gcs-event-relay-${var.stage}"
  # The `aud` of the relay's ID tokens; AWS checks it as accounts.google.com:oaud (the SA id is in azp and sub).
  relay_token_audience = "dss-gcs-event-relay-${var.stage}"
  relay_apis = [
    "artifactregistry.googleapis.com", "cloudbuild.googleapis.com", "cloudfunctions.googleapis.com",
    "eventarc.googleapis.com", "pubsub.googleapis.com", "run.googleapis.com",
  ]
}

resource "google_project_service" "relay" {
  for_each           = toset(local.relay_apis)
  service            = each.key
  disable_on_destroy = false
}

# --- Identities --------------------------------------------------------------------------------------------------

resource "google_service_account" "relay" {
  account_id   = "dss-relay-${var.stage}"
  display_name = "DSS ${var.stage} GCS event relay"
  description  = "Runs ${local.relay_name}; AWS role dss-gcs-relay-${var.stage} trusts it to publish GCS events."
}

resource "google_service_account" "relay_build" {
  account_id   = "dss-relay-build-${var.stage}"
  display_name = "DSS ${var.stage} GCS event relay build"
  description  = "Builds the ${local.relay_name} function image."
}

data "aws_iam_policy_document" "relay_trust" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = ["accounts.google.com"]
    }
    # Google ID tokens of a service account carry its unique id in azp (seen by AWS as aud) and in sub.
    condition {
      test     = "StringEquals"
      variable = "accounts.google.com:aud"
      values   = [google_service_account.relay.unique_id]
    }
    condition {
      test     = "StringEquals"
      variable = "accounts.google.com:sub"
      values   = [google_service_account.relay.unique_id]
    }
    condition {
      test     = "StringEquals"
      variable = "accounts.google.com:oaud"
      values   = [local.relay_token_audience]
    }
  }
}

resource "aws_iam_role" "gcs_relay" {
  name                 = "dss-gcs-relay-${var.stage}"
  description          = "Assumed by the GCP service account of ${local.relay_name} to publish GCS object events"
  assume_role_policy   = data.aws_iam_policy_document.relay_trust.json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "gcs_relay" {
  statement {
    sid       = "PublishGcsObjectEvents"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.gs_events.arn]
  }

  statement {
    sid       = "EncryptedTopic"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.dss.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["sns.${var.aws_region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "gcs_relay" {
  name   = "publish-gcs-events"
  role   = aws_iam_role.gcs_relay.id
  policy = data.aws_iam_policy_document.gcs_relay.json
}

# Eventarc delivers Cloud Storage events through Pub/Sub, published by the project's Cloud Storage service agent.
data "google_storage_project_service_account" "gcs" {}

resource "google_project_iam_member" "gcs_pubsub_publisher" {
  project = var.gcp_project
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

resource "google_project_iam_member" "relay_event_receiver" {
  project = var.gcp_project
  role    = "roles/eventarc.eventReceiver"
  member  = "serviceAccount:${google_service_account.relay.email}"
}

resource "google_project_iam_member" "relay_build" {
  for_each = toset(["roles/logging.logWriter", "roles/artifactregistry.writer"])
  project  = var.gcp_project
  role     = each.key
  member   = "serviceAccount:${google_service_account.relay_build.email}"
}

# --- Source --------------------------------------------------------------------------------------------------------

data "archive_file" "gcs_relay" {
  type        = "zip"
  source_dir  = "${path.module}/gcs-event-relay"
  output_path = "${path.module}/.terraform/build/gcs-event-relay.zip"
  excludes    = ["**/__pycache__", "**/__pycache__/**"] # glob patterns: archive provider >= 2.5
}

resource "google_storage_bucket" "relay_source" {
  name                        = "${var.gcp_project}-dss-relay-source-${var.stage}"
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

  logging {
    log_bucket        = google_storage_bucket.access_logs.name
    log_object_prefix = "relay-source"
  }
}

resource "google_storage_bucket_iam_member" "relay_build_source" {
  bucket = google_storage_bucket.relay_source.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.relay_build.email}"
}

# Named after the content, so a change of the code deploys a new revision.
resource "google_storage_bucket_object" "gcs_relay" {
  name   = "gcs-event-relay-${data.archive_file.gcs_relay.output_md5}.zip"
  bucket = google_storage_bucket.relay_source.name
  source = data.archive_file.gcs_relay.output_path
}

# --- Function ------------------------------------------------------------------------------------------------------

resource "google_cloudfunctions2_function" "gcs_relay" {
  name        = local.relay_name
  location    = var.gcp_region
  description = "Relays object-finalized events of gs://${var.gs_bucket} to SNS dss-gs-events-${var.stage}"

  build_config {
    runtime         = "python312"
    entry_point     = "relay"
    service_account = google_service_account.relay_build.id
    source {
      storage_source {
        bucket = google_storage_bucket.relay_source.name
        object = google_storage_bucket_object.gcs_relay.name
      }
    }
  }

  service_config {
    available_memory               = "256M"
    timeout_seconds                = 60
    max_instance_count             = 50
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.relay.email
    environment_variables = {
      DSS_GS_EVENTS_TOPIC_ARN = aws_sns_topic.gs_events.arn
      DSS_RELAY_ROLE_ARN      = aws_iam_role.gcs_relay.arn
      DSS_RELAY_AUDIENCE      = local.relay_token_audience
      AWS_DEFAULT_REGION      = var.aws_region
    }
  }

  event_trigger {
    # A bucket's events are delivered in its own location (a multi-region such as US is `us`).
    trigger_region        = lower(var.gcs_location)
    event_type            = "google.cloud.storage.object.v1.finalized"
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.relay.email
    event_filters {
      attribute = "bucket"
      value     = google_storage_bucket.primary.name
    }
  }

  depends_on = [
    google_project_service.relay,
    google_project_iam_member.gcs_pubsub_publisher,
    google_project_iam_member.relay_event_receiver,
    google_project_iam_member.relay_build,
    google_storage_bucket_iam_member.relay_build_source,
  ]
}

# Eventarc invokes the function's Cloud Run service (named as the function) as the relay service account.
resource "google_cloud_run_v2_service_iam_member" "relay_invoker" {
  project  = var.gcp_project
  location = var.gcp_region
  name     = google_cloudfunctions2_function.gcs_relay.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.relay.email}"
}
