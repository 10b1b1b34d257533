"""Lambda without Docker: every invocation of a function runs its deployed code in this process.

moto hands each invocation to `LambdaFunction._invoke_lambda(event)`, which normally starts a
container. We replace that one method: the function's zip (as uploaded by `aws cloudformation
package`) is unpacked once per code version and imported as a fresh module, with the function's
Environment applied while it is imported (its cold start); then the handler is called with a context
whose remaining time counts down from the function's Timeout. An exception becomes Lambda's error
payload, whose errorType is the class name that Step Functions' Retry and Catch match.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import sys
import tempfile
import threading
import time
import traceback
import uuid
import zipfile
from types import ModuleType
from typing import Any

from moto.awslambda.models import LambdaFunction

_MODULES: dict[tuple[str, str], ModuleType] = {}
_LOCK = threading.Lock()
ORIGINAL_INVOKE = LambdaFunction._invoke_lambda


class Context:
    """The part of Lambda's context object that handlers use."""

    def __init__(self, function: LambdaFunction) -> None:
        self.function_name = function.function_name
        self.function_version = function.version
        self.invoked_function_arn = function.function_arn
        self.memory_limit_in_mb = int(function.memory_size)
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function.function_name}"
        self.timeout = float(function.timeout)
        self.deadline = time.monotonic() + self.timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def module_of(function: LambdaFunction) -> ModuleType:
    """The function's handler module, imported once per code version (a warm container)."""
    key = (function.function_arn, function.code_sha_256)
    with _LOCK:
        if key not in _MODULES:
            _MODULES[key] = _import(function)
        return _MODULES[key]


def _import(function: LambdaFunction) -> ModuleType:
    file_name, _ = function.handler.rsplit(".", 1)
    folder = tempfile.mkdtemp(prefix=f"lambda-{function.function_name}-")
    with zipfile.ZipFile(io.BytesIO(function.code_bytes)) as archive:
        archive.extractall(folder)
    spec = importlib.util.spec_from_file_location(
        f"lambda_{function.function_name}_{function.code_sha_256[:8]}".replace("-", "_"),
        os.path.join(folder, file_name.replace(".", "/") + ".py"))
    assert spec and spec.loader, f"no {file_name}.py in the code of {function.function_name}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    saved = dict(os.environ)
    os.environ.update({k: str(v) for k, v in function.environment_vars.items()})
    try:
        spec.loader.exec_module(module)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return module


def invoke(function: LambdaFunction, event: Any) -> tuple[str, bool, str]:
    """moto's contract: (payload as JSON, whether the function errored, logs)."""
    entry = getattr(module_of(function), function.handler.rsplit(".", 1)[1])
    context = Context(function)
    try:
        result = entry(event, context)
    except Exception as error:  # noqa: BLE001 - every error is the function's answer
        payload = {"errorType": type(error).__name__, "errorMessage": str(error),
                   "stackTrace": traceback.format_tb(error.__traceback__)}
        return json.dumps(payload), True, ""
    if context.get_remaining_time_in_millis() == 0:
        # Lambda would have stopped the function at its Timeout; in-process we can only tell after.
        payload = {"errorType": "Sandbox.Timedout",
                   "errorMessage": f"Task timed out after {context.timeout:.2f} seconds"}
        return json.dumps(payload), True, ""
    return json.dumps(result), False, ""


def _invoke_lambda(self: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
    return invoke(self, event if event is not None else {})


def apply() -> None:
    LambdaFunction._invoke_lambda = _invoke_lambda
