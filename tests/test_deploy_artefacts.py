"""The deployment artefacts, built here offline: `chalice package` for every app in both formats
(scripts/package_lambdas.py), checked by checkov and cfn-lint, and the packaged API run from its own zips."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import zipfile

import pytest

from dss.lambda_api import gateway_routes

from .helpers import tool

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import package_lambdas  # noqa: E402

STAGE = "dev"
ACCOUNT = "123456789012"
REGION = "us-east-1"
# What `terraform -chdir=infra output -json` gives after `make deploy-infra` (values invented).
INFRA_OUTPUTS = {name: {"value": value, "sensitive": False, "type": "string"} for name, value in {
    "es_endpoint": f"https://search-dss-{STAGE}-abc123def.{REGION}.es.amazonaws.com",
    "es_domain": f"dss-{STAGE}",
    "copy_state_machine_arn": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:dss-copy-file-{STAGE}",
    "gcp_credentials_secret": f"dss-gcp-credentials-{STAGE}",
    "lambda_subnet_ids": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
    "lambda_security_group_ids": ["sg-0123456789abcdef0"],
    "lambda_kms_key_arn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555",
    "lambda_dead_letter_queue_arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:dss-lambda-dlq-{STAGE}",
    "code_signing_config_arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:code-signing-config:csc-0123456789abcdef0",
    "signing_profile_name": f"dss_{STAGE}",
    "artifacts_bucket": f"dss-artifacts-{ACCOUNT}-{STAGE}",
}.items()}
QUEUE_OF = {"dss-sync": "sync", "dss-index": "index", "dss-notify": "notify", "dss-checkout": "checkout",
            "dss-copy": "copy"}


def deployment_environ() -> dict:
    """`environment` sourced for the stage, as the Makefile does, with an API domain."""
    out = subprocess.run(["bash", "-c", "set -a; source environment; env -0"], cwd=ROOT, capture_output=True,
                         check=True, env={"PATH": os.environ["PATH"], "DSS_DEPLOYMENT_STAGE": STAGE,
                                          "API_DOMAIN_NAME": f"dss.{STAGE}.example.org"}).stdout
    return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tool("checkov")
    root = tmp_path_factory.mktemp("artefacts")
    apps = sorted(package_lambdas.APPS)
    return {fmt: package_lambdas.package(apps, STAGE, fmt, root / fmt, root / "work", deployment_environ(),
                                         INFRA_OUTPUTS, ACCOUNT, REGION)
            for fmt in ("terraform", "cloudformation")}


def terraform(built, app: str) -> dict:
    return json.loads((built["terraform"][app] / "chalice.tf.json").read_text())


def terraform_resources(built, kind: str) -> list[dict]:
    return [r for app in built["terraform"] for r in terraform(built, app)["resource"].get(kind, {}).values()]


def sam(built, app: str) -> dict:
    return json.loads((built["cloudformation"][app] / "sam.json").read_text())


def test_every_app_is_built_in_both_formats(built):
    assert set(built["terraform"]) == set(built["cloudformation"]) == {
        "dss-api", "dss-sync", "dss-index", "dss-notify", "dss-checkout", "dss-copy"}
    for app, out in built["terraform"].items():
        assert {"chalice.tf.json", "versions.tf", "deployment.zip", "layer-deployment.zip"} <= {
            p.name for p in out.iterdir()}, app
        assert "terraform" not in terraform(built, app)  # versions.tf replaces Chalice's capped versions
    for app, out in built["cloudformation"].items():
        assert {"sam.json", "deployment.zip", "layer-deployment.zip"} <= {p.name for p in out.iterdir()}, app


def test_the_zips_hold_the_app_and_the_layer_holds_the_code_it_needs(built):
    for app, out in built["terraform"].items():
        names = set(zipfile.ZipFile(out / "deployment.zip").namelist())
        assert "app.py" in names and "chalice/app.py" in names, app
        layer = zipfile.ZipFile(out / "layer-deployment.zip")
        site = "python/lib/python3.11/site-packages/"
        layer_names = set(layer.namelist())
        for needed in ("dss/app.py", "dss/events/lambda_entry.py", "dss-api.yml", "connexion/__init__.py",
                       "google/cloud/storage/__init__.py", "opensearchpy/__init__.py", "mangum/__init__.py"):
            assert site + needed in layer_names, (app, needed)
        assert not any(n.startswith(site + "dss/local/") for n in layer_names), "the local stack is not deployed"
        assert not any(n.startswith(site + "pytest/") for n in layer_names), "no test dependencies"
        assert sum(i.file_size for i in layer.infolist()) < 250 * 2 ** 20, "Lambda's unzipped size limit"


def test_functions_have_the_names_handlers_and_settings_the_infrastructure_expects(built):
    functions = {}
    for app in built["terraform"]:
        for function in terraform(built, app)["resource"]["aws_lambda_function"].values():
            functions[function["function_name"]] = function
    assert functions[f"dss-api-{STAGE}"]["handler"] == "app.app"
    # infra/stepfunctions.tf builds the step ARNs from these names.
    for step in ("setup", "copy_parts", "finalize", "write_metadata", "record_failure", "launch"):
        assert f"dss-copy-{STAGE}-{step}" in functions
    for queue in ("sync", "index", "notify", "checkout"):
        assert f"dss-{queue}-{STAGE}-{queue}" in functions
    assert functions[f"dss-api-{STAGE}"]["timeout"] < 60  # answers come within API Gateway's 29 s
    assert functions[f"dss-sync-{STAGE}-sync"]["timeout"] == 900
    for name, function in functions.items():
        assert function["runtime"] == "python3.11", name
        assert function["reserved_concurrent_executions"] > 0, name
        assert function["tracing_config"] == {"mode": "Active"}, name
        assert function["vpc_config"]["subnet_ids"] == INFRA_OUTPUTS["lambda_subnet_ids"]["value"], name
        assert function["code_signing_config_arn"] == INFRA_OUTPUTS["code_signing_config_arn"]["value"], name
        assert function["kms_key_arn"] == INFRA_OUTPUTS["lambda_kms_key_arn"]["value"], name
        assert function["dead_letter_config"]["target_arn"] == INFRA_OUTPUTS["lambda_dead_letter_queue_arn"]["value"]
        assert "filename" not in function and function["s3_key"].startswith("${aws_signer_signing_job."), name
        log_groups = terraform_resources(built, "aws_cloudwatch_log_group")
        assert {"name": f"/aws/lambda/{name}", "retention_in_days": 365,
                "kms_key_id": INFRA_OUTPUTS["lambda_kms_key_arn"]["value"]} in log_groups, name
        env = function["environment"]["variables"]
        assert env["DSS_DEPLOYMENT_STAGE"] == STAGE and env["DSS_ES_ENDPOINT"].startswith("https://search-")
        assert env["DSS_GCP_CREDENTIALS_SECRET"] == f"dss-gcp-credentials-{STAGE}"
        assert env["DSS_COPY_STATE_MACHINE_ARN"] == INFRA_OUTPUTS["copy_state_machine_arn"]["value"]
        assert not [k for k in env if k.startswith(("DSS_LOCAL_", "AWS_")) or k == "GOOGLE_APPLICATION_CREDENTIALS"]
        assert len(json.dumps(env)) < 4096, "Lambda's limit on the environment"


def test_code_is_signed_before_it_is_deployed(built):
    resources = terraform(built, "dss-sync")["resource"]
    jobs = resources["aws_signer_signing_job"]
    assert set(jobs) == {"deployment", "layer_deployment"}
    for job in jobs.values():
        assert job["profile_name"] == INFRA_OUTPUTS["signing_profile_name"]["value"]
        assert job["source"]["s3"]["version"].startswith("${aws_s3_object.unsigned_")
    for upload in resources["aws_s3_object"].values():
        assert upload["bucket"] == INFRA_OUTPUTS["artifacts_bucket"]["value"]
    layer = next(iter(resources["aws_lambda_layer_version"].values()))
    assert layer["s3_key"] == "${aws_signer_signing_job.layer_deployment.signed_object[0].s3[0].key}"


def test_sqs_triggers_report_partial_batch_failures(built):
    for app, queue in QUEUE_OF.items():
        mappings = terraform(built, app)["resource"]["aws_lambda_event_source_mapping"]
        assert len(mappings) == 1, app
        mapping = next(iter(mappings.values()))
        assert mapping["function_response_types"] == ["ReportBatchItemFailures"]
        assert mapping["event_source_arn"].endswith(f":dss-{queue}-{STAGE}")
        events = [event for resource in sam(built, app)["Resources"].values()
                  for event in resource.get("Properties", {}).get("Events", {}).values()]
        assert [e["Properties"]["FunctionResponseTypes"] for e in events] == [["ReportBatchItemFailures"]]
    assert "aws_lambda_event_source_mapping" not in terraform(built, "dss-api")["resource"]


def test_api_gateway_serves_exactly_the_spec_routes(built):
    swagger = json.loads(terraform(built, "dss-api")["locals"]["chalice_api_swagger"])
    declared = {path: sorted(m.upper() for m in ops if not m.startswith("x-")) for path, ops in swagger["paths"].items()}
    assert declared == gateway_routes(ROOT / "dss-api.yml")
    for operations in swagger["paths"].values():
        for operation in operations.values():
            assert operation["x-amazon-apigateway-integration"]["type"] == "aws_proxy"
    resources = terraform(built, "dss-api")["resource"]
    assert resources["aws_api_gateway_rest_api"]["rest_api"]["endpoint_configuration"] == {"types": ["REGIONAL"]}
    mapping = resources["aws_api_gateway_base_path_mapping"]["api"]
    assert mapping["domain_name"] == f"dss.{STAGE}.example.org" and mapping["stage_name"] == "api"
    assert sam(built, "dss-api")["Resources"]["ApiBasePathMapping"]["Properties"]["DomainName"] == mapping[
        "domain_name"]


def test_each_role_carries_its_rendered_iam_template(built):
    env = package_lambdas.lambda_environment({**deployment_environ(), "DSS_DEPLOYMENT_STAGE": STAGE}, INFRA_OUTPUTS)
    values = package_lambdas.policy_values(env, package_lambdas.deployment_outputs(INFRA_OUTPUTS), INFRA_OUTPUTS,
                                           ACCOUNT, REGION)
    assert values["es_domain"] == f"dss-{STAGE}" and values["account_id"] == ACCOUNT
    policies = {json.dumps(package_lambdas.render_policy(name, values), sort_keys=True)
                for name in ("dss-api", "dss-sync", "dss-index", "dss-notify", "dss-checkout", "dss-copy",
                             "dss-copy-launch")}
    attached = set()
    for app in built["terraform"]:
        for policy in terraform(built, app)["resource"]["aws_iam_role_policy"].values():
            attached.add(json.dumps(json.loads(policy["policy"]), sort_keys=True))
    assert attached == policies


def _checkov(directory: pathlib.Path, frameworks: list[str]) -> list[dict]:
    run = subprocess.run([str(tool("checkov")), "-d", str(directory), "--framework", *frameworks,
                          "--skip-download", "-o", "json"], capture_output=True, text=True, timeout=300)
    reports = json.loads(run.stdout)
    return reports if isinstance(reports, list) else [reports]


def test_checkov_finds_no_failed_check_in_the_generated_templates(built):
    root = built["terraform"]["dss-api"].parent.parent
    reports = _checkov(root, ["terraform_json", "cloudformation"])
    summaries = {r["check_type"]: r["summary"] for r in reports}
    assert set(summaries) == {"terraform_json", "cloudformation"}, summaries
    for check_type, summary in summaries.items():
        assert summary["parsing_errors"] == 0, (check_type, summary)
        assert summary["passed"] > 100, (check_type, summary)
    failed = [(f["check_id"], f["resource"], f["file_path"]) for r in reports for f in r["results"]["failed_checks"]]
    assert failed == []
    for report in reports:
        for skipped in report["results"]["skipped_checks"]:
            reason = skipped["check_result"].get("suppress_comment", "")
            assert reason and reason != "No comment provided", skipped["check_id"]


def test_cfn_lint_passes_on_the_generated_cloudformation(built):
    templates = [str(out / "sam.json") for out in built["cloudformation"].values()]
    run = subprocess.run([str(tool("cfn-lint")), *templates], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def test_cfn_lint_would_catch_a_broken_template(built, tmp_path):
    template = sam(built, "dss-sync")
    function = next(r for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::Function")
    function["Properties"]["Timeout"] = 9000  # beyond Lambda's 900 s
    (tmp_path / "sam.json").write_text(json.dumps(template))
    run = subprocess.run([str(tool("cfn-lint")), str(tmp_path / "sam.json")], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode != 0 and "9000" in run.stdout


def test_the_packaged_api_answers_from_its_own_zips(built, api, stack, tmp_path):
    """The API as Lambda would load it: only the function zip and the layer on the path, no site-packages."""
    out = built["terraform"]["dss-api"]
    zipfile.ZipFile(out / "deployment.zip").extractall(tmp_path / "task")
    zipfile.ZipFile(out / "layer-deployment.zip").extractall(tmp_path / "opt")
    site = tmp_path / "opt" / "python" / "lib" / "python3.11" / "site-packages"
    script = ("import json, sys; sys.path[:0] = sys.argv[1:3]; import app; "
              "print(json.dumps(app.app({'method': 'GET', 'path': '/v1/bundles/all', "
              "'params': {'replica': 'aws', 'prefix': '0000000'}, 'headers': {}, 'body': None}, None)))")
    run = subprocess.run([sys.executable, "-S", "-c", script, str(tmp_path / "task"), str(site)],
                         capture_output=True, text=True, timeout=120, env={**stack.env(), "PATH": os.environ["PATH"]})
    assert run.returncode == 0, run.stderr[-3000:]
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    over_http = api.request("GET", "/v1/bundles/all", params={"replica": "aws", "prefix": "0000000"})
    assert answer["statusCode"] == over_http.status_code == 200
    # Other tests on this stack may have written bundles under the prefix: the two answers agree, whatever they hold.
    assert json.loads(answer["body"])["bundles"] == over_http.json()["bundles"]


def test_missing_settings_and_outputs_fail_early(tmp_path):
    environ = deployment_environ()
    incomplete = {k: v for k, v in INFRA_OUTPUTS.items() if k not in ("code_signing_config_arn", "es_endpoint")}
    with pytest.raises(package_lambdas.PackagingError, match="code_signing_config_arn"):
        package_lambdas.package(["dss-sync"], STAGE, "terraform", tmp_path / "o", tmp_path / "w",
                                {**environ, "DSS_ES_ENDPOINT": "https://search-x-1.es.amazonaws.com"}, incomplete,
                                ACCOUNT, REGION)
    with pytest.raises(package_lambdas.PackagingError, match="DSS_ES_ENDPOINT"):
        package_lambdas.package(["dss-sync"], STAGE, "terraform", tmp_path / "o", tmp_path / "w",
                                {**environ, "DSS_ES_ENDPOINT": ""}, incomplete, ACCOUNT, REGION)
    with pytest.raises(package_lambdas.PackagingError, match="collections_table"):
        package_lambdas.package(["dss-sync"], STAGE, "terraform", tmp_path / "o", tmp_path / "w",
                                {**environ, "DSS_COLLECTIONS_TABLE": ""}, INFRA_OUTPUTS, ACCOUNT, REGION)
    with pytest.raises(package_lambdas.PackagingError, match="DSS_ES_ENDPOINT point at this machine"):
        package_lambdas.package(["dss-sync"], STAGE, "terraform", tmp_path / "o", tmp_path / "w", environ,
                                {k: v for k, v in INFRA_OUTPUTS.items() if k != "es_endpoint"}, ACCOUNT, REGION)
    with pytest.raises(package_lambdas.PackagingError, match="local"):
        package_lambdas.package(["dss-sync"], "local", "terraform", tmp_path / "o", tmp_path / "w", environ,
                                INFRA_OUTPUTS, ACCOUNT, REGION)
    assert not (tmp_path / "o").exists()
