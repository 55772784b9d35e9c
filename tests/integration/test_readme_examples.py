"""The README's examples work as written: every ``sh`` block after ``<!-- readme-test -->``
runs, line by line, under the test's namespace (BATON_NAMESPACE). A block marked
``<!-- readme-test: skip (why) -->`` is not run: only for commands that run forever."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from messaging.settings import Settings
from messaging.trust.signing import KeySet
from tests.support.cli import cli_env

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"<!-- readme-test(?P<skip>: skip[^>]*)? -->\s*```sh\n(?P<body>.*?)```", re.S)


def blocks() -> list[str]:
    """The marked blocks' text, skipped ones left out."""
    found = list(BLOCK.finditer((ROOT / "README.md").read_text()))
    assert found, "no <!-- readme-test --> block in README.md"
    return [m["body"] for m in found if not m["skip"]]


@pytest.mark.parametrize("block", blocks())
async def test_readme_block_runs_as_written(block: str, settings: Settings, keys: KeySet) -> None:
    proc = await asyncio.create_subprocess_exec(
        "bash", "-eo", "pipefail", "-c", block, cwd=ROOT, stdin=asyncio.subprocess.DEVNULL,
        env=cli_env(settings, keys, "orchestrator"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, f"{block}\nstdout:\n{out.decode()}\nstderr:\n{err.decode()}"
