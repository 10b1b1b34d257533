"""The files users read: machine.png matches template.yml; the template keeps its contracts."""

from __future__ import annotations

from local import draw

PROMISED_OUTPUTS = {"Puppeteer", "Worker", "Function", "Table", "CheckpointTable"}


def test_machine_png_is_drawn_from_the_current_template():
    stamped = draw.stamped_digest(draw.PICTURE.read_bytes())
    assert stamped == draw.digest(draw.dot()), "machine.png is stale: run `make machine`"


def test_the_drawing_shows_every_state_of_both_machines():
    text = draw.dot()
    for machine, definition in draw.definitions().items():
        for state in definition["States"]:
            assert f'"{machine}.{state}"' in text


def test_a_changed_template_changes_the_digest(tmp_path):
    changed = tmp_path / "template.yml"
    changed.write_text(draw.TEMPLATE.read_text().replace("ScanBatch", "ScanPages"))
    assert draw.digest(draw.dot(changed)) != draw.digest(draw.dot())


def test_the_stamp_is_read_back():
    png = b"\x89PNG\r\n\x1a\n" + draw._chunk(b"IHDR", b"x" * 13) + draw._chunk(b"IEND", b"")
    assert draw.stamped_digest(png) is None
    assert draw.stamped_digest(draw.stamp(png, "abc")) == "abc"


def test_the_template_outputs_what_the_readme_reads():
    import yaml

    template = yaml.load(draw.TEMPLATE.read_text(), Loader=draw._CfnLoader)
    assert set(template["Outputs"]) == PROMISED_OUTPUTS
    assert all(output.get("Description") for output in template["Outputs"].values())
    assert all(p.get("Description") and "Default" in p for p in template["Parameters"].values())


def test_handler_imports_only_what_the_lambda_runtime_provides():
    import ast
    import sys

    tree = ast.parse((draw.ROOT / "handler.py").read_text())
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    names |= {node.module.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    typing_only = {"mypy_boto3_dynamodb"}  # under TYPE_CHECKING
    assert names - set(sys.stdlib_module_names) - {"boto3", "botocore"} == typing_only
