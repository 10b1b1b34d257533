"""Unit tests of handler.py's pure logic: validation, cursors, summaries, names, pacing."""

from __future__ import annotations

import json
import math

import pytest

import handler
from handler import Checkpoint, InvalidConfiguration, parse_input

SEED = {"TableName": "step-worker-url-stable", "TableHash": "url", "Workers": 4, "BatchSize": 250}


def config(**changes):
    return {"Comment": "x", "Configuration": {**SEED, **changes}}


def test_the_seed_input_is_valid_and_complete():
    parsed = parse_input(config())
    assert parsed.to_json() == {**SEED, "Segments": 4, "Process": {"Type": "Count"},
                                "ConsistentRead": False, "DryRun": False}


# Every rule of the configuration table: (input, the field the message must name, a word of the fix)
BAD = [
    (None, "Configuration", "needs"),
    ("text", "Configuration", "needs"),
    ({"Comment": "x"}, "Configuration", "needs"),
    ({"Configuration": []}, "Configuration", "needs"),
    ({"Configuration": {**SEED}, "Extra": 1}, "Extra", "only Comment and Configuration"),
    (config(Colour="blue"), "Colour", "the fields are"),
    ({"Configuration": {k: v for k, v in SEED.items() if k != "TableName"}}, "TableName", "required"),
    ({"Configuration": {k: v for k, v in SEED.items() if k != "TableHash"}}, "TableHash", "required"),
    ({"Configuration": {k: v for k, v in SEED.items() if k != "Workers"}}, "Workers", "required"),
    ({"Configuration": {k: v for k, v in SEED.items() if k != "BatchSize"}}, "BatchSize", "required"),
    (config(TableName=""), "TableName", "non-empty"),
    (config(TableName=7), "TableName", "non-empty"),
    (config(TableName="ab"), "TableName", "not an ARN"),
    (config(TableName="arn:aws:dynamodb:eu-west-1:999999999999:table/x"), "TableName", "not an ARN"),
    (config(TableHash=""), "TableHash", "partition key"),
    (config(TableHash=["url"]), "TableHash", "partition key"),
    (config(Workers=0), "Workers", "1 to 10000"),
    (config(Workers=10001), "Workers", "1 to 10000"),
    (config(Workers=2.5), "Workers", "whole number"),
    (config(Workers="4"), "Workers", "whole number"),
    (config(Workers=True), "Workers", "whole number"),
    (config(BatchSize=0), "BatchSize", "1 to 1000"),
    (config(BatchSize=1001), "BatchSize", "1 to 1000"),
    (config(BatchSize=None), "BatchSize", "whole number"),
    (config(Segments=3), "Segments", "raise Segments or lower Workers"),
    (config(Segments=handler.MAX_SEGMENTS + 1), "Segments", "whole number"),
    (config(Process={"Type": "Delete"}), "Process", "use one of"),
    (config(Process="Count"), "Process", "use one of"),
    (config(Process={"Type": "Count", "Extra": 1}), "Process", "unknown fields"),
    (config(FilterExpression=""), "FilterExpression", "expression"),
    (config(FilterExpression=5), "FilterExpression", "expression"),
    (config(ProjectionExpression=" "), "ProjectionExpression", "expression"),
    (config(FilterExpression="#a = :v", ExpressionAttributeNames={"a": "b"},
            ExpressionAttributeValues={":v": {"S": "x"}}), "ExpressionAttributeNames", "#"),
    (config(FilterExpression="#a = :v", ExpressionAttributeNames={"#a": "b"},
            ExpressionAttributeValues={":v": "x"}), "ExpressionAttributeValues", "typed JSON"),
    (config(FilterExpression="#a = :v", ExpressionAttributeNames={"#a": "b"},
            ExpressionAttributeValues={"v": {"S": "x"}}), "ExpressionAttributeValues", "typed JSON"),
    (config(ExpressionAttributeNames={"#a": "b"}), "ExpressionAttributeNames", "add the expression"),
    (config(ConsistentRead="yes"), "ConsistentRead", "true or false"),
    (config(DryRun=1), "DryRun", "true or false"),
    (config(MaxReadUnits=0), "MaxReadUnits", "above 0"),
    (config(MaxReadUnits=-5), "MaxReadUnits", "above 0"),
    (config(MaxReadUnits="100"), "MaxReadUnits", "above 0"),
    (config(MaxReadUnits=math.inf), "MaxReadUnits", "above 0"),
    (config(RunId=""), "RunId", "ResumeInput"),
    (config(RunId="has spaces"), "RunId", "ResumeInput"),
    (config(RunId="x" * 41), "RunId", "ResumeInput"),
    (config(FilterExpression="a = :v", ExpressionAttributeValues={":v": {"S": "x" * 20000}}),
     "Configuration", "bytes"),
    (config(FilterExpression="a = :v", ExpressionAttributeValues={":v": {"S": "\"" * 2100}}),
     "Configuration", "escapes"),
]


