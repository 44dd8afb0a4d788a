"""A newcomer's first starts of `tally serve`: a taken port (or metrics address) is one
line, a second server on a SQLite database is refused naming the first, and the banner
says what to do on the dashboard now."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import ServerFactory
from .server import (
    CLI_TIMEOUT,
    HOST,
    READY_TIMEOUT,
    STOP_TIMEOUT,
    TALLY,
    TallyCli,
    TallyServer,
    clean_env,
    free_port,
    sqlite_url,
)

# what a backtrace of Python or Rust looks like (RUST_BACKTRACE may be set)
BACKTRACE = ("Traceback", "Stack backtrace", "RuntimeError", "os error")


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port of 127.0.0.1 on which another program (a plain socket) listens."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def serve(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, db: str = "t.db"
) -> subprocess.CompletedProcess[str]:
    """`tally serve ARGS` on the test's database, expected to exit by itself."""
    cmd = [str(TALLY), "serve", "--host", HOST, "--database", sqlite_url(tmp_path / db), *args]
    return subprocess.run(
        cmd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=clean_env(env),
        cwd=tmp_path,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def assert_one_line(proc: subprocess.CompletedProcess[str], says: str) -> None:
    assert proc.returncode == 1, proc
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: {says}"], proc.stderr
    assert not any(word in proc.stderr for word in BACKTRACE), proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr


# item 1: a taken port ---------------------------------------------------------------


def test_a_taken_port_is_one_line_naming_the_flag(tmp_path: Path, held_port: int) -> None:
    """The port held by another program: one line naming --port, exit 1, nothing made."""
    proc = serve(tmp_path, "--port", str(held_port))
    assert_one_line(
        proc,
        f"{HOST}:{held_port} is already in use by another program: choose another port "
        "with --port (or TALLY_PORT)",
    )
    assert "tly_" not in proc.stdout  # checked before the bootstrap: no token printed
    assert not (tmp_path / "t.db").exists()


def test_a_taken_metrics_address_is_one_line(tmp_path: Path, held_port: int) -> None:
    """TALLY_METRICS_ADDRESS held by another program: one line naming the setting."""
    port = free_port()
    proc = serve(
        tmp_path, "--port", str(port), env={"TALLY_METRICS_ADDRESS": f"{HOST}:{held_port}"}
    )
    assert_one_line(
        proc,
        f"the metrics address {HOST}:{held_port} is already in use by another program: "
        "choose another TALLY_METRICS_ADDRESS",
    )


def test_a_port_taken_after_the_check_is_one_line_too(tmp_path: Path, held_port: int) -> None:
    """If the port is taken between the check and granian's bind (the check skipped
    here), granian's error becomes the same line, without its Python and Rust
    backtraces."""
    script = (
        "import sys, tally.server, tally.cli\n"
        "tally.server.check_address = lambda *args: None\n"
        "sys.exit(tally.cli.main())\n"
    )
    cmd = [sys.executable, "-c", script, "serve", "--host", HOST, "--port", str(held_port)]
    cmd += ["--database", sqlite_url(tmp_path / "t.db"), "--no-bootstrap"]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=clean_env({"RUST_BACKTRACE": "1"}),
        cwd=tmp_path,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 1, proc
    says = (
        f"Error: {HOST}:{held_port} is already in use by another program: choose another "
        "port with --port (or TALLY_PORT)"
    )
    assert proc.stderr.splitlines()[-1] == says, proc.stderr
    assert not any(word in proc.stderr for word in BACKTRACE), proc.stderr


def test_a_restart_on_the_same_port_is_not_refused(tmp_path: Path) -> None:
    """A port whose last connections are in TIME_WAIT (the server closed them: a
    restart) is free: the check binds with SO_REUSEADDR, as granian does."""
    port = free_port()
    for run in range(2):
        cmd = [str(TALLY), "serve", "--host", HOST, "--port", str(port), "--no-bootstrap"]
        cmd += ["--database", sqlite_url(tmp_path / "t.db")]
        with (tmp_path / f"run-{run}.err").open("wb") as err:
            proc = subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=err, env=clean_env(), cwd=tmp_path
            )
        try:
            _answers(proc, f"http://{HOST}:{port}/healthz")
            with httpx.Client(trust_env=False, timeout=5) as http:
                for _ in range(5):  # the server closes these: TIME_WAIT on its side
                    r = http.get(f"http://{HOST}:{port}/healthz", headers={"connection": "close"})
                    assert r.status_code == 200
        finally:
            proc.terminate()
            assert proc.wait(STOP_TIMEOUT) == 0, (tmp_path / f"run-{run}.err").read_text()


