"""Settings: one typed object, read from `TALLY_*` environment variables and CLI flags.

Every setting is declared once in `SETTINGS` (name, default, help); `docs/settings.md`
is checked against that table by a test.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SettingsError(ValueError):
    """A setting has a value Tally cannot use."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    limit: int
    period: float


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///./tally.db"
    redis_url: str | None = None
    redis_prefix: str = "tally:"
    host: str = "127.0.0.1"
    port: int = 8000
    durability: str = "commit"
    flush_interval: float = 1.0
    rate_limit: RateLimit | None = RateLimit(600, 60.0)
    timezone: tzinfo = UTC
    trusted_proxies: tuple[Network, ...] = ()
    secret_key: str | None = None
    bootstrap: bool = True
    token_cache_ttl: float = 1.0
    commit_linger: float | None = None  # None: the store's own (see Store.commit_linger)
    streams_per_client: int = 10
    streams_per_node: int = 1000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then `TALLY_*` variables, then explicit overrides (CLI flags)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = env.get(setting.env)
            if raw is not None and raw != "":
                try:
                    values[setting.name] = setting.parse(raw)
                except (ValueError, TypeError) as exc:
                    raise SettingsError(f"{setting.env}={raw!r}: {exc}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(cls(), **values)

    def to_env(self) -> dict[str, str]:
        """The `TALLY_*` variables that reproduce these settings in another process."""
        out: dict[str, str] = {}
        for setting in SETTINGS:
            out[setting.env] = setting.render(getattr(self, setting.name))
        return out


def parse_rate_limit(text: str) -> RateLimit | None:
    text = text.strip().lower()
    if text in ("off", "none", "0", "false", "disabled"):
        return None
    m = re.fullmatch(r"(\d+)\s*(?:/\s*(\d*\.?\d*)\s*(s|sec|second|m|min|minute|h|hour)?)?", text)
    if not m:
        raise ValueError("use N, N/minute, N/second, N/hour, N/30s or off")
    limit = int(m.group(1))
    if limit < 1:
        raise ValueError("the limit must be at least 1 (or off)")
    amount = float(m.group(2)) if m.group(2) else 1.0
    unit = (m.group(3) or "minute")[0]
    period = amount * {"s": 1.0, "m": 60.0, "h": 3600.0}[unit]
    if period <= 0:
        raise ValueError("the period must be positive")
    return RateLimit(limit, period)


def render_rate_limit(value: RateLimit | None) -> str:
    return "off" if value is None else f"{value.limit}/{value.period:g}s"


def parse_timezone(text: str) -> tzinfo:
    if text.strip().upper() in ("UTC", "Z", "ETC/UTC"):
        return UTC
    try:
        return ZoneInfo(text.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("not a known IANA time zone name (e.g. UTC, Europe/Berlin)") from None


def parse_networks(text: str) -> tuple[Network, ...]:
    networks = tuple(
        ipaddress.ip_network(p.strip(), strict=False) for p in text.split(",") if p.strip()
    )
    for net in networks:
        # trusting every address lets any client name its own rate-limit identity
        if net.prefixlen == 0:
            raise ValueError(
                f"{net} trusts every address: list only your proxies' addresses or subnets"
            )
    return networks


def parse_durability(text: str) -> str:
    text = text.strip().lower()
    if text not in ("commit", "buffered"):
        raise ValueError("use commit or buffered")
    return text


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError("use true or false")


def parse_positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be a positive number of seconds")
    return value


def parse_linger(text: str) -> float | None:
    if text.strip().lower() == "auto":
        return None
    value = float(text)
    if not 0 <= value <= 0.1:
        raise ValueError("use auto or seconds from 0 to 0.1")
    return value


def parse_positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be a whole number of at least 1")
    return value


def parse_port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("must be 0..65535")
    return value


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    parse: Callable[[str], Any]
    help: str
    render: Callable[[Any], str] = str

    @property
    def env(self) -> str:
        return "TALLY_" + self.name.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting("database_url", str, "Where the data lives: sqlite:///PATH (embedded, the default)."),
    Setting(
        "redis_url",
        str,
        "redis://HOST:PORT/DB shared by all nodes (rate limit). Unset: each node alone.",
        lambda v: v or "",
    ),
    Setting("redis_prefix", str, "Prefix of every Redis key Tally writes."),
    Setting("host", str, "Address `tally serve` listens on."),
    Setting("port", parse_port, "Port `tally serve` listens on."),
    Setting(
        "durability",
        parse_durability,
        "commit: answer a write after the transaction holding it committed. "
        "buffered: answer at once, flush every flush_interval.",
    ),
    Setting("flush_interval", parse_positive_float, "Seconds between flushes in buffered mode."),
    Setting(
        "rate_limit",
        parse_rate_limit,
        "Requests per URL path and token (or client IP): N/minute, N/30s, or off.",
        render_rate_limit,
    ),
    Setting(
        "timezone",
        parse_timezone,
        "IANA zone for stats `today`, `this_week` and `temporal`.",
        lambda tz: str(getattr(tz, "key", "UTC")),
    ),
    Setting(
        "trusted_proxies",
        parse_networks,
        "Comma-separated IPs/CIDRs whose X-Forwarded-For is believed.",
        lambda nets: ",".join(str(n) for n in nets),
    ),
    Setting(
        "secret_key",
        str,
        "Key of the token hash. Unset: generated once and kept in the database.",
        lambda v: v or "",
    ),
    Setting(
        "bootstrap",
        parse_bool,
        "On the first start against an empty database, create a workspace and an Admin token.",
        lambda v: "true" if v else "false",
    ),
    Setting(
        "token_cache_ttl",
        parse_positive_float,
        "Seconds a node trusts verified tokens and counters' settings without asking the "
        "database (how long a revocation or a private flag change takes to bite).",
    ),
    Setting(
        "commit_linger",
        parse_linger,
        "Commit mode, under load: seconds the next group commit waits to fill (auto: the "
        "store's choice, 0.001 on PostgreSQL, 0 on SQLite).",
        lambda v: "auto" if v is None else f"{v:g}",
    ),
    Setting(
        "streams_per_client",
        parse_positive_int,
        "Live streams (GET .../stream) open at once from one client IP; 429 beyond.",
    ),
    Setting(
        "streams_per_node",
        parse_positive_int,
        "Live streams open at once on one node; 429 beyond.",
    ),
)

assert {s.name for s in SETTINGS} == {f.name for f in fields(Settings)}
