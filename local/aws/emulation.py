"""What AWS does that moto does not, emulated because step-worker depends on it. Unlike fixes.py,
these are not moto defects: moto leaves them out. Applied once by `apply()`.

- Read capacity: moto answers every Scan with ConsumedCapacity 1.0. DynamoDB sums the sizes of the
  items a page read (before any filter), rounds up to 4 KB, and charges 0.5 unit per 4 KB for an
  eventually consistent read, 1 for a strongly consistent one; a page that reads nothing is charged
  as one 4 KB read. MaxReadUnits is enforced from these figures.
- History quota: an execution whose history reaches HISTORY.limit events (25,000 on AWS) fails
  with States.Runtime. moto keeps appending.
- Stopping a parent stops its `startExecution.sync` children, as Step Functions does (that is why
  the parent's role needs states:StopExecution). moto leaves them running.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from moto.dynamodb.models.dynamo_type import Item
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.stepfunctions.parser.api import ExecutionFailedEventDetails
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (  # noqa: E501
    StateTaskServiceSfn,
)
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for

ORIGINAL: dict[str, Any] = {}
_PAGE = threading.local()


class History:
    limit = 25_000


HISTORY = History()


def read_units(total_bytes: int, consistent: bool) -> float:
    return max(1, math.ceil(total_bytes / 4096)) * (1.0 if consistent else 0.5)


def _scan(self: Table, *args: Any, **kwargs: Any) -> Any:
    """Measure the bytes a page read: moto's scan sizes each item it reads (to apply the 1 MB page
    limit), so the items sized during the call, in order, are the page's; the first `scanned` of
    them were read (one more may have been sized and left for the next page)."""
    _PAGE.sized = []
    try:
        results, scanned, last_key = ORIGINAL["scan"](self, *args, **kwargs)
    finally:
        sized, _PAGE.sized = _PAGE.sized, None
    _PAGE.bytes = sum(ORIGINAL["size"](item) for item in sized[:scanned])
    return results, scanned, last_key


def _size(self: Item) -> int:
    sized = getattr(_PAGE, "sized", None)
    if sized is not None and (not sized or sized[-1] is not self):
        sized.append(self)
    return ORIGINAL["size"](self)


def _scan_response(self: DynamoHandler) -> Any:
    _PAGE.bytes = None
    result = ORIGINAL["scan_response"](self)
    capacity = result.result.get("ConsumedCapacity")  # type: ignore[union-attr]
    if capacity is not None and _PAGE.bytes is not None:
        units = read_units(_PAGE.bytes, bool(self.body.get("ConsistentRead")))
        capacity["CapacityUnits"] = units
        if "Table" in capacity:
            capacity["Table"]["CapacityUnits"] = units
    return result


def _is_running(self: Environment) -> bool:
    running = ORIGINAL["is_running"](self)
    if running and not self.is_frame() and \
            len(self.event_manager._history_event_list) >= HISTORY.limit:
        self.set_error(ExecutionFailedEventDetails(
            error="States.Runtime",
            cause=f"The execution reached the maximum number of history events ({HISTORY.limit})."))
        return False
    return running


def _sync_resolver(name: str) -> Any:
    """Remember which child a `.sync` task waits for (moto's builder pops it from the stack)."""
    def build(self: StateTaskServiceSfn, env: Environment, resource_runtime_part: Any,
              *args: Any, **kwargs: Any) -> Any:
        child = (resource_runtime_part.region, env.stack[-1]["ExecutionArn"])
        resolver = ORIGINAL[name](self, env, resource_runtime_part, *args, **kwargs)
        resolver.child = child
        return resolver
    return build


def _eval_sync(self: StateTaskServiceSfn, env: Environment, sync_resolver: Any,
               *args: Any, **kwargs: Any) -> Any:
    """Wait as moto does; if the wait ended because this execution was stopped, stop the child."""
    result = ORIGINAL["_eval_sync"](self, env, sync_resolver, *args, **kwargs)
    child = getattr(sync_resolver, "child", None)
    if child is not None and not env.is_running():
        region, execution_arn = child
        sfn = boto_client_for(region=region, service="stepfunctions")
        if sfn.describe_execution(executionArn=execution_arn)["status"] == "RUNNING":
            sfn.stop_execution(executionArn=execution_arn, error="States.Aborted",
                               cause="The parent execution was stopped.")
    return result


def apply() -> None:
    if ORIGINAL:
        return
    ORIGINAL["scan"] = Table.scan
    ORIGINAL["size"] = Item.size
    Item.size = _size
    ORIGINAL["scan_response"] = DynamoHandler.scan
    ORIGINAL["is_running"] = Environment.is_running
    Table.scan = _scan
    DynamoHandler.scan = _scan_response
    Environment.is_running = _is_running
    for name in ("_build_sync_resolver", "_build_sync2_resolver"):
        ORIGINAL[name] = getattr(StateTaskServiceSfn, name)
        setattr(StateTaskServiceSfn, name, _sync_resolver(name))
    ORIGINAL["_eval_sync"] = StateTaskServiceSfn._eval_sync
    StateTaskServiceSfn._eval_sync = _eval_sync
