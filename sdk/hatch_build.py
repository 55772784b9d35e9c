"""Puts baton_sdk, contracts and messaging (without the stub broker) into the SDK's wheel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PACKAGES = ("baton_sdk", "contracts", "messaging")
LEFT_OUT = ("messaging/transport/stub_broker",)  # the simulation's in-memory broker


def shipped(root: Path) -> dict[str, str]:
    """Every file of the packages under ``root``, as force-include (source -> wheel path)."""
    found: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*")):
            inside = path.relative_to(root).as_posix()
            if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            if any(inside == out or inside.startswith(out + "/") for out in LEFT_OUT):
                continue
            found[str(path)] = inside
    return found


class SdkBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Adds the packages' files to the wheel; the repository root is this folder's parent."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        root = Path(self.root).resolve().parent
        build_data["force_include"].update(shipped(root))
