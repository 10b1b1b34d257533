"""Fixes to moto that step-worker needs, each naming the upstream defect it works around.

Every fix is a small replacement of one moto method, applied once by `apply()`; each has a test in
tests/test_embedded_aws.py that shows the defect on unpatched moto, so an upstream change is noticed.
Verified against the moto version pinned in requirements-dev.txt.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import uuid
from collections.abc import Iterator
from typing import Any

import botocore.session
from botocore import xform_name
from moto.awslambda.models import LambdaFunction
from moto.cloudformation.models import CloudFormationBackend
from moto.core.config import default_user_config
from moto.dynamodb.models.dynamo_type import Item
from moto.stepfunctions import models as sfn_models
from moto.stepfunctions.parser import models as parser_models
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service as task_service,
)
from moto.utilities.utils import md5_hash

ORIGINAL: dict[str, Any] = {}  # what each fix replaced, for the tests that show the defects


@functools.cache
def _operation(service: str, action: str) -> Any:
    model = botocore.session.get_session().get_service_model(service)
    names = {xform_name(name): name for name in model.operation_names}
    return model.operation_model(names[action])


def _normalise_parameters(self, parameters: dict, boto_service_name: str | None = None,
                          service_action_name: str | None = None) -> None:
    """Defect 1: service tasks never convert ASL's PascalCase parameters to boto's casing, so
    `states:startExecution.sync:2` fails with KeyError 'StateMachineArn'. moto already has the
    converter (`_to_boto_request`); the hook that should call it is a no-op."""
    service = self._get_boto_service_name(boto_service_name=boto_service_name)
    action = self._get_boto_service_action(service_action_name=service_action_name)
    shape = _operation(service, action).input_shape
    if shape is not None:
        self._to_boto_request(parameters, shape)


def _normalise_response(self, response: Any, boto_service_name: str | None = None,
                        service_action_name: str | None = None) -> None:
    """Defect 1, the way back: boto's camelCase response to ASL's PascalCase."""
    service = self._get_boto_service_name(boto_service_name=boto_service_name)
    action = self._get_boto_service_action(service_action_name=service_action_name)
    shape = _operation(service, action).output_shape
    if shape is not None:
        self._from_boto_response(response, shape)


def _from_boto_response_value(value: Any) -> Any:
    """Defect 2: a .sync task's output keeps boto's datetime StartDate/StopDate, and the parent's
    describe_execution then fails with a 500; AWS emits epoch milliseconds."""
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1000)
    return ORIGINAL["_from_boto_response_value"].__func__(value)


def _start_execution(self, state_machine_arn: str, name: str | None = None,
                     execution_input: str | None = None, trace_header: Any = None) -> Any:
    """Defect 3: an execution started without a name is named 'None', so the second one raises
    ExecutionAlreadyExists. AWS names it with a UUID."""
    return ORIGINAL["start_execution"](self, state_machine_arn, name or str(uuid.uuid4()),
                                       execution_input, trace_header)


def _is_within_segment(self, segments: tuple[Any, Any]) -> bool:
    """Defect 6: Scan with Segment crashes (500) on a Binary partition key, because the hash
    encodes a value that is already bytes."""
    if segments == (None, None):
        return True
    value = self.hash_key.value
    raw = value if isinstance(value, bytes) else str(value).encode("utf8")
    segment, total = segments
    return segment == md5_hash(raw).digest()[0] % total


def _execute_change_set(self, change_set_name: str, stack_name: str | None = None) -> None:
    """Defect 8: a stack created through a change set (what `aws cloudformation deploy` does) has no
    Outputs, because they were computed when the stack was still empty and never again."""
    ORIGINAL["execute_change_set"](self, change_set_name, stack_name)
    change_set = self.change_sets.get(change_set_name) or next(
        c for c in self.change_sets.values() if c.change_set_name == change_set_name)
    stack = self.stacks[change_set.stack_id]
    stack._parse_template()
    stack.output_map = stack._create_output_map()


def _invoke(self, body: str, request_headers: Any, response_headers: Any) -> Any:
    """Defect 9: an invocation with InvocationType DryRun runs the function's code; AWS only
    checks that the function exists and may be invoked, and answers 204 with no payload."""
    if request_headers.get("x-amz-invocation-type") == "DryRun":
        return b""
    return ORIGINAL["invoke"](self, body, request_headers, response_headers)


def _executing() -> bool:
    return bool(default_user_config.get("stepfunctions", {}).get("execute_state_machine"))


def _backend(account_id: str, region_name: str) -> Any:
    backends = parser_models.stepfunctions_parser_backends if _executing() \
        else sfn_models.stepfunctions_backends
    return backends[account_id][region_name]


def definition_of(properties: dict[str, Any]) -> str:
    """The state machine's definition as AWS builds it from DefinitionString, or from Definition
    with each ${Name} of DefinitionSubstitutions replaced."""
    text = properties.get("DefinitionString") or json.dumps(properties.get("Definition", {}))
    for name, value in (properties.get("DefinitionSubstitutions") or {}).items():
        text = text.replace("${" + name + "}", str(value))
    return text


@classmethod  # type: ignore[misc]
def _create_state_machine(cls, resource_name: str, cloudformation_json: Any, account_id: str,
                          region_name: str, **kwargs: Any) -> Any:
    """Defect 7: CloudFormation drops `Definition` + `DefinitionSubstitutions` (the machine gets an
    empty definition, the stack still completes) and creates state machines in the backend that
    does not execute them, so start_execution answers StateMachineDoesNotExist."""
    properties = cloudformation_json["Properties"]
    return _backend(account_id, region_name).create_state_machine(
        properties.get("StateMachineName", resource_name), definition_of(properties),
        properties.get("RoleArn", ""), tags=sfn_models.cfn_to_api_tags(properties.get("Tags", [])))


@classmethod  # type: ignore[misc]
def _delete_state_machine(cls, resource_name: str, cloudformation_json: Any, account_id: str,
                          region_name: str) -> None:
    """Defect 7, on delete: the machine lives in the executing backend."""
    _backend(account_id, region_name).delete_state_machine(resource_name)


_FIXES: dict[str, tuple[Any, str, Any]] = {}  # name → (owner, attribute, replacement)


def _register() -> None:
    base = task_service.StateTaskService
    _FIXES.update({
        "sfn-parameters": (base, "_normalise_parameters", _normalise_parameters),
        "sfn-response": (base, "_normalise_response", _normalise_response),
        "sfn-dates": (base, "_from_boto_response_value", staticmethod(_from_boto_response_value)),
        "unnamed-execution": (parser_models.StepFunctionsParserBackend, "start_execution",
                              _start_execution),
        "binary-segment": (Item, "is_within_segment", _is_within_segment),
        "cfn-state-machine": (sfn_models.StateMachine, "create_from_cloudformation_json",
                              _create_state_machine),
        "cfn-change-set-outputs": (CloudFormationBackend, "execute_change_set", _execute_change_set),
        "lambda-dry-run": (LambdaFunction, "invoke", _invoke),
        "cfn-state-machine-delete": (sfn_models.StateMachine, "delete_from_cloudformation_json",
                                     _delete_state_machine),
    })


def apply() -> None:
    """Apply every fix once (idempotent)."""
    if ORIGINAL:
        return
    _register()
    for owner, attribute, replacement in _FIXES.values():
        ORIGINAL[attribute] = owner.__dict__[attribute]
        setattr(owner, attribute, replacement)


@contextlib.contextmanager
def without(name: str) -> Iterator[None]:
    """Undo one fix for the duration of the block: the tests show each defect this way."""
    owner, attribute, replacement = _FIXES[name]
    setattr(owner, attribute, ORIGINAL[attribute])
    try:
        yield
    finally:
        setattr(owner, attribute, replacement)
