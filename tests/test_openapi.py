"""/openapi.json describes exactly the routes the app serves, and what they answer;
/docs renders it with the vendored Redoc under a CSP without inline script."""

from __future__ import annotations

import asyncio
import hashlib
import re
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
import pytest
from conftest import Harness
from openapi_spec_validator import validate

from tally.config import RateLimit
from tally.models import CounterChange, Permission
from tally.web import docs, pageview
from tally.web.api import TEMPLATES
from tally.web.download import EXPORT_ROUTE
from tally.web.manage import METHODS
from tally.web.manage import TEMPLATES as MANAGE_TEMPLATES
from tally.web.openapi import document
from tally.web.v1 import TEMPLATES as V1_TEMPLATES

ROOT = Path(__file__).parent.parent
STATIC = resources.files("tally.web") / "static"


def check_body(
    doc: dict[str, Any], r: httpx.Response, path: str, status: int, method: str = "get"
) -> None:
    """The answer validates against the schema the document gives for its status."""
    assert r.status_code == status, (path, r.text)
    responses = doc["paths"][path][method]["responses"]
    entry = responses.get(str(status))
    assert entry is not None, f"{path} answered {status}, which is not documented"
    if "$ref" in entry:
        entry = doc["components"]["responses"][entry["$ref"].rsplit("/", 1)[1]]
    schema = entry["content"]["application/json"]["schema"]
    jsonschema.validate(r.json(), {**schema, "components": doc["components"]})
    for header in entry.get("headers", {}):
        assert header.lower() in r.headers, (path, status, header)


def test_document_is_valid_openapi_31() -> None:
    """The document passes the OpenAPI 3.1 validator."""
    doc = document()
    assert doc["openapi"] == "3.1.0"
    validate(doc)


