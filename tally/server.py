"""Run the ASGI app under granian (one worker: the embedded store has one writer)."""

from __future__ import annotations

import gc
import os

from granian import Granian
from granian.constants import HTTPModes, Interfaces, Loops
from granian.http import HTTP1Settings

from tally import logs
from tally.config import Settings

# The largest request head (request line and headers) a client may send: a bigger one
# is refused by granian (431, or the connection closed) before Tally sees it. Tally's own
# headers are short (a token is 42 bytes, its cookies under 200); 16 KB leaves room for
# long referrers and a proxy's headers, like nginx's and Apache's 8-16 KB defaults.
# (granian's own default allows 400 KB.) docs/security.md lists every limit.
MAX_REQUEST_HEAD = 16 * 1024
# A client must send its whole request head within this time (from the connection, or
# from the end of the previous request on a kept-alive one), or the connection is
# closed: a slowloris client holds a connection for at most this long.
HEADER_READ_TIMEOUT = 10.0  # seconds
# HTTP/1.1 only (HTTP/2 is the reverse proxy's business): in granian's "auto" mode a
# connection that sends nothing at all waits for its first bytes without any bound,
# before the header timeout starts; in HTTP/1.1 mode the timeout starts on accept.


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
        http=HTTPModes.http1,
        workers=1,
        loop=Loops.auto,
        log_access=False,  # the app's own access log, if asked for (TALLY_ACCESS_LOG)
        log_dictconfig=logs.granian_config(settings.log_format),
        backlog=2048,
        http1_settings=HTTP1Settings(
            header_read_timeout=int(HEADER_READ_TIMEOUT * 1000), max_buffer_size=MAX_REQUEST_HEAD
        ),
    )
    server.serve()
