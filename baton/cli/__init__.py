"""The ``baton`` command: run the orchestrator or a participant, start and inspect sagas, operate.

This is the composition root: the only code that reads the environment, configures logging
and opens connections. The group and its shared helpers live in ``base``; the commands in
``processes``, ``sagas`` and ``tools`` (importing them registers them on ``main``).
"""

from __future__ import annotations

from baton.check import check_command
from baton.cli import audit as audit  # registers `baton audit`
from baton.cli import console as console  # registers `baton console` (baton/console/)
from baton.cli import dashboards as dashboards  # registers `baton dashboards`
from baton.cli import payments as payments  # registers accounts, merchants
from baton.cli import pci_data as pci_data  # registers pci
from baton.cli import processes, sagas, tools
from baton.cli import purge as purge  # registers purge
from baton.cli.base import _run, _settings, main

main.add_command(check_command)  # baton/check.py: the load-time checks and the safety proof

__all__ = ["_run", "_settings", "main", "processes", "sagas", "tools"]
