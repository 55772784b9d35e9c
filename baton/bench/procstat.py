"""CPU seconds and resident memory of process groups, read from ``/proc`` (Linux only).

A group is a named set of pids: Baton's own children by pid, RabbitMQ and Redis by their
executable's name (``beam.smp``, ``redis-server``). CPU is utime+stime, so a group's
figure for a run is the difference of two snapshots; RSS is sampled while the run goes,
and the peak of the group's sum is kept.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
PROC = Path("/proc")


def pids_named(comm: str) -> list[int]:
    """Pids whose executable name (``/proc/<pid>/comm``) is ``comm``."""
    found: list[int] = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == comm:
                found.append(int(entry.name))
        except OSError:
            continue  # it exited while we looked
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (0 once it is gone: callers snapshot while it lives)."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # fields 14 and 15 of stat(5)


def rss_bytes(pid: int) -> int:
    try:
        return int((PROC / str(pid) / "statm").read_text().split()[1]) * _PAGE
    except OSError:
        return 0


Groups = Mapping[str, Callable[[], Iterable[int]]]


@dataclass
class Usage:
    """CPU seconds per group between ``start`` and ``stop``, and the peak RSS per group."""

    groups: Groups
    cpu: dict[str, float] = field(default_factory=dict)
    peak_rss: dict[str, int] = field(default_factory=dict)
    _started: dict[int, float] = field(default_factory=dict)

    def start(self) -> None:
        self._started = {pid: cpu_seconds(pid) for pids in self._pids().values() for pid in pids}
        self.peak_rss = dict.fromkeys(self.groups, 0)
        self.sample()

    def sample(self) -> None:
        for name, pids in self._pids().items():
            self.peak_rss[name] = max(self.peak_rss[name], sum(map(rss_bytes, pids)))

    def stop(self) -> None:
        self.sample()
        self.cpu = {
            name: sum(cpu_seconds(pid) - self._started.get(pid, 0.0) for pid in pids)
            for name, pids in self._pids().items()
        }

    def _pids(self) -> dict[str, list[int]]:
        return {name: list(find()) for name, find in self.groups.items()}
