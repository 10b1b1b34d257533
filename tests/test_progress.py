"""The live view of a run, rendered to text: in the middle of a run and after it."""

from __future__ import annotations

import io
import json
import time

from rich.console import Console

from local import progress
from tests.conftest import make_table, run, seed_input, wait


def render(renderable) -> str:
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def test_a_run_in_progress_shows_items_rate_time_left_and_segments():
    s = progress.Snapshot(status="RUNNING", execution_arn="arn:x", run_id="run-7", table="urls", segments=8,
                          estimated_items=10_000, scanned=2_500, done=2, failed=1, started=5)
    text = render(progress.view(s, rate=500.0))
    assert "Run run-7 of urls: RUNNING" in text
    assert "25%" in text and "2,500 of ~10,000 items" in text
    assert "500 items/s" in text and "ETA 0:00:15" in text
    assert "2 done, 2 running, 1 failed, 3 waiting, of 8" in text


def test_the_view_of_a_real_run_in_progress(stack, clients):
    table, _ = make_table(clients.dynamodb, "S", count=60)
    document = seed_input(table, "id", Workers=2, BatchSize=5, MaxReadUnits=4)  # 2 pages/s a Worker
    arn = clients.sfn.start_execution(stateMachineArn=stack["Puppeteer"],
                                      input=json.dumps(document))["executionArn"]
    deadline = time.monotonic() + 60
    while True:
        s = progress.snapshot(clients.sfn, clients.dynamodb, arn, stack["CheckpointTable"])
        if s.scanned or time.monotonic() > deadline:
            break
        time.sleep(0.05)

    assert s.status == "RUNNING" and 0 < s.scanned < 60
    text = render(progress.view(s, rate=10.0))
    assert f"{s.scanned:,} of ~60 items" in text
    assert f"segments: {s.done} done, {s.running} running, 0 failed" in text
    ended = wait(clients.sfn, arn)
    assert ended["status"] == "SUCCEEDED"


def test_a_workers_failed_cause_shows_segments_not_a_stack_trace():
    message = {"RunId": "r", "FailedSegments": [{"Segment": 3, "Error": "ValueError",
                                                 "Cause": "bad [item] 7"}],
               "FailedSegmentCount": 1, "ResumeInput": {}, "Summary": {}}
    cause = json.dumps({"errorType": "WorkersFailed", "errorMessage": json.dumps(message),
                        "stackTrace": ["  File handler.py"]})
    s = progress.Snapshot(status="FAILED", execution_arn="arn:run", run_id="r", table="t",
                          segments=4, estimated_items=10, scanned=7, done=3, failed=1, started=4,
                          error="WorkersFailed", cause=cause)
    text = render(progress.ending(s))
    assert "FAILED WorkersFailed" in text and "1 failed" in text
    assert "ValueError" in text and "bad [item] 7" in text  # markup-like text kept as it is
    assert "stackTrace" not in text and "handler.py" not in text
    assert "make resume EXECUTION=arn:run" in text


def test_the_resume_input_is_the_run_input_with_its_run_id():
    execution = {"name": "abc", "input": json.dumps(
        {"Comment": "x", "Configuration": {"TableName": "t", "TableHash": "id", "Workers": 2,
                                           "BatchSize": 5}})}
    assert progress.resume_input(execution)["Configuration"] == {
        "TableName": "t", "TableHash": "id", "Workers": 2, "BatchSize": 5, "RunId": "abc"}
    again = {"name": "def", "input": json.dumps(progress.resume_input(execution))}
    assert progress.resume_input(again)["Configuration"]["RunId"] == "abc"


def test_an_estimate_below_the_items_already_scanned_grows():
    s = progress.Snapshot(status="RUNNING", execution_arn="arn:x", run_id="r", table="t", segments=1,
                          estimated_items=0, scanned=42, done=0, failed=0, started=1)
    assert "42 of ~42 items" in render(progress.view(s, rate=None))


def test_the_view_follows_a_real_run_to_its_summary(stack, clients):
    table, _ = make_table(clients.dynamodb, "S", count=50)
    found = run(clients.sfn, stack["Puppeteer"], seed_input(table, "id", Workers=2, BatchSize=7))

    s = progress.snapshot(clients.sfn, clients.dynamodb, found["executionArn"],
                          stack["CheckpointTable"])

    assert (s.status, s.scanned, s.done, s.failed, s.segments) == ("SUCCEEDED", 50, 2, 0, 2)
    assert s.run_id == found["output"]["RunId"]
    text = render(progress.ending(s))
    assert "Scanned" in text and "50" in text and s.run_id in text


def test_watch_prints_the_failure_of_a_failed_run(stack, clients):
    found = run(clients.sfn, stack["Puppeteer"], {"Comment": "no configuration"})
    console = Console(file=io.StringIO(), width=120, color_system=None)

    s = progress.watch(clients.sfn, clients.dynamodb, found["executionArn"],
                       stack["CheckpointTable"], console=console)

    assert s.status == "FAILED"
    assert "InvalidConfiguration" in console.file.getvalue()
