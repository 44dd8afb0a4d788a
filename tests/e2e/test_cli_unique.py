"""`tally counter unique`: set, show and clear a counter's unique-visitor window from the
CLI; bad windows change nothing; a running server applies it."""

from __future__ import annotations

import time

import httpx
import pytest

from .conftest import ServerFactory
from .server import TallyCli

APPLIED_WITHIN = 1.5  # TALLY_TOKEN_CACHE_TTL is 1 s by default


def test_counter_unique_sets_and_clears_the_window(
    make_server: ServerFactory, cli: TallyCli
) -> None:
    """36h, on (24h), off; a window is shown the way it was typed (24h is 24h, not 1d;
    whole days in both units); the server counts one visitor once while it is on."""
    cli.workspace("acme")
    cli.counter("acme/views")
    assert cli.run("counter", "unique", "acme/views", "36h").stdout.strip() == (
        "counter acme/views: unique=36h by=address_agent"
    )
    assert cli.run("counter", "unique", "acme/views", "on").stdout.strip() == (
        "counter acme/views: unique=24h (1 day) by=address_agent"
    )
    assert cli.run("counter", "unique", "acme/views", "24h").stdout.strip() == (
        "counter acme/views: unique=24h (1 day) by=address_agent"
    )
    assert cli.run("counter", "unique", "acme/views", "168h").stdout.strip() == (
        "counter acme/views: unique=7d (168 hours) by=address_agent"
    )
    assert cli.run("counter", "unique", "acme/views", "on").stdout.strip() == (
        "counter acme/views: unique=24h (1 day) by=address_agent"
    )
    server = make_server(args=["--no-bootstrap"])
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=5) as http:
        first = http.get("/v2/acme/views/up").json()["data"]
        second = http.get("/v2/acme/views/up").json()["data"]
        assert (first["counted"], first["up_count"]) == (True, 1)
        assert (second["counted"], second["up_count"]) == (False, 1)
        out = cli.run("counter", "unique", "acme/views", "off").stdout
        assert out.strip() == "counter acme/views: unique=off by=address_agent"
        time.sleep(APPLIED_WITHIN)
        third = http.get("/v2/acme/views/up").json()["data"]
        assert third["up_count"] == 2
        assert "counted" not in third


def test_counter_unique_by_address(make_server: ServerFactory, cli: TallyCli) -> None:
    """--by address: a visitor is its address alone, so a new User-Agent counts nothing
    more; --by alone keeps the window, --by address_agent goes back."""
    cli.workspace("acme")
    cli.counter("acme/views")
    assert cli.run("counter", "unique", "acme/views", "1d", "--by", "address").stdout.strip() == (
        "counter acme/views: unique=24h (1 day) by=address"
    )
    server = make_server(args=["--no-bootstrap"])
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=5) as http:
        first = http.get("/v2/acme/views/up", headers={"User-Agent": "a/1"}).json()["data"]
        other = http.get("/v2/acme/views/up", headers={"User-Agent": "b/2"}).json()["data"]
        assert (first["counted"], other["counted"], other["up_count"]) == (True, False, 1)
    out = cli.run("counter", "unique", "acme/views", "--by", "address_agent").stdout
    assert out.strip() == "counter acme/views: unique=24h (1 day) by=address_agent"
    proc = cli.run("counter", "unique", "acme/views", "--by", "cookie", check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("window", "says"),
    [
        ("59m", "from 3600 s"),
        ("31d", "from 3600 s"),
        ("soon", "unknown window"),
        ("1.5h", "unknown window"),
    ],
)
def test_counter_unique_refuses_bad_windows(cli: TallyCli, window: str, says: str) -> None:
    """A window out of range or unreadable, or a missing counter: non-zero exit, a clear
    message, nothing changed."""
    cli.workspace("acme")
    cli.counter("acme/c")
    cli.run("counter", "unique", "acme/c", "2h")
    proc = cli.run("counter", "unique", "acme/c", window, check=False)
    assert proc.returncode != 0
    assert says in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = cli.run("counter", "unique", "acme/missing", "2h", check=False)
    assert proc.returncode != 0
    assert "no counter" in proc.stderr
    shown = cli.run("counter", "unique", "acme/c").stdout.strip()
    assert shown == "counter acme/c: unique=2h by=address_agent"
