"""tally.webhooks and tally.alerts without a server: the signature against the Standard
Webhooks scheme (and the documented example), which URLs may receive, and the retry
schedule."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from pathlib import Path

import pytest

from tally import alerts, webhooks
from tally.errors import BadRequest

DOCS = Path(__file__).parents[1] / "docs" / "api.md"


def test_the_signature_is_the_standard_webhooks_one() -> None:
    """v1, base64 HMAC-SHA256 keyed with the secret's decoded bytes over id.timestamp.body
    (computed here from the spec), and verify accepts it, and refuses a changed body, an
    old timestamp or another secret."""
    secret = webhooks.new_secret()
    body = b'{"a":1}'
    stamp = int(time.time())
    key = base64.b64decode(secret[len("whsec_") :])
    expected = base64.b64encode(
        hmac.new(key, f"msg_1.{stamp}.".encode() + body, hashlib.sha256).digest()
    )
    assert webhooks.sign(secret, "msg_1", stamp, body) == "v1," + expected.decode()
    signature = "v1,bm9wZQ== " + webhooks.sign(secret, "msg_1", stamp, body)  # one of two
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature,
    }
    assert webhooks.verify(secret, headers, body)
    assert not webhooks.verify(secret, headers, body + b" ")
    assert not webhooks.verify(webhooks.new_secret(), headers, body)
    old = {**headers, "webhook-timestamp": str(stamp - 3600)}
    old["webhook-signature"] = webhooks.sign(secret, "msg_1", stamp - 3600, body)
    assert not webhooks.verify(secret, old, body)


def test_the_documented_example_verifies() -> None:
    """The request shown in docs/api.md carries the real signature of its body."""
    text = DOCS.read_text()
    secret = re.search(r'"secret":"(whsec_[A-Za-z0-9+/=]+)"', text)
    sig = re.search(r"webhook-signature: (v1,\S+)", text)
    stamp = re.search(r"webhook-timestamp: (\d+)", text)
    msg = re.search(r"webhook-id: (\S+)", text)
    body = re.search(r'\n(\{"type":"counter.above".*\})\n', text)
    assert secret is not None
    assert sig is not None
    assert stamp is not None
    assert msg is not None
    assert body is not None
    assert webhooks.sign(
        secret.group(1), msg.group(1), int(stamp.group(1)), body.group(1).encode()
    ) == sig.group(1)


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/", "file:///etc/passwd", "gopher://x", "http://", "https://u:p@example.com/",
     "http://127.0.0.1/", "http://10.1.2.3/", "http://169.254.169.254/latest", "http://[::1]:80/",
     "http://[fd00::1]/", "http://0.0.0.0/", "http://192.168.1.1/", "http://ex ample.com/",
     "http://example.com:99999/", "x" * 3000, 42, None],
)  # fmt: skip
def test_urls_that_may_not_receive(url: object) -> None:
    with pytest.raises(BadRequest):
        webhooks.check_url(url, allow_private=False)


def test_urls_that_may_receive() -> None:
    assert webhooks.check_url("https://hooks.example.com/x?y=1", allow_private=False)
    assert webhooks.check_url("http://8.8.8.8/h", allow_private=False)
    assert webhooks.check_url("http://127.0.0.1:9/h", allow_private=True)


async def test_a_name_that_resolves_to_a_private_address_is_refused() -> None:
    """Names are checked before each delivery: localhost resolves to loopback."""
    refused = await webhooks.check_host("http://localhost:9/h", allow_private=False)
    assert refused is not None
    assert "not a public address" in refused
    assert await webhooks.check_host("http://localhost:9/h", allow_private=True) is None


def test_the_retry_schedule() -> None:
    """5 s doubling, at most an hour apart, given up 24 h after the firing; scaled."""
    fired = 1000.0
    waits = [alerts.backoff(n, fired, fired) for n in range(1, 12)]
    assert [w - fired for w in waits if w is not None][:5] == [5, 10, 20, 40, 80]
    assert alerts.backoff(20, fired, fired) == fired + 3600
    assert alerts.backoff(1, fired, fired + 86400) is None
    assert alerts.backoff(1, fired, fired, scale=0.01) == pytest.approx(fired + 0.05)
    assert alerts.backoff(1, fired, fired + 865, scale=0.01) is None
