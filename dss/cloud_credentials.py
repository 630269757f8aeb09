"""Credentials a Lambda fetches at cold start: the GCP service-account key, from AWS Secrets Manager.

Terraform stores the key of the DSS service account in the secret named by DSS_GCP_CREDENTIALS_SECRET; the API and
the daemons need it as a file (google-cloud-storage reads GOOGLE_APPLICATION_CREDENTIALS, and signing GCS URLs needs
the private key). Locally the variable is unset and nothing happens.
"""
from __future__ import annotations

import logging
import os
import pathlib

import boto3

logger = logging.getLogger(__name__)

DEFAULT_PATH = pathlib.Path("/tmp/gcp-credentials.json")


def install_gcp_credentials(environ=os.environ, path: pathlib.Path = DEFAULT_PATH, secrets=None) -> str | None:
    """Write the secret to `path` and point GOOGLE_APPLICATION_CREDENTIALS at it; returns the path, or None."""
    secret = environ.get("DSS_GCP_CREDENTIALS_SECRET")
    if not secret or environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        return None
    value = (secrets or boto3.client("secretsmanager")).get_secret_value(SecretId=secret)["SecretString"]
    path.parent.mkdir(parents=True, exist_ok=True)
    # Owner-only from the start: the file holds a private key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    environ["GOOGLE_APPLICATION_CREDENTIALS"] = str(path)
    logger.info("GCP credentials from secret %s", secret)
    return str(path)
