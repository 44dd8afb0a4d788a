"""Run the official npm client ``counterapi@3.1.0`` against a running Tally server.

``install_counterapi`` puts the package in a cache directory once (guarded by a file lock
so parallel test processes don't collide), with ``npm ci`` from the committed
``npm/package-lock.json``: counterapi and everything it needs (axios, ...) at locked
versions, each checked against its integrity hash, so a new release of a dependency
never changes what the tests run. ``run_client`` runs ``counterapi_client.mjs`` (next to
this file) with node and returns the one line of JSON it prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

COUNTERAPI_VERSION = "3.1.0"
SCRIPT = Path(__file__).with_name("counterapi_client.mjs")
LOCKED = Path(__file__).with_name("npm")  # package.json and package-lock.json
NPM_TIMEOUT = 300.0
MIN_NODE_MAJOR = 18  # counterapi's "engines"


def node_available() -> bool:
    """True when ``node`` (>= 18) and ``npm`` are on PATH."""
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        return False
    try:
        out = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
        return int(out.strip().lstrip("v").split(".")[0]) >= MIN_NODE_MAJOR
    except (OSError, subprocess.SubprocessError, ValueError):
        return False


def _lock_digest() -> str:
    """What the cache must have been installed from: the manifest and the lock."""
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((LOCKED / name).read_bytes())
    return digest.hexdigest()


def _installed(cache_dir: Path) -> bool:
    """The cache holds counterapi installed from the current lock."""
    stamp = cache_dir / ".installed-from"
    manifest = cache_dir / "node_modules" / "counterapi" / "package.json"
    try:
        version = json.loads(manifest.read_text(encoding="utf-8")).get("version")
        return version == COUNTERAPI_VERSION and stamp.read_text() == _lock_digest()
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def install_counterapi(cache_dir: Path) -> Path:
    """Make sure ``counterapi@3.1.0`` is installed under ``cache_dir`` from the lock; return
    ``cache_dir``.

    The returned directory contains ``node_modules/counterapi``.
    """
    cache_dir = cache_dir.resolve()
    if _installed(cache_dir):
        return cache_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / ".counterapi-install.lock"):
        if _installed(cache_dir):  # another process did it
            return cache_dir
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is not on PATH")
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(LOCKED / name, cache_dir / name)
        cmd = [npm, "ci", "--no-audit", "--no-fund", "--prefix", str(cache_dir)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=NPM_TIMEOUT, check=False)
        if proc.returncode == 0:
            (cache_dir / ".installed-from").write_text(_lock_digest())
        if proc.returncode != 0 or not _installed(cache_dir):
            raise RuntimeError(
                f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
    return cache_dir


def _place_script(node_dir: Path) -> Path:
    """Copy the script next to node_modules (ESM ignores NODE_PATH), atomically."""
    target = node_dir / SCRIPT.name
    fd, tmp = tempfile.mkstemp(dir=node_dir, prefix=".counterapi_client.", suffix=".mjs")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(SCRIPT.read_bytes())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def run_client(
    node_dir: Path,
    base_url: str,
    workspace: str,
    counter: str,
    token: str | None,
    expect_error: bool = False,
    timeout: float = 30,
) -> dict[str, Any]:
    """Run the client script and return its JSON report.

    The report is ``{"ok": bool, "steps": [...]}`` as printed by the script, plus
    ``exit_code`` and ``stderr``; ``ok`` is false unless the script also exited 0. When the
    script prints no JSON (crash, timeout), ``ok`` is false and ``error``/``stdout`` say why.
    """
    script = _place_script(node_dir)
    env = dict(os.environ)
    for key in ("TALLY_TOKEN", "TALLY_EXPECT_ERROR"):
        env.pop(key, None)
    env.update(
        TALLY_BASE_URL=base_url,
        TALLY_WORKSPACE=workspace,
        TALLY_COUNTER=counter,
        # axios honours *_proxy variables: never send loopback traffic through a proxy.
        NO_PROXY="*",
        no_proxy="*",
    )
    if token is not None:
        env["TALLY_TOKEN"] = token
    if expect_error:
        env["TALLY_EXPECT_ERROR"] = "get"
    node = shutil.which("node") or "node"
    try:
        proc = subprocess.run(
            [node, str(script)],
            cwd=node_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return {
            "ok": False,
            "error": f"node did not finish within {timeout} s",
            "stdout": _text(exc.stdout),
            "stderr": _text(exc.stderr),
        }
    lines = proc.stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1]) if lines else None
    except ValueError:
        report = None
    if not isinstance(report, dict):
        return {
            "ok": False,
            "error": "the client script printed no JSON report",
            "exit_code": proc.returncode,
            "stdout": proc.stdout,
            "stderr": proc.stderr,
        }
    report["ok"] = bool(report.get("ok")) and proc.returncode == 0
    report["exit_code"] = proc.returncode
    report["stderr"] = proc.stderr
    return report


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data
