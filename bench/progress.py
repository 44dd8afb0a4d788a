"""Progress lines on stdout, stamped with the seconds since the benchmark started."""

from __future__ import annotations

import time

_STARTED = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {message}", flush=True)
