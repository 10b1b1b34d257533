"""Process types end to end, on the stack deployed from template.yml, with the README's recipes as
inputs. Each test checks the final state of every item, not only the counts."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections import Counter
from pathlib import Path

import boto3
import pytest

from local.aws import REGION, function_module
from local.aws.faults import throttling
from tests.conftest import create_table, key_id, make_table, run

README = Path(__file__).resolve().parents[1] / "README.md"
SHAPE_NAMES = ["S", "N", "B", "N+S", "S+N"]


def recipe(name: str, table: str, hash_key: str = "id", **more) -> dict:
    """The README's recipe `name`, pointed at a test table."""
    text = README.read_text()
    block = re.search(r"```json\n(.*?)```", text[text.index(f"<!-- recipe: {name} -->"):], re.S)
    document = json.loads(block.group(1))
    document["Configuration"].update(TableName=table, TableHash=hash_key, **more)
    return document


def scan_all(dynamodb, table: str) -> list[dict]:
    pages = dynamodb.get_paginator("scan").paginate(TableName=table)
    return [item for page in pages for item in page["Items"]]


def key_of(item: dict) -> tuple:
    return tuple(sorted((k, json.dumps(v, default=str)) for k, v in item.items()
                        if k in ("id", "sort")))


@pytest.mark.parametrize("shape", SHAPE_NAMES)
def test_backfill_recipe_sets_the_attribute_where_missing(stack, clients, shape):
    table, keys = make_table(clients.dynamodb, shape, count=45)
    first = scan_all(clients.dynamodb, table)[0]
    clients.dynamodb.update_item(TableName=table, Key={k: first[k] for k in ("id", "sort") if k in first},
                                 UpdateExpression="SET #s = :old",
                                 ExpressionAttributeNames={"#s": "status"},
                                 ExpressionAttributeValues={":old": {"S": "old"}})

    found = run(clients.sfn, stack["Puppeteer"], recipe("backfill", table, BatchSize=10, Workers=3))

    assert found["status"] == "SUCCEEDED", found.get("cause")
    items = scan_all(clients.dynamodb, table)
    assert {key_id({k: v for k, v in i.items() if k in ("id", "sort")}) for i in items} == keys
    statuses = Counter(item["status"]["S"] for item in items)
    assert statuses == Counter({"new": 44, "old": 1})
    assert found["output"]["Summary"]["Processed"] == 45


@pytest.mark.parametrize("shape", SHAPE_NAMES)
def test_an_update_reaches_each_item_exactly_once(stack, clients, shape):
    table, _ = make_table(clients.dynamodb, shape, count=60)
    counter = {"Type": "Update", "UpdateExpression": "ADD #v :one",
               "ExpressionAttributeNames": {"#v": "visits"},
               "ExpressionAttributeValues": {":one": {"N": "1"}}}

    found = run(clients.sfn, stack["Puppeteer"], recipe(
        "backfill", table, Workers=4, BatchSize=7, Process=counter))

    assert found["status"] == "SUCCEEDED", found.get("cause")
    assert Counter(item["visits"]["N"] for item in scan_all(clients.dynamodb, table)) == \
        Counter({"1": 60})
    summary = found["output"]["Summary"]
    assert (summary["Scanned"], summary["Processed"], summary["Skipped"]) == (60, 60, 0)


def test_an_item_deleted_during_the_run_stays_deleted(stack, clients, monkeypatch):
    module = function_module(stack["Function"])
    table, _ = make_table(clients.dynamodb, "S", count=20)
    victim = {"id": {"S": "https://example.com/00004"}}
    original = module.update_item

    def delete_then_update(request):
        if request["Key"] == victim:
            boto3.client("dynamodb", region_name=REGION).delete_item(TableName=table, Key=victim)
        return original(request)

    monkeypatch.setattr(module, "update_item", delete_then_update)

    found = run(clients.sfn, stack["Puppeteer"], recipe("backfill", table, Workers=2))

    assert found["status"] == "SUCCEEDED", found.get("cause")
    assert "Item" not in clients.dynamodb.get_item(TableName=table, Key=victim)
    summary = found["output"]["Summary"]
    assert (summary["Processed"], summary["Skipped"]) == (19, 1)
    assert all(item["status"]["S"] == "new" for item in scan_all(clients.dynamodb, table))


@pytest.mark.parametrize("shape", SHAPE_NAMES)
def test_copy_recipe_makes_an_identical_table(stack, clients, shape):
    table, _ = make_table(clients.dynamodb, shape, count=70)
    target = create_table(clients.dynamodb, shape, f"{table}-copy")

    found = run(clients.sfn, stack["Puppeteer"], recipe(
        "copy", table, Workers=3, BatchSize=30, Process={"Type": "Copy", "TargetTable": target}))

    assert found["status"] == "SUCCEEDED", found.get("cause")
    source_items = sorted(scan_all(clients.dynamodb, table), key=key_of)
    assert sorted(scan_all(clients.dynamodb, target), key=key_of) == source_items
    assert found["output"]["Summary"]["Processed"] == 70


def test_a_throttled_copy_still_copies_everything(stack, clients):
    table, _ = make_table(clients.dynamodb, "N+S", count=100)
    target = create_table(clients.dynamodb, "N+S", f"{table}-copy")

    with throttling(0.3, "BatchWriteItem") as injected:
        found = run(clients.sfn, stack["Puppeteer"], recipe(
            "copy", table, Workers=2, BatchSize=50, Process={"Type": "Copy", "TargetTable": target}))

    assert found["status"] == "SUCCEEDED", found.get("cause")
    assert injected["BatchWriteItem"] >= 1
    assert sorted(scan_all(clients.dynamodb, target), key=key_of) == \
        sorted(scan_all(clients.dynamodb, table), key=key_of)


