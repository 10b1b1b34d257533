"""`make demo`: the whole job on the embedded AWS. Deploys template.yml, fills the demo table with
10,000 URLs, runs the Puppeteer with the README's input, shows progress and prints the summary.

`python -m local.demo fill --count N` (make fill) only fills the demo table, at whatever endpoint
boto3 is pointed at: the local endpoint of `make local`, or AWS."""

from __future__ import annotations

import argparse
import json
import sys
import time

import boto3
from rich.console import Console

from local.aws import REGION, deploy, embedded
from local.progress import watch

ITEMS = 10_000
SEED_INPUT = {"Comment": "Run State Machine Workers",
              "Configuration": {"TableName": "step-worker-url-stable", "TableHash": "url",
                                "Workers": 4, "BatchSize": 250}}


def fill(dynamodb, table: str, count: int) -> None:
    for start in range(0, count, 25):
        batch = [{"PutRequest": {"Item": {"url": {"S": f"https://example.com/page/{i}"},
                                          "title": {"S": f"Page {i}"}}}}
                 for i in range(start, min(start + 25, count))]
        dynamodb.batch_write_item(RequestItems={table: batch})


def demo() -> int:
    console = Console()
    with embedded():
        began = time.monotonic()
        stack = deploy()
        console.print(f"Deployed template.yml to the embedded AWS: {stack['Puppeteer']}")
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        sfn = boto3.client("stepfunctions", region_name=REGION)
        fill(dynamodb, stack["Table"], ITEMS)
        console.print(f"Filled {stack['Table']} with {ITEMS:,} items; starting the Puppeteer with")
        console.print_json(json.dumps(SEED_INPUT))
        started = sfn.start_execution(stateMachineArn=stack["Puppeteer"],
                                      input=json.dumps(SEED_INPUT))
        end = watch(sfn, dynamodb, started["executionArn"], stack["CheckpointTable"], console)
        console.print(f"Demo took {time.monotonic() - began:.1f} s in all.")
        return 0 if end.status == "SUCCEEDED" else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    filling = commands.add_parser("fill", help="only fill the demo table")
    filling.add_argument("--count", type=int, default=ITEMS)
    filling.add_argument("--table", default=SEED_INPUT["Configuration"]["TableName"])
    args = parser.parse_args(argv)
    if args.command == "fill":
        fill(boto3.client("dynamodb"), args.table, args.count)
        print(f"{args.table} has {args.count:,} items https://example.com/page/0 ... /{args.count - 1}")
        return 0
    return demo()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
