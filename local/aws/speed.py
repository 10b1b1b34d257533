"""Where moto's Step Functions engine spends time that AWS does not, removed. Not defects: moto is
correct, only slow, and on one machine its slowness would drown what step-worker itself costs
(measured by `make bench`, P1). Applied once by `apply()`.

- Every JSONPath is parsed again at each use (jsonpath_ng's parser, milliseconds each): memoized.
- Every service task builds a new boto3 client: one client per region and service is kept.
- A `.sync` task polls its child execution every 0.5 s, so each Worker execution ends up to half
  a second late; AWS learns of the end from an event. Polled every 0.1 s instead.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

from moto.stepfunctions.parser.asl.component.common.path import result_path
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_callback as callback,
)
from moto.stepfunctions.parser.asl.utils import boto_client, json_path

SYNC_POLL_SECONDS = 0.1
_APPLIED: list[bool] = []


@functools.lru_cache(maxsize=64)
def _cached_client(region: str, service: str) -> Any:
    return ORIGINAL_CLIENT(region=region, service=service)


def _client(region: str, service: str, state_credentials: Any = None) -> Any:
    if state_credentials is not None:  # a role to assume: leave it to moto
        return ORIGINAL_CLIENT(region=region, service=service, state_credentials=state_credentials)
    return _cached_client(region, service)


ORIGINAL_CLIENT = boto_client.boto_client_for


def apply() -> None:
    if _APPLIED:
        return
    _APPLIED.append(True)
    json_path.parse = functools.lru_cache(maxsize=4096)(json_path.parse)
    result_path.parse = functools.lru_cache(maxsize=4096)(result_path.parse)
    callback._DELAY_SECONDS_SYNC_CONDITION_CHECK = SYNC_POLL_SECONDS
    for module in list(sys.modules.values()):  # every engine module that imported the function
        if getattr(module, "__name__", "").startswith(("moto.stepfunctions", "local.aws")) and \
                getattr(module, "boto_client_for", None) is ORIGINAL_CLIENT:
            module.boto_client_for = _client
