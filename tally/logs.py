"""Logging: text or JSON lines, the request id on every line, and no secret in any.

`configure(settings)` sets up the root logger (and `granian_config` granian's) to write
one line per record to stderr, as text or as JSON (TALLY_LOG_FORMAT). Every line passes
through `redact` after formatting, exception text included: API tokens, bearer
credentials, passwords in URLs, `password=` / `token=`-style pairs, session cookies and
the process's own secrets (TALLY_SECRET_KEY, TALLY_METRICS_TOKEN) never reach the output.

The request id of the request being served (`REQUEST_ID`, set by the app) is on every
record logged while serving it.
"""

from __future__ import annotations

import logging
import logging.config
import re
import sys
import time
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

import orjson

# the id of the request being served (bytes, as it goes on the wire)
REQUEST_ID: ContextVar[bytes | None] = ContextVar("tally_request_id", default=None)


def request_id(record: logging.LogRecord) -> str | None:
    """The record's request id: its own `request_id` extra, else the current request's."""
    given = getattr(record, "request_id", None)
    if given is not None:
        return str(given)
    current = REQUEST_ID.get()
    return current.decode() if current is not None else None


REDACTED = "[redacted]"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Tally's API tokens, wherever they appear
    (re.compile(r"tly_[A-Za-z0-9_-]{6,}"), "tly_" + REDACTED),
    # Authorization: Bearer/Basic credentials
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[^\s,;\"']+"), r"\1\2" + REDACTED),
    # user:password@ in URLs
    (re.compile(r"(://[^:/@\s]*:)[^@\s]+@"), r"\1" + REDACTED + "@"),
    # secrets by name: `password=x`, `password: x`, `"password": "x"`
    (
        re.compile(
            r"(?i)\b((?:password|passwd|pwd|secret(?:_key)?|api_key)[\"']?\s*[=:]\s*[\"']?)"
            r"[^\s&\"',;]+"
        ),
        r"\1" + REDACTED,
    ),
    # query parameters and quoted fields that carry one: `?token=x`, `"session": "x"`
    (
        re.compile(
            r"(?i)\b((?:token|session(?:id)?|reset|sig(?:nature)?|key)"
            r"(?:=|[\"']?\s*:\s*[\"']))[^\s&\"',;]+"
        ),
        r"\1" + REDACTED,
    ),
    # a reset link's token in the path: /reset/<token>
    (re.compile(r"(?i)(/reset/)[^/\s?\"']+"), r"\1" + REDACTED),
    (re.compile(r"(?i)\b(cookie:\s*)[^\r\n]+"), r"\1" + REDACTED),
)


class Redactor:
    """Replaces secrets in text: the patterns above and the literal `secrets`."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # longest first, so a secret that contains another is replaced whole
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


class TextFormatter(logging.Formatter):
    """`time level logger [request id]: message`, redacted."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(rid)s: %(message)s")
        self.redact = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        rid = request_id(record)
        record.rid = f" [{rid}]" if rid else ""
        return self.redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, exception,
    and the record's `extra` fields; redacted."""

    _STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "rid"}

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redact = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        redact = self.redact
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        rid = request_id(record)
        if rid:
            out["request_id"] = redact(rid)
        for key, value in record.__dict__.items():
            if key not in self._STANDARD and key not in out:
                # numbers and booleans stay what they are; anything else is text, redacted
                keep = isinstance(value, int | float | bool) or value is None
                out[key] = value if keep else redact(str(value))
        if record.exc_info:
            out["exception"] = redact(self.formatException(record.exc_info))
        elif record.stack_info:
            out["stack"] = redact(record.stack_info)
        # each value is redacted before encoding: redacting the encoded line could cut
        # an escape sequence in half
        return orjson.dumps(out).decode()


def formatter(log_format: str, secrets: Iterable[str | None] = ()) -> logging.Formatter:
    redactor = Redactor(secrets)
    return JsonFormatter(redactor) if log_format == "json" else TextFormatter(redactor)


def configure(
    log_format: str, secrets: Iterable[str | None] = (), level: int = logging.INFO
) -> None:
    """The root logger writes `log_format` lines to stderr, redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format, secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def granian_config(log_format: str) -> dict[str, Any]:
    """granian's own logging (its start and stop lines) in the same format, on stderr."""
    factory = "tally.logs.JsonFormatter" if log_format == "json" else "tally.logs.TextFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"tally": {"()": factory}},
        "handlers": {
            "console": {
                "formatter": "tally",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            "_granian": {"handlers": ["console"], "level": "INFO", "propagate": False},
        },
    }
