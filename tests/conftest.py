"""Fixtures: one embedded AWS per test session with the stack deployed from template.yml, tables
filled with generated items of every key shape, a spy on the deployed handler's processing, and a
helper that runs the Puppeteer to its end."""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from collections import Counter
from typing import Any

import boto3
import pytest

from local.aws import REGION, deploy, embedded, function_module

SHAPES = {  # name → (key schema, attribute types)
    "S": ([("id", "HASH")], {"id": "S"}),
    "N": ([("id", "HASH")], {"id": "N"}),
    "B": ([("id", "HASH")], {"id": "B"}),
    "N+S": ([("id", "HASH"), ("sort", "RANGE")], {"id": "N", "sort": "S"}),
    "S+N": ([("id", "HASH"), ("sort", "RANGE")], {"id": "S", "sort": "N"}),
}
_names = itertools.count()


@pytest.fixture(scope="session")
def aws():
    with embedded():
        yield


@pytest.fixture(scope="session")
def stack(aws) -> dict[str, str]:
    return deploy()


@pytest.fixture
def clients(aws) -> Any:
    class Clients:
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        sfn = boto3.client("stepfunctions", region_name=REGION)
    return Clients


def key_value(kind: str, i: int) -> dict[str, Any]:
    if kind == "S":
        return {"S": f"https://example.com/{i:05d}"}
    if kind == "N":
        return {"N": str(10**20 + i)}  # beyond a float's precision: a cursor must not round it
    return {"B": i.to_bytes(4, "big") + b"\x00\xff"}


def key_id(key: dict[str, Any]) -> tuple:
    """A hashable identity of an item's key, from typed JSON (as boto3 returns it)."""
    def plain(value: dict[str, Any]) -> Any:
        (kind, raw), = value.items()
        return base64.b64encode(raw).decode() if kind == "B" else raw
    return tuple(sorted((name, plain(value)) for name, value in key.items()))


def create_table(dynamodb: Any, shape: str, name: str | None = None) -> str:
    """An empty table of the given key shape → its name."""
    schema, types = SHAPES[shape]
    name = name or f"items-{shape.replace('+', '-')}-{next(_names)}"
    dynamodb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": t} for a, t in types.items()],
        KeySchema=[{"AttributeName": a, "KeyType": k} for a, k in schema])
    return name


def make_table(dynamodb: Any, shape: str, count: int, per_hash: int = 3) -> tuple[str, set]:
    """A table of `count` items of the given key shape → (name, the set of its keys)."""
    types = SHAPES[shape][1]
    name = create_table(dynamodb, shape)
    keys = set()
    for i in range(count):
        item = {"id": key_value(types["id"], i // per_hash if "sort" in types else i)}
        if "sort" in types:
            item["sort"] = key_value(types["sort"], i)
        keys.add(key_id(item))
        dynamodb.put_item(TableName=name, Item={**item, "payload": {"S": "x" * 100}})
    return name, keys


@pytest.fixture
def spy(stack, monkeypatch) -> Counter:
    module = function_module(stack["Function"])
    seen: Counter = Counter()
    lock = threading.Lock()
    original = module.process_items

    def process_items(config: Any, items: list[dict[str, Any]]) -> Any:
        with lock:
            seen.update(key_id({k: v for k, v in item.items() if k in ("id", "sort", "url")})
                        for item in items)
        return original(config, items)

    monkeypatch.setattr(module, "process_items", process_items)
    return seen


def run(sfn: Any, state_machine: str, document: Any, timeout: float = 120) -> dict[str, Any]:
    """Start an execution and wait for its end → describe_execution, with output parsed."""
    arn = sfn.start_execution(stateMachineArn=state_machine,
                              input=json.dumps(document))["executionArn"]
    return wait(sfn, arn, timeout)


def wait(sfn: Any, arn: str, timeout: float = 120) -> dict[str, Any]:
    """Wait for an execution's end → describe_execution, with output parsed."""
    deadline = time.monotonic() + timeout
    while (found := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"{arn} still running after {timeout} s"
        time.sleep(0.05)
    if "output" in found:
        found["output"] = json.loads(found["output"])
    return found


def seed_input(table: str, hash_key: str, **more: Any) -> dict[str, Any]:
    """The README's input, pointed at another table."""
    return {"Comment": "Run State Machine Workers",
            "Configuration": {"TableName": table, "TableHash": hash_key, "Workers": 4,
                              "BatchSize": 250, **more}}


FAULT_FIGURES: Counter = Counter()  # filled by the fault-injection tests, printed at the end


@pytest.fixture
def figures() -> Counter:
    return FAULT_FIGURES


def record_run(figures: Counter, spy: Counter, keys: set, faults: int) -> None:
    figures["runs"] += 1
    figures["faults injected"] += faults
    figures["items lost"] += len(keys - set(spy))
    figures["items processed twice"] += sum(1 for times in spy.values() if times > 1)


def pytest_terminal_summary(terminalreporter) -> None:
    if FAULT_FIGURES:
        terminalreporter.write_line("fault injection: " + ", ".join(
            f"{name} {value:g}" for name, value in sorted(FAULT_FIGURES.items())))
