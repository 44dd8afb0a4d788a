"""Run the ASGI app under granian (one worker: the embedded store has one writer)."""

from __future__ import annotations

import gc
import os

from granian import Granian
from granian.constants import Interfaces, Loops
from granian.http import HTTP1Settings, HTTP2Settings

from tally import logs
from tally.config import Settings

# The largest request head (request line and headers) a client may send: a bigger one
# is refused by granian before Tally sees it. Tally's own headers are short; this leaves
# room for long cookies and referrers. (granian's defaults allow 400 KB and 16 MB.)
MAX_REQUEST_HEAD = 64 * 1024


def app_from_env() -> object:
    """granian's factory target: the settings travel to the worker as TALLY_* variables."""
    from tally.web.app import create_app

    # Fewer, cheaper collections: the caches hold many long-lived objects, and a full
    # collection over them is a pause every request in flight waits for.
    gc.set_threshold(50_000, 20, 100)
    settings = Settings.from_env()
    logs.configure(settings.log_format, secrets=(settings.secret_key, settings.metrics_token))
    app = create_app(settings)
    app.handle_signals = True  # the worker's main thread: end live streams on SIGTERM
    return app


def run(settings: Settings) -> None:
    os.environ.update(settings.to_env())
    server = Granian(
        "tally.server:app_from_env",
        factory=True,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=1,
        loop=Loops.auto,
        log_access=False,  # the app's own access log, if asked for (TALLY_ACCESS_LOG)
        log_dictconfig=logs.granian_config(settings.log_format),
        backlog=2048,
        http1_settings=HTTP1Settings(max_buffer_size=MAX_REQUEST_HEAD),
        http2_settings=HTTP2Settings(max_headers_size=MAX_REQUEST_HEAD),
    )
    server.serve()
