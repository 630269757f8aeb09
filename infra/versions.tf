terraform {
  required_version = ">= 1.6"

  # Partial configuration: `terraform init -backend-config=...` supplies bucket, key and region (make deploy-infra).
  backend "s3" {}

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
    google = {
      source  = "hashicorp/google"
      version = "~> 6.20"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.7"
    }
    time = {
      source  = "hashicorp/time"
      version = "~> 0.12"
    }
  }
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = {
      project = "dss"
      stage   = var.stage
    }
  }
}

provider "google" {
  project = var.gcp_project
  region  = var.gcp_region

  default_labels = {
    project = "dss"
    stage   = var.stage
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  # Names the code derives from the stage (dss/events/bus.py, dss/index/backend.py, scripts/package_lambdas.py).
  es_domain_name          = "dss-${var.stage}"
  gcp_credentials_secret  = "dss-gcp-credentials-${var.stage}"
  copy_state_machine_name = "dss-copy-file-${var.stage}"
}
