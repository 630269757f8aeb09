"""Settings: one immutable object built once from the environment and passed down."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping


def _split(value: str, sep: str | None = ",") -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(sep) if item.strip())


@dataclass(frozen=True)
class Settings:
    stage: str = "local"
    s3_bucket: str = "dss-primary-local"
    gs_bucket: str = "dss-primary-local"
    s3_checkout_bucket: str = "dss-checkout-local"
    gs_checkout_bucket: str = "dss-checkout-local"
    s3_staging_bucket: str = "dss-staging-local"
    gs_staging_bucket: str = "dss-staging-local"
    gcp_project: str = "dss-local"
    google_credentials: str = ""
    api_domain_name: str = ""
    read_only: bool = False
    debug: bool = False
    signed_url_ttl: int = 3600
    multipart_threshold: int = 64 * 1024 * 1024
    copy_concurrency: int = 8
    publish_write_events: bool = False
    es_endpoint: str = "http://127.0.0.1:9200"
    es_timeout: float = 10.0
    bundle_lookup_concurrency: int = 64
    bundle_file_wait_seconds: float = 15.0
    openid_provider: str = "https://humancellatlas.auth0.com/"
    oidc_audience: tuple[str, ...] = ("https://dev.data.humancellatlas.org/",)
    group_claim: str = "https://auth.data.humancellatlas.org/group"
    email_claim: str = "https://auth.data.humancellatlas.org/email"
    authorized_domains: tuple[str, ...] = ()
    service_account_jwks_url: str = "https://www.googleapis.com/service_accounts/v1/jwk/{email}"
    admin_emails: frozenset[str] = field(default_factory=frozenset)
    collections_table: str = "dss-collections-local"
    api_url: str = ""
    subscriptions_table: str = "dss-subscriptions-local"
    notifications_table: str = "dss-notifications-local"
    notify_delays: tuple[int, ...] = (0, 60, 600, 3600, 21600, 60540, 86400, 86400, 86400, 86400, 86400, 86400)
    notify_timeout: float = 60.0
    subscription_cache_seconds: float = 10.0
    async_state_table: str = "dss-async-state-local"
    async_copy_threshold: int = 64 * 1024 * 1024
    async_copy_timeout: int = 3600
    async_copy_start_delay: int = 0
    async_copy_part_pause: float = 0.0
    # Checkout (dss.checkout): how long checkout copies live, which files are copied inline by GET /files, the
    # copy speed that Retry-After estimates assume, parallel copies per bundle checkout, the SES sender.
    checkout_ttl: int = 7 * 24 * 3600
    checkout_inline_max_bytes: int = 64 * 1024 * 1024
    checkout_throughput: int = 100_000_000
    checkout_concurrency: int = 16
    notification_sender: str = ""
    # Events: how long a received queue message stays hidden (the local worker renews it while a handler runs), and
    # the base of the backoff of a failed message (base, 2 base, 4 base, ... s, at most 300 s).
    queue_visibility_seconds: int = 60
    backoff_base_seconds: int = 2
    # The GCS emulator's address; empty means real GCS (google-cloud-storage reads the variable itself too).
    storage_emulator_host: str = ""

    def __post_init__(self) -> None:
        if self.checkout_ttl <= self.signed_url_ttl:
            raise ValueError("DSS_CHECKOUT_TTL_SECONDS must exceed DSS_SIGNED_URL_TTL_SECONDS: a URL must not "
                             "outlive the checkout copy it points at")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        defaults = cls()
        stage = env.get("DSS_DEPLOYMENT_STAGE") or defaults.stage

        def get(name: str, default: str) -> str:
            return env.get(name) or default

        return cls(
            stage=stage,
            s3_bucket=get("DSS_S3_BUCKET", f"dss-primary-{stage}"),
            gs_bucket=get("DSS_GS_BUCKET", f"dss-primary-{stage}"),
            s3_checkout_bucket=get("DSS_S3_CHECKOUT_BUCKET", f"dss-checkout-{stage}"),
            gs_checkout_bucket=get("DSS_GS_CHECKOUT_BUCKET", f"dss-checkout-{stage}"),
            s3_staging_bucket=get("DSS_S3_STAGING_BUCKET", f"dss-staging-{stage}"),
            gs_staging_bucket=get("DSS_GS_STAGING_BUCKET", f"dss-staging-{stage}"),
            gcp_project=get("GCP_PROJECT_NAME", defaults.gcp_project),
            google_credentials=get("GOOGLE_APPLICATION_CREDENTIALS", ""),
            api_domain_name=get("API_DOMAIN_NAME", ""),
            read_only=bool(env.get("DSS_READ_ONLY_MODE")),
            debug=env.get("DSS_DEBUG", "").lower() in ("1", "true", "yes"),
            signed_url_ttl=int(get("DSS_SIGNED_URL_TTL_SECONDS", str(defaults.signed_url_ttl))),
            multipart_threshold=int(get("DSS_MULTIPART_THRESHOLD", str(defaults.multipart_threshold))),
            copy_concurrency=int(get("DSS_COPY_CONCURRENCY", str(defaults.copy_concurrency))),
            es_endpoint=get("DSS_ES_ENDPOINT", defaults.es_endpoint),
            es_timeout=float(get("DSS_ES_TIMEOUT", str(defaults.es_timeout))),
            publish_write_events=env.get("DSS_PUBLISH_WRITE_EVENTS", "").lower() in ("1", "true", "yes"),
            bundle_lookup_concurrency=int(get("DSS_BUNDLE_LOOKUP_CONCURRENCY",
                                              str(defaults.bundle_lookup_concurrency))),
            bundle_file_wait_seconds=float(get("DSS_BUNDLE_FILE_WAIT_SECONDS",
                                               str(defaults.bundle_file_wait_seconds))),
            openid_provider=get("OPENID_PROVIDER", defaults.openid_provider),
            oidc_audience=_split(get("OIDC_AUDIENCE", ",".join(defaults.oidc_audience))),
            group_claim=get("OIDC_GROUP_CLAIM", defaults.group_claim),
            email_claim=get("OIDC_EMAIL_CLAIM", defaults.email_claim),
            authorized_domains=_split(env.get("DSS_AUTHORIZED_DOMAINS", ""), None),
            service_account_jwks_url=get("DSS_SERVICE_ACCOUNT_JWKS_URL", defaults.service_account_jwks_url),
            admin_emails=frozenset(_split(env.get("ADMIN_USER_EMAILS", ""))),
            collections_table=get("DSS_COLLECTIONS_TABLE", f"dss-collections-{stage}"),
            api_url=get("DSS_API_URL", f"https://{env['API_DOMAIN_NAME']}" if env.get("API_DOMAIN_NAME") else "")
            .rstrip("/"),
            subscriptions_table=get("DSS_SUBSCRIPTIONS_TABLE", f"dss-subscriptions-{stage}"),
            notifications_table=get("DSS_NOTIFICATIONS_TABLE", f"dss-notifications-{stage}"),
            notify_delays=tuple(int(d) for d in _split(get("DSS_NOTIFY_DELAYS",
                                                           ",".join(map(str, defaults.notify_delays))))),
            notify_timeout=float(get("DSS_NOTIFY_TIMEOUT", str(defaults.notify_timeout))),
            subscription_cache_seconds=float(get("DSS_SUBSCRIPTION_CACHE_SECONDS",
                                                 str(defaults.subscription_cache_seconds))),
            async_state_table=get("DSS_ASYNC_STATE_TABLE", f"dss-async-state-{stage}"),
            async_copy_threshold=int(get("DSS_ASYNC_COPY_THRESHOLD", str(defaults.async_copy_threshold))),
            async_copy_timeout=int(get("DSS_ASYNC_COPY_TIMEOUT_SECONDS", str(defaults.async_copy_timeout))),
            async_copy_start_delay=int(get("DSS_ASYNC_COPY_START_DELAY_SECONDS",
                                           str(defaults.async_copy_start_delay))),
            async_copy_part_pause=float(get("DSS_ASYNC_COPY_PART_PAUSE_SECONDS",
                                            str(defaults.async_copy_part_pause))),
            checkout_ttl=int(get("DSS_CHECKOUT_TTL_SECONDS", str(defaults.checkout_ttl))),
            checkout_inline_max_bytes=int(get("DSS_CHECKOUT_INLINE_MAX_BYTES",
                                              str(defaults.checkout_inline_max_bytes))),
            checkout_throughput=int(get("DSS_CHECKOUT_THROUGHPUT_BYTES_PER_SECOND",
                                        str(defaults.checkout_throughput))),
            checkout_concurrency=int(get("DSS_CHECKOUT_CONCURRENCY", str(defaults.checkout_concurrency))),
            notification_sender=get("DSS_NOTIFICATION_SENDER", ""),
            queue_visibility_seconds=int(get("DSS_QUEUE_VISIBILITY_SECONDS", str(defaults.queue_visibility_seconds))),
            backoff_base_seconds=int(get("DSS_BACKOFF_BASE_SECONDS", str(defaults.backoff_base_seconds))),
            storage_emulator_host=get("STORAGE_EMULATOR_HOST", ""),
        )
