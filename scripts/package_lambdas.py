#!/usr/bin/env python
"""Build the deployment artefacts of the API and daemon Lambdas with `chalice package`.

For each app (the API in chalice/, each daemon in daemons/<name>/) a Chalice project is assembled under --work:
its app.py, the pinned runtime requirements.txt, vendor/ with the dss package and dss-api.yml, and a
.chalice/config.json for the stage, with the Lambda settings below, the environment the code reads (every setting of
`environment`, minus the local ones), and the IAM policies rendered from iam/. Then `chalice package` writes, per app:

- Terraform (the default): chalice.tf.json and deployment.zip, plus our files next to them:
  deploy.tf.json (S3 state backend, provider versions), partial_batch_override.tf.json (ReportBatchItemFailures on
  every SQS trigger) and, for the API with a custom domain, the base path mapping;
- CloudFormation: sam.json and deployment.zip, with the same additions made to the template.

Usage: scripts/package_lambdas.py --stage dev --out build/lambdas [--format terraform|cloudformation]
           [--infra-outputs outputs.json] [--account-id N] [--apps dss-api dss-sync ...]
The settings come from the process environment (the Makefile sources `environment` and `environment.local`);
--infra-outputs is `terraform -chdir=infra output -json`, which supplies the endpoints Terraform created.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import pathlib
import re
import shutil
import string
import subprocess
import sys
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

ROOT = pathlib.Path(__file__).resolve().parent.parent
PYTHON_RUNTIME = "python3.11"
API_STAGE = "api"
LOG_RETENTION_DAYS = 365


@dataclass(frozen=True)
class Function:
    memory: int
    timeout: int
    concurrency: int
    policy: str | None = None  # iam/<policy>.json; None: the app's policy


@dataclass(frozen=True)
class App:
    source: str           # app.py, relative to the repository
    policy: str           # iam/<policy>.json
    memory: int
    timeout: int
    concurrency: int      # reserved concurrency: explicit back-pressure, and a cap on what a flood can cost
    functions: dict[str, Function] = field(default_factory=dict)


# Timeouts: the API answers within API Gateway's 29 s (dss.lambda_api); copies and checkouts of large files
# run for up to the 15-minute maximum and resume where they stopped. Queue visibility timeouts (infra/) are 6x these.
APPS = {
    "dss-api": App("chalice/app.py", "dss-api", memory=1536, timeout=40, concurrency=100),
    "dss-sync": App("daemons/dss-sync/app.py", "dss-sync", memory=1536, timeout=900, concurrency=50),
    "dss-index": App("daemons/dss-index/app.py", "dss-index", memory=1536, timeout=300, concurrency=20),
    "dss-notify": App("daemons/dss-notify/app.py", "dss-notify", memory=512, timeout=300, concurrency=10),
    "dss-checkout": App("daemons/dss-checkout/app.py", "dss-checkout", memory=1024, timeout=900, concurrency=10),
    "dss-copy": App("daemons/dss-copy/app.py", "dss-copy", memory=1024, timeout=900, concurrency=20, functions={
        "setup": Function(512, 120, 5), "copy_parts": Function(1024, 900, 20), "finalize": Function(512, 300, 5),
        "write_metadata": Function(512, 120, 5), "record_failure": Function(256, 60, 2),
        "launch": Function(256, 60, 2, policy="dss-copy-launch"),
    }),
}

# Settings of `environment` that describe the workstation, the local stack or the deployment itself, not what the
# code reads. AWS_* are reserved in Lambda; GOOGLE_APPLICATION_CREDENTIALS is a local path (Lambdas fetch the key,
# see dss.cloud_credentials).
LOCAL_ONLY = re.compile(r"^(DSS_LOCAL_.*|DSS_API_PORT|AWS_.*|STORAGE_EMULATOR_HOST|GOOGLE_APPLICATION_CREDENTIALS|"
                        r"DSS_PUBLISH_WRITE_EVENTS|DSS_ASYNC_COPY_START_DELAY_SECONDS|"
                        r"DSS_ASYNC_COPY_PART_PAUSE_SECONDS|DSS_BACKOFF_BASE_SECONDS|DSS_ROUTE53_ZONE|"
                        r"DSS_TERRAFORM_.*|DSS_OPENSEARCH_.*|DSS_DEPLOY_.*|GCP_DEFAULT_REGION)$")
# Terraform outputs (infra/outputs.tf) -> the settings they provide.
INFRA_OUTPUTS = {"es_endpoint": "DSS_ES_ENDPOINT", "copy_state_machine_arn": "DSS_COPY_STATE_MACHINE_ARN",
                 "gcp_credentials_secret": "DSS_GCP_CREDENTIALS_SECRET"}
# Terraform outputs that place and harden the Lambdas (VPC, code signing, encryption, dead letters).
DEPLOYMENT_OUTPUTS = ("lambda_subnet_ids", "lambda_security_group_ids", "lambda_kms_key_arn",
                      "lambda_dead_letter_queue_arn", "code_signing_config_arn", "signing_profile_name",
                      "artifacts_bucket")
REQUIRED_SETTINGS = ("DSS_DEPLOYMENT_STAGE", "DSS_S3_BUCKET", "DSS_GS_BUCKET", "GCP_PROJECT_NAME", "DSS_ES_ENDPOINT",
                     "DSS_COPY_STATE_MACHINE_ARN", "DSS_GCP_CREDENTIALS_SECRET", "OPENID_PROVIDER")


class PackagingError(Exception):
    pass


def setting_names(environment_file: pathlib.Path = ROOT / "environment") -> list[str]:
    """Every setting `environment` exports, in order."""
    return re.findall(r"^export ([A-Z0-9_]+)=", environment_file.read_text(), flags=re.M)


def output_value(infra_outputs: dict, name: str):
    """A value of `terraform output -json` (which wraps each in {"value": ...})."""
    value = infra_outputs.get(name)
    return value["value"] if isinstance(value, dict) and "value" in value else value


def deployment_outputs(infra_outputs: dict) -> dict:
    values = {name: output_value(infra_outputs, name) for name in DEPLOYMENT_OUTPUTS}
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise PackagingError(f"missing Terraform outputs: {', '.join(missing)} (run `make deploy-infra` first)")
    return values


def lambda_environment(environ: dict, infra_outputs: dict) -> dict[str, str]:
    values = {name: environ[name] for name in setting_names() if not LOCAL_ONLY.match(name) and environ.get(name)}
    for output, name in INFRA_OUTPUTS.items():
        if output_value(infra_outputs, output):
            values[name] = str(output_value(infra_outputs, output))
    missing = [name for name in REQUIRED_SETTINGS if not values.get(name)]
    if missing:
        raise PackagingError(f"missing settings: {', '.join(missing)} (infra/ outputs them: run `make deploy-infra` "
                             f"first, or set them in environment.local)")
    local = [name for name, value in values.items() if re.search(r"://(127\.0\.0\.1|localhost)[:/]", value)]
    if local:
        raise PackagingError(f"{', '.join(local)} point at this machine (the local stack's defaults); set them in "
                             f"environment.local or pass --infra-outputs")
    if values["DSS_DEPLOYMENT_STAGE"] == "local":
        raise PackagingError("DSS_DEPLOYMENT_STAGE is `local`; set the stage to deploy (e.g. dev) in environment.local")
    return values


def policy_values(env: dict[str, str], deployment: dict, infra_outputs: dict, account_id: str,
                  region: str) -> dict[str, str]:
    """The placeholders of the iam/ templates (iam/README.md lists them); an empty one is refused."""
    stage = env["DSS_DEPLOYMENT_STAGE"]
    es_host = re.sub(r"^https?://", "", env["DSS_ES_ENDPOINT"]).split("/")[0]
    # search-<domain>-<id>.<region>.es.amazonaws.com: the domain name is what IAM resources name.
    es_domain = output_value(infra_outputs, "es_domain") or re.sub(
        r"^(search|vpc)-", "", es_host.split(".")[0]).rsplit("-", 1)[0]
    values = {
        "account_id": account_id, "region": region, "stage": stage,
        "s3_bucket": env["DSS_S3_BUCKET"], "s3_checkout_bucket": env.get("DSS_S3_CHECKOUT_BUCKET", ""),
        "s3_staging_bucket": env.get("DSS_S3_STAGING_BUCKET", ""),
        "async_state_table": env.get("DSS_ASYNC_STATE_TABLE", ""),
        "collections_table": env.get("DSS_COLLECTIONS_TABLE", ""),
        "subscriptions_table": env.get("DSS_SUBSCRIPTIONS_TABLE", ""),
        "notifications_table": env.get("DSS_NOTIFICATIONS_TABLE", ""),
        "es_domain": es_domain, "gcp_credentials_secret": env["DSS_GCP_CREDENTIALS_SECRET"],
        "copy_state_machine_arn": env["DSS_COPY_STATE_MACHINE_ARN"],
        "notification_sender": env.get("DSS_NOTIFICATION_SENDER", ""),
        "lambda_kms_key_arn": deployment["lambda_kms_key_arn"],
        "lambda_dead_letter_queue_arn": deployment["lambda_dead_letter_queue_arn"],
    }
    empty = sorted(k for k, v in values.items() if not v and k != "notification_sender")
    if empty:
        raise PackagingError(f"no value for {', '.join(empty)}: an empty name would render a policy for nothing")
    return values


def render_policy(name: str, values: dict[str, str]) -> dict:
    template = string.Template((ROOT / "iam" / f"{name}.json").read_text())
    try:
        return json.loads(template.substitute(values))
    except KeyError as e:
        raise PackagingError(f"iam/{name}.json uses an unknown placeholder {e}") from None


def chalice_config(name: str, app: App, stage: str, env: dict[str, str], policy_files: dict[str, str],
                   deployment: dict) -> dict:
    stage_config = {
        "environment_variables": env,
        "lambda_memory_size": app.memory, "lambda_timeout": app.timeout, "reserved_concurrency": app.concurrency,
        "manage_iam_role": True, "autogen_policy": False, "iam_policy_file": policy_files[app.policy],
        # Dependencies and the dss package go to a layer: the function zips stay small and quick to rebuild.
        "automatic_layer": True, "xray": True,
        "subnet_ids": list(deployment["lambda_subnet_ids"]),
        "security_group_ids": list(deployment["lambda_security_group_ids"]),
        "tags": {"project": "dss", "stage": stage},
        "lambda_functions": {fn: {"lambda_memory_size": f.memory, "lambda_timeout": f.timeout,
                                  "reserved_concurrency": f.concurrency,
                                  **({"iam_policy_file": policy_files[f.policy]} if f.policy else {})}
                             for fn, f in app.functions.items()},
    }
    if name == "dss-api":
        stage_config.update(api_gateway_stage=API_STAGE, api_gateway_endpoint_type="REGIONAL")
    return {"version": "2.0", "app_name": name, "stages": {stage: stage_config}}


def assemble_project(name: str, app: App, work: pathlib.Path, stage: str, env: dict[str, str],
                     values: dict[str, str], deployment: dict, cache: pathlib.Path) -> pathlib.Path:
    project = work / name
    shutil.rmtree(project, ignore_errors=True)
    (project / ".chalice").mkdir(parents=True)
    shutil.copy(ROOT / app.source, project / "app.py")
    shutil.copy(ROOT / "requirements.txt", project / "requirements.txt")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "local")  # dss/local is the local stack only
    shutil.copytree(ROOT / "dss", project / "vendor" / "dss", ignore=ignore)
    shutil.copy(ROOT / "dss-api.yml", project / "vendor" / "dss-api.yml")
    policy_files = {}
    for policy in {app.policy, *(f.policy for f in app.functions.values() if f.policy)}:
        policy_files[policy] = f"policy-{policy}-{stage}.json"
        (project / ".chalice" / policy_files[policy]).write_text(json.dumps(render_policy(policy, values), indent=2))
    config = chalice_config(name, app, stage, env, policy_files, deployment)
    (project / ".chalice" / "config.json").write_text(json.dumps(config, indent=2))
    # Every app has the same requirements and vendor/, so Chalice's dependency zip, keyed by their hash, is shared.
    cache.mkdir(parents=True, exist_ok=True)
    (project / ".chalice" / "deployments").symlink_to(cache.resolve(), target_is_directory=True)
    return project


def run_chalice_package(project: pathlib.Path, stage: str, fmt: str, out: pathlib.Path, region: str) -> None:
    shutil.rmtree(out, ignore_errors=True)
    chalice = pathlib.Path(sys.executable).parent / "chalice"
    env = {**os.environ, "AWS_DEFAULT_REGION": region, "DSS_DEPLOYMENT_STAGE": stage}
    result = subprocess.run([str(chalice), "package", "--stage", stage, "--pkg-format", fmt, str(out)],
                            cwd=project, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise PackagingError(f"chalice package failed for {project.name}:\n{result.stdout}\n{result.stderr}")
    if "Could not install dependencies" in result.stdout + result.stderr:
        raise PackagingError(f"chalice could not find Linux wheels for {project.name}:\n{result.stderr}")


VERSIONS_TF = """\
# Added by scripts/package_lambdas.py in place of the `terraform` block of chalice.tf.json: Chalice caps Terraform
# below 1.4 and the AWS provider below 5, though what it generates runs on both, and infra/ needs them.
terraform {
  required_version = ">= 1.5, < 2"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 6"
    }
    null = {
      source  = "hashicorp/null"
      version = ">= 3.2, < 4"
    }
  }
  # The bucket, key and region come from `terraform init -backend-config=...` (see the Makefile).
  backend "s3" {}
}
"""


def finish_terraform(name: str, out: pathlib.Path, stage: str, env: dict[str, str], deployment: dict) -> None:
    """Our changes to the Terraform Chalice wrote: versions and the state backend; code signing (the zips go to the
    artefacts bucket, AWS Signer signs them, the functions and the layer deploy the signed copies); environment
    encryption and a dead-letter queue for every function; partial batch failures on every SQS trigger; the API's
    base path mapping."""
    generated_path = out / "chalice.tf.json"
    generated = json.loads(generated_path.read_text())
    generated.pop("terraform", None)
    resources = generated["resource"]
    signed = _sign_in_terraform(resources, name, out, deployment)
    for function in resources.get("aws_lambda_function", {}).values():
        function.pop("filename", None)
        function.pop("source_code_hash", None)
        function.update(signed["deployment.zip"])
        function["code_signing_config_arn"] = deployment["code_signing_config_arn"]
        function["kms_key_arn"] = deployment["lambda_kms_key_arn"]
        function["dead_letter_config"] = {"target_arn": deployment["lambda_dead_letter_queue_arn"]}
    # The log groups exist before the functions first log, so they get a retention and the deployment's key.
    for key, function in resources.get("aws_lambda_function", {}).items():
        resources.setdefault("aws_cloudwatch_log_group", {})[key] = {
            "name": f"/aws/lambda/{function['function_name']}", "retention_in_days": LOG_RETENTION_DAYS,
            "kms_key_id": deployment["lambda_kms_key_arn"]}
    for layer in resources.get("aws_lambda_layer_version", {}).values():
        layer.pop("filename", None)
        layer.pop("source_code_hash", None)
        layer.update(signed["layer-deployment.zip"])
    for mapping in resources.get("aws_lambda_event_source_mapping", {}).values():
        mapping["function_response_types"] = ["ReportBatchItemFailures"]
    for api in resources.get("aws_api_gateway_rest_api", {}).values():
        api["lifecycle"] = {"create_before_destroy": True}
    if name == "dss-api" and env.get("API_DOMAIN_NAME"):
        resources["aws_api_gateway_base_path_mapping"] = {"api": {
            "api_id": "${aws_api_gateway_rest_api.rest_api.id}", "stage_name": API_STAGE,
            "domain_name": env["API_DOMAIN_NAME"], "depends_on": ["aws_api_gateway_deployment.rest_api"]}}
    generated_path.write_text(json.dumps(generated, indent=2))
    (out / "versions.tf").write_text(VERSIONS_TF)


def _sign_in_terraform(resources: dict, name: str, out: pathlib.Path, deployment: dict) -> dict[str, dict]:
    """Upload each zip of `out` (keyed by its content) and sign it; returns the S3 location of each signed copy."""
    bucket = deployment["artifacts_bucket"]
    locations = {}
    for filename in ("deployment.zip", "layer-deployment.zip"):
        if not (out / filename).exists():
            continue
        key = filename.removesuffix(".zip").replace("-", "_")
        digest = hashlib.sha256((out / filename).read_bytes()).hexdigest()
        resources.setdefault("aws_s3_object", {})[f"unsigned_{key}"] = {
            "bucket": bucket, "key": f"unsigned/{name}/{digest}.zip", "source": f"${{path.module}}/{filename}",
            "source_hash": digest, "kms_key_id": deployment["lambda_kms_key_arn"]}
        resources.setdefault("aws_signer_signing_job", {})[key] = {
            "profile_name": deployment["signing_profile_name"],
            "source": {"s3": {"bucket": bucket, "key": f"${{aws_s3_object.unsigned_{key}.key}}",
                              "version": f"${{aws_s3_object.unsigned_{key}.version_id}}"}},
            "destination": {"s3": {"bucket": bucket, "prefix": f"signed/{name}/"}},
            "ignore_signing_job_failure": False}
        locations[filename] = {"s3_bucket": f"${{aws_signer_signing_job.{key}.signed_object[0].s3[0].bucket}}",
                               "s3_key": f"${{aws_signer_signing_job.{key}.signed_object[0].s3[0].key}}"}
    return locations


def finish_cloudformation(name: str, out: pathlib.Path, stage: str, env: dict[str, str], deployment: dict) -> None:
    """The same changes to the SAM template Chalice wrote. `sam deploy --signing-profiles` signs the code here."""
    template = json.loads((out / "sam.json").read_text())
    resources = template["Resources"]
    for resource in list(resources.values()):
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            properties["CodeSigningConfigArn"] = deployment["code_signing_config_arn"]
            properties["KmsKeyArn"] = deployment["lambda_kms_key_arn"]
            properties["DeadLetterQueue"] = {"Type": "SQS", "TargetArn": deployment["lambda_dead_letter_queue_arn"]}
        for event in properties.get("Events", {}).values():
            if event.get("Type") == "SQS":
                event["Properties"]["FunctionResponseTypes"] = ["ReportBatchItemFailures"]
        if resource["Type"] == "AWS::Serverless::Api":
            resources["ApiAccessLogs"] = {
                "Type": "AWS::Logs::LogGroup", "Properties": {
                    "LogGroupName": f"/aws/apigateway/{name}-{stage}", "RetentionInDays": LOG_RETENTION_DAYS,
                    "KmsKeyId": deployment["lambda_kms_key_arn"]}}
            properties["TracingEnabled"] = True
            properties["AccessLogSetting"] = {"DestinationArn": {"Fn::GetAtt": ["ApiAccessLogs", "Arn"]},
                                              "Format": API_ACCESS_LOG_FORMAT}
            resource["Metadata"] = {"checkov": {"skip": [{"id": "CKV_AWS_120", "comment": (
                "No response caching: answers depend on the caller's token and carry short-lived signed URLs")}]}}
    if name == "dss-api" and env.get("API_DOMAIN_NAME"):
        resources["ApiBasePathMapping"] = {
            "Type": "AWS::ApiGateway::BasePathMapping", "DependsOn": ["RestAPIapiStage"],
            "Properties": {"DomainName": env["API_DOMAIN_NAME"], "RestApiId": {"Ref": "RestAPI"},
                           "Stage": API_STAGE}}
    (out / "sam.json").write_text(json.dumps(template, indent=2))


API_ACCESS_LOG_FORMAT = json.dumps({
    "requestId": "$context.requestId", "ip": "$context.identity.sourceIp", "time": "$context.requestTime",
    "method": "$context.httpMethod", "path": "$context.path", "status": "$context.status",
    "length": "$context.responseLength", "latency": "$context.integrationLatency"})


def package(apps: list[str], stage: str, fmt: str, out: pathlib.Path, work: pathlib.Path, environ: dict,
            infra_outputs: dict, account_id: str, region: str) -> dict[str, pathlib.Path]:
    env = lambda_environment({**environ, "DSS_DEPLOYMENT_STAGE": stage}, infra_outputs)
    deployment = deployment_outputs(infra_outputs)
    values = policy_values(env, deployment, infra_outputs, account_id, region)
    built = {}
    for name in apps:
        app = APPS[name]
        project = assemble_project(name, app, work, stage, env, values, deployment, work / ".deployments-cache")
        target = out / name
        run_chalice_package(project, stage, fmt, target, region)
        (finish_terraform if fmt == "terraform" else finish_cloudformation)(name, target, stage, env, deployment)
        logger.info("packaged %s (%s) in %s", name, fmt, target)
        built[name] = target
    return built


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", default=os.environ.get("DSS_DEPLOYMENT_STAGE"))
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "build" / "lambdas")
    parser.add_argument("--work", type=pathlib.Path, default=ROOT / "build" / "chalice-projects")
    parser.add_argument("--format", choices=["terraform", "cloudformation"], default="terraform")
    parser.add_argument("--infra-outputs", type=pathlib.Path, help="`terraform -chdir=infra output -json`")
    parser.add_argument("--account-id", help="AWS account id (default: from STS)")
    parser.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
    parser.add_argument("--apps", nargs="*", choices=sorted(APPS), default=sorted(APPS))
    args = parser.parse_args(argv)
    infra_outputs = json.loads(args.infra_outputs.read_text()) if args.infra_outputs else {}
    try:
        if not args.stage:
            raise PackagingError("no stage: set DSS_DEPLOYMENT_STAGE or pass --stage")
        account_id = args.account_id or _account_id()
        package(args.apps, args.stage, args.format, args.out, args.work, dict(os.environ), infra_outputs,
                account_id, args.region)
    except PackagingError as e:
        print(f"package_lambdas: {e}", file=sys.stderr)
        return 2
    return 0


def _account_id() -> str:
    import boto3
    try:
        return boto3.client("sts").get_caller_identity()["Account"]
    except Exception as e:
        raise PackagingError(f"cannot find the AWS account id ({e}); "
                             "configure AWS credentials or pass --account-id") from e


if __name__ == "__main__":
    sys.exit(main())
