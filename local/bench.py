"""`make bench`: measurements on the embedded AWS, printed side by side. Never asserted in tests:
these machines are shared and noisy, so a benchmark reports and a person judges.

  budget   MaxReadUnits against the read units per second a run really consumed (DynamoDB's
           figures, as the embedded AWS reports them), over the Workers' phase of the run.
  types    items per second of each Process type on the same table, and each against Count.
  P1       a whole Puppeteer run's items/s against a plain 4-thread boto3 parallel scan of the
           same 20,000 items (Workers 4, BatchSize 250): what orchestration costs.
  P2, P3   Lambda invocations and state transitions per 1,000 Scan pages, for step-worker and
           for the seed's design (local/seed_lambda.py) on the same table, counted from the
           history events the Step Functions engine records, Map iterations included.
  P4       the handler's Count path (scan-batch with its checkpoints) against a raw boto3 Scan
           loop over the same table, both in one thread: what checkpointing costs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime
from typing import Any

import boto3

from local.aws import REGION, deploy, embedded


def fill(dynamodb: Any, table: str, count: int, size: int) -> None:
    dynamodb.create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "url", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "url", "KeyType": "HASH"}])
    for start in range(0, count, 25):
        dynamodb.batch_write_item(RequestItems={table: [
            {"PutRequest": {"Item": {"url": {"S": f"https://example.com/{i}"},
                                     "body": {"S": "x" * size}}}}
            for i in range(start, min(start + 25, count))]})


def run(sfn: Any, puppeteer: str, configuration: dict[str, Any]) -> dict[str, Any]:
    arn = sfn.start_execution(stateMachineArn=puppeteer, input=json.dumps(
        {"Configuration": configuration}))["executionArn"]
    while (found := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        time.sleep(0.2)
    assert found["status"] == "SUCCEEDED", found.get("cause")
    return found


def workers_phase(sfn: Any, execution_arn: str) -> float:
    """Seconds from the Map state's start to its end, from the execution's history."""
    events = sfn.get_execution_history(executionArn=execution_arn)["events"]

    def at(kind: str) -> datetime:
        return next(e["timestamp"] for e in events if e["type"] == kind)

    return (at("MapStateExited") - at("MapStateEntered")).total_seconds()


def budget(sfn: Any, dynamodb: Any, stack: dict[str, str], repeats: int) -> list[str]:
    table, budget_units = "bench-budget", 20.0
    fill(dynamodb, table, count=4000, size=1000)
    ratios = []
    for _ in range(repeats):
        found = run(sfn, stack["Puppeteer"], {
            "TableName": table, "TableHash": "url", "Workers": 4, "BatchSize": 25,
            "MaxReadUnits": budget_units})
        units = json.loads(found["output"])["Summary"]["ConsumedReadUnits"]
        ratios.append(units / workers_phase(sfn, found["executionArn"]) / budget_units)
    return [f"budget   MaxReadUnits {budget_units:.0f}/s, 4,000 items of 1 KB, Workers 4, "
            f"BatchSize 25: consumed/budget = {statistics.median(ratios):.3f} "
            f"(min {min(ratios):.3f}, max {max(ratios):.3f}, {repeats} runs; target 0.90-1.10)"]


USER_FUNCTION = "def handler(event, context):\n    return {'Processed': len(event['Items'])}\n"


def deploy_function(name: str) -> None:
    import io
    import zipfile

    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("fn.py", USER_FUNCTION)
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName=f"{name}-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    boto3.client("lambda", region_name=REGION).create_function(
        FunctionName=name, Runtime="python3.13", Handler="fn.handler", Role=role,
        Code={"ZipFile": code.getvalue()})


def types(sfn: Any, dynamodb: Any, stack: dict[str, str], repeats: int) -> list[str]:
    table, count = "bench-types", 4000
    fill(dynamodb, table, count=count, size=100)
    deploy_function("bench-function")
    copies = iter(range(10**6))

    def process(kind: str) -> dict[str, Any]:
        if kind == "Update":
            return {"Type": "Update", "UpdateExpression": "ADD #v :one",
                    "ExpressionAttributeNames": {"#v": "visits"},
                    "ExpressionAttributeValues": {":one": {"N": "1"}}}
        if kind == "Copy":
            target = f"bench-copy-{next(copies)}"
            dynamodb.create_table(
                TableName=target, BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": "url", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "url", "KeyType": "HASH"}])
            return {"Type": "Copy", "TargetTable": target}
        if kind == "Invoke":
            return {"Type": "Invoke", "FunctionName": "bench-function"}
        return {"Type": "Count"}

    rates: dict[str, list[float]] = {}
    for _ in range(repeats):
        for kind in ("Count", "Update", "Copy", "Invoke"):
            found = run(sfn, stack["Puppeteer"], {
                "TableName": table, "TableHash": "url", "Workers": 4, "BatchSize": 250,
                "Process": process(kind)})
            rates.setdefault(kind, []).append(count / workers_phase(sfn, found["executionArn"]))
    count_rate = statistics.median(rates["Count"])
    return [f"types    {kind:<6} {statistics.median(r):8,.0f} items/s "
            f"(min {min(r):,.0f}, max {max(r):,.0f}; {statistics.median(r) / count_rate:.2f} of "
            f"Count) on {count:,} items of 100 B, Workers 4, BatchSize 250"
            for kind, r in rates.items()]


def plain_parallel_scan(table: str, workers: int, batch: int) -> int:
    """What a script would do: one thread per segment, following LastEvaluatedKey."""
    from concurrent.futures import ThreadPoolExecutor

    def walk(segment: int) -> int:
        client, count, start = boto3.client("dynamodb", region_name=REGION), 0, None
        while True:
            page = client.scan(TableName=table, Segment=segment, TotalSegments=workers,
                               Limit=batch, **({"ExclusiveStartKey": start} if start else {}))
            count += page["Count"]
            start = page.get("LastEvaluatedKey")
            if not start:
                return count

    with ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(walk, range(workers)))


def timed(action: Any) -> tuple[Any, float]:
    began = time.perf_counter()
    result = action()
    return result, time.perf_counter() - began


def orchestration(sfn: Any, dynamodb: Any, stack: dict[str, str], repeats: int) -> list[str]:
    table, count = "bench-p1", 20_000
    fill(dynamodb, table, count=count, size=100)
    ratios, ours, theirs = [], [], []
    for _ in range(repeats):
        scanned, plain_seconds = timed(lambda: plain_parallel_scan(table, 4, 250))
        assert scanned == count
        found, seconds = timed(lambda: run(sfn, stack["Puppeteer"], {
            "TableName": table, "TableHash": "url", "Workers": 4, "BatchSize": 250}))
        assert json.loads(found["output"])["Summary"]["Scanned"] == count
        ours.append(count / seconds)
        theirs.append(count / plain_seconds)
        ratios.append(plain_seconds / seconds)
    return [f"P1       Puppeteer run {statistics.median(ours):,.0f} items/s, plain 4-thread scan "
            f"{statistics.median(theirs):,.0f} items/s: ratio {statistics.median(ratios):.2f} "
            f"(min {min(ratios):.2f}, max {max(ratios):.2f}, {repeats} runs; target >= 0.90)"]


def count_path(sfn: Any, dynamodb: Any, stack: dict[str, str], repeats: int) -> list[str]:
    from local.aws import function_module

    table, count = "bench-p4", 20_000
    fill(dynamodb, table, count=count, size=100)
    module = function_module(stack["Function"])

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 900_000

    def handler_walk(run_id: str) -> int:
        job = {"Run": {"TableName": table, "TableHash": "url", "Workers": 1, "BatchSize": 250,
                       "RunId": run_id}, "Segment": 0, "Attempt": 1, "Loops": 0}
        while not job.get("Done"):
            job = module.handler({"action": "scan-batch", "Job": job}, Context())
        return count

    def raw_walk() -> int:
        scanned, start = 0, None
        while True:
            page = dynamodb.scan(TableName=table, Limit=250,
                                 **({"ExclusiveStartKey": start} if start else {}))
            scanned += page["Count"]
            start = page.get("LastEvaluatedKey")
            if not start:
                return scanned

    ratios = []
    for i in range(repeats):
        _, raw_seconds = timed(raw_walk)
        _, handler_seconds = timed(lambda i=i: handler_walk(f"bench-p4-{i}"))
        ratios.append(raw_seconds / handler_seconds)
    return [f"P4       handler Count path / raw boto3 Scan loop, {count:,} items, BatchSize 250, "
            f"one thread: ratio {statistics.median(ratios):.3f} (min {min(ratios):.3f}, "
            f"max {max(ratios):.3f}, {repeats} runs; target >= 0.95)"]


SEED_WORKER = {
    "StartAt": "Scan", "States": {
        "Scan": {"Type": "Task", "Resource": "${Function}",
                 "Parameters": {"action": "page", "Job.$": "$"}, "Next": "More"},
        "More": {"Type": "Choice", "Choices": [
            {"Variable": "$.LastEvaluatedKey", "IsPresent": True, "Next": "Scan"}],
            "Default": "Done"},
        "Done": {"Type": "Succeed"}}}
SEED_PUPPETEER = {
    "StartAt": "Split", "States": {
        "Split": {"Type": "Task", "Resource": "${Function}", "Next": "Start",
                  "Parameters": {"action": "split", "Input.$": "$", "Execution.$": "$$.Execution.Name"}},
        "Start": {"Type": "Map", "ItemsPath": "$.Segments", "ResultPath": "$.Started",
                  "ItemSelector": {"Run.$": "$.Run", "Segment.$": "$$.Map.Item.Value"},
                  "ItemProcessor": {"StartAt": "StartWorker", "States": {"StartWorker": {
                      "Type": "Task", "Resource": "arn:aws:states:::states:startExecution",
                      "Parameters": {"StateMachineArn": "${Worker}", "Input.$": "$",
                                     "Name.$": "States.Format('{}-{}', $.Run.RunId, $.Segment)"},
                      "ResultSelector": {"Started": True}, "End": True}}},
                  "Next": "Wait"},
        "Wait": {"Type": "Wait", "Seconds": 2, "Next": "Poll"},
        "Poll": {"Type": "Task", "Resource": "${Function}", "ResultPath": "$.Status",
                 "Parameters": {"action": "status", "RunId.$": "$.Run.RunId"}, "Next": "Done?"},
        "Done?": {"Type": "Choice", "Choices": [
            {"Variable": "$.Status.Running", "NumericEquals": 0, "Next": "Done"}],
            "Default": "Wait"},
        "Done": {"Type": "Succeed"}}}


class EngineCounter:
    """Counts the history events the engine records, Map iterations included, by type."""

    def __init__(self) -> None:
        from collections import Counter

        from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager

        self.events: Counter = Counter()
        original = EventManager.add_event
        counter = self

        def add_event(manager: Any, context: Any, event_type: Any, *args: Any, **kwargs: Any) -> Any:
            counter.events[str(event_type).rsplit(".", 1)[-1]] += 1
            return original(manager, context, event_type, *args, **kwargs)

        EventManager.add_event = add_event

    def take(self) -> tuple[int, int]:
        """(Lambda invocations, state transitions) since the last call."""
        invocations = self.events["LambdaFunctionScheduled"]
        transitions = sum(n for kind, n in self.events.items() if kind.endswith("StateEntered"))
        self.events.clear()
        return invocations, transitions


def deploy_seed(sfn: Any) -> str:
    import io
    import zipfile
    from pathlib import Path

    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.write(Path(__file__).with_name("seed_lambda.py"), "seed_lambda.py")
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName="seed-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    worker = sfn.create_state_machine(
        name="seed-worker", roleArn=role,
        definition=json.dumps(SEED_WORKER).replace("${Function}", "arn:aws:lambda:" + REGION +
                                                   ":123456789012:function:seed"))["stateMachineArn"]
    boto3.client("lambda", region_name=REGION).create_function(
        FunctionName="seed", Runtime="python3.13", Handler="seed_lambda.handler", Role=role,
        Code={"ZipFile": code.getvalue()}, Environment={"Variables": {"WORKER_ARN": worker}})
    definition = json.dumps(SEED_PUPPETEER).replace("${Worker}", worker).replace(
        "${Function}", f"arn:aws:lambda:{REGION}:123456789012:function:seed")
    return sfn.create_state_machine(name="seed-puppeteer", roleArn=role,
                                    definition=definition)["stateMachineArn"]


def costs(sfn: Any, dynamodb: Any, stack: dict[str, str], repeats: int) -> list[str]:
    """Per 1,000 pages, at two page sizes: with 250 items a page this table has 84 pages and the
    run's fixed costs dominate; with 25 items, 804 pages show the cost that grows with a table."""
    table, count = "bench-costs", 20_000
    fill(dynamodb, table, count=count, size=100)
    counter = EngineCounter()
    seed = deploy_seed(sfn)
    lines = []
    del repeats  # counts, not timings: one run each (the seed's polls vary by a few)
    for batch in (250, 25):
        configuration = {"TableName": table, "TableHash": "url", "Workers": 4, "BatchSize": batch}
        pages = count // batch + configuration["Workers"]  # each segment ends on a short page
        for name, machine in (("step-worker", stack["Puppeteer"]), ("seed", seed)):
            counter.take()
            run(sfn, machine, configuration)
            invocations, transitions = (1000 * n / pages for n in counter.take())
            lines.append(f"P2/P3    {name:<12} {invocations:7.1f} invocations, {transitions:7.1f} "
                         f"state transitions per 1,000 pages ({pages} pages: {count:,} items, "
                         f"Workers 4, BatchSize {batch}; targets <= 10 and <= 50)")
    return lines


BENCHMARKS = {"P1": orchestration, "P2/P3": costs, "P4": count_path, "budget": budget, "types": types}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*",
                        help=f"which to run (default: all of {', '.join(BENCHMARKS)})")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmarks {sorted(unknown)}; choose from {', '.join(BENCHMARKS)}")
    with embedded():
        stack = deploy()
        sfn = boto3.client("stepfunctions", region_name=REGION)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        for name in args.names or list(BENCHMARKS):
            for line in BENCHMARKS[name](sfn, dynamodb, stack, args.repeats):
                print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
