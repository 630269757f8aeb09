"""The test session runs against its own local stack, on free ports, in a temporary directory."""
from __future__ import annotations

import os
import uuid as uuidlib

import boto3
import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from dss.checksums import compute_checksums_of_bytes
from dss.config import Settings
from dss.identifiers import new_version
from dss.storage.replicas import Replicas

from .helpers import ApiClient


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    from dss.local.stack import LocalStack
    # Each pytest-xdist worker has a stack of its own, on ports no other stack on this machine is given.
    # A message whose worker was killed reappears after 10 s rather than 60, and a failing one is retried after
    # 1, 2, 4, 8 s rather than 2, 4, 8, 16 (crash and dead-letter tests wait for them).
    stack = LocalStack(tmp_path_factory.mktemp("stack"), pick_ports=True, with_api=True,
                       extra_env={"DSS_QUEUE_VISIBILITY_SECONDS": "10", "DSS_BACKOFF_BASE_SECONDS": "1"})
    # Its data is thrown away: a server still busy 3 s after SIGTERM (SeaweedFS, after heavy writes) is killed.
    stack.stop_timeout = 3.0
    stack.start()
    saved = dict(os.environ)
    os.environ.update(stack.env())
    os.environ.pop("AWS_PROFILE", None)
    try:
        yield stack
    finally:
        stack.stop()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def settings(stack) -> Settings:
    return Settings.from_env(stack.env())


@pytest.fixture(scope="session")
def replicas(settings) -> Replicas:
    return Replicas(settings)


@pytest.fixture
def in_process(stack):
    """A second app in this process, with other settings, on the same servers: a client for it."""
    from dss.app import create_app

    def make(**overrides):
        return create_app(Settings(**{**Settings.from_env(stack.env()).__dict__, **overrides})).test_client()
    return make


@pytest.fixture(scope="session")
def api(stack, settings) -> ApiClient:
    return ApiClient(stack.env()["DSS_API_URL"], stack, settings)


@pytest.fixture(scope="session")
def s3(stack):
    return boto3.client("s3")


@pytest.fixture(scope="session")
def gcs(stack, settings):
    return storage.Client(project=settings.gcp_project, credentials=AnonymousCredentials())


@pytest.fixture(scope="session")
def stager(s3, gcs, settings):
    return Stager(s3, gcs, settings)


class Stager:
    """Puts files in the staging buckets the way submitters do: bytes plus the four hca-dss-* checksums."""

    def __init__(self, s3, gcs, settings: Settings):
        self.s3, self.gcs, self.settings = s3, gcs, settings

    def stage(self, replica: str, data: bytes, *, content_type="application/octet-stream", checksums=None,
              drop=(), as_metadata=False) -> str:
        values = {f"hca-dss-{k}": v for k, v in (checksums or compute_checksums_of_bytes(data).as_dict()).items()}
        for name in drop:
            values.pop(f"hca-dss-{name}")
        key = f"{uuidlib.uuid4()}/payload"
        if replica == "aws":
            bucket = self.settings.s3_staging_bucket
            extra = {"Metadata": values} if as_metadata else {}
            self.s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type, **extra)
            if not as_metadata:
                self.s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={
                    "TagSet": [{"Key": k, "Value": v} for k, v in values.items()]})
            return f"s3://{bucket}/{key}"
        bucket = self.settings.gs_staging_bucket
        blob = self.gcs.bucket(bucket).blob(key)
        blob.metadata = values
        blob.upload_from_string(data, content_type=content_type)
        return f"gs://{bucket}/{key}"


@pytest.fixture
def new_uuid():
    return lambda: str(uuidlib.uuid4())


@pytest.fixture
def version():
    return new_version()


@pytest.fixture(params=["aws", "gcp"])
def replica(request):
    return request.param


def fetch(url: str) -> requests.Response:
    return requests.get(url, timeout=60)
