"""Settings: one typed object, read from a TOML file, `TALLY_*` environment variables
and CLI flags; flags win over the environment, which wins over the file, which wins over
the defaults.

Every setting is declared once in `SETTINGS` (name, default, help); `docs/settings.md`
is checked against that table by a test. The file (`--config PATH` or `TALLY_CONFIG`)
uses the same names in lower case: `rate_limit = "100/minute"`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
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
    ipv6_prefix: int = 64
    secret_key: str | None = None
    bootstrap: bool = True
    token_cache_ttl: float = 1.0
    commit_linger: float | None = None  # None: the store's own (see Store.commit_linger)
    metrics_token: str | None = None
    metrics_address: tuple[str, int] | None = None
    log_format: str = "text"
    access_log: bool = False
    streams_per_client: int = 10
    streams_per_node: int = 1000
    stream_heartbeat: float = 15.0
    unique_capacity: int = 1_000_000
    unique_per_counter: int = 100_000
    signup: str = "open"
    public_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 0  # 0: 465 with tls, else 587
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_security: str = "starttls"
    mail_from: str = "Tally <tally@localhost>"
    v1_rate_limit: RateLimit | None = RateLimit(30, 60.0)
    counter_quota: int = 100_000  # 0: no quota
    create_rate_limit: RateLimit | None = RateLimit(1000, 3600.0)
    webhook_private: bool = False  # receivers on loopback / private addresses (SSRF)
    webhook_timeout: float = 10.0
    alert_interval: float = 5.0
    alert_backoff_scale: float = 1.0
    share_rate_limit: RateLimit | None = RateLimit(120, 60.0)

    def __post_init__(self) -> None:
        if self.smtp_host and not self.public_url:
            # else a mailed link would start with whatever Host header the request that
            # caused the email carried: a reset link to the attacker's site
            raise SettingsError(
                "TALLY_SMTP_HOST is set but TALLY_PUBLIC_URL is not: set it to the address "
                "people open (e.g. https://tally.example.com), which every mailed link "
                "starts with; Tally never takes it from a request's Host header."
            )

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        config: str | os.PathLike[str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Defaults, then the TOML file `config` (else TALLY_CONFIG's, if set), then
        `TALLY_*` variables, then explicit overrides (CLI flags)."""
        env = os.environ if environ is None else environ
        path = config or env.get(CONFIG_ENV) or None
        values: dict[str, Any] = read_config_file(path) if path else {}
        for setting in SETTINGS:
            raw = env.get(setting.env)
            if raw is not None and raw != "":
                try:
                    values[setting.name] = setting.parse(raw)
                except (ValueError, TypeError) as exc:
                    raise SettingsError(f"{setting.env}={setting.shown(raw)}: {exc}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(cls(), **values)

    def to_env(self) -> dict[str, str]:
        """The `TALLY_*` variables that reproduce these settings in another process."""
        out: dict[str, str] = {}
        for setting in SETTINGS:
            out[setting.env] = setting.render(getattr(self, setting.name))
        return out


CONFIG_ENV = "TALLY_CONFIG"


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings of a TOML file, parsed; SettingsError naming the file and the key."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise SettingsError(f"config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path}: not valid TOML: {exc}") from None
    by_name = {s.name: s for s in SETTINGS}
    values: dict[str, Any] = {}
    for key, raw in data.items():
        setting = by_name.get(key)
        if setting is None:
            raise SettingsError(
                f"config file {path}: unknown setting {key!r} "
                "(the names are those of docs/settings.md, lower case, without TALLY_)"
            )
        try:
            values[key] = setting.parse(_as_text(raw))
        except (ValueError, TypeError) as exc:
            raise SettingsError(
                f"config file {path}: {key} = {setting.shown(raw)}: {exc}"
            ) from None
    return values


