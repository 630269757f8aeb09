"""The Step Functions definitions (daemons/**/*.asl.json): valid Amazon States Language, and a control flow that works.

**Valid ASL.** Every definition under daemons/ is found by its name, `*.asl.json`, so a new one is checked without
touching this file. Its `${...}` placeholders are replaced the way deployment fills them in (Terraform's
templatefile), with realistic Lambda ARNs, and the result is linted by cfn-lint (pinned in the tools virtualenv,
.tools-venv) as the Definition of an AWS::StepFunctions::StateMachine: rule E3601 checks it against the ASL schema
cfn-lint bundles. That schema leaves a Map's legacy `Iterator` unchecked (`{}`), so each Iterator is linted again as
a state machine of its own. cfn-lint does not check that transitions name existing states, nor that every state is
reachable; statelint (a port of awslabs/statelint, also in the tools virtualenv) does.
Broken definitions are linted as well, to show that each check can fail.

**Control flow.** copy-file.asl.json runs in the local stack's moto Step Functions, which interprets ASL but cannot
invoke Lambda functions (that needs Docker). Each Lambda Task therefore becomes a callback task,
`arn:aws:states:::sqs:sendMessage.waitForTaskToken`, that posts its name, input and task token to a queue; the test
plays the Lambda and answers with SendTaskSuccess (the handler's return value) or SendTaskFailure (an exception,
named by its class as the Lambda runtime names it: copy_jobs.CopyFailed -> "CopyFailed"). Everything else — Next,
ResultPath, Retry and Catch — is the definition's own, except that Retry intervals are cut to 1 s.

What moto 5.2 does differently from AWS, and how these tests cope:
- A retried callback task keeps its task token, and the first attempt's outcome stays on it, so a retry does not
  wait for a new answer (it fails again at once, or takes the answer given to the previous attempt's message).
  The retry test answers every message and asserts only what holds either way.
- SendTaskFailure drops its `cause` (moto's handler passes on only the error), and a Map state that fails because
  an iteration failed does not abort its other iterations. So the tests check the Error that reaches RecordFailure,
  not its Cause, and the failure tests use a single batch.
"""
from __future__ import annotations

import collections
import copy
import json
import re
import subprocess
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import boto3
import pytest

from dss.storage import copy_jobs

from .helpers import tool, wait_for

REPO = Path(__file__).resolve().parents[1]
DAEMONS = REPO / "daemons"
DEFINITIONS = sorted(DAEMONS.rglob("*.asl.json"))
COPY_FILE = DAEMONS / "dss-copy" / "copy-file.asl.json"


REGION, ACCOUNT = "us-east-1", "123456789012"
PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
LINT_TIMEOUT = 300


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def realistic_value(definition: Path, placeholder: str) -> str:
    """What deployment puts in place of `${placeholder}`: `${<Name>LambdaArn}` is the ARN of handler app.<name>."""
    if placeholder.endswith("LambdaArn"):
        handler = _snake(placeholder.removesuffix("LambdaArn"))
        function = f"{definition.parent.name}-{handler.replace('_', '-')}-dev"
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}"
    pytest.fail(f"{_rel(definition)}: no realistic value for the placeholder ${{{placeholder}}}; "
                f"teach realistic_value() in {Path(__file__).name} what kind of value deployment puts there")


def substituted(definition: Path) -> dict:
    """The definition as deployed: placeholders replaced in the text, as templatefile does, then parsed."""
    text = PLACEHOLDER.sub(lambda m: realistic_value(definition, m.group(1)), definition.read_text())
    return json.loads(text)


def scopes(machine: dict):
    """The machine and every state machine nested in it (Map Iterator/ItemProcessor, Parallel branches)."""
    yield machine
    for state in machine["States"].values():
        for nested in (state.get("Iterator"), state.get("ItemProcessor"), *state.get("Branches", [])):
            if nested:
                yield from scopes(nested)


# --- valid Amazon States Language -------------------------------------------------------------------------------

