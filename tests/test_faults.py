"""Faults during a run, on the stack deployed from template.yml: throttling, invocations that crash
before or in the middle of a page. Every test counts how often each item was processed: none may be
lost, and an item may be processed twice only when a crash interrupted its page."""

from __future__ import annotations

from collections import Counter

import pytest

from local.aws import RETRY_CLOCK, function_module
from local.aws.faults import throttling
from tests.conftest import make_table, record_run, run, seed_input


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setattr(RETRY_CLOCK, "scale", 0.001)


def test_throttled_scans_and_checkpoints_lose_and_repeat_nothing(stack, clients, spy, figures):
    table, keys = make_table(clients.dynamodb, "N+S", count=150)

    with throttling(0.2, "Scan", "PutItem", "GetItem") as injected:
        found = run(clients.sfn, stack["Puppeteer"],
                    seed_input(table, "id", Workers=3, BatchSize=10))

    assert found["status"] == "SUCCEEDED", found.get("cause")
    assert injected["Scan"] >= 1 and injected["PutItem"] >= 1  # faults were met, and absorbed
    record_run(figures, spy, keys, sum(injected.values()))
    assert spy == Counter({key: 1 for key in keys})
    assert found["output"]["Summary"]["Scanned"] == 150


def crash_once_per_segment(module, monkeypatch, name, after_page):
    """Make module.<name> raise once in each segment, when that segment reaches `after_page`."""
    original = getattr(module, name)
    crashed = set()

    def crashing(*args):
        point = args[0]
        if point.pages == after_page and (point.run_id, point.segment) not in crashed:
            crashed.add((point.run_id, point.segment))
            raise RuntimeError(f"crash in {name} of segment {point.segment}")
        return original(*args)

    monkeypatch.setattr(module, name, crashing)
    return crashed


def test_a_crash_before_a_page_is_processed_repeats_nothing(
        stack, clients, spy, monkeypatch, fast_retries, figures):
    module = function_module(stack["Function"])
    table, keys = make_table(clients.dynamodb, "S", count=60)
    # Crash on the first call for three pages, before the real processing (and the spy) sees them.
    original_process = module.process_items
    crashed: set = set()

    def process_items(config, items):
        segment_key = tuple(sorted(item["id"]["S"] for item in items))
        if items and len(crashed) < 3 and segment_key not in crashed:
            crashed.add(segment_key)
            raise RuntimeError("crash before processing")
        return original_process(config, items)

    monkeypatch.setattr(module, "process_items", process_items)

    found = run(clients.sfn, stack["Puppeteer"], seed_input(table, "id", Workers=3, BatchSize=7))

    assert found["status"] == "SUCCEEDED", found.get("cause")
    record_run(figures, spy, keys, len(crashed))
    assert len(crashed) == 3
    assert found["output"]["Summary"]["Scanned"] == 60
    # The crash came before the spy saw the items (the spy wraps the real processing, inside).
    assert spy == Counter({key: 1 for key in keys})


def test_a_crash_after_processing_repeats_only_that_page(
        stack, clients, spy, monkeypatch, fast_retries, figures):
    module = function_module(stack["Function"])
    crashed = crash_once_per_segment(module, monkeypatch, "save_checkpoint", after_page=2)
    table, keys = make_table(clients.dynamodb, "S", count=80)

    found = run(clients.sfn, stack["Puppeteer"], seed_input(table, "id", Workers=4, BatchSize=5))

    assert found["status"] == "SUCCEEDED", found.get("cause")
    record_run(figures, spy, keys, len(crashed))
    summary = found["output"]["Summary"]
    assert (summary["Scanned"], summary["Processed"]) == (80, 80)  # checkpoints count each once
    assert set(spy) == keys  # none lost
    repeated = {key for key, times in spy.items() if times > 1}
    assert all(spy[key] == 2 for key in repeated)
    segments_with_a_third_page = len(crashed)
    assert len(repeated) <= 5 * segments_with_a_third_page  # at most the crashed page, per segment
    assert repeated, "the crash should have repeated the interrupted page"


@pytest.mark.parametrize("seed", [1, 2])
def test_a_run_aborted_at_a_random_moment_resumes_losing_nothing(stack, clients, spy, seed, figures):
    import json
    import random
    import time

    table, keys = make_table(clients.dynamodb, "S", count=120)
    batch, workers = 5, 3
    document = seed_input(table, "id", Workers=workers, BatchSize=batch, MaxReadUnits=12)
    arn = clients.sfn.start_execution(stateMachineArn=stack["Puppeteer"],
                                      input=json.dumps(document))["executionArn"]
    time.sleep(random.Random(seed).uniform(0.5, 3.0))
    clients.sfn.stop_execution(executionArn=arn)
    launch = arn.rsplit(":", 1)[1]
    deadline = time.monotonic() + 30
    while any(e["status"] == "RUNNING" for e in clients.sfn.list_executions(
            stateMachineArn=stack["Worker"])["executions"] if e["name"].startswith(launch)):
        assert time.monotonic() < deadline, "the stopped run's Workers did not stop"
        time.sleep(0.1)
    seen_before = sum(spy.values())

    resumed = run(clients.sfn, stack["Puppeteer"], {**document, "Configuration": {
        **document["Configuration"], "RunId": launch, "MaxReadUnits": 1000}})

    record_run(figures, spy, keys, 1)
    assert resumed["status"] == "SUCCEEDED", resumed.get("cause")
    assert resumed["output"]["Summary"]["Scanned"] == 120
    assert set(spy) == keys  # none lost
    repeated = [key for key, times in spy.items() if times > 1]
    assert all(spy[key] == 2 for key in repeated)
    assert len(repeated) <= batch * workers  # at most the page in hand, per interrupted segment
    assert 0 < seen_before < 120 or not repeated
