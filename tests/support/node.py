"""Node.js folders the tests run: installed from their lock files on first use."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def npm_installed(folder: Path) -> None:
    """``npm ci`` from the lock file when node_modules is missing or older than the lock;
    the test is skipped when neither node nor npm is on the machine."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    installed = folder / "node_modules" / ".package-lock.json"  # npm writes it on install
    lock = folder / "package-lock.json"
    if installed.is_file() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(f"npm is not installed and {folder} has no node_modules")
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"], cwd=folder, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"npm ci failed in {folder}:\n{done.stdout}\n{done.stderr}"
