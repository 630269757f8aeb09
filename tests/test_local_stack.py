"""Tests of the local cloud stack launcher (dss.local.stack) and the development issuer (dss.local.issuer).

Each stack runs on free 127.0.0.1 ports in a temporary directory, so this module can run next to
another stack (or `make run`) on the same machine.
"""
from __future__ import annotations

import datetime
import json
import os
import pathlib
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid

import boto3
import botocore.config
import botocore.exceptions
import jwt
import psutil
import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.oauth2 import service_account

from dss.local import issuer
from dss.local.stack import (PUBLIC_PORTS, SEAWEED_PORT_FLAGS, LocalStack, claim_port, free_ports,
                             listening_ports)

from .helpers import wait_for

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
S3_BUCKET_VARS = ("DSS_S3_BUCKET", "DSS_S3_CHECKOUT_BUCKET", "DSS_S3_STAGING_BUCKET")
GS_BUCKET_VARS = ("DSS_GS_BUCKET", "DSS_GS_CHECKOUT_BUCKET", "DSS_GS_STAGING_BUCKET")

FAKE_API = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    status = 200 if scope["path"] == "/v1/swagger.json" else 404
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"swagger": "2.0"}'})
'''


# --- helpers ---------------------------------------------------------------------------------------

def s3_client(env: dict[str, str], secret: str | None = None):
    """A boto3 S3 client configured only from the stack's env() values."""
    return boto3.session.Session().client(
        "s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"], region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=secret or env["AWS_SECRET_ACCESS_KEY"],
        config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


def gcs_client(env: dict[str, str]) -> storage.Client:
    return storage.Client(project=env["GCP_PROJECT_NAME"], credentials=AnonymousCredentials(),
                          client_options={"api_endpoint": env["STORAGE_EMULATOR_HOST"]})


def process_tree(pids) -> list[psutil.Process]:
    processes = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            processes += [process] + process.children(recursive=True)
        except psutil.NoSuchProcess:
            pass
    return processes


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def my_children() -> set[int]:
    return {p.pid for p in alive(psutil.Process().children(recursive=True))}


def new_stack(root: pathlib.Path, **kwargs) -> LocalStack:
    return LocalStack(root, pick_ports=True, with_api=kwargs.pop("with_api", False), **kwargs)


# --- the shared stack ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with new_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture(scope="module")
def env(stack) -> dict[str, str]:
    return stack.env()


def test_free_ports_are_distinct_and_bindable():
    ports = free_ports([f"p{i}" for i in range(20)])
    assert len(set(ports.values())) == 20
    for port in ports.values():
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
    assert not set(ports.values()) & set(free_ports([f"q{i}" for i in range(20)]).values())  # claimed: not again


def test_a_port_claimed_by_another_process_is_not_claimed_until_it_exits():
    [port] = free_ports(["mine"]).values()
    assert claim_port(port)  # already ours
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        other = sock.getsockname()[1]
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from dss.local.stack import claim_port; "
                               f"print(claim_port({other}), flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    try:
        assert holder.stdout.readline().strip() == "True"
        assert not claim_port(other)
    finally:
        holder.communicate("", timeout=30)
    assert claim_port(other)  # the claim went with the process


def test_a_stack_that_picks_its_ports_starts_on_others_if_one_is_taken(tmp_path):
    stack = new_stack(tmp_path / "stack")
    with socket.socket() as taken:  # some other program listens on the port picked for S3 before S3 starts
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", stack.ports["s3"]))
        taken.listen()
        with stack:
            assert stack.ports["s3"] != taken.getsockname()[1]
            env = stack.env()
            s3_client(env).put_object(Bucket=env["DSS_S3_BUCKET"], Key="k", Body=b"on other ports")
            assert listening_ports(stack.pids()["s3"]) >= {("127.0.0.1", stack.ports["s3"])}


def test_children_listen_on_loopback_and_configured_ports_only(stack):
    expected = {
        "s3": {stack.ports[name] for name in SEAWEED_PORT_FLAGS},
        "gcs": {stack.ports["gcs"]},
        "moto": {stack.ports["moto"]},
        "dynamodb": {stack.ports["dynamodb"]},
        "search": {stack.ports["search"]},
        "issuer": {stack.ports["issuer"]},
    }
    assert set(stack.pids()) == set(expected)
    for name, pid in stack.pids().items():
        sockets = listening_ports(pid)
        assert {ip for ip, _ in sockets} == {"127.0.0.1"}, (name, sockets)
        assert {port for _, port in sockets} == expected[name], name


def test_env_values(stack, env):
    assert env["DSS_DEPLOYMENT_STAGE"] == "local"
    assert env["DSS_API_URL"] == f"http://127.0.0.1:{stack.ports['api']}"  # so that "$DSS_API_URL/v1/..." works
    assert env["OPENID_PROVIDER"] == f"http://127.0.0.1:{stack.ports['issuer']}/"
    assert env["AWS_ENDPOINT_URL_S3"] == f"http://127.0.0.1:{stack.ports['s3']}"
    for service in ("SQS", "SNS", "SECRETS_MANAGER", "SFN", "STS"):
        assert env[f"AWS_ENDPOINT_URL_{service}"] == f"http://127.0.0.1:{stack.ports['moto']}"
    assert env["AWS_ENDPOINT_URL_DYNAMODB"] == f"http://127.0.0.1:{stack.ports['dynamodb']}"
    assert (os.environ.get("DSS_LOCAL_DEV_EMAIL") or "dev@example.org") in env["ADMIN_USER_EMAILS"].split(",")
    assert "AWS_PROFILE" not in env
    assert pathlib.Path(env["GOOGLE_APPLICATION_CREDENTIALS"]).is_file()
    assert env["DSS_LOCAL_DIR"] == str(stack.root)


def test_env_file_matches_env(stack, env):
    lines = (stack.root / "env").read_text().splitlines()
    assert "unset AWS_PROFILE" in " ".join(lines)
    exported = {}
    for line in lines:
        words = shlex.split(line, comments=True)
        if words[:1] == ["export"]:
            key, value = words[1].split("=", 1)
            exported[key] = value
    assert exported == env
    # The file is valid shell: sourcing it yields the same values.
    script = f"source {shlex.quote(str(stack.root / 'env'))} && echo \"$DSS_API_URL|${{AWS_PROFILE-unset}}\""
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, "AWS_PROFILE": "real-profile"}).stdout.strip()
    assert out == f"{env['DSS_API_URL']}|unset"


def test_buckets_exist_on_both_replicas(env):
    s3 = s3_client(env)
    for var in S3_BUCKET_VARS:
        s3.head_bucket(Bucket=env[var])
    gcs = gcs_client(env)
    for var in GS_BUCKET_VARS:
        assert gcs.lookup_bucket(env[var]) is not None, env[var]
    assert env["DSS_S3_BUCKET"] == (os.environ.get("DSS_S3_BUCKET") or "dss-primary-local")


def test_s3_round_trip(env):
    s3 = s3_client(env)
    key = f"test/{uuid.uuid4()}"
    s3.put_object(Bucket=env["DSS_S3_BUCKET"], Key=key, Body=b"hello s3", Metadata={"a": "b"})
    got = s3.get_object(Bucket=env["DSS_S3_BUCKET"], Key=key)
    assert got["Body"].read() == b"hello s3"
    assert got["Metadata"] == {"a": "b"}


def test_s3_rejects_a_wrong_secret(env):
    s3 = s3_client(env, secret="not-the-secret")
    with pytest.raises(botocore.exceptions.ClientError) as error:
        s3.put_object(Bucket=env["DSS_S3_BUCKET"], Key="forbidden", Body=b"x")
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert error.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_gcs_round_trip_and_signed_url(env):
    bucket = gcs_client(env).bucket(env["DSS_GS_BUCKET"])
    name = f"test/{uuid.uuid4()}"
    bucket.blob(name).upload_from_string(b"hello gcs", content_type="text/plain")
    assert bucket.blob(name).download_as_bytes() == b"hello gcs"
    # The fake service-account key is good enough to sign V4 URLs that the emulator serves.
    credentials = service_account.Credentials.from_service_account_file(env["GOOGLE_APPLICATION_CREDENTIALS"])
    url = bucket.blob(name).generate_signed_url(version="v4", expiration=datetime.timedelta(minutes=5),
                                                credentials=credentials,
                                                api_access_endpoint=env["STORAGE_EMULATOR_HOST"])
    response = requests.get(url, timeout=10)
    assert response.status_code == 200 and response.content == b"hello gcs"


def aws_client(env: dict[str, str], service: str, endpoint_var: str):
    return boto3.session.Session().client(
        service, endpoint_url=env[endpoint_var], region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def test_moto_executes_state_machines(env):
    sfn = aws_client(env, "stepfunctions", "AWS_ENDPOINT_URL_SFN")
    definition = '{"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": {"ok": 1}, "End": true}}}'
    machine = sfn.create_state_machine(name=f"m-{uuid.uuid4().hex[:8]}", definition=definition,
                                       roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]
    described = wait_for(lambda: (d := sfn.describe_execution(executionArn=execution))["status"] != "RUNNING" and d,
                         timeout=10, interval=0.1, what="the execution to end (moto's interpreter may be off)")
    assert described["status"] == "SUCCEEDED"
    assert described["output"].replace(" ", "") == '{"ok":1}'


def test_moto_sqs(env):
    sqs = aws_client(env, "sqs", "AWS_ENDPOINT_URL_SQS")
    queue = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="hi")
    assert sqs.receive_message(QueueUrl=queue)["Messages"][0]["Body"] == "hi"


def test_search_answers(env):
    assert requests.get(env["DSS_ES_ENDPOINT"] + "/", timeout=10).ok


def test_token_verifies_against_served_jwks(stack, env, tmp_path):
    email_claim, group_claim = "https://example.org/email", "https://example.org/group"
    token = issuer.mint_token(stack.root, "someone@example.org", "hca", audience="https://aud.example/",
                              issuer=env["OPENID_PROVIDER"], email_claim=email_claim, group_claim=group_claim)
    configuration = requests.get(env["OPENID_PROVIDER"] + ".well-known/openid-configuration", timeout=10).json()
    assert configuration["issuer"] == env["OPENID_PROVIDER"]
    jwks = requests.get(configuration["jwks_uri"], timeout=10).json()
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
    key = jwt.PyJWK(jwk, algorithm="RS256").key
    claims = jwt.decode(token, key, algorithms=["RS256"], audience="https://aud.example/",
                        issuer=env["OPENID_PROVIDER"])
    assert claims["sub"] == claims["email"] == claims[email_claim] == "someone@example.org"
    assert claims[group_claim] == "hca"
    assert claims["scope"] == ["email", "openid", "offline_access"]
    assert claims["exp"] - claims["iat"] == 3600
    # A token signed by another key does not verify.
    other = issuer.ensure_key(tmp_path / "other-issuer")
    forged = jwt.encode({"sub": "x", "aud": "https://aud.example/"}, other, algorithm="RS256", headers={"kid": kid})
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged, key, algorithms=["RS256"], audience="https://aud.example/")


def test_dev_token_script(stack, env, tmp_path):
    script = REPO_ROOT / "scripts" / "dev_token.py"
    out = subprocess.run([sys.executable, str(script), "--root", str(stack.root), "--group", "dbio"],
                         capture_output=True, text=True, check=True)
    claims = jwt.decode(out.stdout.strip(), options={"verify_signature": False})
    assert claims["iss"] == env["OPENID_PROVIDER"]
    assert claims["email"] == (os.environ.get("DSS_LOCAL_DEV_EMAIL") or "dev@example.org")
    failed = subprocess.run([sys.executable, str(script), "--root", str(tmp_path / "never-started")],
                            capture_output=True, text=True)
    assert failed.returncode != 0
    assert "start the local stack first" in failed.stderr


def repo_status() -> set[str]:
    """What `git status` says of the repository: the tests compare it before and after running scripts in it."""
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO_ROOT,
                         capture_output=True, text=True, check=True).stdout
    return set(out.splitlines())


def test_reindex_keeps_its_state_in_the_stack_directory(stack, env):
    """Run from the repository root, as after `source .local/env`: the checkpoint goes to $DSS_LOCAL_DIR."""
    from dss.bundle_manifest import bundle_document
    from dss.identifiers import new_version
    uuid_, version = str(uuid.uuid4()), new_version()
    s3_client(env).put_object(Bucket=env["DSS_S3_BUCKET"], Key=f"bundles/{uuid_}.{version}",
                              Body=json.dumps(bundle_document([], version=version, creator_uid=1)).encode())
    stray = REPO_ROOT / ".reindex-state.json"
    existed, before = stray.exists(), repo_status()
    try:
        result = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "reindex.py"), "--replica", "aws",
                                 "--prefix", uuid_[:8], "--no-progress"], cwd=REPO_ROOT, capture_output=True,
                                text=True, env={**os.environ, **env}, timeout=300)
        assert result.returncode == 0, result.stderr
        assert "aws: 1 bundle uuid(s) walked" in result.stdout
        assert repo_status() == before
        state = json.loads((stack.root / "reindex-state.json").read_text())
        assert state["aws"] > f"bundles/{uuid_}"
    finally:
        if stray.exists() and not existed:
            stray.unlink()  # left by a run that failed this test


# --- stacks of their own ---------------------------------------------------------------------------

def test_restart_keeps_data_and_stop_leaves_no_child(tmp_path):
    root = tmp_path / "stack"
    with new_stack(root) as first:
        env = first.env()
        s3_client(env).put_object(Bucket=env["DSS_S3_BUCKET"], Key="kept", Body=b"s3 data")
        gcs_client(env).bucket(env["DSS_GS_BUCKET"]).blob("kept").upload_from_string(b"gcs data")
        kid = jwt.get_unverified_header(issuer.mint_token(root, "a@example.org", "hca",
                                                          issuer=env["OPENID_PROVIDER"]))["kid"]
        tree = process_tree(first.pids().values())
        assert len(tree) >= 5
    assert alive(tree) == []
    first.stop()  # idempotent

    # New ports, same root; this time with a (throw-away) API app.
    (tmp_path / "fakeapp.py").write_text(FAKE_API)
    second = new_stack(root, with_api=True, api_app="fakeapp:app", extra_env={"PYTHONPATH": str(tmp_path)})
    with second:
        env = second.env()
        assert s3_client(env).get_object(Bucket=env["DSS_S3_BUCKET"], Key="kept")["Body"].read() == b"s3 data"
        assert gcs_client(env).bucket(env["DSS_GS_BUCKET"]).blob("kept").download_as_bytes() == b"gcs data"
        assert jwt.get_unverified_header(issuer.mint_token(root, "a@example.org", "hca",
                                                           issuer=env["OPENID_PROVIDER"]))["kid"] == kid
        assert requests.get(env["DSS_API_URL"] + "/v1/swagger.json", timeout=10).status_code == 200
        assert listening_ports(second.pids()["api"]) == {("127.0.0.1", second.ports["api"])}
        tree = process_tree(second.pids().values())
    assert alive(tree) == []


def test_a_dead_api_is_restarted_and_a_crash_looping_worker_given_up_on_while_the_stack_stays_up(tmp_path):
    (tmp_path / "fakeapp.py").write_text(FAKE_API)
    stack = new_stack(tmp_path / "stack", with_api=True, api_app="fakeapp:app",
                      extra_env={"PYTHONPATH": str(tmp_path)})
    stack.restart_delay = 0.1  # then 0.2, 0.4, 0.8, 1.6 s
    with stack:
        api = stack.pids()["api"]
        os.killpg(api, signal.SIGKILL)
        wait_for(lambda: stack.restarts.get("api") == 1, timeout=30, what="the API to be restarted")
        assert stack.pids()["api"] != api
        assert requests.get(stack.url("api") + "/v1/swagger.json", timeout=10).status_code == 200

        others = {name: pid for name, pid in stack.pids().items() if name != "worker"}
        stack.extra_env["DSS_QUEUE_VISIBILITY_SECONDS"] = "not a number"  # every new worker dies at start-up
        os.killpg(stack.pids()["worker"], signal.SIGKILL)
        reason = wait_for(lambda: stack.given_up.get("worker"), timeout=60, what="the stack to give up")
        assert f"restarted {stack.crash_loop_limit} times and died each time" in reason
        assert stack.pids() == others and stack.dead_children() == []
        assert all(psutil.pid_exists(pid) for pid in others.values())
        log = (stack.logs_dir / "worker.log").read_text()
        assert log.count("starting: ") == stack.crash_loop_limit + 1 and "ValueError" in log
        time.sleep(1)
        assert "worker" not in stack.pids()  # not restarted any more


def test_component_that_cannot_start_fails_cleanly(tmp_path):
    before = my_children()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = {**free_ports(PUBLIC_PORTS), "gcs": taken.getsockname()[1]}
        stack = LocalStack(tmp_path / "stack", ports=ports, with_api=False)
        started = time.monotonic()
        with pytest.raises(RuntimeError) as error:
            stack.start()
        assert time.monotonic() - started < 30
    message = str(error.value)
    assert "'gcs'" in message
    assert "address already in use" in message.lower() or "errno 98" in message.lower()
    assert stack.children == []
    assert my_children() - before == set()


def test_cli_runs_and_stops_on_sigterm(tmp_path):
    root = tmp_path / "cli"
    ports = free_ports(PUBLIC_PORTS)
    env = {**os.environ, **{var: str(ports[name]) for name, (var, _) in PUBLIC_PORTS.items()},
           "PYTHONPATH": str(REPO_ROOT)}
    before = repo_status()
    cli = subprocess.Popen([sys.executable, "-m", "dss.local.stack", "run", "--no-api", "--root", str(root)],
                           cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def started() -> bool:
            assert cli.poll() is None, cli.stdout.read()
            return (root / "env").exists()

        wait_for(started, timeout=60, interval=0.1, what="the CLI to start the stack")
        time.sleep(0.5)  # let it print the summary
        tree = psutil.Process(cli.pid).children(recursive=True)
        assert len(tree) >= 5
        assert requests.get(f"http://127.0.0.1:{ports['gcs']}/storage/v1/b?project=x", timeout=10).ok
        cli.send_signal(signal.SIGTERM)
        output, _ = cli.communicate(timeout=30)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 0, output
    assert "source " in output and str(root / "env") in output
    assert alive(tree) == []
    assert repo_status() == before  # run from the repository root, it wrote only under its --root
