"""Draw machine.png from the two state machines in template.yml.

`python -m local.draw` writes machine.png with Graphviz's `dot`; `python -m local.draw --dot` prints
the DOT text only. The PNG carries the SHA-256 of its DOT text in a tEXt chunk, so a test can tell,
without Graphviz, whether machine.png still matches template.yml.
"""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yml"
PICTURE = ROOT / "machine.png"
MACHINES = ("Puppeteer", "Worker")
DIGEST_KEY = b"step-worker-dot-sha256"
SHAPES = {"Task": "box", "Choice": "diamond", "Succeed": "oval", "Fail": "oval", "Pass": "box",
          "Map": "box3d"}


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short tags (!Ref, !Sub, ...) as plain values."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: (
    loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode)
    else loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode)
    else loader.construct_mapping(node)))


def definitions(template: Path = TEMPLATE) -> dict[str, dict[str, Any]]:
    resources = yaml.load(template.read_text(), Loader=_CfnLoader)["Resources"]
    return {name: resources[name]["Properties"]["Definition"] for name in MACHINES}


def _q(text: str) -> str:
    return json.dumps(text)


def _states(prefix: str, machine: dict[str, Any], lines: list[str], depth: int = 1) -> None:
    pad = "  " * depth
    start = f"{prefix}.start"
    lines.append(f'{pad}{_q(start)} [shape=point, width=0.15, label=""];')
    lines.append(f"{pad}{_q(start)} -> {_q(prefix + '.' + machine['StartAt'])};")
    for name, state in machine["States"].items():
        node = f"{prefix}.{name}"
        kind = state["Type"]
        label = name if kind in ("Task", "Choice") else f"{name}\\n({kind})"
        style = "rounded,dashed" if kind == "Pass" else "rounded"
        lines.append(f'{pad}{_q(node)} [label="{label}", shape={SHAPES[kind]}, style="{style}"];')
        if "Next" in state:
            lines.append(f"{pad}{_q(node)} -> {_q(prefix + '.' + state['Next'])};")
        for choice in state.get("Choices", []):
            condition = next(f"{k} {json.dumps(v)}" for k, v in choice.items()
                             if k not in ("Variable", "Next"))
            lines.append(f"{pad}{_q(node)} -> {_q(prefix + '.' + choice['Next'])} "
                         f"[label={_q(choice['Variable'] + chr(10) + condition)}, fontsize=9];")
        if "Default" in state:
            lines.append(f"{pad}{_q(node)} -> {_q(prefix + '.' + state['Default'])} "
                         '[label="default", fontsize=9];')
        for catch in state.get("Catch", []):
            lines.append(f"{pad}{_q(node)} -> {_q(prefix + '.' + catch['Next'])} "
                         f"[label={_q('catch ' + ','.join(catch['ErrorEquals']))}, "
                         "style=dashed, color=firebrick, fontsize=9];")
        retried = [r for r in state.get("Retry", []) if r.get("MaxAttempts", 3) > 0]
        if retried:
            lines.append(f"{pad}{_q(node)} -> {_q(node)} [label=\"retry\", style=dotted, fontsize=9];")
        if kind == "Map":
            inner = f"{node}.each"
            lines.append(f'{pad}subgraph {_q("cluster_" + inner)} {{')
            lines.append(f'{pad}  label="each segment, at most Workers at a time"; style=dashed;')
            _states(inner, state["ItemProcessor"], lines, depth + 1)
            lines.append(f"{pad}}}")
            lines.append(f"{pad}{_q(node)} -> {_q(inner + '.start')} [style=dotted];")


def dot(template: Path = TEMPLATE) -> str:
    lines = ["digraph machines {", "  rankdir=TB; fontname=Helvetica; compound=true;",
             "  node [fontname=Helvetica, fontsize=11]; edge [fontname=Helvetica];"]
    for name, machine in definitions(template).items():
        lines.append(f'  subgraph "cluster_{name}" {{')
        lines.append(f'    label="{name}"; fontsize=16; style=rounded;')
        _states(name, machine, lines, 2)
        lines.append("  }")
    lines.append('  "Puppeteer.Workers.each.StartWorker" -> "Worker.start" '
                 '[label="startExecution.sync:2", style=bold, color=steelblue, fontsize=9];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def stamp(png: bytes, value: str) -> bytes:
    """Insert a tEXt chunk before IEND."""
    end = png.rindex(b"IEND") - 4
    return png[:end] + _chunk(b"tEXt", DIGEST_KEY + b"\0" + value.encode()) + png[end:]


def stamped_digest(png: bytes) -> str | None:
    position = 8
    while position < len(png):
        length, kind = struct.unpack(">I4s", png[position:position + 8])
        data = png[position + 8:position + 8 + length]
        if kind == b"tEXt" and data.startswith(DIGEST_KEY + b"\0"):
            return data[len(DIGEST_KEY) + 1:].decode()
        position += 12 + length
    return None


def main(argv: list[str]) -> int:
    text = dot()
    if "--dot" in argv:
        sys.stdout.write(text)
        return 0
    png = subprocess.run(["dot", "-Tpng", "-Gdpi=110"], input=text.encode(),
                         capture_output=True, check=True).stdout
    PICTURE.write_bytes(stamp(png, digest(text)))
    print(f"wrote {PICTURE.name} ({len(png):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
