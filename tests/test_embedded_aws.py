"""The embedded AWS: each fix of local/aws/fixes.py is shown necessary (the defect appears with the
fix undone) and sufficient; the in-process Lambda behaves as Lambda does for step-worker."""

from __future__ import annotations

import json
import math
import time

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError

from local.aws import REGION, fixes, runtime
from tests.conftest import create_table, key_value, run

ROLE = "arn:aws:iam::123456789012:role/any"


def machine(sfn, name, definition):
    return sfn.create_state_machine(name=name, definition=json.dumps(definition),
                                    roleArn=ROLE)["stateMachineArn"]


@pytest.fixture
def child_and_parent(aws, clients):
    suffix = str(time.monotonic_ns())
    child = machine(clients.sfn, f"child-{suffix}", {
        "StartAt": "P", "States": {"P": {"Type": "Pass", "Result": {"Done": True}, "End": True}}})
    parent = machine(clients.sfn, f"parent-{suffix}", {
        "StartAt": "T", "States": {"T": {
            "Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
            "Parameters": {"StateMachineArn": child, "Input": {"a": 1}}, "End": True}}})
    return child, parent


def test_start_execution_sync_2_returns_the_child_output(clients, child_and_parent):
    _, parent = child_and_parent
    found = run(clients.sfn, parent, {})
    assert found["status"] == "SUCCEEDED"
    assert found["output"]["Output"] == {"Done": True}
    assert found["output"]["Input"] == {"a": 1}
    assert isinstance(found["output"]["StartDate"], int)  # epoch milliseconds, as AWS


def test_defect_1_sync_task_parameters_are_not_converted(clients, child_and_parent):
    _, parent = child_and_parent
    with fixes.without("sfn-parameters"):
        found = run(clients.sfn, parent, {})
    assert found["status"] == "FAILED"
    assert "StateMachineArn" in found.get("cause", "") + found.get("error", "")


def test_defect_2_sync_task_output_keeps_datetimes(clients, child_and_parent):
    _, parent = child_and_parent
    with fixes.without("sfn-dates"), pytest.raises(TypeError, match="datetime"):
        run(clients.sfn, parent, {})


def test_defect_3_unnamed_executions_collide(clients, child_and_parent):
    child, _ = child_and_parent
    first = clients.sfn.start_execution(stateMachineArn=child)["executionArn"]
    second = clients.sfn.start_execution(stateMachineArn=child, input='{"b": 2}')["executionArn"]
    assert first != second
    assert ":None" not in first
    with fixes.without("unnamed-execution"):
        clients.sfn.start_execution(stateMachineArn=child)
        with pytest.raises(ClientError) as error:
            clients.sfn.start_execution(stateMachineArn=child, input='{"b": 2}')
    assert error.value.response["Error"]["Code"] == "ExecutionAlreadyExists"


def test_defect_6_parallel_scan_of_a_binary_key(clients):
    name = create_table(clients.dynamodb, "B")
    for i in range(20):
        clients.dynamodb.put_item(TableName=name, Item={"id": key_value("B", i)})
    seen = [item["id"]["B"] for s in range(3) for item in
            clients.dynamodb.scan(TableName=name, Segment=s, TotalSegments=3)["Items"]]
    assert sorted(seen) == sorted(key_value("B", i)["B"] for i in range(20))
    with fixes.without("binary-segment"), pytest.raises(AttributeError, match="encode"):
        clients.dynamodb.scan(TableName=name, Segment=0, TotalSegments=3)


TEMPLATE = {
    "Resources": {"Machine": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {
        "StateMachineName": "substituted", "RoleArn": ROLE,
        "DefinitionSubstitutions": {"Answer": "forty-two"},
        "Definition": {"StartAt": "P", "States": {
            "P": {"Type": "Pass", "Result": {"answer": "${Answer}"}, "End": True}}}}}},
    "Outputs": {"Arn": {"Value": {"Ref": "Machine"}}},
}