@pytest.mark.parametrize("document,field,fix", BAD)
def test_bad_input_names_the_field_and_the_fix(document, field, fix):
    with pytest.raises(InvalidConfiguration) as error:
        parse_input(document)
    assert field in str(error.value)
    assert fix in str(error.value)


GOOD = [
    config(Segments=4000),
    config(Workers=10000, Segments=10000, BatchSize=1),
    config(FilterExpression="attribute_exists(#t)", ExpressionAttributeNames={"#t": "title"}),
    config(ProjectionExpression="url", ConsistentRead=True, DryRun=True, MaxReadUnits=12.5),
    config(Process={"Type": "Count"}, RunId="20261204T200000-abc_1"),
]


@pytest.mark.parametrize("document", GOOD)
def test_good_input_round_trips_through_state(document):
    parsed = parse_input(document)
    assert handler.run_config(parsed.to_json()) == parsed


@pytest.mark.parametrize("key", [
    {"url": {"S": "https://example.com/ü"}},
    {"id": {"N": "100000000000000000000000000000000000001"}},
    {"id": {"B": b"\x00\xff\x10binary"}},
    {"id": {"N": "-1.5e-10"}, "sort": {"S": "a\"quote"}},
    {"id": {"S": "h"}, "sort": {"N": "12345678901234567890"}},
    {"id": {"B": b"\x01"}, "sort": {"B": b"\x02\x03"}},
])
def test_cursors_round_trip_every_key_type(key):
    text = handler.encode_cursor(key)
    assert isinstance(text, str)
    assert handler.decode_cursor(text) == key
    assert json.loads(text)  # stored as plain JSON text


def test_no_cursor_means_the_segment_is_done():
    assert handler.encode_cursor(None) is None
    assert handler.encode_cursor({}) is None
    assert handler.decode_cursor(None) is None


def test_advance_counts_a_page_and_keeps_its_cursor():
    start = Checkpoint(run_id="r", segment=3, error="Boom", cause="earlier")
    page = {"Items": [{}, {}], "ScannedCount": 5, "Count": 2,
            "LastEvaluatedKey": {"url": {"S": "b"}}, "ConsumedCapacity": {"CapacityUnits": 1.5}}
    after = handler.advance(start, page, processed=2, skipped=0)
    assert (after.pages, after.scanned, after.processed, after.read_units) == (1, 5, 2, 1.5)
    assert handler.decode_cursor(after.cursor) == {"url": {"S": "b"}}
    assert not after.done and after.error is None and after.cause is None
    last = handler.advance(after, {"Items": [], "ScannedCount": 0}, 0, 0)
    assert last.done and last.cursor is None and last.pages == 2


def rows(*scanned, done=True):
    return [Checkpoint(run_id="r", segment=i, scanned=n, processed=n, done=done,
                       read_units=n / 10) for i, n in enumerate(scanned)]


def test_summary_adds_up_the_segments():
    summary = handler.summarize(rows(10, 20, 30, 40), segments=4, seconds=12.345)
    assert summary == {"Segments": 4, "Scanned": 100, "Processed": 100, "Skipped": 0,
                       "Failed": 0, "ConsumedReadUnits": 10.0, "Seconds": 12.3, "Skew": 1.6}


def test_summary_warns_when_one_segment_holds_most_items():
    summary = handler.summarize(rows(1, 1, 1, 97), segments=4, seconds=1)
    assert summary["Skew"] == 3.88
    assert "few partition keys" in summary["Warnings"][0]


def test_summary_of_an_empty_table():
    summary = handler.summarize([], segments=4, seconds=0)
    assert (summary["Scanned"], summary["Skew"], summary["Failed"]) == (0, 1.0, 4)


