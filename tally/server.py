"""Run the ASGI app under granian (one worker: the embedded store has one writer)."""

from __future__ import annotations

import errno
import gc
import os
import socket

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


class CannotListen(Exception):
    """An address `tally serve` was to listen on is taken (or not this machine's)."""


# what to change when an address is taken: (the address's name, the remedy)
PORT = ("", "choose another port with --port (or TALLY_PORT)")
METRICS = ("the metrics address ", "choose another TALLY_METRICS_ADDRESS")
_REASONS = {
    errno.EADDRINUSE: "is already in use by another program",
    errno.EACCES: "needs privileges (a port below 1024)",
    errno.EADDRNOTAVAIL: "is not an address of this machine",
}


def check_address(host: str, port: int, which: tuple[str, str]) -> None:
    """Bind (host, port) for a moment as the server will, or CannotListen saying what to
    change. granian binds with SO_REUSEPORT, so a second server on a port would start
    silently and share the connections of the first; this bind has no SO_REUSEPORT, so
    any listener on the port refuses it. (SO_REUSEADDR: a port whose last connections
    are in TIME_WAIT after a restart is free.)"""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return  # not an address: granian says so
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise CannotListen(listen_error(host, port, which, exc.errno)) from None


def listen_error(host: str, port: int, which: tuple[str, str], code: int | None) -> str:
    """One line: which address, why it cannot be listened on, what to do."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    name, remedy = which
    reason = _REASONS.get(code or 0) or f"cannot be listened on ({os.strerror(code or 0)})"
    return f"{name}{where} {reason}: {remedy}"


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
    try:
        server.serve()
    except RuntimeError as exc:
        # check_address ran before, but another program may have bound the port since:
        # granian's error is "Address already in use (os error 98)"
        code = _os_error(str(exc))
        if code not in _REASONS:
            raise
        raise CannotListen(listen_error(settings.host, settings.port, PORT, code)) from None


def _os_error(text: str) -> int | None:
    head, _, tail = text.rpartition("(os error ")
    digits = tail.split(")", 1)[0]
    return int(digits) if head and digits.isdigit() else None