def test_defect_7_cloudformation_state_machines(clients):
    cfn = boto3.client("cloudformation", region_name=REGION)
    cfn.create_stack(StackName="defect-7", TemplateBody=json.dumps(TEMPLATE))
    arn = cfn.describe_stacks(StackName="defect-7")["Stacks"][0]["Outputs"][0]["OutputValue"]
    found = run(clients.sfn, arn, {})
    assert found["status"] == "SUCCEEDED"
    assert found["output"] == {"answer": "forty-two"}
    cfn.delete_stack(StackName="defect-7")

    with fixes.without("cfn-state-machine"):
        cfn.create_stack(StackName="defect-7-unfixed",
                         TemplateBody=json.dumps(TEMPLATE).replace("substituted", "plain"))
    arn = cfn.describe_stacks(StackName="defect-7-unfixed")["Stacks"][0]["Outputs"][0]["OutputValue"]
    with pytest.raises(ClientError) as error:
        clients.sfn.start_execution(stateMachineArn=arn)
    assert error.value.response["Error"]["Code"] == "StateMachineDoesNotExist"


def test_moto_refuses_an_integer_tolerated_failure_percentage(clients):
    """Why template.yml writes ToleratedFailurePercentage as 100.0 (AWS takes either)."""
    definition = {"StartAt": "M", "States": {"M": {
        "Type": "Map", "ToleratedFailurePercentage": 100, "End": True,
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}}}}
    with pytest.raises(ClientError, match="ToleratedFailurePercentage"):
        machine(clients.sfn, f"tolerated-{time.monotonic_ns()}", definition)
    definition["States"]["M"]["ToleratedFailurePercentage"] = 100.0
    assert machine(clients.sfn, f"tolerated-{time.monotonic_ns()}", definition)


def test_the_deployed_function_runs_in_process_and_reports_errors_by_class(stack):
    answer = boto3.client("lambda", region_name=REGION).invoke(
        FunctionName=stack["Function"], Payload=json.dumps({"action": "explode"}))
    assert answer["FunctionError"] == "Handled"
    payload = json.load(answer["Payload"])
    assert payload["errorType"] == "InvalidConfiguration"
    assert "explode" in payload["errorMessage"]


def test_the_function_environment_is_applied(stack):
    from local.aws import function_module

    module = function_module(stack["Function"])
    assert stack["CheckpointTable"] == module.CHECKPOINT_TABLE
    assert module.LOOPS_PER_EXECUTION == 1000


def test_the_context_counts_down_from_the_function_timeout():
    class Function:
        function_name, version, function_arn = "f", "$LATEST", "arn:f"
        memory_size, timeout = 128, 3

    context = runtime.Context(Function())  # type: ignore[arg-type]
    first = context.get_remaining_time_in_millis()
    assert 2_900 < first <= 3_000
    time.sleep(0.05)
    assert context.get_remaining_time_in_millis() <= first - 40


def deploy_by_change_set(cfn, name: str) -> list:
    template = json.dumps(TEMPLATE).replace("substituted", name)
    cfn.create_change_set(StackName=name, ChangeSetName="create", ChangeSetType="CREATE",
                          TemplateBody=template)
    cfn.execute_change_set(StackName=name, ChangeSetName="create")
    return cfn.describe_stacks(StackName=name)["Stacks"][0].get("Outputs", [])


def test_defect_8_a_stack_made_by_change_set_has_outputs(aws):
    cfn = boto3.client("cloudformation", region_name=REGION)
    [output] = deploy_by_change_set(cfn, "by-change-set")
    assert output["OutputKey"] == "Arn" and output["OutputValue"].endswith(":by-change-set")
    with fixes.without("cfn-change-set-outputs"):
        assert deploy_by_change_set(cfn, "by-change-set-unfixed") == []


# What AWS does that moto leaves out (local/aws/emulation.py), and fault injection (faults.py).

def test_scan_pages_are_charged_by_the_bytes_they_read(clients):
    name = create_table(clients.dynamodb, "S")
    for i in range(10):  # about 1 KB each: "id" + 2 + "body" + 1,000
        clients.dynamodb.put_item(TableName=name, Item={"id": {"S": f"{i:02d}"},
                                                        "body": {"S": "x" * 1000}})

    def units(**request):
        page = clients.dynamodb.scan(TableName=name, ReturnConsumedCapacity="TOTAL", **request)
        return page["ConsumedCapacity"]["CapacityUnits"], page["ScannedCount"]

    assert units() == (1.5, 10)  # 10,080 bytes → 3 × 4 KB → 1.5 units
    assert units(ConsistentRead=True) == (3.0, 10)
    assert units(Limit=4) == (0.5, 4)  # 4,032 bytes
    assert units(FilterExpression="id = :x", ExpressionAttributeValues={":x": {"S": "03"}}) \
        == (1.5, 10)  # a filter does not make the read cheaper
    charged, scanned = units(Segment=1, TotalSegments=4)  # each item is 1,008 bytes
    assert charged == 0.5 * max(1, math.ceil(scanned * 1008 / 4096))


