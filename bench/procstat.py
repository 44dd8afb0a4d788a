"""A process's memory and CPU, read from /proc: sampled in the background while a load runs."""

from __future__ import annotations

import os
import threading
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
