"""`environment` (the documented, sourceable settings file) agrees with `dss.config.Settings`, the one source of
defaults: the same defaults, and every variable Settings reads is documented there."""
from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import subprocess

from dss.config import Settings

ROOT = pathlib.Path(__file__).resolve().parents[2]
ENVIRONMENT = ROOT / "environment"

# Variables of `environment` that are not Settings, and who reads them instead.
NOT_SETTINGS = {
    "DSS_LOG_LEVEL": "entry points, to configure logging before anything else runs",
    "AWS_DEFAULT_REGION": "boto3", "AWS_ENDPOINT_URL_S3": "boto3",
    "DSS_GCP_CREDENTIALS_SECRET": "dss.cloud_credentials, at a Lambda's cold start, before Settings is built",
    "DSS_ROUTE53_ZONE": "deployment", "DSS_TERRAFORM_STATE_BUCKET": "deployment",
    "DSS_TERRAFORM_STATE_REGION": "deployment", "GCP_DEFAULT_REGION": "deployment",
    "DSS_OPENSEARCH_INSTANCE_TYPE": "deployment", "DSS_OPENSEARCH_INSTANCE_COUNT": "deployment",
    "DSS_OPENSEARCH_VOLUME_GB": "deployment", "DSS_DEPLOY_AUTO_APPROVE": "deployment",
    "DSS_LOCAL_DIR": "the local stack", "DSS_API_PORT": "the local stack", "DSS_LOCAL_S3_PORT": "the local stack",
    "DSS_LOCAL_GCS_PORT": "the local stack", "DSS_LOCAL_MOTO_PORT": "the local stack",
    "DSS_LOCAL_SEARCH_PORT": "the local stack", "DSS_LOCAL_ISSUER_PORT": "the local stack",
    "DSS_LOCAL_DYNAMODB_PORT": "the local stack", "DSS_LOCAL_DEV_EMAIL": "the local stack",
}
# Known disagreements, to be settled by a decision rather than silently (either side changes what some process
# sees): `environment` trusts the original's test service-account domain, while Settings (and so the local stack
# and the tests, which do not source `environment`) trusts none.
DIFFERENT_DEFAULTS = {"authorized_domains"}


class Recording(dict):
    """An environment that remembers every variable looked up in it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read: set[str] = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)


def exported() -> list[str]:
    return re.findall(r"^export ([A-Z0-9_]+)=", ENVIRONMENT.read_text(), flags=re.M)


def sourced(extra: dict[str, str] | None = None) -> dict[str, str]:
    """`environment` sourced in an otherwise empty environment."""
    out = subprocess.run(["bash", "-c", "set -a; source ./environment; env -0"], cwd=ROOT, capture_output=True,
                         check=True, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(extra or {})}).stdout
    names = set(exported())
    return {k: v for k, v in (item.split("=", 1) for item in out.decode().split("\0") if "=" in item) if k in names}


def variables_read() -> set[str]:
    env = Recording()
    Settings.from_env(env)
    return env.read


def test_every_variable_settings_reads_is_documented_in_environment():
    missing = variables_read() - set(exported())
    assert not missing, f"read by Settings.from_env but not in `environment`: {sorted(missing)}"


def test_every_variable_of_environment_is_a_setting_or_said_not_to_be():
    unknown = set(exported()) - variables_read() - set(NOT_SETTINGS)
    assert not unknown, f"in `environment` but neither read by Settings nor listed in NOT_SETTINGS: {sorted(unknown)}"
    assert not set(NOT_SETTINGS) & variables_read(), "a variable listed as not a setting is read by Settings"


def test_defaults_of_environment_are_the_defaults_of_settings():
    from_file, from_code = Settings.from_env(sourced()), Settings.from_env({})
    differ = {f.name: (getattr(from_file, f.name), getattr(from_code, f.name)) for f in dataclasses.fields(Settings)
              if getattr(from_file, f.name) != getattr(from_code, f.name)}
    assert set(differ) == DIFFERENT_DEFAULTS, differ
    assert from_code == Settings(), "Settings.from_env of an empty environment is not Settings()"


def test_derived_defaults_follow_the_stage_in_both():
    stage = {"DSS_DEPLOYMENT_STAGE": "dev", "API_DOMAIN_NAME": "dss.dev.example.org"}
    from_file, from_code = Settings.from_env(sourced(stage)), Settings.from_env(stage)
    assert from_code.s3_bucket == "dss-primary-dev" and from_code.api_url == "https://dss.dev.example.org"
    assert dataclasses.replace(from_file, authorized_domains=()) == from_code


def test_each_documented_setting_changes_settings():
    """A variable Settings reads is really used: setting it to another value changes the Settings built."""
    base = Settings.from_env({})
    unchanged = [name for name in variables_read()
                 if Settings.from_env({name: "1" if name != "DSS_CHECKOUT_TTL_SECONDS" else "7777777"}) == base]
    assert not unchanged, unchanged
