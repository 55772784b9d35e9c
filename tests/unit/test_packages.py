"""Saga packages: folders of a manifest, definitions and contracts, loaded into one registry
and one catalog; what a deployment runs is configuration, not Baton's code."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from baton.runtime import load_catalog
from contracts.base import Start
from messaging.errors import DefinitionError
from messaging.settings import Settings
from orchestrator.runtime.packages import (
    Manifest,
    default_package_paths,
    load_package,
    load_packages,
    prove_safe,
)
from participants.payments.authorization import authorization_handlers
from participants.payments.books import check
from tests.support.sagas import parse, payment_data

BUNDLED = Path(__file__).resolve().parents[2] / "sagas" / "payment"
GIFT = """
messages:
  gifts.wrap_gift.v1:
    role: start
    doc: Wrap a present.
    fields:
      paper: {type: enum, values: [red, gold]}
  gifts.fold.v1: {role: command, fields: {paper: {type: string}}}
  gifts.folded.v1: {role: reply, fields: {crease: {type: integer}}}
  gifts.unfold.v1: {role: command}
  gifts.unfolded.v1: {role: reply}
"""
WRAP = {
    "name": "wrap", "version": 1, "trigger": "gifts.wrap_gift.v1",
    "steps": [{
        "name": "fold", "participant": "folder", "kind": "compensatable",
        "action": {"command": "gifts.fold.v1", "reply": "gifts.folded.v1",
                   "payload": {"paper": "input.paper"}},
        "compensation": {"command": "gifts.unfold.v1", "reply": "gifts.unfolded.v1"},
    }],
}  # fmt: skip


def a_package(root: Path, name: str = "gifts", contracts: str = GIFT) -> Path:
    folder = root / name
    (folder / "contracts").mkdir(parents=True)
    (folder / "definitions").mkdir()
    (folder / "package.yaml").write_text(yaml.safe_dump({"name": name, "description": "x"}))
    (folder / "contracts" / "gifts.yaml").write_text(contracts)
    (folder / "definitions" / "wrap.v1.yaml").write_text(yaml.safe_dump(WRAP))
    return folder


def test_the_bundled_payment_package() -> None:
    assert default_package_paths() == [BUNDLED]
    package = load_package(BUNDLED)
    assert package.name == "payment"
    assert [d.key for d in package.definitions] == [("payment", 1)]
    assert len(package.contracts) == 15
    assert set(package.participants) == {"payment", "risk", "pci", "transaction"}
    assert package.participant("payment") is authorization_handlers
    assert package.invariants() is check
    assert package.conformance is None or package.conformance.is_file()
    with pytest.raises(KeyError, match="bundles no participant 'ledger'"):
        package.participant("ledger")


def test_packages_share_one_registry_and_one_catalog(tmp_path: Path) -> None:
    loaded = load_packages([BUNDLED, a_package(tmp_path)])
    assert [p.name for p in loaded.packages] == ["payment", "gifts"]
    assert loaded.registry.require("gifts.wrap_gift.v1", Start).__name__ == "WrapGift"
    assert loaded.registry.get("payments.start_transaction.v1") is not None
    assert loaded.catalog.contracts is loaded.registry
    wrap = loaded.catalog.for_trigger("gifts.wrap_gift.v1")
    assert wrap is not None
    assert wrap.contract("gifts.fold.v1").KIND == "gifts.fold.v1"
    assert [d.name for d in loaded.definitions] == ["payment", "wrap"]
    assert loaded.catalog.participants == ("payment", "risk", "pci", "transaction", "folder")
    assert loaded.package("gifts").path == tmp_path / "gifts"


def test_a_kind_two_packages_define_differently_is_refused(tmp_path: Path) -> None:
    first = a_package(tmp_path / "a")
    other = a_package(tmp_path / "b", "more", GIFT.replace("type: integer", "type: string"))
    with pytest.raises(DefinitionError, match=r"gifts\.folded\.v1: registered twice"):
        load_packages([first, other])
    same = a_package(tmp_path / "c", "same")
    (same / "definitions" / "wrap.v1.yaml").unlink()  # the same contracts, no definitions
    both = load_packages([first, same])
    assert both.registry.get("gifts.folded.v1") in both.packages[0].contracts
    assert [d.key for d in both.definitions] == [("wrap", 1)]
    with pytest.raises(DefinitionError, match="package names repeat"):
        load_packages([first, a_package(tmp_path / "d")])


def test_the_same_definition_in_two_packages_is_loaded_twice(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="wrap v1 loaded twice"):
        load_packages([a_package(tmp_path / "a"), a_package(tmp_path / "b", "same")])


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [
        ({"name": "gifts", "partcipants": {}}, "partcipants"),
        ({"name": "Gifts"}, "name"),
        ({"name": "gifts", "participants": {"folder": "no colon"}}, "module:attribute"),
        ({"name": "gifts", "invariants": "a.b"}, "module:attribute"),
        ({"name": "gifts", "participants": {"Folder": "a:b"}}, "lower case"),
    ],
)
def test_a_broken_manifest_is_refused(tmp_path: Path, manifest: object, problem: str) -> None:
    folder = a_package(tmp_path)
    (folder / "package.yaml").write_text(yaml.safe_dump(manifest))
    with pytest.raises(DefinitionError, match=problem):
        load_package(folder)


def test_a_definition_naming_an_unknown_message_names_its_file(tmp_path: Path) -> None:
    folder = a_package(tmp_path)
    broken = {**WRAP, "trigger": "gifts.nope.v1"}
    (folder / "definitions" / "wrap.v1.yaml").write_text(yaml.safe_dump(broken))
    with pytest.raises(DefinitionError, match=r"wrap\.v1\.yaml.*gifts\.nope\.v1"):
        load_package(folder)


def test_a_missing_manifest_or_a_broken_contract_is_refused(tmp_path: Path) -> None:
    folder = a_package(tmp_path)
    (folder / "contracts" / "gifts.yaml").write_text(GIFT.replace("enum", "enumm"))
    with pytest.raises(DefinitionError, match="unknown type 'enumm'"):
        load_package(folder)
    (folder / "package.yaml").unlink()
    with pytest.raises(DefinitionError, match=r"package\.yaml"):
        load_package(folder)


def test_the_manifest_resolves_code_only_when_asked(tmp_path: Path) -> None:
    folder = a_package(tmp_path)
    manifest = {
        "name": "gifts", "participants": {"folder": "no.such.module:handlers"},
        "conformance": "samples.yaml",
    }  # fmt: skip
    (folder / "package.yaml").write_text(yaml.safe_dump(manifest))
    package = load_package(folder)  # not imported on load
    assert isinstance(package.manifest, Manifest)
    assert package.conformance == folder / "samples.yaml"
    assert package.invariants() is None
    with pytest.raises(DefinitionError, match=r"cannot load no\.such\.module:handlers"):
        package.participant("folder")


def test_prove_refuses_a_definition_that_can_leave_money_owed() -> None:
    """The risk check made the pivot: a later refusal would undo work after the point of no
    return. The load-time rules allow it; only the exploration of every outcome sees it."""
    data = payment_data()
    steps = data["steps"]
    steps[1]["kind"] = "pivot"
    steps[1].pop("compensation")
    steps[3]["kind"] = "retriable"
    with pytest.raises(DefinitionError, match="payment v1 is unsafe: compensation_after_pivot"):
        prove_safe(parse(data))
    assert load_packages([BUNDLED], prove=True).packages[0].name == "payment"


def test_settings_choose_the_packages_and_extra_definitions(tmp_path: Path) -> None:
    folder = a_package(tmp_path)
    extra = tmp_path / "wrap.v2.yaml"
    extra.write_text(yaml.safe_dump({**WRAP, "version": 2}))
    settings = Settings(orchestrator={"packages": [str(folder)], "definitions": [str(extra)]})
    catalog = load_catalog(settings)
    assert sorted(d.key for d in catalog.all()) == [("wrap", 1), ("wrap", 2)]
    assert catalog.contracts.get("payments.start_transaction.v1") is None  # not configured
    assert load_catalog(Settings()).for_trigger("payments.start_transaction.v1") is not None


def test_an_installed_copy_of_the_folder_loads_the_same(tmp_path: Path) -> None:
    copy = tmp_path / "payment"
    shutil.copytree(BUNDLED, copy)
    here, there = load_package(BUNDLED), load_package(copy)
    assert [m.KIND for m in here.contracts] == [m.KIND for m in there.contracts]
    assert here.definitions[0].model_dump() == there.definitions[0].model_dump()
