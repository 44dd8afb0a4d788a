"""tally.origins: configured origins, the origin a request names, and the match."""

from __future__ import annotations

import pytest

from tally import origins


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("https://example.com", "https://example.com"),
        ("HTTPS://Example.COM/", "https://example.com"),
        ("https://example.com:443", "https://example.com"),
        ("http://example.com:80", "http://example.com"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("https://*.example.com", "https://*.example.com"),
        ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
    ],
)
def test_normalize(text: str, canonical: str) -> None:
    """Configured origins are lower-cased, without a default port or a trailing /."""
    assert origins.normalize(text) == canonical


@pytest.mark.parametrize(
    "text",
    [
        "example.com",
        "ftp://example.com",
        "https://example.com/page",
        "https://example.com?x=1",
        "https://user@example.com",
        "https://",
        "https://exa mple.com",
        "https://example.com:99999",
        "https://*.*.example.com",
        "*",
        "null",
    ],
)
def test_normalize_refuses_what_is_not_an_origin(text: str) -> None:
    with pytest.raises(ValueError, match="is not an origin"):
        origins.normalize(text)


def test_parse_list() -> None:
    """Comma- or space-separated, normalized, without duplicates, in order."""
    assert origins.parse_list("https://b.example, https://A.example  https://b.example/") == (
        "https://b.example",
        "https://a.example",
    )
    assert origins.parse_list("") == ()


@pytest.mark.parametrize(
    ("origin", "referer", "named"),
    [
        (b"https://Example.com", None, "https://example.com"),
        (None, b"https://example.com:443/blog/post?x=1#y", "https://example.com"),
        (b"https://a.example", b"https://b.example/", "https://a.example"),  # Origin first
        (b"null", b"https://b.example/", None),  # an opaque origin names none
        (None, None, None),
        (None, b"not a url", None),
        (b"\xff\xfe", None, None),
        (b"https://*.example.com", None, None),
        (b"http://localhost:8080", None, "http://localhost:8080"),
    ],
)
def test_request_origin(origin: bytes | None, referer: bytes | None, named: str | None) -> None:
    assert origins.request_origin(origin, referer) == named


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://example.com", True),
        ("http://example.com", False),  # another scheme
        ("https://example.com:8443", False),  # another port
        ("https://blog.example.com", True),  # a subdomain, by the wildcard
        ("https://a.b.example.com", True),
        ("https://evilexample.com", False),
        ("https://example.com.evil.net", False),
        ("http://localhost:8080", True),
        ("http://localhost", False),
        (None, False),
    ],
)
def test_allowed(origin: str | None, allowed: bool) -> None:
    rules = ("https://example.com", "https://*.example.com", "http://localhost:8080")
    assert origins.allowed(origin, rules) is allowed


def test_an_empty_list_allows_anything() -> None:
    assert origins.allowed(None, ())
    assert origins.allowed("https://anything.example", ())