def _iterators(scope: dict, prefix: str = ""):
    """(logical id, body) of each Map Iterator in the scope, nested ones included."""
    for name, state in scope["States"].items():
        base = prefix + re.sub(r"[^A-Za-z0-9]", "", name)
        nested = (state.get("Iterator"), state.get("ItemProcessor"), *state.get("Branches", []))
        for i, machine in enumerate(nested):
            if machine is None:
                continue
            if i == 0:
                yield f"{base}Iterator", machine
            yield from _iterators(machine, f"{base}{i}")


def _template(machine: dict) -> dict:
    """A CloudFormation template with the machine, and each Map Iterator (which cfn-lint's schema skips) alone."""
    resources = {"StateMachine": machine, **dict(_iterators(machine))}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            logical_id: {"Type": "AWS::StepFunctions::StateMachine",
                         "Properties": {"RoleArn": f"arn:aws:iam::{ACCOUNT}:role/dss-states-dev", "Definition": body}}
            for logical_id, body in resources.items()},
    }


def _broken(mutate: Callable[[dict], None]) -> dict:
    machine = substituted(COPY_FILE)
    mutate(machine)
    return machine


def _iterator(machine: dict) -> dict:
    return machine["States"]["CopyParts"]["Iterator"]["States"]


def _unsubstituted(machine: dict) -> None:
    machine["States"]["Setup"]["Resource"] = "${SetupLambdaArn}"


# Broken copies of copy-file.asl.json that cfn-lint rejects: case -> (mutation, a key on the reported error's path).
CFN_LINT_REJECTS = {
    "choice-without-choices-in-iterator": (lambda m: _iterator(m)["BatchDone"].pop("Choices"), "BatchDone"),
    "state-without-type": (lambda m: m["States"]["Copied"].pop("Type"), "Copied"),
    "unknown-state-type": (lambda m: m["States"]["Copied"].update(Type="Succeeded"), "Type"),
    "task-without-resource": (lambda m: m["States"]["Finalize"].pop("Resource"), "Finalize"),
    "neither-next-nor-end": (lambda m: m["States"]["RecordFailure"].pop("Next"), "RecordFailure"),
    "start-at-missing-state": (lambda m: m.update(StartAt="Nowhere"), "StartAt"),
    "catch-without-next": (lambda m: m["States"]["Setup"]["Catch"][1].pop("Next"), "Catch"),
    "negative-max-attempts": (lambda m: m["States"]["Setup"]["Retry"][1].update(MaxAttempts=-1), "MaxAttempts"),
    "placeholder-not-substituted": (_unsubstituted, "Resource"),
}

# Broken copies that only statelint rejects (cfn-lint 1.58 has no transition or reachability check):
# case -> (mutation, a word its report must contain).
STATELINT_REJECTS = {
    "next-names-missing-state": (lambda m: m["States"]["Setup"].update(Next="Nowhere"), "Nowhere"),
    "catch-names-missing-state": (lambda m: m["States"]["Finalize"]["Catch"][1].update(Next="Nowhere"), "Nowhere"),
    "choice-default-names-missing-state": (lambda m: _iterator(m)["BatchDone"].update(Default="Nowhere"), "Nowhere"),
    "unreachable-state": (lambda m: m["States"].update(Orphan={"Type": "Succeed"}), "Orphan"),
    "choice-without-choices-in-iterator": (lambda m: _iterator(m)["BatchDone"].pop("Choices"), "Choices"),
}


@dataclass
class LintRuns:
    """cfn-lint runs, started together (each takes seconds): one per definition, one for all broken cases."""
    definitions: dict[str, subprocess.CompletedProcess] = field(default_factory=dict)
    broken: dict[str, list[dict]] = field(default_factory=dict)
    broken_run: subprocess.CompletedProcess | None = None


