"""`baton check`: exit 0 safe, 1 unsafe with its counter-example, 2 not a definition."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from baton.check import check_command

ROOT = Path(__file__).resolve().parents[2]
PAYMENT = ROOT / "sagas" / "payment" / "definitions" / "payment.v1.yaml"
CHECKOUT = ROOT / "examples" / "checkout" / "definitions" / "checkout.v1.yaml"


def _run(*args: str) -> Any:
    return CliRunner().invoke(check_command, list(args))


def test_the_bundled_definitions_are_safe() -> None:
    for path in (PAYMENT, CHECKOUT):
        result = _run(str(path))
        assert result.exit_code == 0, result.output
        assert ": safe (" in result.output


def test_an_unsafe_definition_prints_its_counter_example(tmp_path: Path) -> None:
    data = yaml.safe_load(PAYMENT.read_text())
    risk = next(step for step in data["steps"] if step["name"] == "assess_risk")
    risk["kind"] = "retriable"  # an effect nothing undoes, before the pivot
    del risk["compensation"]
    unsafe = tmp_path / "payment.v9.yaml"
    unsafe.write_text(yaml.safe_dump({**data, "version": 9}))
    result = _run(str(unsafe))
    assert result.exit_code == 1
    assert "UNSAFE" in result.output
    assert "effect_without_compensation: assess_risk" in result.output
    assert "  1. started" in result.output
    report = json.loads(_run(str(unsafe), "--json").output)
    assert report["safe"] is False
    assert report["violation"]["path"][0] == "started"


def test_a_file_that_is_no_definition_is_one_line_and_exit_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed")
    for path in (broken, tmp_path / "missing.yaml"):
        result = _run(str(path))
        assert result.exit_code == 2
        assert len(result.output.strip().splitlines()) == 1
        assert "Traceback" not in result.output
