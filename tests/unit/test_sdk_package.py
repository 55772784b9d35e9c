"""The participant SDK's own distribution (sdk/pyproject.toml): what its wheel holds, and
that what it holds imports and runs without the rest of Baton (orchestrator, CLI, sagas)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"baton_sdk", "contracts", "messaging"}

# Run with `python -I -S`: no repository on sys.path, no .pth files (so not the editable
# install of the whole project either). It then asserts what got imported, which is what
# would reach a team that installed only the SDK.
STANDALONE = textwrap.dedent(
    """
    import asyncio, json, sys
    wheel_dir, *site_packages = json.loads(sys.argv[1])
    sys.path[:] = [wheel_dir, *sys.path, *site_packages]  # -I -S left the standard library only

    import baton_sdk
    from baton_sdk import Handlers, MemoryInbox, held
    from contracts.base import Command, Reply

    class Ping(Command):
        KIND = "sdk_test.ping"

    class Pong(Reply):
        KIND = "sdk_test.pong"

    handlers = Handlers()

    @handlers.handler(Ping)
    async def ping(command: Ping, ctx: object) -> Pong:
        return Pong()

    async def main() -> None:
        inbox = MemoryInbox()
        async with held(inbox, "e-1", lease_s=5.0) as claim:
            await claim.record(Pong())
        assert await inbox.stored("e-1") == Pong()

    asyncio.run(main())
    assert handlers.route("sdk_test.ping") is not None
    print(json.dumps({"file": baton_sdk.__file__, "modules": sorted(sys.modules)}))
    """
)
FORBIDDEN = re.compile(r"^(orchestrator|baton|participants|sagas|examples|fakeredis)(\.|$)")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sdk-wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT / "sdk"), "--no-deps",
         "--no-build-isolation", "--no-index", "-q", "-w", str(out)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    (built,) = out.glob("baton_sdk-*.whl")
    return built


def test_the_wheel_holds_the_sdk_contracts_and_messaging_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == PACKAGES
    assert not [n for n in names if "stub_broker" in n or "__pycache__" in n or n.endswith(".pyc")]
    for module in ("baton_sdk/inbox.py", "baton_sdk/redis_inbox.py", "messaging/errors.py"):
        assert module in names
    shipped = {n for n in names if n.endswith(".py")}
    for package in PACKAGES:  # every source file of the three packages, but the stub broker
        for path in (ROOT / package).rglob("*.py"):
            inside = path.relative_to(ROOT).as_posix()
            if "stub_broker" not in inside and "__pycache__" not in inside:
                assert inside in shipped


def test_the_wheel_has_the_main_projects_version(wheel: Path) -> None:
    main = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert wheel.name.startswith(f"baton_sdk-{main}-")
    metadata = zipfile.ZipFile(wheel).read(f"baton_sdk-{main}.dist-info/METADATA").decode()
    assert f"\nVersion: {main}\n" in metadata


def test_the_wheel_imports_and_runs_without_the_rest_of_baton(wheel: Path, tmp_path: Path) -> None:
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    paths = [
        str(unpacked),
        *dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib")),
    ]
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", STANDALONE, json.dumps(paths)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report["file"]).is_relative_to(unpacked)  # the wheel's copy, not the repo's
    assert not [m for m in report["modules"] if FORBIDDEN.match(m)]
