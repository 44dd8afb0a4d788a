"""The servers under test, each its own process group on a free port of 127.0.0.1.

`Server` starts a command, waits until a GET of its ready path answers 200, and stops it
with SIGTERM (granian then stops its worker, and Tally commits what it holds). Only if it
has not exited after STOP_TIMEOUT does its process group get SIGKILL. Both `tally serve`
and the ceiling run as `python -m ...` of this interpreter.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

from bench import procstat

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 60.0
_START_ATTEMPTS = 3  # a free port can be taken between picking and binding it


class ServerError(RuntimeError):
    """A server did not start (or stop) as it should; the message names its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def free_port_block(count: int) -> int:
    """A port P of 127.0.0.1 such that P .. P+count-1 are all free (now)."""
    for _ in range(100):
        base = free_port()
        if base + count <= 65536 and all(_free(base + i) for i in range(1, count)):
            return base
    raise ServerError(f"found no {count} free ports in a row on {HOST}")


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without TALLY_* settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    env.update(PYTHONUNBUFFERED="1")
    env.update(extra or {})
    return env


class Server:
    """One server process: `argv(port)` is its command line for a given port."""

    def __init__(
        self,
        name: str,
        argv: Callable[[int], list[str]],
        *,
        env: Mapping[str, str],
        ready_path: str,
        log_dir: Path,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.ready_path = ready_path
        self.log = log_dir / f"{name}.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        for _ in range(_START_ATTEMPTS):
            self.port = free_port()
            with self.log.open("ab") as log:
                log.write(f"--- start on port {self.port}\n".encode())
                log.flush()
                self.proc = subprocess.Popen(
                    self.argv(self.port),
                    cwd=ROOT,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group, out of reach of Ctrl-C
                )
            try:
                ready = self._wait_ready()
            except BaseException:  # Ctrl-C while waiting: __exit__ will not run
                self.stop()
                raise
            if ready:
                return
            self.stop()
        raise ServerError(f"{self.name} did not become ready; see {self.log}")

    def _wait_ready(self) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection(HOST, self.port, timeout=1.0)
                try:
                    conn.request("GET", self.ready_path)
                    if conn.getresponse().status == 200:
                        return True
                finally:
                    conn.close()
            time.sleep(0.05)
        return False

    def worker_pid(self) -> int:
        """The granian worker: the child of the server process (the process itself if
        it has no child)."""
        assert self.proc is not None
        kids = procstat.children(self.proc.pid)
        return kids[0] if kids else self.proc.pid

    def stop(self) -> int | None:
        """SIGTERM, wait for the exit; SIGKILL to the process group after STOP_TIMEOUT."""
        proc, self.proc = self.proc, None
        if proc is None:
            return self.exit_code
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"{self.name} did not stop in {STOP_TIMEOUT:.0f} s: SIGKILL", flush=True)
        # the worker must not outlive its parent; the group id is the server's own pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        self.exit_code = proc.returncode
        return self.exit_code

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def tally_server(
    db: Path,
    *,
    durability: str,
    rate_limit: str,
    log_dir: Path,
    name: str,
    env: Mapping[str, str] | None = None,
) -> Server:
    """`tally serve` on `db` (no bootstrap), with TALLY_RATE_LIMIT=`rate_limit` and the
    TALLY_* variables of `env`."""

    def argv(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "tally",
            "serve",
            "--host",
            HOST,
            "--port",
            str(port),
            "--database",
            f"sqlite:///{db}",
            "--durability",
            durability,
            "--no-bootstrap",
        ]

    # the budget of new counters and the quota are defences, not the write path a
    # benchmark measures (its fixtures make thousands to a million counters)
    limits = {"TALLY_CREATE_RATE_LIMIT": "off", "TALLY_COUNTER_QUOTA": "off"}
    variables = clean_env({"TALLY_RATE_LIMIT": rate_limit, **limits, **(env or {})})
    return Server(name, argv, env=variables, ready_path="/healthz", log_dir=log_dir)


def ceiling_server(log_dir: Path, name: str = "ceiling") -> Server:
    """bench/hello.py under granian with the options of `tally serve`."""

    def argv(port: int) -> list[str]:
        return [sys.executable, "-m", "bench.hello", "--host", HOST, "--port", str(port)]

    return Server(name, argv, env=clean_env(), ready_path="/", log_dir=log_dir)


def naive_server(db: Path, *, log_dir: Path, name: str = "naive") -> Server:
    """bench/naive.py on `db` under granian with the options of `tally serve`."""

    def argv(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "bench.naive",
            "--host",
            HOST,
            "--port",
            str(port),
            "--database",
            str(db),
        ]

    return Server(name, argv, env=clean_env(), ready_path="/healthz", log_dir=log_dir)