def _answers(proc: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    with httpx.Client(trust_env=False, timeout=1) as http:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "tally serve exited"
            with contextlib.suppress(httpx.TransportError):
                if http.get(url).status_code == 200:
                    return
            time.sleep(0.05)
    raise AssertionError(f"{url} did not answer within {READY_TIMEOUT} s")


# item 2: one server per port and per SQLite database ---------------------------------


def test_a_second_server_on_the_same_port_is_refused(
    tmp_path: Path, make_server: ServerFactory
) -> None:
    """granian binds with SO_REUSEPORT: a second server on a port used to start silently
    and take half the connections (and half the rate limit). It is refused now."""
    first = make_server()
    proc = serve(tmp_path, "--port", str(first.port), db="other.db")
    assert_one_line(
        proc,
        f"{HOST}:{first.port} is already in use by another program: choose another port "
        "with --port (or TALLY_PORT)",
    )
    with httpx.Client(base_url=first.base_url, trust_env=False, timeout=5) as http:
        remaining = [
            int(http.get("/v2/default/c").headers["x-ratelimit-remaining"]) for _ in range(6)
        ]
    assert remaining == sorted(remaining, reverse=True), remaining  # one limiter


def test_a_second_server_on_the_same_database_names_the_first(
    tmp_path: Path, database_url: str, make_server: ServerFactory
) -> None:
    """Another port, same SQLite file: refused with the first's pid and address; once
    the first stops, the database is free again."""
    first = make_server()
    assert first.proc is not None
    pid = first.proc.pid
    lock = tmp_path / "t.db.lock"
    assert lock.read_text() == f"pid {pid}, {first.base_url}\n"
    proc = serve(tmp_path, "--port", str(free_port()))
    assert_one_line(
        proc,
        f"another Tally server (pid {pid}, {first.base_url}) is serving "
        f"{(tmp_path / 't.db').resolve()}: stop it first, or give this one another "
        "database with --database (or TALLY_DATABASE_URL)",
    )
    (tmp_path / "link.db").symlink_to(tmp_path / "t.db")  # the same file by another path
    proc = serve(tmp_path, "--port", str(free_port()), db="link.db")
    assert proc.returncode == 1
    assert f"another Tally server (pid {pid}, {first.base_url})" in proc.stderr
    first.stop()
    assert lock.read_text() == ""  # released on exit
    second = make_server()
    assert second.proc is not None
    assert lock.read_text() == f"pid {second.proc.pid}, {second.base_url}\n"


def test_the_lock_of_a_killed_server_is_taken_over(make_server: ServerFactory) -> None:
    """SIGKILL leaves the file with the dead server's pid; the lock itself died with it."""
    first = make_server()
    first.kill()
    first.start()
    assert first.running


def test_admin_commands_work_beside_a_running_server(
    tmp_path: Path, cli: TallyCli, make_server: ServerFactory
) -> None:
    """The documented commands on a running server's database still work; restore
    (documented as "stop the server first") is refused until the server stops."""
    server = make_server()
    assert server.proc is not None
    cli.workspace("acme")
    cli.counter("acme/c")
    cli.token("acme", "write")
    cli.run("counter", "list", "acme")
    cli.run("export", "-o", str(tmp_path / "export.jsonl"))
    cli.run("backup", str(tmp_path / "copy.db"))
    proc = cli.run("restore", str(tmp_path / "copy.db"), "--force", check=False)
    assert proc.returncode == 1
    assert f"a Tally server (pid {server.proc.pid}, {server.base_url}) is serving" in proc.stderr
    server.stop()
    cli.run("restore", str(tmp_path / "copy.db"), "--force")


# item 5: the banner -------------------------------------------------------------------


def banner(server: TallyServer) -> str:
    lines = [line for line in server.stdout().splitlines() if "The dashboard:" in line]
    assert len(lines) == 1, server.output()
    return lines[0]


def test_the_banner_says_sign_up_only_while_there_is_no_account(
    cli: TallyCli, make_server: ServerFactory
) -> None:
    """A new instance: sign up (at /signup); once an account exists: sign in."""
    server = make_server()
    url = server.base_url
    assert banner(server) == (
        f"Tally is starting. The dashboard: {url}/ (no account yet: sign up at {url}/signup)"
    )
    cli.run("user", "create", "ops@example.com", "--password", "a good passphrase")
    server.restart()
    url = server.base_url
    assert banner(server) == f"Tally is starting. The dashboard: {url}/ (sign in there)"
    assert "sign up" not in server.stdout()


@pytest.mark.parametrize(("signup", "why"), [("closed", "closed"), ("invite", "by invitation")])
def test_the_banner_without_open_signup_points_to_the_cli(
    make_server: ServerFactory, signup: str, why: str
) -> None:
    """No account yet and nobody may sign up: the banner says how the first is made."""
    server = make_server(env={"TALLY_SIGNUP": signup})
    assert f"no account yet, and sign-up is {why}" in banner(server)
    assert "`tally user create EMAIL`" in banner(server)
