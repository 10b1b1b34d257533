"""step-worker: visit every item of a DynamoDB table with a parallel scan, driven by Step Functions.

One Lambda serves both state machines of template.yml; the state names the action:

  split       Puppeteer, first state.
              in:  {"action": "split", "Input": <the execution input>, "Execution": <$$.Execution.Name>}
              out: {"Run": <Configuration, complete, with RunId>, "Launch": "<execution name>",
                    "Attempt": 1, "Segments": [2, 0, 3, 1]}
  scan-batch  Worker, in a loop.
              in:  {"action": "scan-batch", "Job": {"Run": {...}, "Segment": 2, "Attempt": 1, "Loops": 0}}
              out: the Job with "Loops" + 1, "Done", "Cursor" (the segment's LastEvaluatedKey),
                   "HandOff" (this execution has looped enough: a fresh one takes over) and
                   "NotBefore" (when the read budget allows the next page)
  finish      Puppeteer, last state.
              in:  {"action": "finish", "Run": {...}}
              out: {"RunId", "TableName", "Summary"}; or raises WorkersFailed with the resume input

The checkpoint table (env CHECKPOINT_TABLE) is the source of truth: one row per (RunId, Segment)
with the segment's cursor and counts, and one row per run (Segment -1) with its configuration.
Items never travel through state: only the run's configuration and segment numbers do.

Errors are exception classes; Lambda reports the class name as errorType, which is what the
state machines' Retry and Catch match (InvalidConfiguration, AccessDenied, TableNotFound,
Superseded and WorkersFailed are never retried).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import os
import random
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, ParamValidationError

if TYPE_CHECKING:  # pragma: no cover
    from mypy_boto3_dynamodb import DynamoDBClient

LOG = logging.getLogger("step-worker")
LOG.setLevel(logging.INFO)

CHECKPOINT_TABLE = os.environ.get("CHECKPOINT_TABLE", "")
CHECKPOINT_DAYS = int(os.environ.get("CHECKPOINT_DAYS", "30"))
LOOPS_PER_EXECUTION = int(os.environ.get("LOOPS_PER_EXECUTION", "1000"))

MAX_WORKERS = 10_000
MAX_BATCH_SIZE = 1_000
MAX_SEGMENTS = 20_000  # so that the Map's input (one number a segment) stays far below 256 KB
MAX_RUN_BYTES = 16_384  # the configuration travels to every Worker: keep it small
STATE_LIMIT_BYTES = 256 * 1024
RUN_ROW = -1  # the Segment number of a run's own row in the checkpoint table
MIN_MARGIN_MS = 3_000  # never start a page with less time left than this
SKEW_WARNING = 2.0  # warn when the busiest segment holds this many times the mean

PROCESS_FIELDS = {  # Process.Type → (required fields, optional fields)
    "Count": ((), ()),
    "Update": (("UpdateExpression",),
               ("ConditionExpression", "ExpressionAttributeNames", "ExpressionAttributeValues")),
    "Copy": (("TargetTable",), ()),
    "Invoke": (("FunctionName",), ()),
}
UPDATE_THREADS = 8  # UpdateItem calls in flight at once
COPY_BATCH = 25  # BatchWriteItem's limit
INVOKE_PAYLOAD_BYTES = 5_000_000  # under Lambda's 6 MB request limit, with room for the envelope
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


# -- errors: the class name is the Step Functions error name -------------------------------------

class InvalidConfiguration(Exception):
    """The input is wrong; the message names the field and the fix. Never retried."""


class WorkersFailed(Exception):
    """Some segments failed; the message is JSON with FailedSegments and ResumeInput."""


class CheckpointConflict(Exception):
    """Another invocation moved this segment's checkpoint first; retrying resumes from it."""


class Superseded(Exception):
    """A later attempt of the same run (a resume) owns this segment now. Never retried."""


class InvokeFailed(Exception):
    """The user's function answered with an error; the batch is retried from its checkpoint."""


class CopyIncomplete(Exception):
    """BatchWriteItem kept items unprocessed until time ran out; the batch is retried."""


class AccessDenied(Exception):
    """The function may not touch a table; the message says which. Never retried."""


class TableNotFound(Exception):
    """A table the run needs is gone. Never retried."""


# AWS errors that no retry can fix, as the named errors the state machines refuse to retry.
PERMANENT = {"AccessDeniedException": AccessDenied, "ResourceNotFoundException": TableNotFound,
             "ValidationException": InvalidConfiguration}


# -- entry point ----------------------------------------------------------------------------------

def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    action = event.get("action")
    if action not in ACTIONS:
        raise InvalidConfiguration(f"action {action!r} is unknown; use one of {sorted(ACTIONS)}")
    try:
        return ACTIONS[action](event, context)
    except ParamValidationError as error:  # the SDK refused a value before sending it
        raise InvalidConfiguration(f"a value of the Configuration was refused: {error}") from None
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in PERMANENT:
            raise PERMANENT[code](permanent_message(code, str(error))) from error
        raise


def permanent_message(code: str, message: str) -> str:
    if code == "AccessDeniedException":
        return (f"{message}; a run may scan only the tables in the stack parameter "
                "AllowedTableArns: add the table's ARN there and update the stack")
    return message


