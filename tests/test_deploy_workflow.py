"""`make deploy-infra` and `make deploy` (scripts/deploy.sh): they stop early and say what is missing, and drive
Terraform with the stage's settings. Terraform itself is replaced by a recorder here: no cloud is reached. AWS
credentials are checked against the local stack's STS (moto)."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

RECORDER = """#!/usr/bin/env bash
# Records each call (arguments and TF_VAR_* settings) and answers `output -json` with the outputs given.
printf '%s\\n' "$(python3 -c 'import json, os, sys; print(json.dumps({"args": sys.argv[1:],
  "tf_vars": {k: v for k, v in os.environ.items() if k.startswith("TF_VAR_")}}))' "$@")" >> "$RECORD"
if [[ " $* " == *" output -json"* ]]; then cat "$OUTPUTS"; fi
"""


@pytest.fixture
def workdir(tmp_path, stack):
    terraform = tmp_path / "terraform"
    terraform.write_text(RECORDER)
    terraform.chmod(0o755)
    (tmp_path / "outputs.json").write_text("{}")
    override = tmp_path / "environment.local"
    override.write_text("\n".join([
        "DSS_DEPLOYMENT_STAGE=dev", "GCP_PROJECT_NAME=my-dss-project", "API_DOMAIN_NAME=dss.dev.example.org",
        "DSS_ROUTE53_ZONE=dev.example.org", "DSS_TERRAFORM_STATE_BUCKET=my-terraform-state",
        f"GOOGLE_APPLICATION_CREDENTIALS={tmp_path / 'key.json'}", "DSS_DEPLOY_AUTO_APPROVE=1", ""]))
    return tmp_path


def deploy(what: str, workdir: pathlib.Path, stack, **env) -> subprocess.CompletedProcess:
    environ = {"PATH": os.environ["PATH"], "HOME": str(workdir), "RECORD": str(workdir / "record"),
               "OUTPUTS": str(workdir / "outputs.json"), "TERRAFORM": str(workdir / "terraform"),
               "DSS_ENVIRONMENT_LOCAL": str(workdir / "environment.local"), "DSS_BUILD_DIR": str(workdir / "build"),
               # boto3 finds the local stack's STS and its dummy credentials
               **{k: v for k, v in stack.env().items() if k.startswith("AWS_")}, **env}
    return subprocess.run(["bash", "scripts/deploy.sh", what], cwd=ROOT, env=environ, capture_output=True,
                          text=True, timeout=300)


def calls(workdir: pathlib.Path) -> list[dict]:
    record = workdir / "record"
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def test_missing_tools_and_settings_are_all_reported_before_anything_runs(workdir, stack):
    (workdir / "environment.local").write_text("")
    run = deploy("infra", workdir, stack, TERRAFORM=str(workdir / "no-such-terraform"))
    assert run.returncode == 2
    for missing in ("terraform (>= 1.6) is not installed", "DSS_DEPLOYMENT_STAGE is `local`", "GCP_PROJECT_NAME",
                    "DSS_TERRAFORM_STATE_BUCKET is empty", "API_DOMAIN_NAME is empty", "DSS_ROUTE53_ZONE is empty",
                    "no GCP credentials"):
        assert missing in run.stderr, missing
    assert calls(workdir) == []


def test_missing_aws_credentials_stop_the_deploy(workdir, stack):
    run = deploy("infra", workdir, stack, AWS_ENDPOINT_URL_STS="http://127.0.0.1:9")  # nothing listens there
    assert run.returncode == 2 and "no usable AWS credentials" in run.stderr
    assert calls(workdir) == []


def test_deploy_infra_applies_infra_with_the_stage_settings(workdir, stack):
    run = deploy("infra", workdir, stack)
    assert run.returncode == 0, run.stderr
    init, apply = calls(workdir)
    assert init["args"][:2] == ["-chdir=infra", "init"]
    assert "-backend-config=bucket=my-terraform-state" in init["args"]
    assert "-backend-config=key=dss/dev/infra.tfstate" in init["args"]
    assert apply["args"] == ["-chdir=infra", "apply", "-input=false", "-auto-approve"]
    tf_vars = apply["tf_vars"]
    assert tf_vars["TF_VAR_stage"] == "dev" and tf_vars["TF_VAR_gcp_project"] == "my-dss-project"
    assert tf_vars["TF_VAR_s3_bucket"] == "dss-primary-dev" and tf_vars["TF_VAR_checkout_ttl_days"] == "7"
    assert tf_vars["TF_VAR_route53_zone_name"] == "dev.example.org"
    assert tf_vars["TF_VAR_subscriptions_table"] == "dss-subscriptions-dev"
    # Every variable infra/ declares without a default is set.
    import re
    declared = re.findall(r'variable "(\w+)" \{((?:[^{}]|\{[^{}]*\})*)\}', "".join(
        p.read_text() for p in (ROOT / "infra").glob("*.tf")))
    required = {name for name, body in declared if "default" not in body}
    assert required <= {k.removeprefix("TF_VAR_") for k in tf_vars}, required


def test_deploy_stops_when_the_infrastructure_is_not_there(workdir, stack):
    run = deploy("lambdas", workdir, stack)  # `terraform output -json` gives {}: deploy-infra never ran
    assert run.returncode == 2
    assert "package_lambdas: " in run.stderr and "deploy-infra" in run.stderr
    assert [c["args"][1] for c in calls(workdir)] == ["init", "output"]  # nothing was applied
    assert json.loads((workdir / "build" / "infra-outputs.json").read_text()) == {}


def test_gitlab_ci_tests_every_push_and_deploys_dev_from_main():
    import yaml
    ci = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())
    assert ci["stages"] == ["test", "deploy"]
    assert ci["test"]["script"] == [".ci/run"] and "rules" not in ci["test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    deploy_job = ci["deploy-dev"]
    assert deploy_job["needs"] == ["test"] and deploy_job["environment"]["name"] == "dev"
    assert deploy_job["rules"] == [{"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"}]
    assert deploy_job["script"] == ["make deploy-infra", "make deploy"]
    assert deploy_job["variables"]["DSS_DEPLOY_AUTO_APPROVE"] == "1"
    # Credentials come from the job's OIDC token, not from a stored key.
    assert "aud" in deploy_job["id_tokens"]["AWS_ID_TOKEN"]
    assert not [k for k in deploy_job["variables"] if k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
