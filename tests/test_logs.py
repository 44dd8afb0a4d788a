"""Logging: redaction, the JSON format, the request id, the access log."""

from __future__ import annotations

import ipaddress
import json
import logging

import httpx
import pytest
from conftest import Harness, HarnessFactory

from tally.logs import REQUEST_ID, JsonFormatter, Redactor, TextFormatter
from tally.models import Permission

TOKEN = "tly_" + "A1b2C3d4" * 5 + "xyz"


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        (f"got {TOKEN} from somewhere", TOKEN),
        ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
        ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("postgresql://tally:hunter2hunter2@db:5432/tally", "hunter2hunter2"),
        ("redis://:s3cr3tpass@redis:6379/0", "s3cr3tpass"),
        ("login failed password=opensesame1 for bob", "opensesame1"),
        ('{"password": "opensesame2"}', "opensesame2"),
        ("GET /reset?token=resetlink123456 HTTP/1.1", "resetlink123456"),
        ("https://tally.example/account/reset/confirm?reset=rs-987654321", "rs-987654321"),
        ("Cookie: session=cookievalue42; theme=dark", "cookievalue42"),
        ("set session=cookievalue43", "cookievalue43"),
    ],
)
def test_redactor_patterns(line: str, secret: str) -> None:
    """Tokens, credentials, URL passwords, password/token pairs, reset links and session
    cookies never come out."""
    out = Redactor()(line)
    assert secret not in out
    assert "[redacted]" in out


def test_redactor_literal_secrets() -> None:
    """The process's own secrets are replaced wherever they appear."""
    redact = Redactor(["my-secret-key-value", None, "short"])
    assert redact("key is my-secret-key-value!") == "key is [redacted]!"
    assert redact("short stays") == "short stays"  # too short to be a secret worth it


def test_formatters_redact_and_carry_the_request_id() -> None:
    """Both formats redact the whole line, exception text included, and carry the id."""
    try:
        raise ValueError(f"bad header Bearer {TOKEN}")
    except ValueError:
        record = logging.LogRecord(
            "tally.web", logging.WARNING, __file__, 1, "x %s", (TOKEN,), None
        )
        import sys

        record.exc_info = sys.exc_info()
    context = REQUEST_ID.set(b"abc-1")
    try:
        text = TextFormatter().format(record)
        line = JsonFormatter().format(record)
    finally:
        REQUEST_ID.reset(context)
    assert TOKEN not in text
    assert "[abc-1]" in text
    assert TOKEN not in line
    parsed = json.loads(line)
    assert parsed["request_id"] == "abc-1"
    assert parsed["level"] == "warning"
    assert parsed["logger"] == "tally.web"
    assert "ValueError" in parsed["exception"]


async def test_request_id_generated_and_echoed(harness: Harness) -> None:
    """Every answer carries an X-Request-Id, a new one each time; one from an untrusted
    peer is ignored."""
    ids = set()
    for path in ("/healthz", "/v2/ws/missing", "/nothing", "/readyz"):
        r = await harness.client.get(path, headers={"X-Request-Id": "from-the-client"})
        assert r.headers["x-request-id"] != "from-the-client"
        ids.add(r.headers["x-request-id"])
    assert len(ids) == 4


async def test_request_id_from_a_trusted_proxy(make_harness: HarnessFactory) -> None:
    """Behind a trusted proxy, its X-Request-Id is taken (if it looks like an id)."""
    h = await make_harness(trusted_proxies=(ipaddress.ip_network("198.51.100.0/24"),))
    r = await h.client.get("/healthz", headers={"X-Request-Id": "4bf92f3577b34da6"})
    assert r.headers["x-request-id"] == "4bf92f3577b34da6"
    r = await h.client.get("/healthz", headers={"X-Request-Id": "bad id with spaces"})
    assert r.headers["x-request-id"] != "bad id with spaces"


async def test_no_access_log_unless_asked(
    make_harness: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """By default a request logs nothing; with TALLY_ACCESS_LOG one line, with its id and
    without its token or query string."""
    caplog.set_level(logging.INFO)
    quiet = await make_harness()
    await quiet.get("/v2/ws/c")
    assert not [r for r in caplog.records if r.name == "tally.access"]
    loud = await make_harness(access_log=True)
    ws = await loud.workspace("logged")
    token = await loud.token(ws, Permission.WRITE)
    r = await loud.client.get(
        "/v2/logged/c/up?token=" + token, headers={"Authorization": f"Bearer {token}"}
    )
    await loud.client.get("/healthz")  # probes are never logged
    await loud.client.get("/readyz")
    access = [rec for rec in caplog.records if rec.name == "tally.access"]
    assert len(access) == 1
    line = access[0].getMessage()
    assert line.startswith("GET /v2/logged/c/up 200 ")
    assert token not in line
    assert access[0].request_id == r.headers["x-request-id"]  # type: ignore[attr-defined]


async def test_json_access_line(make_harness: HarnessFactory) -> None:
    """The JSON format turns an access record's fields into keys."""
    h = await make_harness(access_log=True)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep()
    logger = logging.getLogger("tally.access")
    logger.addHandler(keep)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        await h.client.get("/openapi.json")
    finally:
        logger.removeHandler(keep)
        logger.setLevel(old_level)
    parsed = json.loads(JsonFormatter().format(records[0]))
    assert parsed["status"] == 200
    assert parsed["path"] == "/openapi.json"
    assert parsed["method"] == "GET"
    assert isinstance(parsed["duration_ms"], float)
    assert parsed["request_id"]


def test_client_module_needs_nothing_of_the_server() -> None:
    """httpx is a runtime dependency (the client's)."""
    assert httpx.__version__
