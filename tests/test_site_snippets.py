"""The code snippets the dashboard gives to copy, each escaped for its own language: a
counter named to break out of a string (a V1 counter may be named anything but '/')
comes out of every snippet as that name, and pasting a snippet runs nothing else."""

from __future__ import annotations

import asyncio
import html
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from conftest import BrowserFactory, Harness
from site_client import SiteClient

HOSTILE = [
    'x"), require("child_process").execSync("touch PWNED"); ("',
    "x'); require('child_process').execSync('touch PWNED'); ('",
    "$(touch PWNED)`touch PWNED`'\"; touch PWNED; #",
    "</code><script>alert(1)</script>\u2028\u2029\\",
]


def snippet(page: str, element: str) -> str:
    """The text a Copy button copies: the element's text, entities decoded."""
    match = re.search(rf'<code id="{element}">(.*?)</code>', page, re.DOTALL)
    assert match is not None, element
    assert "<" not in match.group(1)  # nothing in it is markup
    return html.unescape(match.group(1))


async def page_of(harness: Harness, make_browser: BrowserFactory, name: str) -> str:
    b: SiteClient = await make_browser(harness)
    assert (await b.sign_up("ann@example.com")).status_code == 303
    ws = await harness.store.get_workspace("ann")
    assert ws is not None
    counter = await harness.counter(ws, name)
    r = await b.get(f"/w/ann/c/{counter.id}")
    assert r.status_code == 200
    return r.text


async def run(args: list[str], cwd: Path) -> str:
    """The output of a command (sh, node) run in `cwd`, off the event loop."""
    done = await asyncio.to_thread(
        subprocess.run, args, cwd=cwd, capture_output=True, text=True, timeout=30, check=True
    )
    return str(done.stdout)


@pytest.mark.parametrize("name", HOSTILE)
async def test_snippets_quote_the_name_for_their_language(
    harness: Harness, make_browser: BrowserFactory, name: str, tmp_path: Path
) -> None:
    """curl: one shell word, the URL of the name; the npm client and fetch: JSON strings
    that are the name and the URL; run in sh and Node, they touch no file."""
    page = await page_of(harness, make_browser, name)
    paste = tmp_path / "paste"  # where the snippets run
    paste.mkdir()
    url_path = "/v2/ann/{}/up"

    curl = snippet(page, "snippet-curl")
    words = shlex.split(curl)
    assert words[:3] == ["curl", "-H", "Authorization: Bearer YOUR_TOKEN"]
    assert len(words) == 4
    assert unquote(urlsplit(words[3]).path) == url_path.format(name)

    client = snippet(page, "snippet-client")
    up = re.search(r"await counter\.up\((.*)\);\n", client)
    assert up is not None
    assert json.loads(up.group(1)) == name
    fetch = snippet(page, "snippet-fetch")
    target = re.search(r"await fetch\((.*), \{\n", fetch)
    assert target is not None
    assert unquote(urlsplit(json.loads(target.group(1))).path) == url_path.format(name)

    if shutil.which("sh"):
        fake = 'curl() { for a in "$@"; do printf "%s\\n" "$a"; done; }; '
        out = await run(["sh", "-c", fake + curl], paste)
        assert out.splitlines()[-1] == words[3]
    if shutil.which("node"):
        stub = "const counter = { up: async (n) => ({ data: { up_count: n } }) };"
        line = next(ln for ln in client.splitlines() if "counter.up(" in ln)
        script = f"(async () => {{ {stub}\n{line}\nprocess.stdout.write(data.up_count); }})()"
        out = await run(["node", "-e", script], paste)
        assert out == name
        stub = (
            "const fetch = async (url) => ({ json: async () => ({ data: { up_count: url } }) });"
            "const console = { log: (x) => process.stdout.write(x) };"
        )
        out = await run(["node", "-e", f"(async () => {{ {stub}\n{fetch}\n}})()"], paste)
        assert unquote(urlsplit(out).path) == url_path.format(name)
    assert list(paste.iterdir()) == []  # nothing was touched


async def test_the_new_token_box_holds_the_token_alone(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """The token shown once is the secret itself, in the token alphabet: what Copy takes
    is exactly the token, whatever the token's name."""
    b: SiteClient = await make_browser(harness)
    assert (await b.sign_up("ann@example.com")).status_code == 303
    account = await harness.store.find_account("ann@example.com")
    assert account is not None
    await harness.store.mark_verified(account.id, 0.0)
    r = await b.follow(
        await b.submit("/w/ann/tokens", {"name": HOSTILE[0], "permission": "read", "expires": ""})
    )
    secret = snippet(r.text, "new-token")
    assert re.fullmatch(r"tly_[A-Za-z0-9_-]+", secret)
    assert (await harness.get("/v2/ann/-/counters", secret)).status_code == 403  # a Read token


async def test_the_new_token_box_gives_ready_lines_with_the_token(
    harness: Harness, make_browser: BrowserFactory, tmp_path: Path
) -> None:
    """Beside the token, a curl line and a JavaScript client snippet with the token filled
    in: the curl line, run in sh (a `curl` that prints its arguments), asks for
    /v2/ann/visits/up with the token; the client snippet carries it as a JSON string."""
    b: SiteClient = await make_browser(harness)
    assert (await b.sign_up("ann@example.com")).status_code == 303
    account = await harness.store.find_account("ann@example.com")
    assert account is not None
    await harness.store.mark_verified(account.id, 0.0)
    r = await b.follow(
        await b.submit("/w/ann/tokens", {"name": "site", "permission": "write", "expires": ""})
    )
    secret = snippet(r.text, "new-token")
    line = snippet(r.text, "new-token-curl")
    script = "curl() { for a; do printf '%s\\n' \"$a\"; done; }\n" + line + "\n"
    args = (await run(["sh", "-c", script], tmp_path)).splitlines()
    assert args[:2] == ["-H", f"Authorization: Bearer {secret}"]
    assert urlsplit(args[2]).path == "/v2/ann/visits/up"
    client = snippet(r.text, "new-token-client")
    assert f"accessToken: {json.dumps(secret)}" in client
    assert 'counter.up("visits")' in client
