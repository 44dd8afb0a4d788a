"""A real webhook receiver for the alert tests: an HTTP server on 127.0.0.1 in a thread of
the test process that checks each request's Standard Webhooks signature itself (not with
Tally's code) and records what came.

Modes: "ok" answers 204; "fail" answers 503; "hang" records the request, then holds it
unanswered until the mode changes (a delivery in flight). `stop()` closes the port (a
receiver that is down: connections refused) and `start()` opens it again on the same
port.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    event_id: str
    timestamp: int
    body: dict[str, Any]
    at: float  # time.time() when it arrived
    signed: bool  # the signature matched the secret


def signature_ok(secret: str, event_id: str, timestamp: str, body: bytes, header: str) -> bool:
    """The Standard Webhooks check, written from the spec: HMAC-SHA256 keyed with the
    base64-decoded part of the secret after "whsec_", over "{id}.{timestamp}.{body}",
    base64, compared with each "v1,<sig>" of the space-separated header."""
    key = base64.b64decode(secret.split("_", 1)[1])
    mac = hmac.new(key, f"{event_id}.{timestamp}.".encode() + body, hashlib.sha256)
    expected = base64.b64encode(mac.digest()).decode()
    for part in header.split(" "):
        version, _, sig = part.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return True
    return False


class Receiver:
    def __init__(self) -> None:
        self.secret = ""  # set once the webhook is made
        self.mode = "ok"
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                event_id = self.headers.get("webhook-id", "")
                stamp = self.headers.get("webhook-timestamp", "0")
                signed = signature_ok(
                    receiver.secret,
                    event_id,
                    stamp,
                    body,
                    self.headers.get("webhook-signature", ""),
                )
                with receiver.lock:
                    mode = receiver.mode
                    receiver.received.append(
                        Received(event_id, int(stamp), json.loads(body), time.time(), signed)
                    )
                    receiver.changed.notify_all()
                    while mode == "hang" and receiver.mode == "hang":
                        receiver.changed.wait(0.1)
                if mode == "hang":
                    self.close_connection = True
                    return  # never answered: the sender times out or dies
                self.send_response(204 if mode == "ok" else 503)
                self.send_header("content-length", "0")
                self.end_headers()

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.set_mode("ok")  # let a held request go
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def set_mode(self, mode: str) -> None:
        with self.lock:
            self.mode = mode
            self.changed.notify_all()

    async def wait_for(self, count: int, within: float) -> list[Received]:
        """Every request received, once there are at least `count` (AssertionError after
        `within` seconds); polls, so the event loop runs meanwhile."""
        deadline = time.monotonic() + within
        while True:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
                got = len(self.received)
            assert time.monotonic() < deadline, f"{got} of {count} webhooks came"
            await asyncio.sleep(0.005)

    def ids(self) -> list[str]:
        with self.lock:
            return [r.event_id for r in self.received]
