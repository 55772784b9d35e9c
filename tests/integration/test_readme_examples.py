"""The README's examples work as written, on a fresh clone after ``make demo``.

Every ``sh`` block in README.md is marked: ``<!-- readme-test -->`` blocks run, each with
``bash -eo pipefail``, in a shell as fresh as a new user's (no ``BATON_*`` variable but the
service URLs and a namespace of the test's own: no signing or sealing key, default log
level), all at once so the file costs what its slowest block costs. A block marked
``<!-- readme-test: skip (why) -->`` is not run: only the suite itself, or what runs forever.
A block must leave no process behind: each runs in a session of its own, checked empty.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from baton.runtime import open_broker, remove_namespace
from messaging.settings import Settings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BLOCK = re.compile(r"<!-- readme-test(?P<skip>: skip[^>]*)? -->\s*```sh\n(?P<body>.*?)```", re.S)
SH_BLOCK = re.compile(r"^```sh$", re.M)
BLOCK_TIMEOUT_S = 120


@dataclass(frozen=True)
class Block:
    line: int  # of its opening fence, for the failure message
    body: str


def marked() -> list[re.Match[str]]:
    return list(BLOCK.finditer(README.read_text()))


def runnable() -> list[Block]:
    """The marked blocks' text, skipped ones left out."""
    text = README.read_text()
    return [
        Block(text.count("\n", 0, m.start("body")), m["body"]) for m in marked() if not m["skip"]
    ]


def test_every_sh_block_is_marked() -> None:
    """A new example is run, or says why not: an unmarked block would silently rot."""
    text = README.read_text()
    fences = {text.count("\n", 0, m.start()) + 1 for m in SH_BLOCK.finditer(text)}
    covered = {text.count("\n", 0, m.start("body")) for m in marked()}
    assert fences - covered == set(), f"README.md sh blocks at lines {sorted(fences - covered)}"
    reasons = [m["skip"] for m in marked() if m["skip"]]
    assert all(re.fullmatch(r": skip \(.+\)", r) for r in reasons), reasons


def fresh_shell(namespace: str, rabbit_url: str, redis_url: str) -> dict[str, str]:
    """A new user's environment: none of the session's keys or settings, only where the
    services are and the namespace that keeps the block apart from everything else."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    return env | {
        "BATON_NAMESPACE": namespace,
        "BATON_RABBIT__URL": rabbit_url,
        "BATON_REDIS__URL": redis_url,
    }


async def run_block(block: Block, env: dict[str, str]) -> str | None:
    """Run ``block``; what went wrong, or None. Its session must be empty when bash is done:
    a process left running is killed and reported. Output goes to files, not pipes, so a
    process left behind holding them cannot keep the test waiting."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = await asyncio.create_subprocess_exec(
            "bash", "-eo", "pipefail", "-c", block.body, cwd=ROOT, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
        )  # fmt: skip
        try:
            await asyncio.wait_for(proc.wait(), BLOCK_TIMEOUT_S)
            problem = f"exit {proc.returncode}" if proc.returncode else ""
        except TimeoutError:
            problem = f"still running after {BLOCK_TIMEOUT_S} s"
        if _left_running(proc.pid):
            problem += ", processes left running" if problem else "processes left running"
        await proc.wait()
        if not problem:
            return None
        out.seek(0)
        err.seek(0)
        return (f"README.md line {block.line}: {problem}\n{block.body}\nstdout:\n"
                f"{out.read().decode()}\nstderr:\n{err.read().decode()}")  # fmt: skip


def _left_running(session: int) -> bool:
    """Whether any process of ``session``'s process group is still there (then kill it)."""
    try:
        os.killpg(session, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


async def test_readme_blocks_run_as_written(
    namespace: str, rabbit_url: str, redis_url: str, settings: Settings
) -> None:
    blocks = runnable()
    spaces = [f"{namespace}readme{i}." for i in range(len(blocks))]
    try:
        problems = await asyncio.gather(
            *(run_block(b, fresh_shell(ns, rabbit_url, redis_url))
              for b, ns in zip(blocks, spaces, strict=True))
        )  # fmt: skip
    finally:
        for ns in spaces:  # what a block declared or seeded (a demo removes its own)
            scoped = settings.model_copy(update={"namespace": ns})
            async with open_broker(scoped) as broker:
                await remove_namespace(scoped, broker)
    failed = [p for p in problems if p]
    assert not failed, "\n\n".join(failed)
