"""The seed project's design, rebuilt for `make bench` only (never deployed by template.yml): one
Lambda invocation and two state transitions per Scan page, and a Puppeteer that starts every Worker
at once and then polls every 2 seconds until none is running. Actions:

  split   {"Configuration": {...}} → {"Run": {...}, "Segments": [0, 1, ...]}
  page    one Scan page of one segment → the job, with LastEvaluatedKey while there is more
  status  how many of the run's Workers are still running
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3

WORKER_ARN = os.environ.get("WORKER_ARN", "")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"split": split, "page": page, "status": status}[event["action"]](event)


def split(event: dict[str, Any]) -> dict[str, Any]:
    config = event["Input"]["Configuration"]
    run = {**config, "RunId": event["Execution"]}
    return {"Run": run, "Segments": list(range(config["Workers"]))}


def page(event: dict[str, Any]) -> dict[str, Any]:
    job = event["Job"]
    run = job["Run"]
    request = {"TableName": run["TableName"], "Limit": run["BatchSize"],
               "Segment": job["Segment"], "TotalSegments": run["Workers"]}
    if job.get("LastEvaluatedKey"):
        request["ExclusiveStartKey"] = json.loads(job["LastEvaluatedKey"])
    answer = boto3.client("dynamodb").scan(**request)
    job = {**job, "Count": job.get("Count", 0) + answer["Count"]}
    job.pop("LastEvaluatedKey", None)
    if "LastEvaluatedKey" in answer:
        job["LastEvaluatedKey"] = json.dumps(answer["LastEvaluatedKey"])
    return job


def status(event: dict[str, Any]) -> dict[str, Any]:
    sfn = boto3.client("stepfunctions")
    running = [e for e in sfn.list_executions(stateMachineArn=WORKER_ARN,
                                              statusFilter="RUNNING")["executions"]
               if e["name"].startswith(event["RunId"])]
    return {"RunId": event["RunId"], "Running": len(running)}
