"""Run the ASGI app under granian (one worker: the embedded store has one writer)."""

from __future__ import annotations

import gc
import os

from granian import Granian
from granian.constants import Interfaces, Loops

from tally import logs
from tally.config import Settings


def app_from_env() -> object:
    """granian's factory target: the settings travel to the worker as TALLY_* variables."""
    from tally.web.app import create_app

    # Fewer, cheaper collections: the caches hold many long-lived objects, and a full
    # collection over them is a pause every request in flight waits for.
    gc.set_threshold(50_000, 20, 100)
    settings = Settings.from_env()
    logs.configure(settings.log_format, secrets=(settings.secret_key, settings.metrics_token))
    return create_app(settings)


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
    )
    server.serve()