def _finish(process: subprocess.Popen, argv: list[str]) -> subprocess.CompletedProcess:
    try:
        stdout, stderr = process.communicate(timeout=LINT_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"{' '.join(argv)} did not finish in {LINT_TIMEOUT} s")
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def cfn_lint(tmp_path_factory) -> LintRuns:
    cfn_lint = tool("cfn-lint")
    root = tmp_path_factory.mktemp("cfn-lint")
    started: dict[str, tuple[subprocess.Popen, list[str]]] = {}
    for i, definition in enumerate(DEFINITIONS):
        template = root / f"definition-{i}.json"
        template.write_text(json.dumps(_template(substituted(definition)), indent=1))
        argv = [str(cfn_lint), str(template)]
        started[_rel(definition)] = (subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                      text=True, cwd=root), argv)
    broken_files = {}
    for case, (mutate, _) in CFN_LINT_REJECTS.items():
        broken_files[case] = root / f"broken-{case}.json"
        broken_files[case].write_text(json.dumps(_template(_broken(mutate)), indent=1))
    broken_argv = [str(cfn_lint), "--format", "json", *map(str, broken_files.values())]
    broken_process = subprocess.Popen(broken_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      cwd=root)

    runs = LintRuns()
    for name, (process, argv) in started.items():
        runs.definitions[name] = _finish(process, argv)
    runs.broken_run = _finish(broken_process, broken_argv)
    try:
        matches = json.loads(runs.broken_run.stdout or "[]")
    except json.JSONDecodeError:
        pytest.fail(f"cfn-lint's JSON report is unreadable (exit {runs.broken_run.returncode}):\n"
                    f"{runs.broken_run.stdout}\n{runs.broken_run.stderr}")
    for case, path in broken_files.items():
        runs.broken[case] = [m for m in matches if Path(m["Filename"]).name == path.name]
    return runs


def test_tools_venv_has_cfn_lint():
    tool("cfn-lint")


def test_definitions_are_discovered():
    assert COPY_FILE in DEFINITIONS, f"{_rel(COPY_FILE)} not found among {list(map(_rel, DEFINITIONS))}"
    for definition in DEFINITIONS:
        placeholders = PLACEHOLDER.findall(definition.read_text())
        machine = substituted(definition)  # every placeholder has a realistic value, and the result is JSON
        assert isinstance(machine.get("States"), dict), f"{_rel(definition)} has no States"
        assert "${" not in json.dumps(machine), f"{_rel(definition)}: placeholder left after {placeholders}"


@pytest.mark.parametrize("definition", DEFINITIONS, ids=_rel)
def test_definition_passes_cfn_lint(cfn_lint, definition):
    run = cfn_lint.definitions[_rel(definition)]
    assert run.returncode == 0 and not run.stdout.strip(), (
        f"cfn-lint rejects {_rel(definition)} (exit {run.returncode}; placeholders substituted with Lambda ARNs; "
        f"resources other than StateMachine are its Map Iterators):\n{run.stdout}{run.stderr}")


@pytest.mark.parametrize("case", CFN_LINT_REJECTS)
def test_cfn_lint_rejects_broken_definition(cfn_lint, case):
    assert cfn_lint.broken_run.returncode not in (0, 1), (
        f"cfn-lint should have failed on the broken definitions (exit {cfn_lint.broken_run.returncode}):\n"
        f"{cfn_lint.broken_run.stderr}")
    matches = cfn_lint.broken[case]
    _, key = CFN_LINT_REJECTS[case]
    on_point = [m for m in matches if m["Rule"]["Id"] == "E3601" and m["Level"] == "Error"
                and key in map(str, m["Location"]["Path"])]
    assert on_point, f"cfn-lint did not report the broken {key!r} of case {case}; it reported: " + json.dumps(
        [(m["Rule"]["Id"], m["Message"], m["Location"]["Path"]) for m in matches])