USER_FUNCTION = """
SEEN = []

def handler(event, context):
    for item in event["Items"]:
        if item.get("poison"):
            raise ValueError("cannot handle " + str(item["id"]))
    SEEN.extend((event["TableName"], item["id"], item.get("sort")) for item in event["Items"])
    return {"Processed": len(event["Items"])}
"""


@pytest.fixture(scope="module")
def my_function(aws):
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("fn.py", USER_FUNCTION)
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName="my-function-role", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "lambda.amazonaws.com"}}]}))
    boto3.client("lambda", region_name=REGION).create_function(
        FunctionName="my-function", Runtime="python3.13", Handler="fn.handler",
        Role=role["Role"]["Arn"], Code={"ZipFile": code.getvalue()})
    return function_module("my-function")


@pytest.mark.parametrize("shape", ["S", "N+S"])
def test_invoke_recipe_sends_each_item_once_as_plain_json(stack, clients, my_function, shape):
    table, _ = make_table(clients.dynamodb, shape, count=50)

    found = run(clients.sfn, stack["Puppeteer"], recipe("invoke", table, Workers=3, BatchSize=8))

    assert found["status"] == "SUCCEEDED", found.get("cause")
    seen = Counter((i, s) for t, i, s in my_function.SEEN if t == table)
    expected = {(int(item["id"]["N"]) if "N" in item["id"] else item["id"]["S"],
                 item["sort"]["S"] if "sort" in item else None)
                for item in scan_all(clients.dynamodb, table)}
    assert seen == Counter({key: 1 for key in expected})
    assert found["output"]["Summary"]["Processed"] == 50


def test_a_failing_function_fails_its_segment_never_skips_it(stack, clients, my_function,
                                                             monkeypatch):
    from local.aws import RETRY_CLOCK

    monkeypatch.setattr(RETRY_CLOCK, "scale", 0.001)
    table, _ = make_table(clients.dynamodb, "S", count=12)
    clients.dynamodb.update_item(TableName=table, Key={"id": {"S": "https://example.com/00003"}},
                                 UpdateExpression="SET poison = :t",
                                 ExpressionAttributeValues={":t": {"BOOL": True}})

    found = run(clients.sfn, stack["Puppeteer"], recipe("invoke", table, Workers=2, BatchSize=4))

    assert found["error"] == "WorkersFailed"
    cause = json.loads(json.loads(found["cause"])["errorMessage"])
    [failed] = cause["FailedSegments"]
    assert failed["Error"] == "InvokeFailed" and "00003" in failed["Cause"]
    assert cause["Summary"]["Processed"] < 12


def test_dry_run_writes_nothing_and_estimates_the_real_run(stack, clients):
    table, _ = make_table(clients.dynamodb, "S", count=30)
    target = create_table(clients.dynamodb, "S", f"{table}-copy")
    before = sorted(scan_all(clients.dynamodb, table), key=key_of)

    updated = run(clients.sfn, stack["Puppeteer"], recipe("backfill", table, DryRun=True))
    copied = run(clients.sfn, stack["Puppeteer"], recipe(
        "copy", table, DryRun=True, Process={"Type": "Copy", "TargetTable": target}))

    assert sorted(scan_all(clients.dynamodb, table), key=key_of) == before
    assert scan_all(clients.dynamodb, target) == []
    for found in (updated, copied):
        summary = found["output"]["Summary"]
        assert summary["DryRun"] is True and summary["Processed"] == 30
        assert summary["Estimate"]["ItemsWritten"] == 30


def test_filter_recipe_counts_the_matching_items(stack, clients):
    table, _ = make_table(clients.dynamodb, "S", count=40)
    for i in range(0, 40, 4):
        clients.dynamodb.update_item(TableName=table, Key={"id": {"S": f"https://example.com/{i:05d}"}},
                                     UpdateExpression="SET title = :t",
                                     ExpressionAttributeValues={":t": {"S": "A title"}})

    found = run(clients.sfn, stack["Puppeteer"], recipe("filter", table, Workers=2, BatchSize=6))

    assert found["status"] == "SUCCEEDED", found.get("cause")
    summary = found["output"]["Summary"]
    assert (summary["Scanned"], summary["Processed"]) == (40, 30)


@pytest.mark.parametrize("process,field", [
    ({"Type": "Copy", "TargetTable": "no-such-table"}, "Process.TargetTable"),
    ({"Type": "Copy", "TargetTable": "step-worker-checkpoints-stable"}, "Process.TargetTable"),
    ({"Type": "Invoke", "FunctionName": "no-such-function"}, "Process.FunctionName"),
    ({"Type": "Update", "UpdateExpression": "SET = broken"}, "Process"),
])
def test_a_process_the_services_refuse_fails_before_any_worker(stack, clients, spy, process, field):
    table, _ = make_table(clients.dynamodb, "S", count=3)

    found = run(clients.sfn, stack["Puppeteer"], recipe("backfill", table, Process=process))

    assert found["error"] == "InvalidConfiguration"
    assert field in json.loads(found["cause"])["errorMessage"]
    assert not spy