def test_unfinished_and_failed_segments_are_named():
    failed = handler.failed_segments(
        rows(5, done=True) + [Checkpoint(run_id="r", segment=1, error="States.TaskFailed",
                                         cause=json.dumps({"Error": "AccessDenied",
                                                           "Cause": "not allowed"}))],
        segments=3)
    assert failed == [
        {"Segment": 1, "Error": "AccessDenied", "Cause": "not allowed"},
        {"Segment": 2, "Error": "NotFinished",
         "Cause": "the segment did not finish; resume the run"}]


def test_a_lambda_error_payload_is_unwrapped():
    cause = json.dumps({"Error": "States.TaskFailed", "Cause": json.dumps(
        {"errorType": "ValueError", "errorMessage": "bad item"})})
    assert handler.unwrap_failure("States.TaskFailed", cause) == ("ValueError", "bad item")
    assert handler.unwrap_failure("X", "not json") == ("X", "not json")


def test_the_failure_message_carries_the_input_that_resumes_the_run():
    parsed = parse_input(config(RunId="run-1"))
    few = [{"Segment": s, "Error": "E", "Cause": "short"} for s in range(60)]
    message = json.loads(handler.failure_message(parsed, {"Scanned": 1}, few))
    assert message["ResumeInput"]["Configuration"]["RunId"] == "run-1"
    assert parse_input(message["ResumeInput"]) == parsed
    assert (message["FailedSegmentCount"], len(message["FailedSegments"])) == (60, 50)


def test_the_failure_message_fits_the_execution_cause_however_many_fail():
    big = parse_input(config(RunId="run-2", FilterExpression="a = :v",
                             ExpressionAttributeValues={":v": {"S": "\"" * 1500}}))
    failed = [{"Segment": s, "Error": "ValueError", "Cause": "Traceback \"x\"\n" * 300}
              for s in range(5000)]
    text = handler.failure_message(big, {"Scanned": 1}, failed)
    assert len(json.dumps(json.dumps(text))) <= 20_000  # escaped twice on its way to the cause
    message = json.loads(text)
    assert parse_input(message["ResumeInput"]) == big
    assert message["FailedSegmentCount"] == 5000


def test_segments_are_shuffled_only_when_workers_cannot_take_them_all():
    assert handler.segments_to_do(4, set(), workers=4, run_id="r") == [0, 1, 2, 3]
    shuffled = handler.segments_to_do(50, {7, 8}, workers=4, run_id="r")
    assert sorted(shuffled) == [s for s in range(50) if s not in (7, 8)]
    assert shuffled != sorted(shuffled)
    assert shuffled == handler.segments_to_do(50, {7, 8}, workers=4, run_id="r")


@pytest.mark.parametrize("execution", [
    "0b4e7c2a-9d1f-4c1e-8f43-2c1a0d9e8b7f", "x" * 80, "name with spaces", "ü" * 10])
def test_launch_names_fit_a_worker_execution_name(execution):
    name = handler.launch_name(execution)
    assert len(f"{name}-19999-999999") <= 80
    assert all(c.isascii() and (c.isalnum() or c in "-_") for c in name)
    assert handler.launch_name(execution) == name


def test_distinct_long_names_stay_distinct():
    assert handler.launch_name("a" * 60 + "1") != handler.launch_name("a" * 60 + "2")


