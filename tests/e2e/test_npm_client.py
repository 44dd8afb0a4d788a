"""The official npm client `counterapi@3.1.0`, unchanged, against a real `tally serve`.

The client runs in node (`counterapi_client.mjs`, driven by `npm_client.run_client`); it
checks every answer against the client's own TypeScript types and the expected counts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import ServerFactory
from .npm_client import run_client
from .server import TallyCli, TallyServer

FULL_CYCLE = ["up", "up", "down", "get", "stats", "reset", "get"]


def _explain(report: dict[str, Any], server: TallyServer) -> str:
    return json.dumps(report, indent=1) + "\n" + server.output()


def _check_urls(report: dict[str, Any], server: TallyServer) -> None:
    for step in report["steps"]:
        assert str(step["url"]).startswith(f"{server.base_url}/v2/"), step


@pytest.fixture
def served(make_server: ServerFactory, cli: TallyCli) -> tuple[TallyServer, str]:
    """A server with workspace `ws` and a Write token of it."""
    server = make_server(args=["--no-bootstrap"])
    cli.workspace("ws")
    return server, cli.token("ws", "write")


def test_write_token_full_cycle(node_dir: Path, served: tuple[TallyServer, str]) -> None:
    """With a Write token: up (creating the counter), up, down, get, stats, reset, get."""
    server, token = served
    report = run_client(node_dir, f"{server.base_url}/v2", "ws", "npm-write", token)
    assert report["ok"], _explain(report, server)
    assert [s["op"] for s in report["steps"]] == FULL_CYCLE
    _check_urls(report, server)
    # the counter the token's up created is public: anyone may read it
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=5) as http:
        r = http.get("/v2/ws/npm-write")
    assert r.status_code == 200, r.text
    assert (r.json()["data"]["up_count"], r.json()["data"]["down_count"]) == (0, 0)


def test_anonymous_public_counter(
    node_dir: Path,
    served: tuple[TallyServer, str],
    cli: TallyCli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a token on a public counter: up, down, get, stats work; reset throws 401."""
    server, _ = served
    cli.counter("ws/npm-anon")  # fresh: the client's stats checks assume all events are its own
    monkeypatch.setenv("TALLY_RESET_FORBIDDEN", "1")

    report = run_client(node_dir, f"{server.base_url}/v2", "ws", "npm-anon", None)

    assert report["ok"], _explain(report, server)
    assert [s["op"] for s in report["steps"]] == FULL_CYCLE
    reset = report["steps"][5]
    assert reset["expect_error"] is True
    assert (reset["error"]["status"], reset["error"]["code"]) == (401, "401"), reset
    _check_urls(report, server)


@pytest.mark.parametrize("with_token", [True, False], ids=["token", "anonymous"])
def test_get_missing_counter_surfaces_404(
    node_dir: Path, served: tuple[TallyServer, str], with_token: bool
) -> None:
    """get on a missing counter: the client throws status 404 and code "404"."""
    server, token = served
    report = run_client(
        node_dir,
        f"{server.base_url}/v2",
        "ws",
        "no-such-counter",
        token if with_token else None,
        expect_error=True,
    )
    assert report["ok"], _explain(report, server)
    [step] = report["steps"]
    assert step["op"] == "get"
    assert step["error"]["status"] == 404, step
    assert step["error"]["code"] == "404", step
    assert step["error"]["details"]["code"] == "404", step
    _check_urls(report, server)
