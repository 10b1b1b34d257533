"""The embedded AWS: moto with the fixes step-worker needs, Lambda run in-process, and a deploy of
template.yml packaged by awscli's own `cloudformation package`. Nothing here ships to AWS.

    with embedded():
        stack = deploy()                      # template.yml, as `make package deploy` would
        sfn.start_execution(stateMachineArn=stack["Puppeteer"], input=...)
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws

from . import emulation, faults, fixes, runtime, speed

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yml"
REGION = "eu-west-1"
ARTIFACTS = "step-worker-artifacts"
CONFIG = {"stepfunctions": {"execute_state_machine": True}}
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION,
                    "AWS_REGION": REGION}


class _RetryClock:
    """What moto's ASL retrier sees as `time`: its sleeps between Retry attempts are scaled, so
    tests of retries that would wait minutes on AWS take moments. 1.0 (the default) is AWS's pace."""

    scale = 1.0

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds * self.scale)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


RETRY_CLOCK = _RetryClock()


def install() -> None:
    """Patch moto (idempotent). Import-time cheap; call before any AWS call."""
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    fixes.apply()
    emulation.apply()
    faults.apply()
    runtime.apply()
    speed.apply()
    retrier_decl.time = RETRY_CLOCK  # type: ignore[assignment]
    # moto's ASL engine logs tracebacks of states that fail on purpose (Catch, Retry).
    logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)


@contextlib.contextmanager
def embedded() -> Iterator[None]:
    """An in-process AWS for the duration of the block, with fake credentials."""
    install()
    saved = {k: os.environ.get(k) for k in FAKE_CREDENTIALS}
    os.environ.update(FAKE_CREDENTIALS)
    try:
        with mock_aws(config=CONFIG):  # type: ignore[arg-type]
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def package(template: Path = TEMPLATE, bucket: str = ARTIFACTS) -> str:
    """`aws cloudformation package`, run by awscli itself in this process → the packaged template."""
    from awscli.clidriver import create_clidriver

    s3 = boto3.client("s3", region_name=REGION)
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "packaged.yml"
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet), \
                contextlib.redirect_stderr(quiet):
            code = create_clidriver().main([
                "cloudformation", "package", "--region", REGION, "--template-file", str(template),
                "--s3-bucket", bucket, "--output-template-file", str(out)])
        if code != 0:
            raise RuntimeError(f"aws cloudformation package failed with exit code {code}")
        return out.read_text()


def deploy(stack_name: str = "step-worker-stable", parameters: dict[str, Any] | None = None,
           template: Path = TEMPLATE) -> dict[str, str]:
    """Package and create the stack; its Outputs as a dict."""
    cfn = boto3.client("cloudformation", region_name=REGION)
    cfn.create_stack(
        StackName=stack_name, TemplateBody=package(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": str(v)}
                    for k, v in (parameters or {}).items()],
        Capabilities=["CAPABILITY_IAM"])
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise RuntimeError(f"stack {stack_name} is {stack['StackStatus']}")
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def function_module(function_name: str) -> Any:
    """The module that runs a deployed function in this process (for tests that spy on it)."""
    from moto.awslambda.models import lambda_backends

    function = lambda_backends["123456789012"][REGION].get_function(function_name)
    return runtime.module_of(function)