def _as_text(value: object) -> str:
    """A TOML value as the text its setting's parser reads (what the variable holds)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_as_text(v) for v in value)
    if isinstance(value, int | float | str):
        return str(value)
    raise TypeError("use a string, a number, a boolean or a list of them")


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


def parse_ipv6_prefix(text: str) -> int:
    value = int(text)
    if not 32 <= value <= 128:
        raise ValueError("use a prefix length from 32 to 128 (64: one subscriber's network)")
    return value


def parse_durability(text: str) -> str:
    text = text.strip().lower()
    if text not in ("commit", "buffered"):
        raise ValueError("use commit or buffered")
    return text


def parse_log_format(text: str) -> str:
    text = text.strip().lower()
    if text not in ("text", "json"):
        raise ValueError("use text or json")
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


def parse_quota(text: str) -> int:
    text = text.strip().lower()
    if text in ("off", "none"):
        return 0
    value = int(text)
    if value < 0:
        raise ValueError("must be a whole number (0 or off: no quota)")
    return value


def parse_signup(text: str) -> str:
    text = text.strip().lower()
    if text not in ("open", "invite", "closed"):
        raise ValueError("use open, invite or closed")
    return text


def parse_smtp_security(text: str) -> str:
    text = text.strip().lower()
    if text not in ("starttls", "tls", "none"):
        raise ValueError("use starttls, tls or none")
    return text


def parse_public_url(text: str) -> str:
    text = text.strip().rstrip("/")
    if not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", text):
        raise ValueError("use the URL people open, e.g. https://tally.example.com")
    return text


def parse_port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("must be 0..65535")
    return value


def parse_address(text: str) -> tuple[str, int] | None:
    text = text.strip()
    if text.lower() in ("", "off", "none"):
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError("use HOST:PORT, e.g. 127.0.0.1:9100")
    host = host.strip("[]")
    ipaddress.ip_address(host)  # an address, not a name: what it binds must be unambiguous
    return host, parse_port(port)


def render_address(value: tuple[str, int] | None) -> str:
    if value is None:
        return ""
    host, port = value
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_metrics_token(text: str) -> str:
    if len(text) < 16:
        raise ValueError("use at least 16 characters (e.g. `openssl rand -hex 32`)")
    return text


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    parse: Callable[[str], Any]
    help: str
    render: Callable[[Any], str] = str
    secret: bool = False  # its value is never repeated in an error message

    @property
    def env(self) -> str:
        return "TALLY_" + self.name.upper()

    def shown(self, raw: object) -> str:
        """The value as an error message may show it."""
        return "(hidden)" if self.secret else repr(raw)


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
        "ipv6_prefix",
        parse_ipv6_prefix,
        "Per-client limits (rate, streams, sign-in) count an IPv6 client by its network of "
        "this many bits (32 to 128; 128: the address alone).",
    ),
    Setting(
        "secret_key",
        str,
        "Key of the token hash. Unset: generated once and kept in the database.",
        lambda v: v or "",
        secret=True,
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
        "metrics_token",
        parse_metrics_token,
        "Serve /metrics on the API port to requests with `Authorization: Bearer` this token. "
        "Unset: /metrics is not served on the API port.",
        lambda v: v or "",
        secret=True,
    ),
    Setting(
        "metrics_address",
        parse_address,
        "HOST:PORT of a listener of its own that serves /metrics to anyone who reaches it "
        "(bind it to a private address). Unset: no such listener.",
        render_address,
    ),
    Setting(
        "log_format",
        parse_log_format,
        "text: `time level logger [request id]: message` lines; json: one JSON object a line.",
    ),
    Setting(
        "access_log",
        parse_bool,
        "Log one line per request (method, path, status, duration, client, request id).",
        lambda v: "true" if v else "false",
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
    Setting(
        "stream_heartbeat",
        parse_positive_float,
        "Seconds between two access checks of a quiet live stream (and its comment line); "
        "a stream whose access ended ends by then.",
        lambda v: f"{v:g}",
    ),
    Setting(
        "unique_capacity",
        parse_positive_int,
        "Visitors a node's in-memory unique-visitor set holds (SQLite, or Redis down); at "
        "the bound the oldest are forgotten and count again.",
    ),
    Setting(
        "unique_per_counter",
        parse_positive_int,
        "Visitors one counter's unique window holds (in memory or in Redis); at the bound "
        "the oldest are forgotten and count again.",
    ),
    Setting("signup", parse_signup, "Who may sign up on the dashboard: open, invite or closed."),
    Setting(
        "public_url",
        parse_public_url,
        "The URL people open (for links in emails); required with smtp_host.",
        lambda v: v or "",
    ),
    Setting(
        "smtp_host",
        str,
        "SMTP server for verification, reset and invitation emails. Unset: to the log.",
        lambda v: v or "",
    ),
    Setting("smtp_port", parse_port, "SMTP port (0: 465 with tls, else 587)."),
    Setting("smtp_user", str, "SMTP user name (unset: no login).", lambda v: v or ""),
    Setting("smtp_password", str, "SMTP password.", lambda v: v or "", secret=True),
    Setting("smtp_security", parse_smtp_security, "starttls, tls (implicit) or none."),
    Setting("mail_from", str, "The From address of Tally's emails."),
    Setting(
        "v1_rate_limit",
        parse_rate_limit,
        "The V1 legacy endpoints' own limit per URL path and client IP (like rate_limit).",
        render_rate_limit,
    ),
    Setting(
        "counter_quota",
        parse_quota,
        "Counters a workspace may have, unless it has a quota of its own (0 or off: none).",
    ),
    Setting(
        "create_rate_limit",
        parse_rate_limit,
        "New counters one token (or client IP) may create through the API (like rate_limit).",
        render_rate_limit,
    ),
    Setting(
        "webhook_private",
        parse_bool,
        "Let alert webhooks post to loopback, private and link-local addresses (off: "
        "refused, a guard against SSRF; turn on only if every workspace admin is trusted).",
    ),
    Setting(
        "webhook_timeout",
        parse_positive_float,
        "Seconds one webhook delivery may take (connect, send, answer) before it is retried.",
    ),
    Setting(
        "alert_interval",
        parse_positive_float,
        "Seconds between a node's looks at the alert outbox when nothing prompts it, and "
        "between sweeps of the no-change rules.",
    ),
    Setting(
        "alert_backoff_scale",
        parse_positive_float,
        "Multiplies the retry schedule of alert deliveries (5 s doubling to 1 h, for 24 h); "
        "for tests (0.01: 50 ms, given up after 14 min).",
    ),
    Setting(
        "share_rate_limit",
        parse_rate_limit,
        "Requests of shared pages (/s/..., /p/...) per client IP (like rate_limit).",
        render_rate_limit,
    ),
)

assert {s.name for s in SETTINGS} == {f.name for f in fields(Settings)}
