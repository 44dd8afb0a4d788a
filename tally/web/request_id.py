"""The request id: taken from a trusted proxy's X-Request-Id, else made here; echoed in
the answer's X-Request-Id and put on every log line written while serving it."""

from __future__ import annotations

import itertools
import re
import secrets

from tally.config import Network
from tally.web.http import Scope, header, is_trusted

# what is accepted from a proxy: a UUID, a hex or base64 id, a trace id with separators
_ACCEPTED = re.compile(rb"[A-Za-z0-9._:/+=-]{1,128}")


class RequestIds:
    """Ids made here are this process's random prefix and a sequence number: unique
    across nodes and restarts, and cheaper than a random id per request."""

    def __init__(self, trusted_proxies: tuple[Network, ...]) -> None:
        self.trusted = trusted_proxies
        self._prefix = secrets.token_hex(6).encode()
        self._next = itertools.count(1)

    def take(self, scope: Scope) -> bytes:
        if self.trusted:
            given = header(scope, b"x-request-id")
            if given is not None and _ACCEPTED.fullmatch(given):
                client = scope.get("client")
                if client and is_trusted(client[0], self.trusted):
                    return given
        return b"%s-%x" % (self._prefix, next(self._next))