def test_an_execution_fails_at_the_history_quota(clients, monkeypatch):
    from local.aws import emulation

    monkeypatch.setattr(emulation.HISTORY, "limit", 30)
    loop = machine(clients.sfn, f"loop-{time.monotonic_ns()}", {
        "StartAt": "Wait", "States": {
            "Wait": {"Type": "Pass", "Next": "Again"},
            "Again": {"Type": "Choice", "Choices": [
                {"Variable": "$.stop", "BooleanEquals": True, "Next": "End"}], "Default": "Wait"},
            "End": {"Type": "Succeed"}}})

    found = run(clients.sfn, loop, {"stop": False}, timeout=30)

    assert found["status"] == "FAILED"
    assert found["error"] == "States.Runtime"
    assert "maximum number of history events (30)" in found["cause"]
    events = clients.sfn.get_execution_history(executionArn=found["executionArn"])["events"]
    assert len(events) <= 31


def test_an_invocation_that_overruns_its_timeout_fails(tmp_path):
    import hashlib
    import io
    import zipfile

    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("slow.py", "import time\ndef run(event, context):\n"
                                    "    time.sleep(event['seconds'])\n    return 'done'\n")

    class Function:
        function_name, version, memory_size, timeout = "slow", "$LATEST", 128, 1
        function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:slow"
        code_bytes = code.getvalue()
        code_sha_256 = hashlib.sha256(code_bytes).hexdigest()
        handler, environment_vars = "slow.run", {}

    assert runtime.invoke(Function(), {"seconds": 0}) == ('"done"', False, "")
    payload, errored, _ = runtime.invoke(Function(), {"seconds": 1.1})
    assert errored
    assert json.loads(payload)["errorType"] == "Sandbox.Timedout"


def test_throttled_calls_are_refused_and_counted(clients):
    from local.aws.faults import throttling

    with throttling(1.0, "Scan") as injected, pytest.raises(ClientError) as error:
        boto3.client("dynamodb", region_name=REGION, config=botocore.config.Config(
            retries={"total_max_attempts": 1, "mode": "standard"})).scan(TableName="any")
    assert error.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert injected["Scan"] == 1


def test_defect_9_a_dry_run_invocation_runs_no_code(aws):
    import io
    import zipfile

    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("counted.py", "CALLS = []\ndef run(event, context):\n    CALLS.append(1)\n")
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName="counted-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    awslambda = boto3.client("lambda", region_name=REGION)
    awslambda.create_function(FunctionName="counted", Runtime="python3.13", Handler="counted.run",
                              Role=role, Code={"ZipFile": code.getvalue()})
    from local.aws import function_module

    calls = function_module("counted").CALLS
    assert awslambda.invoke(FunctionName="counted", InvocationType="DryRun")["StatusCode"] == 204
    assert calls == []
    with fixes.without("lambda-dry-run"):
        awslambda.invoke(FunctionName="counted", InvocationType="DryRun")
    assert calls == [1]


def test_the_speed_patches_are_in_effect(aws):
    """local/aws/speed.py changes moto by name: if moto renames what it patches, this fails."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_callback as callback,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_sfn as sfn_service,
    )
    from moto.stepfunctions.parser.asl.utils import json_path

    from local.aws import speed

    assert json_path.parse("$.a") is json_path.parse("$.a")  # parsed once
    assert callback._DELAY_SECONDS_SYNC_CONDITION_CHECK == speed.SYNC_POLL_SECONDS
    assert sfn_service.boto_client_for is speed._client
    assert speed._client("eu-west-1", "stepfunctions") is speed._client("eu-west-1", "stepfunctions")