def _statelint(machine: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "definition.asl.json"
    path.write_text(json.dumps(machine, indent=1))
    return subprocess.run([str(tool("statelint")), str(path)], capture_output=True, text=True, timeout=LINT_TIMEOUT)


@pytest.mark.parametrize("definition", DEFINITIONS, ids=_rel)
def test_definition_passes_statelint(definition, tmp_path):
    run = _statelint(substituted(definition), tmp_path)
    assert run.returncode == 0, f"statelint rejects {_rel(definition)}:\n{run.stdout}{run.stderr}"


@pytest.mark.parametrize("case", STATELINT_REJECTS)
def test_statelint_rejects_broken_definition(case, tmp_path):
    mutate, word = STATELINT_REJECTS[case]
    run = _statelint(_broken(mutate), tmp_path)
    assert run.returncode != 0 and word in run.stdout, f"statelint accepted case {case}:\n{run.stdout}{run.stderr}"


# --- the control flow, in moto's Step Functions -----------------------------------------------------------------

CALLBACK = "arn:aws:states:::sqs:sendMessage.waitForTaskToken"
RUN_TIMEOUT = 20  # seconds: the longest scenario (a retry) takes about 3
MAX_CALLS = 40  # task invocations in one run: the loop scenario makes 8; more means a loop that does not end

KEY = "files/ce55fd51-7833-469b-be0b-5da88ec0ffee.2026-11-21T120000.000000Z"
TASK_ID = "0d6b3a9e-6a3b-4f57-9d0c-2f5d3a8c1e42"
START = {"key": KEY, "task_id": TASK_ID}  # what `launch` starts each execution with


def with_callbacks(machine: dict, queue_url: str) -> dict:
    """The machine with each Lambda Task made a callback task that posts {state, input, token} to the queue."""
    machine = copy.deepcopy(machine)
    for scope in scopes(machine):
        for name, state in scope["States"].items():
            if state["Type"] == "Task":
                assert PLACEHOLDER.fullmatch(state["Resource"]), f"{name}: not a Lambda placeholder"
                assert not {"Parameters", "InputPath", "ResultSelector"} & state.keys(), (
                    f"{name}: Parameters/InputPath/ResultSelector would change what the callback receives")
                state["Resource"] = CALLBACK
                state["Parameters"] = {"QueueUrl": queue_url, "MessageBody": {
                    "state": name, "input.$": "$", "token.$": "$$.Task.Token"}}
            for retrier in state.get("Retry", []):
                retrier["IntervalSeconds"] = 1
    return machine


@dataclass
class Execution:
    status: str
    described: dict
    events: list[dict]
    calls: list[tuple[str, dict]]  # (state, input) of every task invocation, in the order they arrived

    @property
    def output(self):
        return json.loads(self.described["output"]) if self.described.get("output") else None

    @property
    def entered(self) -> list[str]:
        return [e["stateEnteredEventDetails"]["name"] for e in self.events if e["type"].endswith("StateEntered")]

    def entered_in(self, machine: dict) -> list[str]:
        return [name for name in self.entered if name in machine["States"]]

    def inputs(self, state: str) -> list[dict]:
        return [given for name, given in self.calls if name == state]

    def task_errors(self) -> list[str]:
        return [e["taskFailedEventDetails"]["error"] for e in self.events if e["type"] == "TaskFailed"]


class Lambdas:
    """Plays the copy Lambdas: a script maps (state, input, n-th call of that state) to a result or an exception."""

    def __init__(self, script: Callable[[str, dict, int], dict]):
        self.script = script
        self.counts: collections.Counter = collections.Counter()

    def answer(self, sfn, message: dict, calls: list) -> None:
        body = json.loads(message["Body"])
        state, given = body["state"], body["input"]
        calls.append((state, given))
        self.counts[state] += 1
        assert len(calls) <= MAX_CALLS, f"more than {MAX_CALLS} task calls, a loop that does not end? {self.counts}"
        try:
            result = self.script(state, given, self.counts[state])
        except AssertionError:  # the script saw a call that should not happen: the test fails at once
            raise
        except Exception as e:  # what the Lambda runtime reports: the exception's class name and message
            sfn.send_task_failure(taskToken=body["token"], error=type(e).__name__, cause=str(e))
        else:
            sfn.send_task_success(taskToken=body["token"], output=json.dumps(result))


def _history(sfn, arn: str) -> list[dict]:
    events, more = [], {}
    while True:
        page = sfn.get_execution_history(executionArn=arn, maxResults=1000, **more)
        events += page["events"]
        if not page.get("nextToken"):
            return events
        more = {"nextToken": page["nextToken"]}


def run_copy(script: Callable[[str, dict, int], dict]) -> Execution:
    """Run copy-file.asl.json once in moto from START, answering its tasks with the script, until it stops."""
    sfn, sqs = boto3.client("stepfunctions"), boto3.client("sqs")
    suffix = uuidlib.uuid4().hex[:12]
    queue = sqs.create_queue(QueueName=f"dss-copy-tasks-{suffix}")["QueueUrl"]
    machine = with_callbacks(copy_file_definition(), queue)
    arn = sfn.create_state_machine(name=f"dss-copy-file-{suffix}", definition=json.dumps(machine),
                                   roleArn=f"arn:aws:iam::{ACCOUNT}:role/dss-copy-states")["stateMachineArn"]
    lambdas, calls, execution = Lambdas(script), [], None
    try:
        execution = sfn.start_execution(stateMachineArn=arn, name=TASK_ID + "-" + suffix,
                                        input=json.dumps(START))["executionArn"]

        def stopped() -> dict | None:  # answering the tasks posted meanwhile
            described = sfn.describe_execution(executionArn=execution)
            if described["status"] != "RUNNING":
                return described
            for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
                lambdas.answer(sfn, message, calls)
            return None

        described = wait_for(stopped, timeout=RUN_TIMEOUT, interval=0.05, what=lambda: (
            f"the execution to stop; tasks called: {lambdas.counts}; last "
            f"events: {[e['type'] for e in _history(sfn, execution)[-8:]]}"))
        for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
            calls.append((json.loads(message["Body"])["state"], json.loads(message["Body"])["input"]))
        events = _history(sfn, execution)
        failures = [e for e in events if e["type"] == "TaskFailed"
                    and e["taskFailedEventDetails"]["error"].startswith("SQS.")]
        assert not failures, f"moto could not post a task to its queue (is MOTO_PORT set wrongly?): {failures}"
        return Execution(described["status"], described, events, calls)
    finally:
        if execution and sfn.describe_execution(executionArn=execution)["status"] == "RUNNING":
            sfn.stop_execution(executionArn=execution)
        sfn.delete_state_machine(stateMachineArn=arn)
        sqs.delete_queue(QueueUrl=queue)


def copy_file_definition() -> dict:
    """copy-file.asl.json as committed, placeholders and all: with_callbacks replaces exactly those resources."""
    return json.loads(COPY_FILE.read_text())


def setup_result(*parts: tuple[int, int]) -> dict:
    """What copy_jobs.setup answers: the job, and the batches of parts the Map copies."""
    return {**START, "batches": [{**START, "first": first, "last": last} for first, last in parts]}


def happy(state: str, given: dict, n: int, batches=((1, 1),)) -> dict:
    """Every step succeeds at once, as copy_jobs' steps answer."""
    return {
        "Setup": lambda: setup_result(*batches),
        "CopyBatch": lambda: {"done": True},
        "Finalize": lambda: dict(START),
        "WriteMetadata": lambda: dict(START),
        "RecordFailure": lambda: {},
    }[state]()


COPIED = ["Setup", "CopyParts", "Finalize", "WriteMetadata", "Copied"]
TASKS = ["Setup", "CopyBatch", "Finalize", "WriteMetadata"]  # the steps of copy_jobs, in order


def test_copy_succeeds_in_order(stack):
    machine = copy_file_definition()
    run = run_copy(happy)
    assert run.status == "SUCCEEDED", run.described
    assert run.entered == ["Setup", "CopyParts", "CopyBatch", "BatchDone", "BatchCopied", "Finalize",
                           "WriteMetadata", "Copied"]
    assert run.entered_in(machine) == COPIED
    assert [name for name, _ in run.calls] == TASKS
    # Each step gets what copy_jobs expects: {key, task_id}, plus first/last for a batch of parts.
    assert run.inputs("Setup") == [START]
    assert run.inputs("CopyBatch") == [{**START, "first": 1, "last": 1}]
    # The Map and the last steps discard their results (ResultPath null): Setup's answer flows to the end.
    assert run.inputs("Finalize") == run.inputs("WriteMetadata") == [setup_result((1, 1))]
    assert run.output == setup_result((1, 1))
    assert run.task_errors() == []


def test_copy_parts_loops_until_each_batch_is_done(stack):
    """copy_parts answers {"done": false} when its Lambda ran out of time: BatchDone sends the batch round again."""
    batches = ((1, 2), (3, 3))

    def script(state: str, given: dict, n: int) -> dict:
        if state == "CopyBatch":
            return {"done": "progress" in given}  # not done on a batch's first call, done on its second
        return happy(state, given, n, batches)

    run = run_copy(script)
    assert run.status == "SUCCEEDED", run.described
    assert run.entered_in(copy_file_definition()) == COPIED
    entered = collections.Counter(run.entered)
    assert (entered["CopyBatch"], entered["BatchDone"], entered["BatchCopied"]) == (4, 4, 2), run.entered
    assert sum(e["type"] == "MapIterationStarted" for e in run.events) == 2
    expected = [{**START, "first": first, "last": last} for first, last in batches]
    assert sorted(run.inputs("CopyBatch"), key=lambda b: (b["first"], "progress" in b)) == [
        call for batch in expected for call in (batch, {**batch, "progress": {"done": False}})]
    assert run.inputs("Finalize") == [setup_result(*batches)]


def _failing(at: str, error: Exception) -> Callable[[str, dict, int], dict]:
    def script(state: str, given: dict, n: int) -> dict:
        if state == at:
            assert n == 1, f"{at} was called again after it raised {type(error).__name__}: retried?"
            raise error
        return happy(state, given, n)
    return script


# Where a failure in each task is caught: the Map catches what fails inside it.
CAUGHT_BY = {"Setup": "Setup", "CopyBatch": "CopyParts", "Finalize": "Finalize", "WriteMetadata": "WriteMetadata"}


@pytest.mark.parametrize("at", TASKS)
def test_copy_failure_is_recorded(stack, at):
    """A CopyFailed is not retried: Catch sends it to RecordFailure, with the error, and the execution fails."""
    reason = "The copy has 1 bytes, not 2."
    run = run_copy(_failing(at, copy_jobs.CopyFailed(copy_jobs.copy_failed(reason))))
    assert run.status == "FAILED", run.described
    assert (run.described.get("error"), run.entered[-1]) == ("CopyFailed", "CopyFailed"), run.described
    catcher = CAUGHT_BY[at]
    assert run.entered_in(copy_file_definition()) == COPIED[:COPIED.index(catcher) + 1] + ["RecordFailure",
                                                                                           "CopyFailed"]
    assert [name for name, _ in run.calls] == TASKS[:TASKS.index(at) + 1] + ["RecordFailure"], run.calls
    assert run.task_errors() == ["CopyFailed"]
    # RecordFailure gets the input of the state that caught the error, plus the error (ResultPath $.error).
    [given] = run.inputs("RecordFailure")
    caught_input = START if catcher == "Setup" else setup_result((1, 1))
    assert {k: v for k, v in given.items() if k != "error"} == caught_input
    assert given["error"]["Error"] == "CopyFailed"  # and its Cause, the reason, in AWS; moto drops it


@pytest.mark.parametrize("at", TASKS)
def test_superseded_job_ends_quietly(stack, at):
    """JobGone (a newer PUT replaced the job, or it finished) is not retried and ends the execution successfully."""
    run = run_copy(_failing(at, copy_jobs.JobGone(KEY)))
    assert run.status == "SUCCEEDED", run.described
    catcher = CAUGHT_BY[at]
    assert run.entered_in(copy_file_definition()) == COPIED[:COPIED.index(catcher) + 1] + ["Superseded"]
    assert [name for name, _ in run.calls] == TASKS[:TASKS.index(at) + 1], run.calls
    assert run.task_errors() == ["JobGone"]
    # ResultPath null: the output is the catching state's input, without the error.
    assert run.output == (START if catcher == "Setup" else setup_result((1, 1)))


def test_transient_error_is_retried(stack):
    """Any other error (here finalize's "parts not copied yet") is retried in place; the copy then succeeds."""
    def script(state: str, given: dict, n: int) -> dict:
        if state == "Finalize" and n == 1:
            raise RuntimeError(f"{KEY}: parts [2] are not copied yet")
        return happy(state, given, n)

    run = run_copy(script)
    assert run.status == "SUCCEEDED", run.described
    assert run.entered_in(copy_file_definition()) == COPIED  # retried within Finalize, not re-entered
    assert len(run.inputs("Finalize")) >= 2, run.calls
    assert set(run.task_errors()) == {"RuntimeError"}
    assert "RecordFailure" not in run.entered
