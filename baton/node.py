"""Node.js participants the demo starts (the checkout's ``shipping``): checked and installed.

A Node participant is a folder with ``package.json``, ``package-lock.json`` and ``index.js``.
Before it is started: ``node`` must be on the PATH and recent enough (Ed25519 and AES-GCM
come from Node's own crypto), and its dependencies installed from the lock file (``npm ci``)
when ``node_modules`` is missing or older than the lock. Anything that stops it from running
is a ``NodeUnavailable`` with one line saying what to do (the demo exits 2 with it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

MIN_MAJOR = 18
NPM_TIMEOUT_S = 600


class NodeUnavailable(RuntimeError):
    """The Node participant cannot run here (one line: why, and what to do)."""


def node_binary() -> str:
    """The ``node`` to run, checked to be Node ``MIN_MAJOR`` or newer."""
    node = shutil.which("node")
    if node is None:
        raise NodeUnavailable(
            f"node is not installed: the Node.js participant needs Node {MIN_MAJOR} or newer"
            " on the PATH"
        )
    try:
        version = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise NodeUnavailable(f"{node} --version failed: {type(exc).__name__}") from None
    found = re.match(r"v(\d+)\.", version)
    if found is None or int(found.group(1)) < MIN_MAJOR:
        raise NodeUnavailable(f"node {version or '?'} is too old: Node {MIN_MAJOR}+ is needed")
    return node


def _installed(folder: Path) -> bool:
    """``node_modules`` exists and was installed from the current lock file."""
    marker = folder / "node_modules" / ".package-lock.json"  # npm writes it on install
    lock = folder / "package-lock.json"
    return marker.is_file() and marker.stat().st_mtime >= lock.stat().st_mtime


def npm_ci(folder: Path, log: Path) -> None:
    """``npm ci`` in ``folder`` unless its dependencies are installed; its output to ``log``."""
    if _installed(folder):
        return
    npm = shutil.which("npm")
    if npm is None:
        raise NodeUnavailable(f"npm is not installed and {folder} has no node_modules: install npm")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"], cwd=folder, stdout=out, stderr=out,
                stdin=subprocess.DEVNULL, timeout=NPM_TIMEOUT_S, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise NodeUnavailable(f"npm ci in {folder} took over {NPM_TIMEOUT_S} s") from None
    if done.returncode != 0:
        raise NodeUnavailable(f"npm ci failed in {folder} (exit {done.returncode}): see {log}")


def prepared(folder: Path, log: Path) -> list[str]:
    """The command that runs the Node participant in ``folder``, once it can run."""
    node = node_binary()
    if not (folder / "index.js").is_file():
        raise NodeUnavailable(f"{folder} has no index.js")
    npm_ci(folder, log)
    return [node, str(folder / "index.js")]
