"""Signing files on disk: what ``baton keys generate --out DIR`` writes.

One file per signer, ``DIR/<signer>.json``, is what a process is given as
``BATON_SIGNING__FILE``. Writing them here, rather than asking the operator to split the
``--json`` document with a shell contortion, means the private keys never pass through a
terminal or a pipe, and each file is created readable by its owner only.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import click

from messaging.trust.signing import KeySet

# A signer becomes a file name: no path separator, no leading dot, bounded as the settings are
SIGNER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
COMMAND = "baton keys generate"


def _refuse(message: str, code: int) -> int:
    click.echo(f"{COMMAND}: {message}", err=True)
    return code


def write_signing_files(generated: KeySet, out: Path) -> int:
    """Write each signer's signing file under ``out`` (created, mode 0700, when missing).

    Exit status: 0 written; 2 a signer name that is not a plain file name, or ``out`` is not
    a directory; 1 when any target file already exists (then nothing is written: an existing
    key is never replaced by accident, which would lock its service out) or cannot be written.
    Only the paths are printed, never a key.
    """
    for signer in generated.keys:
        if not SIGNER_NAME.fullmatch(signer):
            return _refuse(f"signer {signer!r} is not a plain name (letters, digits, _ . -)", 2)
    if out.exists() and not out.is_dir():
        return _refuse(f"--out {out}: not a directory", 2)
    targets = {signer: out / f"{signer}.json" for signer in generated.keys}
    existing = [str(path) for path in targets.values() if path.exists()]
    if existing:
        return _refuse(f"{', '.join(existing)} already exists: not overwritten", 1)
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        for signer, path in targets.items():
            _write_private(path, json.dumps(generated.settings(signer), indent=2) + "\n")
            click.echo(f"wrote {path}")
    except FileExistsError as exc:  # appeared since the check above
        return _refuse(f"{exc.filename} already exists: not overwritten", 1)
    except OSError as exc:
        return _refuse(f"--out {out}: {exc.strerror}", 1)
    return 0


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` (never an existing one) readable and writable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        os.fchmod(fd, 0o600)  # whatever the umask
        file.write(text)
