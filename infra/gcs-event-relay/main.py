"""dss-gcs-event-relay: relays object-finalized events of the GCS primary bucket to the SNS topic
dss-gs-events-{stage}, from which the sync and index queues receive them (raw message delivery).

A Cloud Function (gen2, entry point `relay`), deployed by infra/gcs_relay.tf. Each event's data is the object
resource JSON ({"kind": "storage#object", "bucket", "name", "size", "timeCreated", ...}); it is published unchanged,
which is what dss.events.records.object_events parses.

No AWS keys: the function asks the metadata server for a Google-signed ID token of its service account and trades it
with STS AssumeRoleWithWebIdentity for short-lived credentials of a role that may only publish to that topic. The
credentials are reused until shortly before they expire.

Settings (environment): DSS_GS_EVENTS_TOPIC_ARN, DSS_RELAY_ROLE_ARN, DSS_RELAY_AUDIENCE (the ID token's audience,
which the role's trust policy checks) and AWS_DEFAULT_REGION.

Everything but `relay` is plain Python with boto3, so it runs (and is tested) without GCP.
"""
from __future__ import annotations

import json
import logging
import os
import time
import urllib.parse
import urllib.request
from typing import Callable

import boto3

logger = logging.getLogger(__name__)

METADATA_IDENTITY_URL = "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/identity"
# Credentials are renewed this long before they expire, so none expires during a publish.
REFRESH_MARGIN_SECONDS = 300
OBJECT_KIND = "storage#object"


def object_message(data: dict) -> str | None:
    """The SNS message for one event's data: the object resource as JSON, or None if it is not an object resource."""
    if not isinstance(data, dict) or data.get("kind", OBJECT_KIND) != OBJECT_KIND:
        return None
    if not data.get("bucket") or not data.get("name"):
        return None
    return json.dumps({**data, "kind": OBJECT_KIND}, separators=(",", ":"))


def google_id_token(audience: str, url: str | None = None, timeout: float = 5.0) -> str:
    """A Google-signed ID token of the function's service account, with `audience` as its aud (and the service
    account's unique id as azp and sub, which the AWS role's trust policy checks)."""
    query = urllib.parse.urlencode({"audience": audience, "format": "full"})
    request = urllib.request.Request(f"{url or METADATA_IDENTITY_URL}?{query}", headers={"Metadata-Flavor": "Google"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read().decode().strip()


class WebIdentityCredentials:
    """AWS credentials of `role_arn`, obtained with an ID token from `token_source`, renewed before they expire."""

    def __init__(self, role_arn: str, token_source: Callable[[], str], *, session_name: str = "dss-gcs-event-relay",
                 sts=None, clock: Callable[[], float] = time.time):
        self.role_arn, self.token_source, self.session_name = role_arn, token_source, session_name
        self.sts = sts or boto3.client("sts")
        self.clock = clock
        self._credentials: dict | None = None
        self._expires = 0.0

    def get(self) -> dict:
        """Keyword arguments for boto3.client: the current credentials."""
        if self._credentials is None or self.clock() >= self._expires - REFRESH_MARGIN_SECONDS:
            issued = self.sts.assume_role_with_web_identity(RoleArn=self.role_arn, RoleSessionName=self.session_name,
                                                            WebIdentityToken=self.token_source())["Credentials"]
            self._credentials = {"aws_access_key_id": issued["AccessKeyId"],
                                 "aws_secret_access_key": issued["SecretAccessKey"],
                                 "aws_session_token": issued["SessionToken"]}
            self._expires = issued["Expiration"].timestamp()
            logger.info("assumed %s until %s", self.role_arn, issued["Expiration"].isoformat())
        return self._credentials


class Relay:
    """Publishes object resources to the topic, with an SNS client made from the current role credentials."""

    def __init__(self, topic_arn: str, credentials: WebIdentityCredentials, region: str | None = None):
        self.topic_arn, self.credentials = topic_arn, credentials
        self.region = region or self.topic_arn.split(":")[3]
        self._client = None
        self._client_credentials: dict | None = None

    @classmethod
    def from_env(cls, environ=os.environ) -> "Relay":
        audience = environ["DSS_RELAY_AUDIENCE"]
        credentials = WebIdentityCredentials(environ["DSS_RELAY_ROLE_ARN"], lambda: google_id_token(audience))
        return cls(environ["DSS_GS_EVENTS_TOPIC_ARN"], credentials, environ.get("AWS_DEFAULT_REGION"))

    def publish(self, data: dict) -> str | None:
        """Publish one event's object resource; the SNS message id, or None when the data is not an object."""
        message = object_message(data)
        if message is None:
            logger.warning("ignored an event that is not a storage object: %.300s", json.dumps(data, default=str))
            return None
        message_id = self._sns().publish(TopicArn=self.topic_arn, Message=message)["MessageId"]
        logger.info("gs://%s/%s -> %s (%s)", data["bucket"], data["name"], self.topic_arn, message_id)
        return message_id

    def _sns(self):
        credentials = self.credentials.get()
        if self._client is None or credentials is not self._client_credentials:
            self._client = boto3.client("sns", region_name=self.region, **credentials)
            self._client_credentials = credentials
        return self._client


_relay: Relay | None = None


def relay(cloud_event) -> None:
    """The function's entry point: one CloudEvent (google.cloud.storage.object.v1.finalized). Raising makes
    Eventarc retry the event (the trigger's retry policy)."""
    global _relay
    if _relay is None:
        logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"))
        _relay = Relay.from_env()
    _relay.publish(cloud_event.data)


def _register_with_functions_framework() -> None:
    """Declare `relay` a CloudEvent function. The framework exists only in the Cloud Functions runtime."""
    try:
        import functions_framework
    except ImportError:
        return
    functions_framework.cloud_event(relay)  # registers the signature type under the name "relay"


_register_with_functions_framework()
