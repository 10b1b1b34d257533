"""End to end: template.yml deployed to the embedded AWS, its Puppeteer run by moto's ASL engine,
handler.py invoked for every Lambda task. Each run asserts the exact items visited."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.conftest import make_table, run, seed_input


def worker_executions(sfn, stack) -> int:
    return len(sfn.list_executions(stateMachineArn=stack["Worker"])["executions"])


def test_the_seed_input_succeeds_on_the_demo_table(stack, clients, spy):
    items = [{"url": {"S": f"https://example.com/page/{i}"}} for i in range(600)]
    for item in items:
        clients.dynamodb.put_item(TableName=stack["Table"], Item=item)

    found = run(clients.sfn, stack["Puppeteer"], {
        "Comment": "Run State Machine Workers",
        "Configuration": {"TableName": "step-worker-url-stable", "TableHash": "url",
                          "Workers": 4, "BatchSize": 250}})

    assert found["status"] == "SUCCEEDED", found.get("cause")
    summary = found["output"]["Summary"]
    assert (summary["Segments"], summary["Scanned"], summary["Processed"]) == (4, 600, 600)
    assert (summary["Skipped"], summary["Failed"]) == (0, 0)
    assert found["output"]["TableName"] == "step-worker-url-stable"
    assert spy == Counter({(("url", item["url"]["S"]),): 1 for item in items})


@pytest.mark.parametrize("shape", ["S", "N+S", "B"])
@pytest.mark.parametrize("workers,batch", [(1, 37), (3, 1000), (7, 1), (3, 37), (7, 1000), (1, 1)])
def test_every_item_is_visited_exactly_once(stack, clients, spy, shape, workers, batch):
    table, keys = make_table(clients.dynamodb, shape, count=90)

    found = run(clients.sfn, stack["Puppeteer"],
                seed_input(table, "id", Workers=workers, BatchSize=batch))

    assert found["status"] == "SUCCEEDED", found.get("cause")
    assert spy == Counter({key: 1 for key in keys})
    summary = found["output"]["Summary"]
    assert (summary["Segments"], summary["Scanned"], summary["Processed"]) == (workers, 90, 90)


def test_more_segments_than_workers(stack, clients, spy):
    table, keys = make_table(clients.dynamodb, "S+N", count=120)

    found = run(clients.sfn, stack["Puppeteer"],
                seed_input(table, "id", Workers=2, BatchSize=10, Segments=9))

    assert found["status"] == "SUCCEEDED", found.get("cause")
    assert spy == Counter({key: 1 for key in keys})
    assert found["output"]["Summary"]["Segments"] == 9


def test_an_empty_table_succeeds_with_zero_items(stack, clients, spy):
    table, _ = make_table(clients.dynamodb, "S", count=0)

    found = run(clients.sfn, stack["Puppeteer"], seed_input(table, "id"))

    assert found["status"] == "SUCCEEDED", found.get("cause")
    assert found["output"]["Summary"]["Scanned"] == 0
    assert not spy


@pytest.mark.parametrize("document,field", [
    ({"Comment": "no configuration"}, "Configuration"),
    ({"Configuration": {"TableName": "no-such-table", "TableHash": "url", "Workers": 4,
                        "BatchSize": 250}}, "TableName"),
    ({"Configuration": {"TableName": "step-worker-url-stable", "TableHash": "id", "Workers": 4,
                        "BatchSize": 250}}, "TableHash"),
    ({"Configuration": {"TableName": "step-worker-url-stable", "TableHash": "url", "Workers": 0,
                        "BatchSize": 250}}, "Workers"),
    ({"Configuration": {"TableName": "step-worker-url-stable", "TableHash": "url", "Workers": 4,
                        "BatchSize": 5000}}, "BatchSize"),
    ({"Configuration": {"TableName": "step-worker-url-stable", "TableHash": "url", "Workers": 4,
                        "BatchSize": 250, "Colour": "blue"}}, "Colour"),
    ({"Configuration": {"TableName": "step-worker-url-stable", "TableHash": "url", "Workers": 4,
                        "BatchSize": 250, "FilterExpression": "size("}}, "FilterExpression"),
    ({"Configuration": {"TableName": "step-worker-url-stable", "TableHash": "url", "Workers": 4,
                        "BatchSize": 250, "RunId": "never-ran"}}, "RunId"),
    ([1, 2, 3], "Configuration"),
])
def test_bad_input_fails_before_any_worker_starts(stack, clients, spy, document, field):
    clients.dynamodb.put_item(TableName=stack["Table"], Item={"url": {"S": "https://a.example"}})
    workers_before = worker_executions(clients.sfn, stack)

    found = run(clients.sfn, stack["Puppeteer"], document)

    assert found["status"] == "FAILED"
    assert found["error"] == "InvalidConfiguration"
    assert field in json.loads(found["cause"])["errorMessage"]
    assert worker_executions(clients.sfn, stack) == workers_before
    assert not spy
