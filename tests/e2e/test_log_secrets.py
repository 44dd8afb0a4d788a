"""No secret in any log line: servers run with secrets of the test's making, get them in
every place a request can carry them, fail in ways that log, and their whole output is
searched for each secret afterwards. Tokens of both formats (the current one with its
checksum, the legacy one) and tokens with a wrong checksum are among them."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from services import TcpProxy

from tally.auth import generate_token

from .server import TallyCli, TallyServer, free_port


def made_token() -> str:
    """A well-formed token no server issued (current format, checksum right)."""
    return generate_token()


def made_legacy_token() -> str:
    """A token of the format before checksums (still accepted, so still secret)."""
    return "tly_" + secrets.token_urlsafe(32)


def made_bad_checksum_token() -> str:
    """The current format with a wrong checksum: refused unread, yet never logged."""
    token = generate_token()
    return token[:-1] + ("0" if token[-1] != "0" else "1")


def exercise(server: TallyServer, secret_list: list[str], tokens: dict[str, str]) -> None:
    """Requests that put secrets in the Authorization header, the path, the query string
    and cookies, with good and bad tokens; the server logs every one (access log)."""
    bad = [made_token(), made_legacy_token(), made_bad_checksum_token()]
    password = "pw-" + secrets.token_hex(8)
    cookie = "sess-" + secrets.token_hex(8)
    reset = "reset-" + secrets.token_hex(8)
    secret_list += [*bad, password, cookie, reset]
    basic = base64.b64encode(f"bob:{password}".encode()).decode()
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=10) as client:
        for token in [*tokens.values(), *bad]:
            auth = {"Authorization": f"Bearer {token}"}
            client.get("/v2/ws/c/up", headers=auth)
            client.get("/v2/ws/c/reset", headers=auth)
            client.get(f"/v2/ws/{token}/up", headers=auth)
            client.get(f"/v2/ws/c?token={token}")
            client.get("/metrics", headers=auth)
        client.get("/v2/ws/c", headers={"Authorization": f"Basic {basic}"})
        client.get("/v2/ws/c", headers={"Cookie": f"session={cookie}"})
        client.get(f"/account/reset?token={reset}")
        client.get(f"/account/reset/{reset}")


def assert_no_secret(server: TallyServer, secret_list: list[str], json_lines: bool) -> None:
    output = "".join(server.stdout(run) + server.stderr(run) for run in range(1, server.runs + 1))
    assert "tally.access" in output  # the access log was on: the requests were logged
    for secret in secret_list:
        assert secret not in output, f"{secret!r} is in the server's output:\n{output}"
    if json_lines:
        for run in range(1, server.runs + 1):
            for line in server.stderr(run).splitlines():
                json.loads(line)  # every log line is one JSON object


def test_sqlite_server_logs_no_secret(tmp_path: Path, database_url: str) -> None:
    """Text format, SQLite: tokens of every permission, the secret key, the metrics
    token, bad tokens, basic credentials, cookies and reset links stay out of the logs."""
    key, metrics = "key-" + secrets.token_hex(16), "metrics-" + secrets.token_hex(16)
    env = {"TALLY_SECRET_KEY": key, "TALLY_METRICS_TOKEN": metrics, "TALLY_ACCESS_LOG": "true"}
    cli = TallyCli(database_url, env=env)
    cli.workspace("ws")
    tokens = {p: cli.token("ws", p) for p in ("read", "write", "admin")}
    server = TallyServer(tmp_path, database_url=database_url, args=["--no-bootstrap"], env=env)
    server.start()
    secret_list = [key, metrics, *tokens.values()]
    try:
        exercise(server, secret_list, tokens)
        with httpx.Client(base_url=server.base_url, trust_env=False) as client:
            assert client.get("/metrics", headers={"Authorization": f"Bearer {metrics}"}).is_success
    finally:
        server.close()
    assert_no_secret(server, secret_list, json_lines=False)


async def test_scaleout_server_logs_no_secret(tmp_path: Path, postgres_url: str) -> None:
    """JSON format, PostgreSQL and Redis with passwords in their URLs: the database cut
    off (503s, reconnects) and a Redis that is not there (fallback) log their errors
    without the passwords, and every line is JSON."""
    target = urlsplit(postgres_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    db_password = "dbpw-" + secrets.token_hex(8)  # PostgreSQL trusts loopback: ignored
    redis_password = "redispw-" + secrets.token_hex(8)  # nothing listens there: logged
    user = target.username or "postgres"
    via_proxy = postgres_url.replace(
        target.netloc, f"{user}:{db_password}@127.0.0.1:{proxy.port}", 1
    )
    key = "key-" + secrets.token_hex(16)
    env = {
        "TALLY_SECRET_KEY": key,
        "TALLY_ACCESS_LOG": "true",
        "TALLY_LOG_FORMAT": "json",
        "TALLY_REDIS_URL": f"redis://:{redis_password}@127.0.0.1:{free_port()}/0",
        "TALLY_REDIS_PREFIX": f"tally-test-{secrets.token_hex(6)}:",
    }
    cli = TallyCli(via_proxy, env=env)
    await asyncio.to_thread(cli.workspace, "ws")
    tokens = {p: await asyncio.to_thread(cli.token, "ws", p) for p in ("read", "write")}
    server = TallyServer(tmp_path, database_url=via_proxy, args=["--no-bootstrap"], env=env)
    secret_list = [key, db_password, redis_password, *tokens.values()]
    await asyncio.to_thread(server.start)
    try:
        await asyncio.to_thread(exercise, server, secret_list, tokens)
        await proxy.cut()
        async with httpx.AsyncClient(base_url=server.base_url, trust_env=False) as client:
            for token in tokens.values():  # 503s now, each logged with its path
                auth = {"Authorization": f"Bearer {token}"}
                r = await client.get(f"/v2/ws/{token}/up", headers=auth, timeout=30)
                assert r.status_code in (404, 503), r.text
        await proxy.start()
    finally:
        await asyncio.to_thread(server.close)
        await proxy.cut()
    output = server.stderr()
    assert "storage error" in output or "503" in output, output
    assert "Redis unreachable" in output, output
    assert_no_secret(server, secret_list, json_lines=True)
