"""The README's AWS commands, word for word, through a shell, against `make local`."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- test: local-endpoint"


# The README's operations: stop a run (slowed by MaxReadUnits so that it is still running), resume it
# with make resume (which watches it to its end), then delete the stack.
STOP_RESUME_DELETE = r"""
puppeteer=arn:aws:states:eu-west-1:123456789012:stateMachine:step-worker-puppeteer-stable
arn=$(aws stepfunctions start-execution --state-machine-arn $puppeteer --input '{"Configuration":
  {"TableName": "step-worker-url-stable", "TableHash": "url", "Workers": 4, "BatchSize": 250,
   "MaxReadUnits": 8}}' --query executionArn --output text)
sleep 2
make stop EXECUTION=$arn
make resume EXECUTION=$arn > /dev/null
echo "stopped=$(aws stepfunctions describe-execution --execution-arn $arn --query status --output text)"
resumed=$(aws stepfunctions list-executions --state-machine-arn $puppeteer \
  --query 'max_by(executions, &startDate).executionArn' --output text)
echo "resumed=$(aws stepfunctions describe-execution --execution-arn $resumed --query output --output text)"
make delete > /dev/null
echo "stacks=$(aws cloudformation list-stacks --stack-status-filter CREATE_COMPLETE UPDATE_COMPLETE \
  --query 'StackSummaries[].StackName' --output text)"
"""


def readme_block() -> str:
    """The fenced block that follows the marker in README.md."""
    text = (ROOT / "README.md").read_text()
    after = text[text.index(MARKER):]
    return re.search(r"```bash\n(.*?)```", after, re.S).group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shell_environment() -> dict[str, str]:
    """A clean shell: no AWS settings of this test process, the venv's `aws` on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def wait_for(port: int, server: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stdout.read()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"make local did not listen on {port} within {seconds} s")


def test_the_readme_commands_deploy_and_run_against_make_local():
    port = free_port()
    env = shell_environment()
    server = subprocess.Popen(["make", "local", f"PORT={port}"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        wait_for(port, server)
        block = readme_block().replace("127.0.0.1:5000", f"127.0.0.1:{port}")
        check = """
        newest=$(aws stepfunctions list-executions --state-machine-arn \\
          arn:aws:states:eu-west-1:123456789012:stateMachine:step-worker-puppeteer-stable \\
          --query 'max_by(executions, &startDate).executionArn' --output text)
        aws stepfunctions describe-execution --execution-arn "$newest" --query output --output text
        aws dynamodb scan --table-name step-worker-url-stable --select COUNT --query Count
        """
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block + check], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        lines = done.stdout.strip().splitlines()
        items = int(lines[-1])
        output = json.loads(lines[-2])
        assert items == 10_000
        assert output["Summary"]["Scanned"] == items
        assert output["Summary"]["Processed"] == items
        assert '"OutputKey": "Puppeteer"' in done.stdout
        assert "SUCCEEDED" in done.stdout and "Summary" in done.stdout  # make watch's ending

        operations = block.split("make build")[0] + STOP_RESUME_DELETE
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", operations], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        said = dict(line.split("=", 1) for line in done.stdout.splitlines()
                    if line.startswith(("stopped=", "resumed=", "stacks=")))
        assert said["stopped"] == "ABORTED"
        assert json.loads(said["resumed"])["Summary"]["Scanned"] == 10_000
        assert "step-worker-stable" not in said["stacks"]
    finally:
        os.killpg(server.pid, signal.SIGINT)
        out, _ = server.communicate(timeout=30)
    # The server stops cleanly on Ctrl-C; make, interrupted too, reports the signal as it always does.
    assert server.returncode in (0, -signal.SIGINT, 130), out
    assert out.rstrip().endswith("stopped"), out[-2000:]
