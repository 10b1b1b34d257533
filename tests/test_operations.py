"""Runs that do not go smoothly: a Worker hands its segment to a fresh execution before its history
grows long; a failing segment fails the run with WorkersFailed and the input that resumes it."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from local.aws import RETRY_CLOCK, deploy, emulation, function_module
from tests.conftest import make_table, record_run, run, seed_input


@pytest.fixture(scope="module")
def handoff_stack(aws):
    return deploy("step-worker-handoff", {"Env": "handoff", "LoopsPerExecution": 2})


def one_page_per_invocation(module, monkeypatch):
    class OnePage(module.Clock):
        def __init__(self, context):
            super().__init__(context)
            self.pages = 0

        def can_start_page(self):
            self.pages += 1
            return self.pages == 1

    monkeypatch.setattr(module, "Clock", OnePage)


WORKER_HISTORY = 30  # events: enough for two loops (7 each) and the start and end, not for six


def test_a_worker_hands_off_to_a_fresh_execution_and_loses_nothing(
        handoff_stack, clients, monkeypatch):
    monkeypatch.setattr(emulation.HISTORY, "limit", WORKER_HISTORY)
    module = function_module(handoff_stack["Function"])
    one_page_per_invocation(module, monkeypatch)
    seen: Counter = Counter()
    original = module.process_items
    monkeypatch.setattr(module, "process_items", lambda config, items: (
        seen.update(item["id"]["S"] for item in items), original(config, items))[1])
    table, keys = make_table(clients.dynamodb, "S", count=40)

    found = run(clients.sfn, handoff_stack["Puppeteer"],
                seed_input(table, "id", Workers=2, BatchSize=3))

    assert found["status"] == "SUCCEEDED", found.get("cause")
    assert seen == Counter({key[0][1]: 1 for key in keys})
    launch = found["output"]["RunId"]
    workers = [e for e in clients.sfn.list_executions(
        stateMachineArn=handoff_stack["Worker"])["executions"] if e["name"].startswith(launch)]
    pages = found["output"]["Summary"]["Scanned"] // 3
    assert len(workers) >= pages // 2  # two loops (one page each) per execution
    for execution in workers:
        assert execution["status"] == "SUCCEEDED"
        events = clients.sfn.get_execution_history(executionArn=execution["executionArn"])
        assert len(events["events"]) < WORKER_HISTORY
    names = {e["name"] for e in workers}
    assert {f"{launch}-0-0", f"{launch}-0-1", f"{launch}-1-0", f"{launch}-1-1"} <= names


def test_without_the_hand_off_the_same_walk_hits_the_history_quota(stack, clients, monkeypatch):
    monkeypatch.setattr(emulation.HISTORY, "limit", WORKER_HISTORY)
    monkeypatch.setattr(RETRY_CLOCK, "scale", 0.001)
    one_page_per_invocation(function_module(stack["Function"]), monkeypatch)
    table, _ = make_table(clients.dynamodb, "S", count=40)

    found = run(clients.sfn, stack["Puppeteer"], seed_input(table, "id", Workers=2, BatchSize=3))

    assert found["error"] == "WorkersFailed"
    cause = json.loads(json.loads(found["cause"])["errorMessage"])
    assert {f["Error"] for f in cause["FailedSegments"]} == {"States.Runtime"}
    assert "maximum number of history events" in cause["FailedSegments"][0]["Cause"]


def test_a_failing_segment_fails_the_run_which_then_resumes(
        stack, clients, spy, monkeypatch, figures):
    monkeypatch.setattr(RETRY_CLOCK, "scale", 0.001)
    module = function_module(stack["Function"])
    table, keys = make_table(clients.dynamodb, "S", count=30)
    clients.dynamodb.update_item(TableName=table, Key={"id": {"S": "https://example.com/00007"}},
                                 UpdateExpression="SET poison = :t",
                                 ExpressionAttributeValues={":t": {"BOOL": True}})
    broken = {"on": True}
    counting = module.process_items  # the spy, which wraps the real processing

    def process_items(config, items):
        result = counting(config, items)
        if broken["on"] and any("poison" in item for item in items):
            raise ValueError("cannot process https://example.com/00007")
        return result

    monkeypatch.setattr(module, "process_items", process_items)

    started = time.monotonic()
    failed = run(clients.sfn, stack["Puppeteer"],
                 seed_input(table, "id", Workers=3, BatchSize=1))
    figures["dead segment to failed run, retries at 1/1000 pace (s)"] = round(
        time.monotonic() - started, 1)

    assert failed["status"] == "FAILED"
    assert failed["error"] == "WorkersFailed"
    cause = json.loads(json.loads(failed["cause"])["errorMessage"])
    [segment] = cause["FailedSegments"]
    assert segment["Error"] == "ValueError"
    assert "00007" in segment["Cause"]
    assert cause["Summary"]["Failed"] == 1
    resume = cause["ResumeInput"]
    assert resume["Configuration"]["RunId"] == cause["RunId"]
    attempts = spy[(("id", "https://example.com/00007"),)]
    assert attempts == 7  # the first try and 6 retries

    broken["on"] = False
    resumed = run(clients.sfn, stack["Puppeteer"], resume)

    assert resumed["status"] == "SUCCEEDED", resumed.get("cause")
    assert resumed["output"]["RunId"] == cause["RunId"]
    summary = resumed["output"]["Summary"]
    assert (summary["Scanned"], summary["Processed"], summary["Failed"]) == (30, 30, 0)
    poison = (("id", "https://example.com/00007"),)
    assert spy[poison] == attempts + 1
    assert spy - Counter({poison: spy[poison]}) == Counter({k: 1 for k in keys if k != poison})
    record_run(figures, Counter({k: 1 for k in spy}), keys, attempts)  # the poison is re-tried


def test_a_finished_run_resumed_again_scans_nothing(stack, clients, spy):
    table, keys = make_table(clients.dynamodb, "S", count=10)
    first = run(clients.sfn, stack["Puppeteer"], seed_input(table, "id"))
    assert first["status"] == "SUCCEEDED"

    again = run(clients.sfn, stack["Puppeteer"],
                seed_input(table, "id", RunId=first["output"]["RunId"]))

    assert again["status"] == "SUCCEEDED"
    assert again["output"]["Summary"]["Scanned"] == 10
    assert spy == Counter({key: 1 for key in keys})


def test_a_resume_that_changes_what_is_walked_is_refused(stack, clients):
    table, _ = make_table(clients.dynamodb, "S", count=5)
    first = run(clients.sfn, stack["Puppeteer"], seed_input(table, "id"))

    changed = run(clients.sfn, stack["Puppeteer"], seed_input(
        table, "id", Segments=8, RunId=first["output"]["RunId"]))

    assert changed["error"] == "InvalidConfiguration"
    assert "Segments" in json.loads(changed["cause"])["errorMessage"]
