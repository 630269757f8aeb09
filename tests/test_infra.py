"""The deployment pieces: infra/ (Terraform, checked with checkov and against the code's names and schemas), the GCS
event relay (published through into the local stack's SNS and SQS), and the iam/ policy templates."""
from __future__ import annotations

import ast
import datetime
import http.server
import importlib.util
import json
import os
import pathlib
import re
import string
import subprocess
import threading
import types
import uuid as uuidlib

import boto3
import pytest

from dss.events.bus import EVENT_CONSUMERS, Topology
from dss.events.records import ObjectEvent, gcs_object, object_events
from dss.notify import delivery
from dss.storage import async_state

from .helpers import tool

ROOT = pathlib.Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
IAM = ROOT / "iam"
RELAY_SOURCE = INFRA / "gcs-event-relay" / "main.py"
COPY_APP = ROOT / "daemons" / "dss-copy" / "app.py"
COPY_DEFINITION = ROOT / "daemons" / "dss-copy" / "copy-file.asl.json"

# Lambda timeouts (s) of each queue's consumer; the queue hides a received message at least 6x as long.
CONSUMER_TIMEOUTS = {"sync": 900, "index": 300, "notify": 300, "checkout": 900, "copy": 60}
# A realistic floor: the configuration passes about 360 checks today; far fewer means checkov stopped seeing it.
MIN_PASSED_CHECKS = 300
SKIP_COMMENT = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?$")


