"""GET /export/{workspace}: an Admin downloads the workspace's export file (JSON lines,
tally/exports.py), streamed a page of counters at a time.

Outside /v2/ because every two-segment /v2/ path is a counter. Same token rules and rate
limit as the API. If the database fails mid-file, the response ends without the file's
`end` line, which `tally import` refuses as cut short.
"""

from __future__ import annotations

import logging
import time

from tally.errors import Forbidden, MethodNotAllowed, NotFound, StorageError, Unauthorized
from tally.exports import export_jsonl
from tally.imports import SLUG
from tally.models import Permission
from tally.web.api import V2Api
from tally.web.http import Scope, Send, response_start, send_preflight

log = logging.getLogger("tally.web")
PREFIX = b"/export/"
EXPORT_ROUTE = "/export/{workspace}"  # the route template (metrics, OpenAPI)


class ExportEndpoint:
    def __init__(self, api: V2Api) -> None:
        self.api = api

    async def __call__(self, scope: Scope, send: Send, path: bytes) -> None:
        raw = path[len(PREFIX) :].removesuffix(b"/")
        slug = raw.decode("latin-1")
        if not SLUG.fullmatch(slug):
            raise NotFound()
        if scope["method"] != "GET":
            if scope["method"] == "OPTIONS":
                return await send_preflight(send)
            raise MethodNotAllowed(f"{scope['method']} is not allowed here: use GET")
        now = time.monotonic()
        route = (b"export", slug, "")
        token, limits = await self.api.gate.admit(scope, route, now)
        need = "an export needs an Admin token of the workspace"
        if token is None:
            raise Unauthorized(need)
        if token.workspace_slug != slug or token.permission < Permission.ADMIN:
            raise Forbidden(need)
        store = self.api.counters.store
        workspace = await store.get_workspace(slug)
        if workspace is None:  # deleted since the token was verified
            raise NotFound()
        headers = [
            (b"content-type", b"application/x-ndjson"),
            (b"content-disposition", b'attachment; filename="tally-%b.jsonl"' % raw),
            (b"cache-control", b"no-store"),
            *(limits or ()),
        ]
        await send(response_start(200, headers))
        try:
            async for chunk in export_jsonl(store, [workspace]):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except StorageError as exc:
            log.warning("export of %s cut short: %s", slug, exc)
        await send({"type": "http.response.body", "body": b""})
