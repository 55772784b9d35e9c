"""`baton conformance` without services: its report, and the bundled samples it reads."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from baton.conformance import CheckResult, Report
from baton.conformance.samples import REPOSITORY, ConformanceUsageError, find_package, load_samples
from baton.conformance.schemas import check_body, invalid_body, package_registry
from contracts.base import Command

PAYMENT = REPOSITORY / "sagas" / "payment"


def test_the_report_counts_checks_run_and_names_each_failure() -> None:
    report = Report(
        "payment",
        [
            CheckResult("reply_schema", "passed"),
            CheckResult("duplicate", "failed", "one effect id got different replies"),
            CheckResult("tombstone", "skipped", "the samples have no compensation"),
            CheckResult("expired", "failed", "the expired command was answered"),
        ],
    )
    line = report.json_line()
    assert "\n" not in line
    assert json.loads(line) == {
        "participant": "payment",
        "checks": 3,
        "passed": 1,
        "failed": 2,
        "failures": [
            {"check": "duplicate", "reason": "one effect id got different replies"},
            {"check": "expired", "reason": "the expired command was answered"},
        ],
        "skipped": [{"check": "tombstone", "reason": "the samples have no compensation"}],
    }
    assert (report.ok, report.exit_code) == (False, 1)
    table = report.table().splitlines()
    assert table[-1] == "3 checks: 1 passed, 2 failed, 1 skipped"
    assert any(row.startswith("duplicate") and "failed" in row for row in table)
    assert Report("payment", [CheckResult("reply_schema", "passed")]).exit_code == 0


@pytest.mark.parametrize("participant", ["payment", "risk", "pci", "transaction"])
def test_the_payment_package_has_valid_samples_for_each_participant(participant: str) -> None:
    assert find_package(participant) == PAYMENT
    samples = load_samples(participant, PAYMENT)
    registry = package_registry(samples)  # every kind named is a contract of the package
    command = samples.subject.command
    if not command.prepare:
        check_body(registry, command, command.body)
    refused = json.loads(invalid_body(registry, command, command.body))
    with pytest.raises(ValidationError):
        registry.require(command.kind, Command).model_validate(refused)
    assert (samples.subject.compensation is None) == (participant == "transaction")


def test_a_participant_no_package_lists_is_a_usage_error() -> None:
    with pytest.raises(ConformanceUsageError, match="pass --package"):
        find_package("nobody")