def split(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Validate the run, create or load its checkpoints, return the segments still to do."""
    config = parse_input(event.get("Input"))
    table = describe_table(config.table_name)
    check_table(config, table)
    if config.has_expressions():
        check_expressions(config)
    config = replace(config, table_range=sort_key_of(table))
    check_process(config, table)
    launch = launch_name(str(event.get("Execution") or new_id()))
    if config.run_id:
        stored = load_run(config.run_id)
        check_resume(config, stored)
        done = {row.segment for row in load_segments(config.run_id) if row.done}
        attempt = next_attempt(config.run_id)
    else:
        config = replace(config, run_id=launch)
        create_run(config)
        done, attempt = set(), 1
    todo = segments_to_do(config.segments, done, config.workers, config.run_id)
    out = {"Run": config.to_json(), "Launch": launch, "Attempt": attempt, "Segments": todo}
    check_state_size(out)
    LOG.info(json.dumps({"action": "split", "RunId": config.run_id, "Segments": len(todo)}))
    return out


def scan_batch(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Walk one segment from its checkpoint, page by page, until done or out of time.

    The invocation first claims the segment for its attempt of the run: from then on, a Worker of
    an earlier attempt that is still running (a stopped run's Lambda goes on until it returns) can
    no longer write, so a resume repeats at most the one page that such a Worker had in hand."""
    job = event["Job"]
    config = run_config(job["Run"])
    segment = int(job["Segment"])
    attempt = int(job.get("Attempt", 1))
    claim(config.run_id, segment, attempt)
    point = replace(load_checkpoint(config.run_id, segment), attempt=attempt)
    clock = Clock(context)
    pacer = Pacer(config.read_units_per_worker(), not_before=float(job.get("NotBefore", 0)))
    clock.sleep(pacer.wait())
    while not point.done and clock.can_start_page():
        started = time.time()
        page = scan_page(config, segment, point.cursor)
        processed, skipped = process_items(config, page.get("Items", []))
        point = save_checkpoint(point, advance(point, page, processed, skipped))
        clock.page_took(time.time() - started)
        LOG.info(json.dumps({"RunId": config.run_id, "Segment": segment, "Pages": point.pages,
                             "Scanned": point.scanned, "Done": point.done}))
        if not point.done:
            clock.sleep(pacer.delay(units_of(page), started))
    loops = int(job.get("Loops", 0)) + 1
    return {**job, "Loops": loops, "Done": point.done, "Cursor": point.cursor,
            "HandOff": not point.done and loops >= LOOPS_PER_EXECUTION,
            "NotBefore": round(pacer.free_at, 3)}  # the read budget's debt goes on to the next


def finish(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Total the run from its checkpoints; succeed with the summary or fail with how to resume."""
    config = run_config(event["Run"])
    stored = load_run(config.run_id)  # gone only if the run outlived CheckpointDays
    started = stored.started_at if stored else time.time()
    rows = load_segments(config.run_id)
    summary = summarize(rows, config.segments, seconds=time.time() - started)
    if config.dry_run:
        summary.update(dry_run_estimate(config, summary))
    failed = failed_segments(rows, config.segments)
    if failed:
        raise WorkersFailed(failure_message(config, summary, failed))
    return {"RunId": config.run_id, "TableName": config.table_name, "Summary": summary}


ACTIONS: dict[str, Callable[[dict[str, Any], Any], dict[str, Any]]] = {
    "split": split,
    "scan-batch": scan_batch,
    "finish": finish,
}


# -- configuration --------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunConfig:
    """The Puppeteer's Configuration, validated and complete (every default filled in)."""

    table_name: str
    table_hash: str
    workers: int
    batch_size: int
    segments: int
    process: dict[str, Any] = field(default_factory=lambda: {"Type": "Count"})
    filter_expression: str | None = None
    projection_expression: str | None = None
    names: dict[str, str] | None = None
    values: dict[str, Any] | None = None
    consistent_read: bool = False
    max_read_units: float | None = None
    dry_run: bool = False
    run_id: str | None = None
    table_range: str | None = None

    @property
    def key_names(self) -> tuple[str, ...]:
        """The table's key attributes: TableHash and, for a composite key, the sort key that
        split read from the table (kept in the run as TableRange)."""
        return (self.table_hash, self.table_range) if self.table_range else (self.table_hash,)

    def has_expressions(self) -> bool:
        return bool(self.filter_expression or self.projection_expression)

    def read_units_per_worker(self) -> float | None:
        if self.max_read_units is None:
            return None
        return self.max_read_units / min(self.workers, self.segments)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, attr in _FIELDS.items():
            value = getattr(self, attr)
            if value is not None:
                out[key] = value
        return out


# Configuration field → (attribute, validator). Validators take (field, value) and return the value.
def _required_str(pattern: re.Pattern[str] | None, fix: str) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise InvalidConfiguration(f"Configuration.{name} must be a non-empty string; {fix}")
        if pattern and not pattern.match(value):
            raise InvalidConfiguration(f"Configuration.{name} {value!r} is not valid; {fix}")
        return value
    return check


def _integer(low: int, high: int) -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidConfiguration(
                f"Configuration.{name} is {value!r}; set it to a whole number from {low} to {high}")
        return value
    return check


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidConfiguration(f"Configuration.{name} is {value!r}; set it to true or false")
    return value


def _positive_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise InvalidConfiguration(
            f"Configuration.{name} is {value!r}; set it to a number of read units per second above 0")
    return value


def _expression(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidConfiguration(
            f"Configuration.{name} must be a non-empty DynamoDB expression string; remove it or fix it")
    return value


def _names(name: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not value or not all(
            isinstance(k, str) and k.startswith("#") and isinstance(v, str) and v
            for k, v in value.items()):
        raise InvalidConfiguration(
            f"Configuration.{name} must be an object like {{\"#n\": \"attribute\"}}; keys start with #")
    return value


_TYPES = {"S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS", "L", "M"}


def _values(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not value or not all(
            isinstance(k, str) and k.startswith(":") and isinstance(v, dict) and len(v) == 1
            and next(iter(v)) in _TYPES for k, v in value.items()):
        raise InvalidConfiguration(
            f"Configuration.{name} must be an object like {{\":v\": {{\"S\": \"text\"}}}} in "
            "DynamoDB's typed JSON; keys start with :")
    return value


def _process(name: str, value: Any) -> dict[str, Any]:
    kind = value.get("Type") if isinstance(value, dict) else value
    if not isinstance(value, dict) or kind not in PROCESS_FIELDS:
        raise InvalidConfiguration(
            f"Configuration.{name}.Type is {kind!r}; use one of {list(PROCESS_FIELDS)} "
            "(leave Process out to count items)")
    required, optional = PROCESS_FIELDS[kind]
    extra = set(value) - {"Type", *required, *optional}
    if extra:
        raise InvalidConfiguration(
            f"Configuration.{name} has unknown fields {sorted(extra)} for Type {kind}; "
            f"it takes {sorted({*required, *optional})}")
    for field_name in required:
        if field_name not in value:
            raise InvalidConfiguration(f"Configuration.{name}.{field_name} is missing; "
                                       f"Type {kind} needs it")
    checks: dict[str, Callable[[str, Any], Any]] = {
        "UpdateExpression": _expression, "ConditionExpression": _expression,
        "ExpressionAttributeNames": _names, "ExpressionAttributeValues": _values,
        "TargetTable": _required_str(_TABLE_NAME, "use the name of a table in this account and "
                                                  "region (not an ARN)"),
        "FunctionName": _required_str(_FUNCTION_NAME, "use the name of a function in this "
                                                      "account and region (not an ARN)"),
    }
    for field_name, field_value in value.items():
        if field_name != "Type":
            checks[field_name](f"{name}.{field_name}", field_value)
    reserved = [n for n in value.get("ExpressionAttributeNames", {}) if n.startswith("#step_worker")]
    if reserved:
        raise InvalidConfiguration(
            f"Configuration.{name}.ExpressionAttributeNames uses {reserved}; names starting with "
            "#step_worker are step-worker's own: rename them")
    return value


_FIELDS = {  # Configuration key → RunConfig attribute
    "TableName": "table_name", "TableHash": "table_hash", "Workers": "workers",
    "BatchSize": "batch_size", "Segments": "segments", "Process": "process",
    "FilterExpression": "filter_expression", "ProjectionExpression": "projection_expression",
    "ExpressionAttributeNames": "names", "ExpressionAttributeValues": "values",
    "ConsistentRead": "consistent_read", "MaxReadUnits": "max_read_units",
    "DryRun": "dry_run", "RunId": "run_id", "TableRange": "table_range",
}
_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "TableName": _required_str(_TABLE_NAME, "use the name of a table in this account and region "
                                           "(3-255 of A-Z a-z 0-9 _ . -, not an ARN)"),
    "TableHash": _required_str(None, "use the name of the table's partition key attribute"),
    "Workers": _integer(1, MAX_WORKERS),
    "BatchSize": _integer(1, MAX_BATCH_SIZE),
    "Segments": _integer(1, MAX_SEGMENTS),
    "Process": _process,
    "FilterExpression": _expression,
    "ProjectionExpression": _expression,
    "ExpressionAttributeNames": _names,
    "ExpressionAttributeValues": _values,
    "ConsistentRead": _boolean,
    "MaxReadUnits": _positive_number,
    "DryRun": _boolean,
    "TableRange": _required_str(None, "leave it out: the run reads the table's sort key itself"),
    "RunId": _required_str(_RUN_ID, "use the RunId of an earlier run, as printed in its "
                                    "ResumeInput, or leave RunId out to start a new run"),
}
_REQUIRED = ("TableName", "TableHash", "Workers", "BatchSize")
# Fields that decide which items a run visits and what it does to them: a resumed run keeps them.
_FIXED_ON_RESUME = ("TableName", "TableHash", "Segments", "Process", "FilterExpression",
                    "ProjectionExpression", "ExpressionAttributeNames",
                    "ExpressionAttributeValues", "ConsistentRead", "DryRun")


def parse_input(document: Any, check_size: bool = True) -> RunConfig:
    """The Puppeteer's input → a RunConfig, or InvalidConfiguration naming the field and the fix."""
    if not isinstance(document, dict) or not isinstance(document.get("Configuration"), dict):
        raise InvalidConfiguration(
            'the input needs a "Configuration" object, e.g. {"Configuration": {"TableName": '
            '"step-worker-url-stable", "TableHash": "url", "Workers": 4, "BatchSize": 250}}')
    extra = set(document) - {"Comment", "Configuration"}
    if extra:
        raise InvalidConfiguration(
            f"the input has unknown fields {sorted(extra)}; only Comment and Configuration are read")
    raw = document["Configuration"]
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise InvalidConfiguration(
            f"Configuration has unknown fields {unknown}; the fields are {sorted(_FIELDS)}")
    for name in _REQUIRED:
        if name not in raw:
            raise InvalidConfiguration(f"Configuration.{name} is missing; it is required")
    values = {_FIELDS[name]: _CHECKS[name](name, value) for name, value in raw.items()}
    values.setdefault("segments", values["workers"])
    config = RunConfig(**values)
    if config.segments < config.workers:
        raise InvalidConfiguration(
            f"Configuration.Segments ({config.segments}) is below Workers ({config.workers}); "
            "raise Segments or lower Workers, since a Worker walks one segment at a time")
    if (config.names or config.values) and not config.has_expressions():
        raise InvalidConfiguration(
            "Configuration.ExpressionAttributeNames/Values are set but no FilterExpression or "
            "ProjectionExpression uses them; add the expression or remove them")
    if config.projection_expression and config.process["Type"] in ("Update", "Copy"):
        raise InvalidConfiguration(
            f"Configuration.ProjectionExpression cannot go with Process {config.process['Type']}, "
            "which needs whole items (a Copy would write the projected part only); remove it")
    # Measured as it appears in a WorkersFailed cause, escaped twice, so a ResumeInput always fits.
    if check_size and len(json.dumps(json.dumps(json.dumps(config.to_json())))) > MAX_RUN_BYTES:
        raise InvalidConfiguration(
            f"Configuration is over {MAX_RUN_BYTES} bytes of JSON (counting the escapes it gets in "
            "an error's cause); shorten the expressions and values")
    return config


def run_config(run: dict[str, Any]) -> RunConfig:
    """The Run carried through state is a Configuration that split has already validated (and
    grown by RunId and TableRange, so its size is not judged again)."""
    return parse_input({"Configuration": run}, check_size=False)


def check_table(config: RunConfig, table: dict[str, Any] | None) -> None:
    if table is None:
        raise InvalidConfiguration(
            f"Configuration.TableName {config.table_name!r}: no such table in this account and "
            "region; check the name (and the region the stack is in)")
    partition = next(k["AttributeName"] for k in table["KeySchema"] if k["KeyType"] == "HASH")
    if partition != config.table_hash:
        raise InvalidConfiguration(
            f"Configuration.TableHash {config.table_hash!r} is not the partition key of table "
            f"{config.table_name!r}; set TableHash to {partition!r}")
    if config.table_range and config.table_range != sort_key_of(table):
        raise InvalidConfiguration(
            f"Configuration.TableRange {config.table_range!r} is not the sort key of table "
            f"{config.table_name!r}; leave TableRange out")


def sort_key_of(table: dict[str, Any]) -> str | None:
    return next((k["AttributeName"] for k in table["KeySchema"] if k["KeyType"] == "RANGE"), None)


def key_types(table: dict[str, Any]) -> dict[str, str]:
    """Key attribute → its type (S, N or B), in key-schema order."""
    types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    return {k["AttributeName"]: types[k["AttributeName"]] for k in table["KeySchema"]}


def check_process(config: RunConfig, table: dict[str, Any]) -> None:
    """Let the services judge the Process before any Worker starts, writing nothing."""
    kind = config.process["Type"]
    if kind == "Update":
        check_update(config, table)
    elif kind == "Copy":
        target_name = config.process["TargetTable"]
        if target_name == config.table_name:
            raise InvalidConfiguration(
                "Configuration.Process.TargetTable is the table being walked; name another table")
        target = describe_table(target_name, "Process.TargetTable")
        if target is None:
            raise InvalidConfiguration(
                f"Configuration.Process.TargetTable {target_name!r}: no such table in this "
                "account and region; create it with the same key as the source first")
        if key_types(target) != key_types(table):
            raise InvalidConfiguration(
                f"Configuration.Process.TargetTable {target_name!r} has the key "
                f"{key_types(target)}, the source {key_types(table)}; copy into a table with the "
                "same key")
    elif kind == "Invoke":
        check_invoke(config.process["FunctionName"])


def check_resume(config: RunConfig, stored: StoredRun | None) -> None:
    if stored is None:
        raise InvalidConfiguration(
            f"Configuration.RunId {config.run_id!r} has no checkpoints; use the RunId from a "
            "failed run's ResumeInput, or leave RunId out to start a new run")
    given = config.to_json()
    for name in _FIXED_ON_RESUME:
        if given.get(name) != stored.config.get(name):
            raise InvalidConfiguration(
                f"Configuration.{name} differs from run {config.run_id!r}, which used "
                f"{stored.config.get(name)!r}; resume with the run's own value (its ResumeInput "
                "has them all) or leave RunId out to start a new run")


def check_state_size(out: dict[str, Any]) -> None:
    size = len(json.dumps(out))
    if size > STATE_LIMIT_BYTES // 2:
        raise InvalidConfiguration(
            f"the run's state would be {size} bytes, too close to Step Functions' 256 KB limit; "
            "lower Configuration.Segments")


# -- pure helpers ---------------------------------------------------------------------------------

def new_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + os.urandom(4).hex()


def launch_name(execution: str, limit: int = 40) -> str:
    """A name for this Puppeteer execution that fits in a Worker execution's 80-character name."""
    clean = re.sub(r"[^A-Za-z0-9_-]", "_", execution)
    if len(clean) <= limit and clean == execution:
        return clean
    digest = hashlib.sha256(execution.encode()).hexdigest()[:8]
    return f"{clean[:limit - 9]}-{digest}"


def segments_to_do(total: int, done: set[int], workers: int, run_id: str | None) -> list[int]:
    """The unfinished segments. With more segments than Workers they are shuffled (reproducibly
    per run), so that neighbouring segments, which are neighbouring storage, are not read together."""
    todo = [s for s in range(total) if s not in done]
    if len(todo) > workers:
        random.Random(run_id).shuffle(todo)
    return todo


def encode_cursor(key: dict[str, Any] | None) -> str | None:
    """LastEvaluatedKey (typed JSON, as DynamoDB returns it) → the string the checkpoint stores."""
    if not key:
        return None
    return json.dumps(key, sort_keys=True, separators=(",", ":"), default=_bytes_to_b64)


def decode_cursor(text: str | None) -> dict[str, Any] | None:
    """The stored string → an ExclusiveStartKey that boto3 sends back unchanged."""
    if not text:
        return None
    key = json.loads(text)
    return {name: _b64_to_bytes(value) for name, value in key.items()}


def _bytes_to_b64(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"cannot store {type(value).__name__} in a cursor")


def _b64_to_bytes(value: dict[str, Any]) -> dict[str, Any]:
    if "B" in value:
        return {"B": base64.b64decode(value["B"])}
    return value


@dataclass(frozen=True)
class Checkpoint:
    """One segment's progress, as the checkpoint table holds it."""

    run_id: str
    segment: int
    cursor: str | None = None
    done: bool = False
    pages: int = 0
    scanned: int = 0
    processed: int = 0
    skipped: int = 0
    read_units: float = 0.0
    error: str | None = None
    cause: str | None = None
    attempt: int = 0


def advance(point: Checkpoint, page: dict[str, Any], processed: int, skipped: int) -> Checkpoint:
    cursor = encode_cursor(page.get("LastEvaluatedKey"))
    return replace(point, cursor=cursor, done=cursor is None, pages=point.pages + 1,
                   scanned=point.scanned + int(page.get("ScannedCount", 0)),
                   processed=point.processed + processed, skipped=point.skipped + skipped,
                   read_units=point.read_units + units_of(page), error=None, cause=None)


def units_of(page: dict[str, Any]) -> float:
    return float(page.get("ConsumedCapacity", {}).get("CapacityUnits", 0.0))


def summarize(rows: list[Checkpoint], segments: int, seconds: float) -> dict[str, Any]:
    scanned = [row.scanned for row in rows]
    mean = sum(scanned) / segments if segments else 0.0
    skew = round(max(scanned, default=0) / mean, 2) if mean else 1.0
    summary: dict[str, Any] = {
        "Segments": segments,
        "Scanned": sum(scanned),
        "Processed": sum(row.processed for row in rows),
        "Skipped": sum(row.skipped for row in rows),
        "Failed": len(failed_segments(rows, segments)),
        "ConsumedReadUnits": round(sum(row.read_units for row in rows), 1),
        "Seconds": round(seconds, 1),
        "Skew": skew,
    }
    if skew >= SKEW_WARNING and segments > 1:
        summary["Warnings"] = [
            f"the busiest segment holds {skew}x the mean number of items: the table's items "
            "crowd under few partition keys, and more Workers will not make this walk faster"]
    return summary


def dry_run_estimate(config: RunConfig, summary: dict[str, Any]) -> dict[str, Any]:
    """What the real run would cost: the same reads and, for Update and Copy, one write (at
    least one write unit) per processed item; its time is this run's plus the writes'."""
    kind = config.process["Type"]
    return {"DryRun": True, "Estimate": {
        "ReadUnits": summary["ConsumedReadUnits"],
        "ItemsWritten": summary["Processed"] if kind in ("Update", "Copy") else 0,
        "ItemsSentToFunction": summary["Processed"] if kind == "Invoke" else 0,
        "SecondsAtLeast": summary["Seconds"]}}


def failed_segments(rows: list[Checkpoint], segments: int) -> list[dict[str, Any]]:
    """Every segment of the run that is not done, with the last error recorded for it."""
    by_segment = {row.segment: row for row in rows}
    failed = []
    for segment in range(segments):
        row = by_segment.get(segment)
        if row is not None and row.done:
            continue
        error, cause = unwrap_failure(row.error if row else None, row.cause if row else None)
        failed.append({"Segment": segment, "Error": error or "NotFinished",
                       "Cause": cause or "the segment did not finish; resume the run"})
    return failed


def unwrap_failure(error: str | None, cause: str | None) -> tuple[str | None, str | None]:
    """A Worker failing under startExecution.sync reports States.TaskFailed with the Worker's
    DescribeExecution as cause: dig out the Worker's own error and cause."""
    try:
        inner = json.loads(cause or "")
    except ValueError:
        return error, cause
    if isinstance(inner, dict) and inner.get("Error"):
        return unwrap_failure(inner["Error"], inner.get("Cause"))
    if isinstance(inner, dict) and inner.get("errorType"):  # a Lambda error payload
        return inner["errorType"], inner.get("errorMessage")
    return error, cause


def failure_message(config: RunConfig, summary: dict[str, Any],
                    failed: list[dict[str, Any]], limit: int = 20_000) -> str:
    """The WorkersFailed cause: which segments failed and the input that resumes the run. It is
    escaped twice on its way into the execution's cause (32,768 characters at most), so it shows
    fewer segments, and shorter causes, until it fits in `limit` characters once escaped."""
    resume = {"Comment": f"Resume run {config.run_id}", "Configuration": config.to_json()}
    for shown, cause_length in ((50, 500), (20, 300), (10, 200), (5, 100), (1, 100), (0, 0)):
        message = json.dumps({
            "RunId": config.run_id, "ResumeInput": resume,
            "FailedSegments": [{**f, "Cause": (f["Cause"] or "")[:cause_length]}
                               for f in failed[:shown]],
            "FailedSegmentCount": len(failed), "Summary": summary})
        if len(json.dumps(json.dumps(message))) <= limit:
            break
    return message


class Clock:
    """Time left in this invocation: stop paging with a margin sized from the slowest page."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.slowest = 0.0

    def remaining_ms(self) -> float:
        if self.context is None or not hasattr(self.context, "get_remaining_time_in_millis"):
            return math.inf
        return float(self.context.get_remaining_time_in_millis())

    def page_took(self, seconds: float) -> None:
        self.slowest = max(self.slowest, seconds)

    def margin_ms(self) -> float:
        return max(MIN_MARGIN_MS, 2 * self.slowest * 1000)

    def can_start_page(self) -> bool:
        return self.remaining_ms() > self.margin_ms()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(min(seconds, max(0.0, (self.remaining_ms() - self.margin_ms()) / 1000)))


class Pacer:
    """Keeps one Worker's read rate at or below its share of MaxReadUnits: a token bucket that may
    go into debt by one page. A page's units buy `units / rate` seconds from the moment the page
    started (its Scan and processing count toward that time); the next page waits until then, even
    in the next invocation (the job carries `NotBefore`, wall-clock seconds). Idle time is not
    saved up: a Worker never bursts beyond one page."""

    def __init__(self, units_per_second: float | None, not_before: float = 0.0) -> None:
        self.rate = units_per_second
        self.free_at = max(time.time(), not_before)

    def wait(self) -> float:
        return max(0.0, self.free_at - time.time()) if self.rate else 0.0

    def delay(self, units: float, started: float) -> float:
        if not self.rate:
            return 0.0
        self.free_at = max(self.free_at, started) + units / self.rate
        return max(0.0, self.free_at - time.time())


# -- processing -----------------------------------------------------------------------------------

def process_items(config: RunConfig, items: list[dict[str, Any]]) -> tuple[int, int]:
    """Apply the run's Process to one page of items → (processed, skipped). With DryRun nothing
    is written or invoked, and every item counts as processed: what the real run would do."""
    kind = config.process["Type"]
    if kind == "Count" or config.dry_run or not items:
        return len(items), 0
    return PROCESSORS[kind](config, items)


def update_items(config: RunConfig, items: list[dict[str, Any]]) -> tuple[int, int]:
    """UpdateItem on every item's key, several at once; only where the item still exists."""
    keys = [key_of(item, config.key_names) for item in items]
    request = update_request(config)
    with ThreadPoolExecutor(max_workers=UPDATE_THREADS) as pool:
        updated = list(pool.map(lambda key: update_item({**request, "Key": key}), keys))
    return sum(updated), len(updated) - sum(updated)


def update_request(config: RunConfig) -> dict[str, Any]:
    """The UpdateItem request minus its key: the user's expression, always conditioned on the item
    still existing, so that an item deleted during the run is never created again."""
    process = config.process
    exists = "attribute_exists(#step_worker_key)"
    condition = process.get("ConditionExpression")
    request: dict[str, Any] = {
        "TableName": config.table_name, "UpdateExpression": process["UpdateExpression"],
        "ConditionExpression": f"{exists} AND ({condition})" if condition else exists,
        "ExpressionAttributeNames": {**process.get("ExpressionAttributeNames", {}),
                                     "#step_worker_key": config.table_hash}}
    if process.get("ExpressionAttributeValues"):
        request["ExpressionAttributeValues"] = process["ExpressionAttributeValues"]
    return request


def copy_items(config: RunConfig, items: list[dict[str, Any]]) -> tuple[int, int]:
    target = config.process["TargetTable"]
    for start in range(0, len(items), COPY_BATCH):
        write_batch(target, [{"PutRequest": {"Item": item}}
                             for item in items[start:start + COPY_BATCH]])
    return len(items), 0


def invoke_items(config: RunConfig, items: list[dict[str, Any]]) -> tuple[int, int]:
    """The user's function receives plain JSON items, in chunks that fit Lambda's payload limit;
    it may answer {"Processed": n, "Skipped": m}, else all its items count as processed."""
    processed = skipped = 0
    for chunk in payload_chunks([plain(item) for item in items], INVOKE_PAYLOAD_BYTES):
        answer = invoke(config.process["FunctionName"], {
            "Items": chunk, "TableName": config.table_name, "RunId": config.run_id})
        counted = answer if isinstance(answer, dict) else {}
        skip = min(max(int(counted.get("Skipped", 0)), 0), len(chunk))
        processed += min(max(int(counted.get("Processed", len(chunk) - skip)), 0), len(chunk) - skip)
        skipped += skip
    return processed, skipped


PROCESSORS: dict[str, Callable[[RunConfig, list[dict[str, Any]]], tuple[int, int]]] = {
    "Update": update_items, "Copy": copy_items, "Invoke": invoke_items}


def key_of(item: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    missing = [name for name in names if name not in item]
    if missing:
        raise InvalidConfiguration(
            f"items lack their key attributes {missing}: Configuration.ProjectionExpression must "
            "keep the table's key when Process writes")
    return {name: item[name] for name in names}


def plain(value: Any) -> Any:
    """An item in DynamoDB's typed JSON → plain JSON: numbers as int (exact) or float, binary as
    base64 text, sets as lists."""
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _TYPES:
        (kind, inner), = value.items()
        if kind in ("S", "BOOL"):
            return inner
        if kind == "NULL":
            return None
        if kind == "N":
            return _number(inner)
        if kind == "B":
            return base64.b64encode(inner if isinstance(inner, bytes) else inner.encode()).decode()
        if kind == "SS":
            return list(inner)
        if kind == "NS":
            return [_number(n) for n in inner]
        if kind == "BS":
            return [plain({"B": b}) for b in inner]
        if kind == "L":
            return [plain(v) for v in inner]
        return {k: plain(v) for k, v in inner.items()}  # M
    return {k: plain(v) for k, v in value.items()}


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def payload_chunks(items: list[Any], limit: int) -> list[list[Any]]:
    """Consecutive chunks whose compact JSON stays under `limit` bytes (one item a chunk at least).
    Sizes count characters: plain() leaves no non-ASCII escapes out of json.dumps' ASCII output."""
    chunks: list[list[Any]] = [[]]
    size = 0
    for item in items:
        item_size = len(json.dumps(item, separators=(",", ":"))) + 1  # and its comma
        if chunks[-1] and size + item_size > limit:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += item_size
    return [chunk for chunk in chunks if chunk]


# -- AWS calls ------------------------------------------------------------------------------------

_CLIENT_CONFIG = Config(retries={"mode": "adaptive", "max_attempts": 10})
_DYNAMODB: DynamoDBClient | None = None


def dynamodb() -> DynamoDBClient:
    global _DYNAMODB
    if _DYNAMODB is None:
        _DYNAMODB = boto3.client("dynamodb", config=_CLIENT_CONFIG)
    return _DYNAMODB


def describe_table(name: str, field_name: str = "TableName") -> dict[str, Any] | None:
    try:
        return dynamodb().describe_table(TableName=name)["Table"]
    except dynamodb().exceptions.ResourceNotFoundException:
        return None
    except ClientError as error:
        if error.response["Error"]["Code"] != "AccessDeniedException":
            raise
        parameter = "AllowedTableArns" if field_name == "TableName" else "WriteTableArns"
        raise InvalidConfiguration(
            f"Configuration.{field_name} {name!r}: this stack may not use that table; add its ARN "
            f"to the stack parameter {parameter} (make deploy PARAMETERS={parameter}=...)"
        ) from None


def check_update(config: RunConfig, table: dict[str, Any]) -> None:
    """An UpdateItem on a key that cannot exist: DynamoDB judges the expressions, and the
    condition that the item exists keeps it from writing anything."""
    probe = {"S": {"S": f"step-worker-probe-{os.urandom(8).hex()}"},
             "N": {"N": f"-{int.from_bytes(os.urandom(6), 'big')}e-120"},
             "B": {"B": b"step-worker-probe-" + os.urandom(8)}}
    key = {name: probe[kind] for name, kind in key_types(table).items()}
    try:
        dynamodb().update_item(**update_request(config), Key=key)
    except dynamodb().exceptions.ConditionalCheckFailedException:
        return
    except ClientError as error:
        code = error.response["Error"]["Code"]
        if code == "AccessDeniedException":
            raise InvalidConfiguration(
                f"Configuration.TableName {config.table_name!r}: this stack may not update that "
                "table; add its ARN to the stack parameter WriteTableArns") from None
        if code != "ValidationException":
            raise
        raise InvalidConfiguration(
            "Configuration.Process (UpdateExpression, ConditionExpression, names or values) was "
            f"refused by DynamoDB: {error.response['Error']['Message']}; fix the expression"
        ) from None
    raise InvalidConfiguration(  # the probe item existed after all: never write on a guess
        "Configuration.Process could not be checked safely; run it again")


def update_item(request: dict[str, Any]) -> bool:
    """True when updated, False when the item was gone or the user's condition failed."""
    try:
        dynamodb().update_item(**request)
        return True
    except dynamodb().exceptions.ConditionalCheckFailedException:
        return False


def write_batch(table: str, requests: list[dict[str, Any]], attempts: int = 8) -> None:
    """BatchWriteItem until DynamoDB has taken every request, backing off between tries."""
    for attempt in range(attempts):
        left = dynamodb().batch_write_item(RequestItems={table: requests}).get(
            "UnprocessedItems", {}).get(table, [])
        if not left:
            return
        requests = left
        time.sleep(min(5.0, 0.05 * 2 ** attempt) * random.uniform(0.5, 1.0))
    raise CopyIncomplete(f"{len(requests)} items were still unprocessed by {table} after "
                         f"{attempts} tries; the page is retried from its checkpoint")


_LAMBDA: Any = None


def lambda_client() -> Any:
    global _LAMBDA
    if _LAMBDA is None:
        _LAMBDA = boto3.client("lambda", config=_CLIENT_CONFIG)
    return _LAMBDA


def check_invoke(name: str) -> None:
    try:
        lambda_client().invoke(FunctionName=name, InvocationType="DryRun", Payload=b"{}")
    except lambda_client().exceptions.ResourceNotFoundException:
        raise InvalidConfiguration(
            f"Configuration.Process.FunctionName {name!r}: no such function in this account and "
            "region; deploy it first") from None
    except ClientError as error:
        if error.response["Error"]["Code"] != "AccessDeniedException":
            raise
        raise InvalidConfiguration(
            f"Configuration.Process.FunctionName {name!r}: this stack may not invoke it; add its "
            "ARN to the stack parameter InvokeFunctionArns") from None


def invoke(name: str, payload: dict[str, Any]) -> Any:
    answer = lambda_client().invoke(FunctionName=name,
                                    Payload=json.dumps(payload, separators=(",", ":")).encode())
    body = answer["Payload"].read()
    if answer.get("FunctionError"):
        raise InvokeFailed(f"function {name} failed on a batch of {len(payload['Items'])} "
                           f"items: {body.decode(errors='replace')[:1000]}")
    return json.loads(body) if body else None


def scan_request(config: RunConfig, segment: int, cursor: str | None) -> dict[str, Any]:
    request: dict[str, Any] = {
        "TableName": config.table_name, "Limit": config.batch_size,
        "ConsistentRead": config.consistent_read, "ReturnConsumedCapacity": "TOTAL",
    }
    if config.segments > 1:  # one segment is the whole table: a plain Scan
        request.update(Segment=segment, TotalSegments=config.segments)
    optional = {"FilterExpression": config.filter_expression,
                "ProjectionExpression": config.projection_expression,
                "ExpressionAttributeNames": config.names,
                "ExpressionAttributeValues": config.values,
                "ExclusiveStartKey": decode_cursor(cursor)}
    request.update({k: v for k, v in optional.items() if v})
    return request


def scan_page(config: RunConfig, segment: int, cursor: str | None) -> dict[str, Any]:
    return dynamodb().scan(**scan_request(config, segment, cursor))


def check_expressions(config: RunConfig) -> None:
    """Let DynamoDB judge the expressions on one item before any Worker starts."""
    request = {**scan_request(config, 0, None), "Limit": 1}
    try:
        dynamodb().scan(**request)
    except ClientError as error:
        if error.response["Error"]["Code"] != "ValidationException":
            raise
        raise InvalidConfiguration(
            "Configuration.FilterExpression/ProjectionExpression/ExpressionAttributeNames/Values "
            f"were refused by DynamoDB: {error.response['Error']['Message']}; fix the expression"
        ) from None


@dataclass(frozen=True)
class StoredRun:
    config: dict[str, Any]
    started_at: float


def _expires_at() -> int:
    return int(time.time()) + CHECKPOINT_DAYS * 86_400


def create_run(config: RunConfig) -> None:
    dynamodb().put_item(
        TableName=CHECKPOINT_TABLE,
        Item={"RunId": {"S": str(config.run_id)}, "Segment": {"N": str(RUN_ROW)},
              "Configuration": {"S": json.dumps(config.to_json())}, "Attempts": {"N": "1"},
              "StartedAt": {"N": repr(time.time())}, "ExpiresAt": {"N": str(_expires_at())}},
        # A retried Split finds its own row: the same run, not a clash.
        ConditionExpression="attribute_not_exists(RunId) OR #c = :c",
        ExpressionAttributeNames={"#c": "Configuration"},
        ExpressionAttributeValues={":c": {"S": json.dumps(config.to_json())}})


def next_attempt(run_id: str | None) -> int:
    """Number this launch of a resumed run: later attempts take segments over from earlier ones."""
    answer = dynamodb().update_item(
        TableName=CHECKPOINT_TABLE, Key={"RunId": {"S": str(run_id)}, "Segment": {"N": str(RUN_ROW)}},
        UpdateExpression="ADD Attempts :one SET ExpiresAt = :expires",
        ExpressionAttributeValues={":one": {"N": "1"}, ":expires": {"N": str(_expires_at())}},
        ReturnValues="UPDATED_NEW")
    return int(answer["Attributes"]["Attempts"]["N"])


def claim(run_id: str | None, segment: int, attempt: int) -> None:
    try:
        dynamodb().update_item(
            TableName=CHECKPOINT_TABLE,
            Key={"RunId": {"S": str(run_id)}, "Segment": {"N": str(segment)}},
            UpdateExpression="SET Attempt = :a, ExpiresAt = :expires",
            ConditionExpression="attribute_not_exists(Attempt) OR Attempt <= :a",
            ExpressionAttributeValues={":a": {"N": str(attempt)},
                                       ":expires": {"N": str(_expires_at())}})
    except dynamodb().exceptions.ConditionalCheckFailedException:
        raise Superseded(f"segment {segment} of run {run_id} belongs to a later attempt than "
                         f"{attempt}: another launch resumed this run") from None


def load_run(run_id: str | None) -> StoredRun | None:
    item = dynamodb().get_item(
        TableName=CHECKPOINT_TABLE, ConsistentRead=True,
        Key={"RunId": {"S": str(run_id)}, "Segment": {"N": str(RUN_ROW)}}).get("Item")
    if item is None:
        return None
    return StoredRun(json.loads(item["Configuration"]["S"]), float(item["StartedAt"]["N"]))


def _checkpoint_of(item: dict[str, Any]) -> Checkpoint:
    def number(name: str) -> float:
        return float(item[name]["N"]) if name in item else 0

    def text(name: str) -> str | None:
        return item[name]["S"] if name in item else None

    return Checkpoint(
        run_id=item["RunId"]["S"], segment=int(item["Segment"]["N"]), cursor=text("Cursor"),
        done=item.get("Done", {}).get("BOOL", False), pages=int(number("Pages")),
        scanned=int(number("Scanned")), processed=int(number("Processed")),
        skipped=int(number("Skipped")), read_units=number("ReadUnits"),
        error=text("Error"), cause=text("Cause"), attempt=int(number("Attempt")))


def load_checkpoint(run_id: str | None, segment: int) -> Checkpoint:
    item = dynamodb().get_item(
        TableName=CHECKPOINT_TABLE, ConsistentRead=True,
        Key={"RunId": {"S": str(run_id)}, "Segment": {"N": str(segment)}}).get("Item")
    return _checkpoint_of(item) if item else Checkpoint(run_id=str(run_id), segment=segment)


def load_segments(run_id: str | None) -> list[Checkpoint]:
    rows: list[Checkpoint] = []
    pages = dynamodb().get_paginator("query").paginate(
        TableName=CHECKPOINT_TABLE, ConsistentRead=True,
        KeyConditionExpression="RunId = :r AND Segment >= :zero",
        ExpressionAttributeValues={":r": {"S": str(run_id)}, ":zero": {"N": "0"}})
    for page in pages:
        rows.extend(_checkpoint_of(item) for item in page["Items"])
    return rows


def save_checkpoint(before: Checkpoint, after: Checkpoint) -> Checkpoint:
    """Write `after` only if the row still says `before` and still belongs to this attempt: a
    checkpoint never moves backwards, and of two invocations on one segment only one advances it."""
    item: dict[str, Any] = {
        "RunId": {"S": after.run_id}, "Segment": {"N": str(after.segment)},
        "Done": {"BOOL": after.done}, "Pages": {"N": str(after.pages)},
        "Scanned": {"N": str(after.scanned)}, "Processed": {"N": str(after.processed)},
        "Skipped": {"N": str(after.skipped)}, "ReadUnits": {"N": repr(after.read_units)},
        "UpdatedAt": {"S": datetime.now(UTC).isoformat(timespec="seconds")},
        "ExpiresAt": {"N": str(_expires_at())}, "Attempt": {"N": str(after.attempt)},
    }
    if after.cursor:
        item["Cursor"] = {"S": after.cursor}
    try:
        dynamodb().put_item(
            TableName=CHECKPOINT_TABLE, Item=item,
            ConditionExpression="(attribute_not_exists(Pages) OR Pages = :pages) AND Attempt = :a",
            ExpressionAttributeValues={":pages": {"N": str(before.pages)},
                                       ":a": {"N": str(after.attempt)}})
    except dynamodb().exceptions.ConditionalCheckFailedException:
        if load_checkpoint(after.run_id, after.segment).attempt > after.attempt:
            raise Superseded(f"segment {after.segment} of run {after.run_id} was taken over by "
                             "a later attempt; its page is left to it") from None
        raise CheckpointConflict(
            f"segment {after.segment} of run {after.run_id} moved past page {before.pages} "
            "in another invocation; retrying resumes from its checkpoint") from None
    return after
