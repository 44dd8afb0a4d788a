"""The ceiling: the least an ASGI app can do per request, served like Tally.

`app` answers every request with one small constant JSON object (orjson-encoded once,
content-type application/json). `python -m bench.hello --port N` serves it with granian
using the very options `tally serve` passes to granian: they are read from the
`Granian(...)` call in tally/server.py, so the ceiling follows when that call changes.
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import orjson

Message = MutableMapping[str, Any]
SERVER_PY = Path(__file__).resolve().parent.parent / "tally" / "server.py"
# set per server, not options of how it serves
_OWN = frozenset(("factory", "address", "port"))

BODY = orjson.dumps({"code": "200", "data": {"name": "hello", "up_count": 1}})
START: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json")],
}
RESPONSE: Message = {"type": "http.response.body", "body": BODY}


async def app(
    scope: Message,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] == "http":
        await send(START)
        await send(RESPONSE)
    elif scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


def tally_granian_options(source: Path = SERVER_PY) -> tuple[dict[str, Any], list[str]]:
    """The keyword arguments of the `Granian(...)` call in tally/server.py (but the
    target, factory, address and port), and the names of those that are not literals
    (they keep granian's default here)."""
    from granian import constants

    tree = ast.parse(source.read_text())
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Granian"
    ]
    if len(calls) != 1:
        raise RuntimeError(f"expected one Granian(...) call in {source}, found {len(calls)}")
    options: dict[str, Any] = {}
    unresolved: list[str] = []
    for keyword in calls[0].keywords:
        name = keyword.arg or "**"
        if name in _OWN:
            continue
        value = keyword.value
        if isinstance(value, ast.Constant):
            options[name] = value.value
        elif (
            isinstance(value, ast.Attribute)
            and isinstance(value.value, ast.Name)
            and hasattr(constants, value.value.id)
        ):
            options[name] = getattr(getattr(constants, value.value.id), value.attr)
        else:
            unresolved.append(name)
    return options, unresolved


def describe(options: dict[str, Any]) -> dict[str, str]:
    """The options as plain strings, for the report."""
    return {k: str(getattr(v, "value", v)) for k, v in options.items()}


def main() -> None:
    from granian import Granian
    from granian.constants import Interfaces

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    options, unresolved = tally_granian_options()
    if options.get("interface") not in (Interfaces.ASGI, Interfaces.ASGINL):
        raise SystemExit(f"the ceiling is an ASGI app; tally serves {options.get('interface')}")
    if unresolved:
        print(f"not literals in tally/server.py, granian defaults used: {unresolved}")
    Granian("bench.hello:app", address=args.host, port=args.port, **options).serve()


if __name__ == "__main__":
    main()
