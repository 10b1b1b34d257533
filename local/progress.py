"""A live view of a run, read from the checkpoint table: a progress bar of items scanned against the
table's item count, segments done, and the summary at the end. Works against any endpoint boto3 is
pointed at (AWS, or the embedded AWS)."""

from __future__ import annotations

import json
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def segment_rows(dynamodb: Any, checkpoint_table: str, run_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for page in dynamodb.get_paginator("query").paginate(
            TableName=checkpoint_table, KeyConditionExpression="RunId = :r AND Segment >= :z",
            ExpressionAttributeValues={":r": {"S": run_id}, ":z": {"N": "0"}}):
        rows.extend(page["Items"])
    return rows


def watch(sfn: Any, dynamodb: Any, execution_arn: str, checkpoint_table: str, run_id: str,
          items: int, console: Console | None = None, every: float = 0.5) -> dict[str, Any]:
    """Show the run's progress until its execution ends → describe_execution."""
    console = console or Console()
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[segments]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("scanned", total=items or None, segments="")
        while True:
            execution = sfn.describe_execution(executionArn=execution_arn)
            rows = segment_rows(dynamodb, checkpoint_table, run_id)
            done = sum(1 for r in rows if r.get("Done", {}).get("BOOL"))
            scanned = sum(int(r.get("Scanned", {}).get("N", 0)) for r in rows)
            progress.update(task, completed=scanned, segments=f"{done} segments done")
            if execution["status"] != "RUNNING":
                return execution
            time.sleep(every)


def summary_table(output: dict[str, Any]) -> Table:
    table = Table(title="Summary")
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row("RunId", output["RunId"])
    table.add_row("TableName", output["TableName"])
    for key, value in output["Summary"].items():
        table.add_row(key, "\n".join(value) if isinstance(value, list) else str(value))
    return table


def show_end(execution: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    if execution["status"] == "SUCCEEDED":
        console.print(summary_table(json.loads(execution["output"])))
    else:
        console.print(f"[red]{execution['status']}[/red] {execution.get('error', '')}")
        console.print(execution.get("cause", ""))
