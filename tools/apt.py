"""Debian packages the tests and benchmarks need (chromium, nginx, wrk), installed on
first use: nothing installed by hand has to survive to a new machine.

Several installs may run at once (tests in parallel sessions, a benchmark beside the
suite), so apt-get waits for dpkg's lock instead of failing on it.
"""

from __future__ import annotations

import os
import subprocess

LOCK_TIMEOUT = 600  # seconds apt-get waits for another apt-get to finish


def _apt(*args: str, quiet: bool) -> int:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "-o", f"DPkg::Lock::Timeout={LOCK_TIMEOUT}", *args]
    if quiet:
        command.append("-qq")
    out = subprocess.DEVNULL if quiet else None
    return subprocess.run(
        command, env=env, stdout=out, stderr=out, check=False, timeout=LOCK_TIMEOUT + 900
    ).returncode


def install(package: str, *, quiet: bool = False) -> bool:
    """apt-get install -y `package`; if that fails, apt-get update and once more.
    Whether the last install succeeded (the caller checks for what it needs)."""
    if _apt("install", "-y", package, quiet=quiet) == 0:
        return True
    _apt("update", quiet=quiet)
    return _apt("install", "-y", package, quiet=quiet) == 0