async def test_document_and_routes_agree(harness: Harness) -> None:
    """The document's paths are exactly the routes the app serves (but for the ones it
    keeps out on purpose), and a path that is in neither is a 404."""
    served = (
        set(TEMPLATES.values())
        | {EXPORT_ROUTE}
        | set(V1_TEMPLATES.values())
        | set(MANAGE_TEMPLATES.values())
        | {path.decode() for path, route in harness.app.routes.items() if route.documented}
        | {pageview.COUNT.decode(), pageview.PIXEL.decode()}
    )
    r = await harness.client.get("/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert set(r.json()["paths"]) == served
    undocumented = {p.decode() for p, route in harness.app.routes.items() if not route.documented}
    assert undocumented == {
        "/docs",
        "/docs/redoc.standalone.js",
        "/metrics",
        "/count.js",
        "/widget.js",
    }
    for path in ("/v2/ws/c/unknown", "/openapi", "/v2/ws", "/health"):
        assert (await harness.client.get(path)).status_code == 404


async def test_every_route_answers_as_documented(harness: Harness) -> None:
    """Each documented path, called for real, answers 200 in its documented schema with
    the documented headers; errors answer in the Error schema."""
    doc = document()
    ws = await harness.workspace()
    await harness.store.set_workspace_rules(ws.id, v1_open=True, origins=())
    token = await harness.token(ws, Permission.ADMIN)
    await harness.get("/v2/ws/c/up", token)
    queries = {  # the required query parameters, and optional ones
        "/v2/{workspace}/{name}/set": "?up_count=5",
        "/v2/{workspace}/{name}/up": "?by=2",
        "/v1/{namespace}/{name}/set": "?count=3",
        "/v1/{namespace}/{name}/list": "?group_by=hour&order_by=desc",
    }
    for path in doc["paths"]:
        if "/-/" in path:
            continue  # the management API: tests/test_management.py
        ok = doc["paths"][path]["get"]["responses"].get("200", {})
        if "application/json" not in ok.get("content", {}):
            continue  # badge.svg, stream, export: tests/test_badge.py, test_stream.py, ...
        concrete = path.replace("{workspace}", "ws").replace("{namespace}", "ws")
        concrete = concrete.replace("{name}", "c")
        concrete += queries.get(path, "")
        check_body(doc, await harness.get(concrete, token), path, 200)
    check_body(doc, await harness.get("/v2/ws/missing"), "/v2/{workspace}/{name}", 404)
    check_body(doc, await harness.get("/v2/ws/c/reset"), "/v2/{workspace}/{name}/reset", 401)
    bad = await harness.get("/v2/ws/" + "x" * 129)
    check_body(doc, bad, "/v2/{workspace}/{name}", 400)
    check_body(doc, await harness.get("/v2/ws/c/set"), "/v2/{workspace}/{name}/set", 400)
    check_body(doc, await harness.get("/v1/ws/missing"), "/v1/{namespace}/{name}", 400)
    check_body(doc, await harness.get("/v1/closed/c/up"), "/v1/{namespace}/{name}/up", 404)
    counter = await harness.store.read_counter("ws", "c")
    assert counter is not None
    value = counter.up_count - counter.down_count  # the ceiling: no up passes it
    await harness.store.change_counter(counter.id, CounterChange(bounds=(None, value)))
    await asyncio.sleep(1.1)  # the node's cached counter (unbounded) expires
    ceiling = await harness.get("/v2/ws/c/up", token)
    check_body(doc, ceiling, "/v2/{workspace}/{name}/up", 409)
    check_body(doc, await harness.get("/v1/ws/c/up"), "/v1/{namespace}/{name}/up", 409)


def test_management_methods_are_documented() -> None:
    """Each management route documents exactly the methods it serves (OPTIONS aside)."""
    paths = document()["paths"]
    for key, template in MANAGE_TEMPLATES.items():
        assert set(paths[template]) == {m.lower() for m in METHODS[key]}, template


async def test_rate_limit_answer_is_documented(make_harness: Any) -> None:
    """A 429 carries the documented rate-limit headers and Retry-After."""
    h = await make_harness(rate_limit=RateLimit(1, 60.0))
    await h.get("/v2/ws/c")
    check_body(document(), await h.get("/v2/ws/c"), "/v2/{workspace}/{name}", 429)


async def test_docs_page(harness: Harness) -> None:
    """/docs: Redoc from this server, no inline script, a CSP that forbids any other."""
    r = await harness.client.get("/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    script_src = re.search(r"script-src ([^;]*)", csp)
    assert script_src is not None
    assert script_src.group(1) == "'self'"
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", r.text, re.S)
    assert scripts
    for attributes, body in scripts:
        assert 'src="' in attributes
        assert body.strip() == ""
    assert "http://" not in r.text  # no CDN
    assert "https://" not in r.text
    assert 'spec-url="openapi.json"' in r.text
    src = re.search(r'<script src="([^"]+)"', r.text)
    assert src is not None
    js = await harness.client.get("/" + src.group(1))
    assert js.status_code == 200
    assert js.headers["content-type"].startswith("text/javascript")
    vendored = (STATIC / "redoc" / "redoc.standalone.js").read_bytes()
    # as vendored, but for Redocly's logo, which it would fetch from a CDN
    assert js.content == vendored.replace(docs.REDOC_LOGO, docs.NO_LOGO)
    assert js.content != vendored
    assert b"cdn.redoc.ly" not in js.content


def test_vendored_redoc_is_what_the_script_fetched() -> None:
    """The bundle's sha256 is the one scripts/vendor-redoc recorded; its licences are
    there; the package data ships them."""
    version = dict(
        line.split(" ", 1) for line in (STATIC / "redoc" / "VERSION").read_text().splitlines()
    )
    bundle = (STATIC / "redoc" / "redoc.standalone.js").read_bytes()
    assert hashlib.sha256(bundle).hexdigest() == version["sha256"]
    assert (
        f'VERSION="${{1:-{version["redoc"]}}}"' in (ROOT / "scripts" / "vendor-redoc").read_text()
    )
    assert "MIT" in (STATIC / "redoc" / "LICENSE").read_text()
    assert (STATIC / "redoc" / "redoc.standalone.js.LICENSE.txt").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"web/static/redoc/*"' in pyproject
    assert '"web/static/*.html"' in pyproject


@pytest.mark.parametrize("path", ["/healthz", "/openapi.json", "/docs"])
async def test_other_methods_are_405(harness: Harness, path: str) -> None:
    """The routes outside /v2 answer GET only."""
    r = await harness.client.post(path)
    assert r.status_code == 405
    assert r.json()["code"] == "405"
