"""Fixtures of the end-to-end suite: real `tally serve` processes and the admin CLI.

Every test in this directory is marked `e2e` (run only them with `-m e2e`, skip them with
`-m "not e2e"`). Every server a test starts is stopped at teardown, pass or fail.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from .npm_client import install_counterapi, node_available
from .server import MADE_TOKENS, STARTED, TallyCli, TallyServer, sqlite_url

HERE = Path(__file__).parent
NPM_CACHE = HERE.parents[1] / ".cache" / "npm"

ServerFactory = Callable[..., TallyServer]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/e2e as `e2e`."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def no_token_in_server_output() -> Iterator[None]:
    """After every e2e test: no server it started wrote a token the suite made (with
    the CLI) to its output, in any run (a log line must never carry a token)."""
    first = len(STARTED)
    yield
    servers, STARTED[first:] = STARTED[first:], []
    for server in servers:
        for run in range(1, server.runs + 1):
            output = server.stdout(run) + server.stderr(run)
            leaked = [token for token in MADE_TOKENS if token in output]
            assert not leaked, f"run {run} of a server wrote a token to its output:\n{output}"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The test's own SQLite database (created by the first server or CLI command)."""
    return sqlite_url(tmp_path / "t.db")


@pytest.fixture
def cli(database_url: str) -> TallyCli:
    """The admin CLI on the test's database."""
    return TallyCli(database_url)


@pytest.fixture
def make_server(tmp_path: Path, database_url: str) -> Iterator[ServerFactory]:
    """`make_server(durability=..., args=[...], env={...}, start=True)`: a TallyServer on the
    test's database; all of them are stopped at teardown."""
    servers: list[TallyServer] = []

    def make(
        *,
        durability: str = "commit",
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        start: bool = True,
    ) -> TallyServer:
        workdir = tmp_path / f"server-{len(servers)}"
        workdir.mkdir()
        server = TallyServer(
            workdir, database_url=database_url, durability=durability, args=args, env=env
        )
        servers.append(server)
        return server.start() if start else server

    yield make
    for server in reversed(servers):
        server.close()


@pytest.fixture(scope="session")
def node_dir() -> Path:
    """A directory whose node_modules holds counterapi@3.1.0 (installed once, cached).

    Without node/npm the tests skip, except under CI=true where they fail: CI must never
    silently skip the real-client check."""
    if not node_available():
        reason = "node >= 18 and npm are needed to run the official counterapi client"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
    return install_counterapi(NPM_CACHE)