def test_the_pacer_keeps_the_read_rate(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(handler.time, "time", lambda: now[0])
    pacer = handler.Pacer(units_per_second=10)
    now[0] = 100.2  # a page of 5 units, started at 100.0, took 0.2 s
    assert pacer.delay(5, started=100.0) == pytest.approx(0.3)  # its half second counts from its start
    now[0] = 100.5 + 0.4  # the next page started on time, at 100.5, and took 0.4 s
    assert pacer.delay(20, started=100.5) == pytest.approx(1.6)  # 20 units buy 2 s from 100.5
    now[0] = 120.0  # idle time is not saved up beyond one page
    assert pacer.delay(10, started=119.9) == pytest.approx(0.9)
    assert handler.Pacer(None).delay(1000, started=0) == 0.0


def test_the_read_budget_debt_carries_over_to_the_next_invocation(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(handler.time, "time", lambda: now[0])
    first = handler.Pacer(units_per_second=1)
    first.delay(100, started=100.0)  # a big last page: the budget is spent until 200
    now[0] = 101.0  # the invocation ends here, its time up
    following = handler.Pacer(units_per_second=1, not_before=first.free_at)
    assert following.wait() == pytest.approx(99.0)
    assert handler.Pacer(None, not_before=first.free_at).wait() == 0.0


class FakeContext:
    def __init__(self, ms):
        self.ms = ms

    def get_remaining_time_in_millis(self):
        return self.ms


def test_the_clock_stops_with_a_margin_of_twice_the_slowest_page():
    clock = handler.Clock(FakeContext(10_000))
    assert clock.can_start_page()
    clock.page_took(4.0)
    assert clock.margin_ms() == 8_000 and clock.can_start_page()
    clock.page_took(6.0)
    assert not clock.can_start_page()
    assert not handler.Clock(FakeContext(handler.MIN_MARGIN_MS)).can_start_page()
    assert handler.Clock(None).can_start_page()


def test_unknown_actions_are_refused():
    with pytest.raises(InvalidConfiguration, match="action"):
        handler.handler({"action": "explode"}, None)


# -- Process ---------------------------------------------------------------------------------------

UPDATE = {"Type": "Update", "UpdateExpression": "ADD #n :one",
          "ExpressionAttributeNames": {"#n": "visits"}, "ExpressionAttributeValues": {":one": {"N": "1"}}}

BAD_PROCESS = [
    ({"Type": "Update"}, "Process.UpdateExpression", "needs it"),
    ({**UPDATE, "UpdateExpression": ""}, "Process.UpdateExpression", "expression"),
    ({**UPDATE, "TargetTable": "t"}, "Process", "unknown fields ['TargetTable']"),
    ({**UPDATE, "ExpressionAttributeNames": {"n": "visits"}}, "Process.ExpressionAttributeNames", "#"),
    ({**UPDATE, "ExpressionAttributeValues": {":one": 1}}, "Process.ExpressionAttributeValues", "typed"),
    ({"Type": "Copy"}, "Process.TargetTable", "needs it"),
    ({"Type": "Copy", "TargetTable": "arn:aws:dynamodb:eu-west-1:1:table/x"}, "Process.TargetTable",
     "not an ARN"),
    ({"Type": "Invoke"}, "Process.FunctionName", "needs it"),
    ({"Type": "Invoke", "FunctionName": "arn:aws:lambda:eu-west-1:999999999999:function:f"},
     "Process.FunctionName", "not an ARN"),
    ({"Type": "Invoke", "FunctionName": "f", "Qualifier": "1"}, "Process", "unknown fields"),
]


@pytest.mark.parametrize("process,field,fix", BAD_PROCESS)
def test_bad_process_names_the_field_and_the_fix(process, field, fix):
    with pytest.raises(InvalidConfiguration) as error:
        parse_input(config(Process=process))
    assert field in str(error.value) and fix in str(error.value)


@pytest.mark.parametrize("process", [
    UPDATE, {**UPDATE, "ConditionExpression": "attribute_not_exists(done)"},
    {"Type": "Copy", "TargetTable": "step-worker-copy"}, {"Type": "Invoke", "FunctionName": "my-fn"}])
def test_good_process_is_kept_as_given(process):
    assert parse_input(config(Process=process)).process == process


def test_an_update_is_always_conditioned_on_the_item_existing():
    request = handler.update_request(parse_input(config(Process={
        **UPDATE, "ConditionExpression": "attribute_not_exists(done)"})))
    assert request["ConditionExpression"] == \
        "attribute_exists(#step_worker_key) AND (attribute_not_exists(done))"
    assert request["ExpressionAttributeNames"] == {"#n": "visits", "#step_worker_key": "url"}
    bare = handler.update_request(parse_input(config(Process={
        "Type": "Update", "UpdateExpression": "REMOVE old"})))
    assert bare["ConditionExpression"] == "attribute_exists(#step_worker_key)"
    assert "ExpressionAttributeValues" not in bare


def test_items_become_plain_json_without_losing_integers():
    item = {"id": {"N": "12345678901234567890123"}, "f": {"N": "1.5"}, "s": {"S": "x"},
            "b": {"B": b"\x00\x01"}, "ok": {"BOOL": True}, "none": {"NULL": True},
            "tags": {"SS": ["a"]}, "ns": {"NS": ["1", "2.5"]}, "bs": {"BS": [b"\xff"]},
            "list": {"L": [{"N": "7"}, {"M": {"k": {"S": "v"}}}]}}
    assert handler.plain(item) == {
        "id": 12345678901234567890123, "f": 1.5, "s": "x", "b": "AAE=", "ok": True, "none": None,
        "tags": ["a"], "ns": [1, 2.5], "bs": ["/w=="], "list": [7, {"k": "v"}]}


def test_payloads_are_chunked_under_the_limit():
    items = [{"i": i, "pad": "x" * 90} for i in range(100)]
    chunks = handler.payload_chunks(items, limit=1_000)
    assert [item for chunk in chunks for item in chunk] == items
    assert all(len(json.dumps(chunk, separators=(",", ":"))) <= 1_000 for chunk in chunks)
    assert len(chunks) > 10
    assert handler.payload_chunks([{"huge": "x" * 5000}], limit=1_000) == [[{"huge": "x" * 5000}]]


class FakeDynamoDB:
    def __init__(self, unprocessed_rounds):
        self.rounds = unprocessed_rounds
        self.calls = []

    def batch_write_item(self, RequestItems):  # noqa: N803 (boto3's name)
        (table, requests), = RequestItems.items()
        self.calls.append(len(requests))
        if self.rounds:
            self.rounds -= 1
            return {"UnprocessedItems": {table: requests[1:]}}
        return {"UnprocessedItems": {}}


def test_unprocessed_items_are_written_again_until_none_are_left(monkeypatch):
    fake = FakeDynamoDB(unprocessed_rounds=3)
    monkeypatch.setattr(handler, "dynamodb", lambda: fake)
    monkeypatch.setattr(handler.time, "sleep", lambda seconds: None)
    handler.write_batch("t", [{"PutRequest": {"Item": {"i": {"N": str(i)}}}} for i in range(25)])
    assert fake.calls == [25, 24, 23, 22]


def test_a_batch_that_stays_unprocessed_fails_to_be_retried(monkeypatch):
    fake = FakeDynamoDB(unprocessed_rounds=100)
    monkeypatch.setattr(handler, "dynamodb", lambda: fake)
    monkeypatch.setattr(handler.time, "sleep", lambda seconds: None)
    with pytest.raises(handler.CopyIncomplete, match="retried"):
        handler.write_batch("t", [{"PutRequest": {"Item": {"i": {"N": str(i)}}}} for i in range(25)])


def test_a_projection_is_refused_where_process_needs_whole_items():
    for process in (UPDATE, {"Type": "Copy", "TargetTable": "copy"}):
        with pytest.raises(InvalidConfiguration, match="ProjectionExpression cannot go with"):
            parse_input(config(ProjectionExpression="url", Process=process))
    assert parse_input(config(ProjectionExpression="url",
                              Process={"Type": "Invoke", "FunctionName": "f"}))


def test_step_workers_own_names_are_reserved():
    with pytest.raises(InvalidConfiguration, match="#step_worker"):
        parse_input(config(Process={**UPDATE, "ExpressionAttributeNames": {
            "#n": "visits", "#step_worker_key": "status"}}))


def test_a_functions_counts_are_kept_within_its_chunk(monkeypatch):
    answers = iter([{"Processed": 5000}, {"Processed": -3, "Skipped": 2}, "not a dict"])
    monkeypatch.setattr(handler, "invoke", lambda name, payload: next(answers))
    monkeypatch.setattr(handler, "INVOKE_PAYLOAD_BYTES", 40)
    parsed = parse_input(config(Process={"Type": "Invoke", "FunctionName": "f"}))
    items = [{"url": {"S": f"https://example.com/{i}"}} for i in range(3)]
    # one item a chunk: 5000 counts as 1; -3 processed and 2 skipped as 0 and 1; no counts as 1
    assert handler.invoke_items(parsed, items) == (2, 1)


def test_the_sdks_own_refusals_are_invalid_configuration(monkeypatch):
    from botocore.exceptions import ParamValidationError

    def refuse(event, context):
        raise ParamValidationError(report="Invalid type for parameter N, value: 5")

    monkeypatch.setitem(handler.ACTIONS, "split", refuse)
    with pytest.raises(InvalidConfiguration, match="Invalid type for parameter"):
        handler.handler({"action": "split"}, None)


def test_dry_run_estimates_the_writes_of_the_real_run():
    parsed = parse_input(config(Process={"Type": "Copy", "TargetTable": "copy"}, DryRun=True))
    estimate = handler.dry_run_estimate(parsed, {"ConsumedReadUnits": 4.5, "Processed": 90,
                                                 "Seconds": 3.0})
    assert estimate == {"DryRun": True, "Estimate": {
        "ReadUnits": 4.5, "ItemsWritten": 90, "ItemsSentToFunction": 0, "SecondsAtLeast": 3.0}}
