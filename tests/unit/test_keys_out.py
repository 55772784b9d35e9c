"""``baton keys generate SIGNER... --out DIR``: one signing file per signer, owner-only,
never overwriting a key that is already there."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from click.testing import CliRunner

from baton.cli import main
from messaging.settings import SigningSettings
from messaging.trust.signing import Keyring
from tests.unit.test_signing import a_command


def generate(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["keys", "generate", *args])
    return result.exit_code, result.stdout, result.stderr


def test_out_writes_one_usable_owner_only_file_per_signer(tmp_path: Path) -> None:
    out = tmp_path / "keys"  # created when missing
    code, stdout, _ = generate("orchestrator", "payment", "cli", "--out", str(out))
    assert code == 0
    files = {p.name: p for p in out.iterdir()}
    assert set(files) == {"orchestrator.json", "payment.json", "cli.json"}
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in files.values()} == {0o600}
    for path in files.values():  # printed: the paths, never a key
        assert f"wrote {path}" in stdout
        assert json.loads(path.read_text())["private_key"] not in stdout
    # a file is what BATON_SIGNING__FILE takes, and the others trust its signature
    payment = SigningSettings(file=str(files["payment.json"])).resolved()
    signed = Keyring.from_settings(payment, role="x").sign(a_command())
    orchestrator = SigningSettings.model_validate_json(files["orchestrator.json"].read_text())
    assert Keyring.from_settings(orchestrator, role="x").verify(signed) == "payment"


def test_out_refuses_to_overwrite_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "cli.json").write_text("the key in use")
    code, stdout, stderr = generate("orchestrator", "cli", "--out", str(tmp_path))
    assert code == 1
    assert "cli.json already exists: not overwritten" in stderr
    assert (tmp_path / "cli.json").read_text() == "the key in use"
    assert not (tmp_path / "orchestrator.json").exists()  # all or nothing
    assert stdout == ""


def test_out_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("")
    cases = [
        ("../escape", "--out", str(tmp_path)),  # a signer is a file name, not a path
        ("payment", "--out", str(afile)),
        ("payment", "--out", str(tmp_path), "--env"),
    ]
    for args in cases:
        code, stdout, stderr = generate(*args)
        assert code == 2, args
        assert len(stderr.splitlines()) == 1, args
        assert stderr.startswith("baton keys generate: "), args
        assert stdout == ""
    assert list(tmp_path.iterdir()) == [afile]
    assert not (tmp_path.parent / "escape.json").exists()
