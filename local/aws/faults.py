"""Fault injection for tests: throttle a fraction of DynamoDB calls, as a busy table does.

    with throttling(0.2, "Scan", "PutItem") as injected:   # about 1 call in 5 is refused
        ...
    injected["Scan"]                                         # how many were

A throttled call answers ProvisionedThroughputExceededException (HTTP 400), which the SDK's retry
mode is there to absorb. Off unless a test turns it on; the random choices are seeded.
"""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX, DynamodbException
from moto.dynamodb.responses import DynamoHandler

OPERATIONS = {"Scan": "scan", "PutItem": "put_item", "UpdateItem": "update_item",
              "BatchWriteItem": "batch_write_item", "GetItem": "get_item", "Query": "query"}


class _Plan:
    fraction = 0.0
    operations: frozenset[str] = frozenset()
    rng = random.Random(0)
    injected: Counter = Counter()


PLAN = _Plan()
_APPLIED: list[bool] = []


class Throttled(DynamodbException):
    def __init__(self) -> None:
        super().__init__(ERROR_TYPE_PREFIX + "ProvisionedThroughputExceededException",
                         message="The level of configured provisioned throughput for the table "
                                 "was exceeded (injected by local/aws/faults.py)")


def _throttled(operation: str, method: Any) -> Any:
    def call(self: DynamoHandler) -> Any:
        if operation in PLAN.operations and PLAN.rng.random() < PLAN.fraction:
            PLAN.injected[operation] += 1
            raise Throttled()
        return method(self)
    call.__name__ = method.__name__
    return call


def apply() -> None:
    if _APPLIED:
        return
    _APPLIED.append(True)
    for operation, name in OPERATIONS.items():
        setattr(DynamoHandler, name, _throttled(operation, getattr(DynamoHandler, name)))


@contextlib.contextmanager
def throttling(fraction: float, *operations: str, seed: int = 7) -> Iterator[Counter]:
    assert set(operations) <= set(OPERATIONS), f"known operations: {sorted(OPERATIONS)}"
    PLAN.fraction, PLAN.operations, PLAN.rng = fraction, frozenset(operations), random.Random(seed)
    PLAN.injected = Counter()
    try:
        yield PLAN.injected
    finally:
        PLAN.fraction, PLAN.operations = 0.0, frozenset()
