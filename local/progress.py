"""A live view of a run, read from the checkpoint table: items scanned against the table's estimated
item count, rate and time left, segments done/running/failed, and the summary at the end. It reads
only AWS APIs, so it works the same against AWS and the embedded AWS.

    python -m local.progress [--execution ARN] [--stack step-worker-stable]   (make watch)
    python -m local.progress --resume --execution ARN                          (make resume)

Without --execution it follows the Puppeteer's newest execution. --resume first starts the
Puppeteer again with the run's input and RunId, which continues a stopped or failed run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ParamValidationError
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table

from handler import launch_name


@dataclass(frozen=True)
class Snapshot:
    """What is known of a run at one moment."""

    status: str
    execution_arn: str
    run_id: str
    table: str
    segments: int  # of the run; 0 until Split has run
    estimated_items: int  # DynamoDB's ItemCount, refreshed about every six hours
    scanned: int
    done: int
    failed: int
    started: int  # segments with a checkpoint
    output: dict[str, Any] | None = None
    error: str | None = None
    cause: str | None = None

    @property
    def running(self) -> int:
        return self.started - self.done - self.failed


def resume_input(execution: dict[str, Any]) -> dict[str, Any]:
    """The input that continues a stopped or failed run: its own input, with its RunId."""
    document = json.loads(execution.get("input") or "{}")
    return {"Comment": f"Resume run {run_id_of(execution)}",
            "Configuration": {**document["Configuration"], "RunId": run_id_of(execution)}}


def run_id_of(execution: dict[str, Any]) -> str:
    """A resumed run keeps its RunId; a new run is named after its execution (see handler.split)."""
    document = json.loads(execution.get("input") or "{}")
    configuration = document.get("Configuration") if isinstance(document, dict) else None
    if isinstance(configuration, dict) and configuration.get("RunId"):
        return str(configuration["RunId"])
    return launch_name(execution["name"])


def snapshot(sfn: Any, dynamodb: Any, execution_arn: str, checkpoint_table: str) -> Snapshot:
    execution = sfn.describe_execution(executionArn=execution_arn)
    run_id = run_id_of(execution)
    rows: list[dict[str, Any]] = []
    for page in dynamodb.get_paginator("query").paginate(
            TableName=checkpoint_table, ConsistentRead=True,
            KeyConditionExpression="RunId = :r", ExpressionAttributeValues={":r": {"S": run_id}}):
        rows.extend(page["Items"])
    run = next((r for r in rows if r["Segment"]["N"] == "-1"), None)
    config = json.loads(run["Configuration"]["S"]) if run else {}
    segments = [r for r in rows if r["Segment"]["N"] != "-1"]
    table = config.get("TableName", "")
    try:
        estimated = dynamodb.describe_table(TableName=table)["Table"].get("ItemCount", 0)
    except (ParamValidationError, dynamodb.exceptions.ClientError):
        estimated = 0  # no table yet (Split failed), no longer, or not ours to describe
    output = json.loads(execution["output"]) if execution.get("output") else None
    return Snapshot(
        status=execution["status"], execution_arn=execution_arn, run_id=run_id, table=table,
        segments=int(config.get("Segments", 0)), estimated_items=int(estimated),
        scanned=sum(int(r.get("Scanned", {}).get("N", 0)) for r in segments),
        done=sum(1 for r in segments if r.get("Done", {}).get("BOOL")),
        failed=sum(1 for r in segments if "Error" in r and not r.get("Done", {}).get("BOOL")),
        started=len(segments), output=output, error=execution.get("error"),
        cause=execution.get("cause"))


def segments_line(s: Snapshot) -> str:
    waiting = max(0, s.segments - s.started)
    return (f"segments: {s.done} done, {s.running} running, {s.failed} failed, "
            f"{waiting} waiting, of {s.segments}")


def summary_table(output: dict[str, Any]) -> Table:
    table = Table(title="Summary", show_header=False)
    table.add_column("field")
    table.add_column("value", justify="right")
    table.add_row("RunId", output["RunId"])
    table.add_row("TableName", output["TableName"])
    for key, value in output["Summary"].items():
        table.add_row(key, "\n".join(value) if isinstance(value, list) else str(value))
    return table


def failure(error: str | None, cause: str | None) -> tuple[str, Any]:
    """An execution's error and cause as a person wants them: the Lambda's own message, not its
    stack trace; for WorkersFailed, the failed segments and their causes."""
    try:
        payload = json.loads(cause or "")
    except ValueError:
        return error or "", cause or ""
    if isinstance(payload, dict) and "errorMessage" in payload:
        error, cause = payload.get("errorType", error), payload["errorMessage"]
        try:
            payload = json.loads(cause)
        except ValueError:
            return error or "", cause
    if isinstance(payload, dict) and "FailedSegments" in payload:
        table = Table("Segment", "Error", "Cause", title=f"{payload['FailedSegmentCount']} failed")
        for failed in payload["FailedSegments"]:
            table.add_row(str(failed["Segment"]), escape(failed["Error"]), escape(failed["Cause"]))
        return error or "", table
    return error or "", cause or ""


def ending(s: Snapshot) -> Any:
    """What to show once the run has ended."""
    if s.status == "SUCCEEDED" and s.output:
        return summary_table(s.output)
    error, cause = failure(s.error, s.cause)
    lines: list[Any] = [f"[red]{s.status}[/red] {escape(error)}",
                        escape(cause) if isinstance(cause, str) else cause]
    if s.run_id and s.segments:
        lines.append(f"Resume it with: make resume EXECUTION={s.execution_arn}")
    return Group(*lines)


def view(s: Snapshot, rate: float | None) -> Group:
    """The live view of one snapshot: a bar of items scanned, the rate and time left, segments."""
    total = max(s.estimated_items, s.scanned)
    line = Table.grid(padding=(0, 1))
    line.add_row(
        ProgressBar(total=total or None, completed=s.scanned, width=30),
        f"{s.scanned / total:4.0%}" if total else "",
        f"{s.scanned:,} of ~{total:,} items",
        f"{rate:,.0f} items/s" if rate else "",
        f"ETA {remaining(total - s.scanned, rate)}" if rate and total > s.scanned else "")
    return Group(f"[bold]Run {s.run_id}[/bold] of {s.table or '…'}: {s.status}", line,
                 segments_line(s))


def remaining(items: int, rate: float) -> str:
    seconds = int(items / rate)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def watch(sfn: Any, dynamodb: Any, execution_arn: str, checkpoint_table: str,
          console: Console | None = None, every: float = 0.5) -> Snapshot:
    """Show the run's progress until its execution ends; then its summary or failure."""
    console = console or Console()
    first: tuple[float, int] | None = None
    with Live(console=console, auto_refresh=False) as live:
        while True:
            s = snapshot(sfn, dynamodb, execution_arn, checkpoint_table)
            now = time.monotonic()
            if first is None or (s.scanned and not first[1]):
                first = (now, s.scanned) if s.scanned else (now, 0)
            elapsed = now - first[0]
            rate = (s.scanned - first[1]) / elapsed if elapsed > 0 and s.scanned else None
            live.update(view(s, rate), refresh=True)
            if s.status != "RUNNING":
                break
            time.sleep(every)
    console.print()
    console.print(ending(s))
    return s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execution", default="", help="a Puppeteer execution ARN (default: newest)")
    parser.add_argument("--stack", default="step-worker-stable")
    parser.add_argument("--resume", action="store_true",
                        help="start the Puppeteer again to continue that run, and watch it")
    args = parser.parse_args()
    outputs = {o["OutputKey"]: o["OutputValue"] for o in boto3.client("cloudformation")
               .describe_stacks(StackName=args.stack)["Stacks"][0]["Outputs"]}
    sfn, dynamodb = boto3.client("stepfunctions"), boto3.client("dynamodb")
    execution = args.execution
    if not execution:
        runs = sfn.list_executions(stateMachineArn=outputs["Puppeteer"])["executions"]
        if not runs:
            print("The Puppeteer has no executions yet.", file=sys.stderr)
            return 1
        execution = max(runs, key=lambda e: e["startDate"])["executionArn"]
    if args.resume:
        document = resume_input(sfn.describe_execution(executionArn=execution))
        print(f"Resuming with {json.dumps(document)}", flush=True)
        execution = sfn.start_execution(stateMachineArn=outputs["Puppeteer"],
                                        input=json.dumps(document))["executionArn"]
    s = watch(sfn, dynamodb, execution, outputs["CheckpointTable"])
    return 0 if s.status == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