def tools_python(code: str, stdin: str = "") -> object:
    """Run `code` with the tools virtualenv's Python (checkov's hcl2 parser, policy_sentry); its stdout as JSON."""
    result = subprocess.run([str(tool("python")), "-c", code], input=stdin, capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --- Terraform ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkov_report() -> dict:
    # BC_SKIP_MAPPING: no attempt to download check metadata from the vendor's API.
    result = subprocess.run(
        [str(tool("checkov")), "-d", "infra", "--framework", "terraform", "-o", "json", "--compact",
         "--skip-download"],
        capture_output=True, text=True, cwd=ROOT, timeout=300, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    assert result.stdout.strip(), f"checkov printed nothing (exit {result.returncode}): {result.stderr[-2000:]}"
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    [terraform] = [r for r in reports if r.get("check_type") == "terraform"]
    return terraform


def test_checkov_passes_the_terraform(checkov_report):
    summary = checkov_report["summary"]
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
              for c in checkov_report["results"].get("failed_checks", [])]
    assert summary["failed"] == 0 and not failed, "\n".join(failed)
    assert summary["parsing_errors"] == 0, checkov_report["results"].get("parsing_errors")
    assert summary["passed"] >= MIN_PASSED_CHECKS, summary
    # Every inline skip was applied to a check checkov ran, and carries its reason through.
    skipped = checkov_report["results"].get("skipped_checks", [])
    assert len(skipped) == summary["skipped"] == len(inline_skips()), [c["check_id"] for c in skipped]
    assert all(c["check_result"].get("suppress_comment", "").strip() for c in skipped)


def inline_skips() -> list[tuple[str, str, str]]:
    """(file:line, check id, reason) of every `checkov:skip` comment in infra/."""
    skips = []
    for path in sorted(INFRA.rglob("*.tf")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "checkov:skip" in line:
                match = SKIP_COMMENT.search(line)
                assert match, f"{path.name}:{number}: unparseable skip: {line.strip()}"
                skips.append((f"{path.name}:{number}", match.group(1), (match.group(2) or "").strip()))
    return skips


def test_every_checkov_skip_says_why():
    skips = inline_skips()
    assert skips, "no skips found: the pattern no longer matches the comments"
    unexplained = [where for where, _, reason in skips if len(reason) < 20]
    assert not unexplained, f"checkov:skip without a real reason at {unexplained}"


@pytest.fixture(scope="module")
def terraform() -> dict:
    """infra/*.tf parsed with python-hcl2 (checkov's parser): {'resource': {type: {name: body}}, 'locals': {...}}."""
    parsed = tools_python(
        "import hcl2, json, pathlib, sys\n"
        "print(json.dumps({p.name: hcl2.load(open(p)) for p in sorted(pathlib.Path('infra').glob('*.tf'))}))")
    merged: dict = {"resource": {}, "locals": {}, "variable": {}, "output": {}}
    for blocks in parsed.values():
        for block in blocks.get("resource", []):
            for kind, named in block.items():
                merged["resource"].setdefault(kind, {}).update(named)
        for block in blocks.get("locals", []):
            merged["locals"].update({k: v[0] if isinstance(v, list) and len(v) == 1 else v for k, v in block.items()})
        for key in ("variable", "output"):
            for block in blocks.get(key, []):
                merged[key].update(block)
    return merged


def attr(body: dict, name: str):
    value = body[name]
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def test_queues_and_topics_are_named_as_the_code_names_them(terraform):
    code = Topology("${var.stage}")
    queues, topics = terraform["resource"]["aws_sqs_queue"], terraform["resource"]["aws_sns_topic"]
    assert set(terraform["locals"]["queue_consumer_timeouts"]) == set(code.queues)
    assert attr(queues["queue"], "name") == code.queue("${each.key}")
    assert attr(queues["dead_letter"], "name") == code.dead_letter_queue("${each.key}")
    assert attr(topics["s3_events"], "name") == code.topic("aws")
    assert attr(topics["gs_events"], "name") == code.topic("gcp")
    assert terraform["locals"]["event_consumers"] == list(EVENT_CONSUMERS)
    assert terraform["locals"]["max_receives"] == code.max_receives == 5
    subscription = terraform["resource"]["aws_sns_topic_subscription"]["event_queue"]
    assert attr(subscription, "raw_message_delivery") is True


def test_queue_visibility_is_six_times_the_consumer_timeout(terraform):
    assert terraform["locals"]["queue_consumer_timeouts"] == CONSUMER_TIMEOUTS
    assert attr(terraform["resource"]["aws_sqs_queue"]["queue"], "visibility_timeout_seconds") == "${6 * each.value}"
    assert all(6 * t <= 43200 for t in CONSUMER_TIMEOUTS.values())  # SQS's maximum visibility timeout


TTL_ATTRIBUTES = {"async_state": async_state.TTL_ATTRIBUTE, "notifications": delivery.TTL_ATTRIBUTE}


def test_tables_match_the_schemas_the_code_creates(stack, settings, terraform):
    """The local stack creates its tables with the code's own ensure_* functions; Terraform must declare the same."""
    dynamodb = boto3.client("dynamodb")
    declared = terraform["resource"]["aws_dynamodb_table"]
    for resource, name in (("async_state", settings.async_state_table), ("collections", settings.collections_table),
                           ("subscriptions", settings.subscriptions_table),
                           ("notifications", settings.notifications_table)):
        table = declared[resource]
        assert attr(table, "billing_mode") == "PAY_PER_REQUEST"
        created = dynamodb.describe_table(TableName=name)["Table"]
        keys = {k["KeyType"]: k["AttributeName"] for k in created["KeySchema"]}
        assert attr(table, "hash_key") == keys["HASH"], resource
        assert (attr(table, "range_key") if "range_key" in table else None) == keys.get("RANGE"), resource
        indices = {i["IndexName"]: {k["KeyType"]: k["AttributeName"] for k in i["KeySchema"]}
                   for i in created.get("GlobalSecondaryIndexes", [])}
        # Terraform declares exactly the key attributes of the table and its indices, with the code's types.
        declared_types = {attr(a, "name"): attr(a, "type") for a in table["attribute"]}
        assert set(declared_types) == set(keys.values()) | {n for i in indices.values() for n in i.values()}
        created_types = {a["AttributeName"]: a["AttributeType"] for a in created["AttributeDefinitions"]}
        assert all(declared_types[n] == t for n, t in created_types.items()), resource
        assert {attr(i, "name"): {"HASH": attr(i, "hash_key")} for i in table.get("global_secondary_index", [])} \
            == indices, resource
        # The local DynamoDB server (dynalite) has no TTL: the code's TTL attributes are compared instead.
        assert (attr(attr(table, "ttl"), "attribute_name") if "ttl" in table else None) == TTL_ATTRIBUTES.get(
            resource), resource


def test_copy_state_machine_placeholders_name_dss_copy_functions(terraform):
    placeholders = set(re.findall(r"\$\{(\w+)\}", COPY_DEFINITION.read_text()))
    functions = terraform["locals"]["copy_step_functions"]
    assert set(functions) == placeholders
    defined = {node.name for node in ast.parse(COPY_APP.read_text()).body if isinstance(node, ast.FunctionDef)}
    assert set(functions.values()) <= defined
    machine = terraform["resource"]["aws_sfn_state_machine"]["copy_file"]
    assert "copy-file.asl.json" in attr(machine, "definition")
    assert attr(attr(machine, "tracing_configuration"), "enabled") is True


def packager_constants() -> dict:
    """The module-level constants of scripts/package_lambdas.py (the deploy), read without importing it."""
    tree = ast.parse((ROOT / "scripts" / "package_lambdas.py").read_text())
    return {target.id: node.value for node in tree.body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)}


def test_outputs_the_deploy_reads(terraform):
    constants = packager_constants()
    read = set(ast.literal_eval(constants["INFRA_OUTPUTS"])) | set(ast.literal_eval(constants["DEPLOYMENT_OUTPUTS"]))
    expected = read | {"api_domain_name", "queue_arns", "dead_letter_queue_arns"}
    assert expected <= set(terraform["output"]), expected - set(terraform["output"])
    assert attr(terraform["output"]["es_endpoint"], "value").startswith("https://")


# --- GCS event relay ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def relay_module() -> types.ModuleType:
    """infra/gcs-event-relay/main.py, imported as it is deployed (without the GCP runtime)."""
    spec = importlib.util.spec_from_file_location("gcs_event_relay_main", RELAY_SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeMetadataServer:
    """The metadata server's identity endpoint on 127.0.0.1: a token naming the audience it was asked for."""

    def __init__(self):
        self.requests: list[tuple[str, dict]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.path, dict(self.headers)))
                if self.headers.get("Metadata-Flavor") != "Google":
                    self.send_error(403)
                    return
                audience = dict(p.split("=", 1) for p in self.path.split("?", 1)[1].split("&"))["audience"]
                body = f"id-token-for.{audience}.signature".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/computeMetadata/v1/instance/service-accounts/" \
                   f"default/identity"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.server.shutdown()
        self.server.server_close()


def test_relay_publishes_object_resources_only(relay_module):
    resource = gcs_object("dss-primary-test", "blobs/abc", 42, event_time="2024-01-02T03:04:05.678Z")
    assert json.loads(relay_module.object_message(resource)) == resource
    without_kind = {k: v for k, v in resource.items() if k != "kind"}
    assert json.loads(relay_module.object_message(without_kind))["kind"] == "storage#object"
    assert relay_module.object_message({**resource, "kind": "storage#bucket"}) is None
    assert relay_module.object_message({"kind": "storage#object", "bucket": "b"}) is None
    assert relay_module.object_message(["not", "an", "object"]) is None


def test_relay_asks_the_metadata_server_for_an_id_token(relay_module):
    with FakeMetadataServer() as metadata:
        token = relay_module.google_id_token("dss-gcs-event-relay-test", url=metadata.url)
    assert token == "id-token-for.dss-gcs-event-relay-test.signature"
    [(path, headers)] = metadata.requests
    assert "format=full" in path and headers["Metadata-Flavor"] == "Google"


def test_relay_credentials_are_renewed_before_they_expire(relay_module):
    now = [1_700_000_000.0]
    tokens = iter(f"token-{i}" for i in range(10))
    calls = []

    class FakeSTS:
        def assume_role_with_web_identity(self, **kwargs):
            calls.append(kwargs)
            expires = datetime.datetime.fromtimestamp(now[0] + 3600, datetime.timezone.utc)
            n = len(calls)
            return {"Credentials": {"AccessKeyId": f"ASIA{n}", "SecretAccessKey": f"secret{n}",
                                    "SessionToken": f"session{n}", "Expiration": expires}}

    credentials = relay_module.WebIdentityCredentials("arn:aws:iam::123456789012:role/dss-gcs-relay-test",
                                                      lambda: next(tokens), sts=FakeSTS(), clock=lambda: now[0])
    first = credentials.get()
    now[0] += 3600 - relay_module.REFRESH_MARGIN_SECONDS - 1
    assert credentials.get() is first and len(calls) == 1
    now[0] += 2
    assert credentials.get()["aws_access_key_id"] == "ASIA2"
    assert [c["WebIdentityToken"] for c in calls] == ["token-0", "token-1"]
    assert calls[0]["RoleArn"].endswith(":role/dss-gcs-relay-test")


def test_relay_event_arrives_on_the_queue_as_an_object_event(stack, relay_module, monkeypatch):
    """The entry point, end to end: ID token from a (fake) metadata server, STS AssumeRoleWithWebIdentity and SNS in
    the local stack's moto, a queue subscribed with raw delivery as Terraform subscribes the sync and index queues."""
    topology = Topology(f"relaytest{uuidlib.uuid4().hex[:8]}")  # a topic of its own: the stack's worker ignores it
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic_arn = sns.create_topic(Name=topology.topic("gcp"))["TopicArn"]
    queue_url = sqs.create_queue(QueueName=topology.queue("index"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    monkeypatch.setenv("DSS_GS_EVENTS_TOPIC_ARN", topic_arn)
    monkeypatch.setenv("DSS_RELAY_ROLE_ARN", "arn:aws:iam::123456789012:role/dss-gcs-relay-test")
    monkeypatch.setenv("DSS_RELAY_AUDIENCE", "dss-gcs-event-relay-test")
    monkeypatch.setattr(relay_module, "_relay", None)
    resource = {**gcs_object("dss-primary-relaytest", "bundles/0e1f.2024-01-02T030405.678000Z", 1234,
                             event_time="2024-01-02T03:04:05.678Z"),
                "id": "dss-primary-relaytest/bundles/0e1f/1", "generation": "1704164645678000",
                "contentType": "application/json", "storageClass": "STANDARD"}
    try:
        with FakeMetadataServer() as metadata:
            monkeypatch.setattr(relay_module, "METADATA_IDENTITY_URL", metadata.url)
            relay_module.relay(types.SimpleNamespace(data=resource))
            relay_module.relay(types.SimpleNamespace(data={"kind": "storage#bucket", "name": "x"}))  # not relayed
        assert len(metadata.requests) == 1  # the credentials are reused
        assert relay_module._relay.credentials.get()["aws_session_token"]
        received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=5)["Messages"]
        assert [object_events(m["Body"]) for m in received] == [
            [ObjectEvent("gcp", "dss-primary-relaytest", "bundles/0e1f.2024-01-02T030405.678000Z", 1234,
                         "2024-01-02T03:04:05.678Z")]]
        assert json.loads(received[0]["Body"]) == resource  # raw delivery: the object resource itself
        assert not sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages")
    finally:
        sqs.delete_queue(QueueUrl=queue_url)
        sns.delete_topic(TopicArn=topic_arn)


def test_relay_settings_are_the_ones_terraform_sets(terraform):
    read = set(re.findall(r'environ\["(\w+)"\]', RELAY_SOURCE.read_text()))
    assert read == {"DSS_GS_EVENTS_TOPIC_ARN", "DSS_RELAY_ROLE_ARN", "DSS_RELAY_AUDIENCE"}, read  # as it reads them
    function = terraform["resource"]["google_cloudfunctions2_function"]["gcs_relay"]
    assert read <= set(attr(attr(function, "service_config"), "environment_variables"))
    assert attr(attr(function, "build_config"), "entry_point") == "relay"
    trigger = attr(function, "event_trigger")
    assert attr(trigger, "event_type") == "google.cloud.storage.object.v1.finalized"
    assert attr(attr(trigger, "event_filters"), "value") == "${google_storage_bucket.primary.name}"


# --- IAM policy templates ----------------------------------------------------------------------------------------

TEMPLATES = sorted(IAM.glob("*.json"))
SAMPLE = {
    "account_id": "123456789012", "region": "us-east-1", "stage": "dev",
    "s3_bucket": "dss-primary-dev", "s3_checkout_bucket": "dss-checkout-dev", "s3_staging_bucket": "dss-staging-dev",
    "async_state_table": "dss-async-state-dev", "collections_table": "dss-collections-dev",
    "subscriptions_table": "dss-subscriptions-dev", "notifications_table": "dss-notifications-dev",
    "es_domain": "dss-dev", "gcp_credentials_secret": "dss-gcp-credentials-dev",
    "copy_state_machine_arn": "arn:aws:states:us-east-1:123456789012:stateMachine:dss-copy-file-dev",
    "notification_sender": "dss@example.org",
    "lambda_kms_key_arn": "arn:aws:kms:us-east-1:123456789012:key/0e1f2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7",
    "lambda_dead_letter_queue_arn": "arn:aws:sqs:us-east-1:123456789012:dss-lambda-dlq-dev",
}
# Template -> the queue whose Lambda event source it consumes.
CONSUMERS = {"dss-sync": "sync", "dss-index": "index", "dss-notify": "notify", "dss-checkout": "checkout",
             "dss-copy-launch": "copy"}
# Actions AWS authorizes only on "*" (no resource-level permissions), as iam/README.md lists them.
STAR_RESOURCE_ACTIONS = {"ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets", "xray:PutTelemetryRecords",
                         "xray:PutTraceSegments"}


def documented_placeholders() -> set[str]:
    return set(re.findall(r"^\| `\$\{(\w+)\}` \|", (IAM / "README.md").read_text(), flags=re.M))


def rendered(path: pathlib.Path) -> dict:
    return json.loads(string.Template(path.read_text()).substitute(SAMPLE))


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_every_lambda_has_a_template():
    assert {p.stem for p in TEMPLATES} == {"dss-api", "dss-sync", "dss-index", "dss-notify", "dss-checkout",
                                           "dss-copy", "dss-copy-launch"}


def test_placeholders_are_documented():
    assert documented_placeholders() == set(SAMPLE)
    for path in TEMPLATES:
        used = {m.group("named") or m.group("braced") for m in string.Template.pattern.finditer(path.read_text())
                if m.group("named") or m.group("braced")}
        assert used <= documented_placeholders(), f"{path.name}: undocumented {used - documented_placeholders()}"


def test_star_resource_actions_are_documented():
    readme = (IAM / "README.md").read_text()
    assert all(f"`{action}`" in readme for action in STAR_RESOURCE_ACTIONS)


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_template_renders_to_a_least_privilege_policy(path):
    policy = rendered(path)
    assert policy["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in policy["Statement"]]
    assert len(sids) == len(set(sids)), sids
    for statement in policy["Statement"]:
        where = f"{path.name} {statement['Sid']}"
        assert statement["Effect"] == "Allow" and "NotAction" not in statement and "NotResource" not in statement
        actions, resources = as_list(statement["Action"]), as_list(statement["Resource"])
        assert not [a for a in actions if "*" in a], f"{where}: wildcard action"
        services = {a.split(":")[0] for a in actions}
        assert len(services) == 1, f"{where}: one service per statement, not {services}"
        for resource in resources:
            if resource == "*":
                assert set(actions) <= STAR_RESOURCE_ACTIONS, f"{where}: '*' resource"
                continue
            # Resources of the statement's service, in this account (S3 ARNs name no account).
            assert resource.split(":")[2] == next(iter(services)), f"{where}: {resource}"
            assert resource.startswith("arn:aws:s3:::") or ":123456789012:" in resource, f"{where}: {resource}"


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_template_grants_logs_secret_and_its_queue(path):
    statements = rendered(path)["Statement"]

    def allowed(action: str) -> set[str]:
        return {r for s in statements if action in as_list(s["Action"]) for r in as_list(s["Resource"])}

    log_groups = allowed("logs:PutLogEvents")
    assert log_groups and all(":log-group:/aws/lambda/dss-" in r and "-dev" in r for r in log_groups)
    assert allowed("secretsmanager:GetSecretValue") == {
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:dss-gcp-credentials-dev-??????"}
    queue = CONSUMERS.get(path.stem)
    if queue:
        arn = f"arn:aws:sqs:us-east-1:123456789012:dss-{queue}-dev"
        for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                       "sqs:ChangeMessageVisibility"):
            assert allowed(action) == {arn}, (path.stem, action)


def test_template_actions_and_condition_keys_exist_in_iam():
    """Every action and condition key is looked up in policy_sentry's IAM database (tools virtualenv)."""
    used = {"actions": set(), "conditions": set()}
    for path in TEMPLATES:
        for statement in rendered(path)["Statement"]:
            used["actions"].update(as_list(statement["Action"]))
            for operator in statement.get("Condition", {}).values():
                used["conditions"].update(operator)
    unknown = tools_python(
        "import json, sys\n"
        "from policy_sentry.querying.all import get_all_actions\n"
        "from policy_sentry.querying.conditions import get_condition_keys_for_service\n"
        "used = json.load(sys.stdin)\n"
        "actions = get_all_actions(lowercase=True)\n"
        "bad = [a for a in used['actions'] if a.lower() not in actions]\n"
        "for key in used['conditions']:\n"
        "    service = key.split(':')[0]\n"
        "    if service != 'aws' and key.lower() not in {k.lower() for k in get_condition_keys_for_service(service)}:\n"
        "        bad.append(key)\n"
        "print(json.dumps(bad))\n",
        stdin=json.dumps({k: sorted(v) for k, v in used.items()}))
    assert unknown == [], f"not in IAM: {unknown}"
    assert len(used["actions"]) > 30


def test_checkout_destination_grants_never_reach_this_account():
    """The only wildcard buckets (users' checkout destinations) are limited to buckets of other accounts."""
    found = set()
    for path in TEMPLATES:
        for statement in rendered(path)["Statement"]:
            if any(r.startswith("arn:aws:s3:::*") for r in as_list(statement["Resource"])):
                found.add((path.stem, statement["Sid"]))
                assert statement["Condition"] == {"StringNotEquals": {"s3:ResourceAccount": "123456789012"}}, \
                    f"{path.name} {statement['Sid']}"
    # The API probes and the checkout daemon writes users' buckets: were these statements gone, so would checkouts.
    assert found == {("dss-api", "ProbeCheckoutDestinations"), ("dss-api", "FindCheckoutDestinations"),
                     ("dss-checkout", "CheckoutDestinations"), ("dss-checkout", "FindCheckoutDestinations")}
