# make deploy-infra passes these as TF_VAR_* from the settings in /environment (and environment.local); see README.md.

# --- Deployment --------------------------------------------------------------------------------------------------

variable "stage" {
  description = "Deployment stage (DSS_DEPLOYMENT_STAGE): dev, integration, staging, prod, ..."
  type        = string
  validation {
    # Bounded by the longest name built from it: the GCP service account dss-relay-{stage} (30 characters).
    condition     = can(regex("^[a-z][a-z0-9-]{1,19}$", var.stage)) && var.stage != "local"
    error_message = "stage must be 2-20 lowercase letters, digits or hyphens, starting with a letter, and not `local`."
  }
}

variable "aws_region" {
  description = "AWS region of the deployment (AWS_DEFAULT_REGION)."
  type        = string
}

variable "gcp_project" {
  description = "GCP project that owns the GCS buckets (GCP_PROJECT_NAME)."
  type        = string
}

variable "gcp_region" {
  description = "GCP region of the event relay function (GCP_DEFAULT_REGION)."
  type        = string
  default     = "us-central1"
}

variable "gcs_location" {
  description = "Location of the GCS buckets: a multi-region (US), dual-region or region. The relay's trigger runs there."
  type        = string
  default     = "US"
}

# --- Buckets -----------------------------------------------------------------------------------------------------

variable "s3_bucket" {
  description = "S3 primary bucket (DSS_S3_BUCKET)."
  type        = string
}

variable "gs_bucket" {
  description = "GCS primary bucket (DSS_GS_BUCKET)."
  type        = string
}

variable "s3_checkout_bucket" {
  description = "S3 checkout bucket (DSS_S3_CHECKOUT_BUCKET)."
  type        = string
}

variable "gs_checkout_bucket" {
  description = "GCS checkout bucket (DSS_GS_CHECKOUT_BUCKET)."
  type        = string
}

variable "s3_staging_bucket" {
  description = "S3 staging bucket that submitters upload to (DSS_S3_STAGING_BUCKET)."
  type        = string
}

variable "gs_staging_bucket" {
  description = "GCS staging bucket (DSS_GS_STAGING_BUCKET)."
  type        = string
}

variable "checkout_ttl_days" {
  description = "Days a checkout copy lives: DSS_CHECKOUT_TTL_SECONDS / 86400, rounded up. The checkout buckets' lifecycle."
  type        = number
  validation {
    condition     = var.checkout_ttl_days >= 1 && floor(var.checkout_ttl_days) == var.checkout_ttl_days
    error_message = "checkout_ttl_days must be a whole number of days, at least 1."
  }
}

variable "s3_access_log_bucket" {
  description = "S3 bucket receiving the server access logs of the DSS buckets; empty: {s3_bucket}-access-logs."
  type        = string
  default     = ""
}

variable "gs_access_log_bucket" {
  description = "GCS bucket receiving the usage logs of the DSS buckets; empty: {gs_bucket}-access-logs."
  type        = string
  default     = ""
}

variable "lambda_artifacts_bucket" {
  description = "S3 bucket the deploy uploads the Lambda zips to, where Signer signs them; empty: {s3_bucket}-lambda-artifacts."
  type        = string
  default     = ""
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted object of a primary bucket stays recoverable."
  type        = number
  default     = 30
}

variable "access_log_days" {
  description = "Days bucket access logs are kept."
  type        = number
  default     = 365
}

# --- Tables ------------------------------------------------------------------------------------------------------

variable "async_state_table" {
  description = "DynamoDB table of background-copy state (DSS_ASYNC_STATE_TABLE)."
  type        = string
}

variable "collections_table" {
  description = "DynamoDB table of collection owners (DSS_COLLECTIONS_TABLE)."
  type        = string
}

variable "subscriptions_table" {
  description = "DynamoDB table of subscriptions (DSS_SUBSCRIPTIONS_TABLE)."
  type        = string
}

variable "notifications_table" {
  description = "DynamoDB table of notification delivery records (DSS_NOTIFICATIONS_TABLE)."
  type        = string
}

variable "deletion_protection" {
  description = "Protect the DynamoDB tables from deletion (also by `terraform destroy`)."
  type        = bool
  default     = true
}

# --- API domain --------------------------------------------------------------------------------------------------

variable "api_domain_name" {
  description = "Public host name of the API (API_DOMAIN_NAME), e.g. dss.dev.example.org."
  type        = string
  validation {
    condition     = length(var.api_domain_name) > 0
    error_message = "api_domain_name must be set."
  }
}

variable "route53_zone_name" {
  description = "Public Route53 hosted zone that holds api_domain_name (e.g. dev.example.org)."
  type        = string
}

# --- Search ------------------------------------------------------------------------------------------------------

variable "opensearch_engine_version" {
  description = "Engine of the OpenSearch domain."
  type        = string
  default     = "OpenSearch_2.17"
}

variable "opensearch_instance_type" {
  description = "Instance type of the OpenSearch data nodes."
  type        = string
  default     = "r6g.large.search"
}

variable "opensearch_instance_count" {
  description = "Number of OpenSearch data nodes; 2 or more spreads them evenly over two availability zones."
  type        = number
  default     = 2
  validation {
    condition     = var.opensearch_instance_count == 1 || (var.opensearch_instance_count >= 2 && var.opensearch_instance_count % 2 == 0)
    error_message = "opensearch_instance_count must be 1, or an even number (two availability zones)."
  }
}

variable "opensearch_volume_gb" {
  description = "EBS volume (GiB) of each OpenSearch data node."
  type        = number
  default     = 100
}

variable "opensearch_master_type" {
  description = "Instance type of the dedicated master nodes."
  type        = string
  default     = "m6g.large.search"
}

variable "opensearch_dedicated_masters" {
  description = "Run dedicated master nodes (production); false saves them on small dev stages."
  type        = bool
  default     = true
}

variable "opensearch_master_count" {
  description = "Number of dedicated master nodes, when opensearch_dedicated_masters."
  type        = number
  default     = 3
  validation {
    condition     = contains([3, 5], var.opensearch_master_count)
    error_message = "opensearch_master_count must be 3 or 5."
  }
}

variable "opensearch_admin_principal_arns" {
  description = "Further IAM principals (operators, reindex jobs) allowed to call the OpenSearch domain (from inside the VPC)."
  type        = list(string)
  default     = []
}

# --- Network -----------------------------------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "Address range of the DSS VPC (Lambdas and the OpenSearch domain), split over two availability zones."
  type        = string
  default     = "10.60.0.0/16"
}

variable "availability_zones" {
  description = "The two availability zones of the VPC; empty: {aws_region}a and {aws_region}b."
  type        = list(string)
  default     = []
  validation {
    condition     = length(var.availability_zones) == 0 || length(var.availability_zones) == 2
    error_message = "availability_zones must name exactly two zones (or none for the default)."
  }
}

# --- Operations --------------------------------------------------------------------------------------------------

variable "log_retention_days" {
  description = "Retention of the CloudWatch log groups made here (OpenSearch, Step Functions)."
  type        = number
  default     = 365
}

variable "gcp_key_rotation_days" {
  description = "The DSS service-account key is replaced by the first apply after this many days."
  type        = number
  default     = 90
}
