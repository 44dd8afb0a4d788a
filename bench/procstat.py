"""A process's memory and CPU, read from /proc: sampled in the background while a load runs.

`CpuSnapshot` takes the CPU time of every process of the machine at once: two of them tell
where the cores went over a load (the server, the database, the load generator, ...).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

_TICKS = os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    """VmRSS of `pid` in KiB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time `pid` used so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # the command name (field 2) may hold spaces: split after its closing ')'
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def children(pid: int) -> list[int]:
    """The direct children of `pid`."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def family(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    out = [pid]
    for child in children(pid):
        out += family(child)
    return out


@dataclass(frozen=True)
class CpuSnapshot:
    """The CPU time so far of every process (by pid: command name, seconds), and of this
    process's children that were waited for (wrk, once a load is over)."""

    processes: dict[int, tuple[str, float]]
    reaped_children_s: float

    @classmethod
    def take(cls) -> CpuSnapshot:
        processes: dict[int, tuple[str, float]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    head, tail = f.read().rsplit(")", 1)
            except (FileNotFoundError, ProcessLookupError, ValueError):
                continue
            fields = tail.split()
            seconds = (int(fields[11]) + int(fields[12])) / _TICKS
            processes[int(entry.name)] = (head.split("(", 1)[1], seconds)
        times = os.times()
        return cls(processes, times.children_user + times.children_system)

    def used_since(
        self,
        before: CpuSnapshot,
        labels: Mapping[int, str],
        commands: Mapping[str, str],
        reaped: str,
    ) -> dict[str, float]:
        """CPU seconds used from `before` to this snapshot, summed by label: `labels[pid]`,
        else `commands[command name]`, else "other"; the reaped children's under `reaped`.
        A process that ended in between (but those reaped children) is left out."""
        out: dict[str, float] = {reaped: self.reaped_children_s - before.reaped_children_s}
        for pid, (command, seconds) in self.processes.items():
            was = before.processes.get(pid)
            used = seconds - was[1] if was is not None and was[0] == command else seconds
            label = labels.get(pid) or commands.get(command, "other")
            out[label] = out.get(label, 0.0) + used
        return out


class RssSampler:
    """Samples the RSS of `pid` every `interval` seconds while in its `with` block."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.max_kb = 0
        self.last_kb = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        kb = rss_kb(self.pid)
        if kb:
            self.last_kb = kb
            self.max_kb = max(self.max_kb, kb)
            self.samples += 1

    def _run(self) -> None:
        self._sample()
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def max_mb(self) -> float:
        return self.max_kb / 1024

    @property
    def last_mb(self) -> float:
        return self.last_kb / 1024
