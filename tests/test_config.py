"""Settings: parsing, failing loudly, and the documentation kept in step."""

from __future__ import annotations

import re
from datetime import UTC
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tally.config import SETTINGS, RateLimit, Settings, SettingsError, parse_rate_limit

DOCS = Path(__file__).parent.parent / "docs" / "settings.md"


def test_defaults() -> None:
    """Without variables, Tally serves SQLite in commit mode with 600 requests a minute."""
    s = Settings.from_env({})
    assert s.database_url == "sqlite:///./tally.db"
    assert s.durability == "commit"
    assert s.rate_limit == RateLimit(600, 60.0)
    assert s.timezone is UTC


def test_environment_then_overrides() -> None:
    """TALLY_* variables override defaults; explicit overrides (flags) override both."""
    env = {
        "TALLY_PORT": "9000",
        "TALLY_TIMEZONE": "Europe/Berlin",
        "TALLY_DURABILITY": "buffered",
        "TALLY_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
        "TALLY_BOOTSTRAP": "false",
    }
    s = Settings.from_env(env, port=9100)
    assert s.port == 9100
    assert s.timezone == ZoneInfo("Europe/Berlin")
    assert s.durability == "buffered"
    assert [str(n) for n in s.trusted_proxies] == ["10.0.0.0/8", "127.0.0.1/32"]
    assert s.bootstrap is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("600", RateLimit(600, 60.0)),
        ("600/minute", RateLimit(600, 60.0)),
        ("10/second", RateLimit(10, 1.0)),
        ("100/30s", RateLimit(100, 30.0)),
        ("5000/hour", RateLimit(5000, 3600.0)),
        ("off", None),
        ("0", None),
    ],
)
def test_rate_limit_forms(text: str, expected: RateLimit | None) -> None:
    """TALLY_RATE_LIMIT accepts N, N/unit, N/Ns and off."""
    assert parse_rate_limit(text) == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TALLY_PORT", "eighty"),
        ("TALLY_PORT", "70000"),
        ("TALLY_DURABILITY", "sometimes"),
        ("TALLY_RATE_LIMIT", "lots"),
        ("TALLY_TIMEZONE", "Mars/Olympus"),
        ("TALLY_FLUSH_INTERVAL", "-1"),
        ("TALLY_TRUSTED_PROXIES", "not-an-ip"),
        ("TALLY_TRUSTED_PROXIES", "0.0.0.0/0"),
        ("TALLY_TRUSTED_PROXIES", "10.0.0.1, ::/0"),
        ("TALLY_BOOTSTRAP", "maybe"),
        ("TALLY_IPV6_PREFIX", "16"),
        ("TALLY_IPV6_PREFIX", "129"),
        ("TALLY_IPV6_PREFIX", "/64"),
    ],
)
def test_bad_values_fail_loudly(name: str, value: str) -> None:
    """A bad value raises SettingsError naming the variable."""
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_smtp_without_a_public_url_refuses_to_start() -> None:
    """With SMTP set, TALLY_PUBLIC_URL is required: a mailed link never follows a
    request's Host header (a reset link to the attacker's site)."""
    with pytest.raises(SettingsError, match="TALLY_PUBLIC_URL"):
        Settings.from_env({"TALLY_SMTP_HOST": "mail.example.com"})
    with pytest.raises(SettingsError, match="TALLY_PUBLIC_URL"):
        Settings(smtp_host="mail.example.com")
    s = Settings.from_env(
        {"TALLY_SMTP_HOST": "mail.example.com", "TALLY_PUBLIC_URL": "https://t.example/"}
    )
    assert s.public_url == "https://t.example"


def test_round_trip_through_environment() -> None:
    """to_env reproduces the settings in another process (how granian workers get them)."""
    s = Settings.from_env(
        {
            "TALLY_RATE_LIMIT": "50/10s",
            "TALLY_TIMEZONE": "Asia/Tokyo",
            "TALLY_TRUSTED_PROXIES": "10.1.0.0/16",
            "TALLY_IPV6_PREFIX": "56",
        }
    )
    assert Settings.from_env(s.to_env()) == s


def test_every_setting_is_documented() -> None:
    """docs/settings.md lists exactly the settings tally/config.py knows."""
    documented = set(re.findall(r"^\| `(TALLY_[A-Z0-9_]+)`", DOCS.read_text(), re.M))
    assert documented == {s.env for s in SETTINGS}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tally.toml"
    path.write_text(text)
    return path


def test_config_file_under_environment_under_flags(tmp_path: Path) -> None:
    """The file's values apply; a variable beats the file; a flag beats both."""
    path = write(
        tmp_path,
        'port = 9001\nrate_limit = "100/minute"\ntrusted_proxies = ["10.0.0.0/8", "::1"]\n'
        'bootstrap = false\nflush_interval = 0.5\ndurability = "buffered"\n',
    )
    s = Settings.from_env({"TALLY_RATE_LIMIT": "7/s"}, config=path, durability="commit")
    assert s.port == 9001
    assert s.rate_limit == RateLimit(7, 1.0)
    assert [str(n) for n in s.trusted_proxies] == ["10.0.0.0/8", "::1/128"]
    assert s.bootstrap is False
    assert s.flush_interval == 0.5
    assert s.durability == "commit"
    assert Settings.from_env({"TALLY_CONFIG": str(path)}).port == 9001


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("port = 70000\n", "port = 70000"),
        ('durability = "sometimes"\n', "durability"),
        ('rate_limit = "lots"\n', "rate_limit"),
        ("colour = 3\n", "unknown setting 'colour'"),
        ("port = \n", "not valid TOML"),
        ("[database]\nurl = 'x'\n", "unknown setting 'database'"),
    ],
)
def test_bad_config_file_fails_naming_it(tmp_path: Path, text: str, says: str) -> None:
    """A bad file fails with a message naming the file and the key."""
    path = write(tmp_path, text)
    with pytest.raises(SettingsError, match=re.escape(says)) as exc:
        Settings.from_env({}, config=path)
    assert str(path) in str(exc.value)


def test_missing_config_file_fails(tmp_path: Path) -> None:
    """A config path that does not exist is an error, not silently ignored."""
    with pytest.raises(SettingsError, match="config file"):
        Settings.from_env({"TALLY_CONFIG": str(tmp_path / "nope.toml")})


@pytest.mark.parametrize("name", ["TALLY_METRICS_TOKEN", "metrics_token"])
def test_a_secret_is_not_repeated_in_its_error(tmp_path: Path, name: str) -> None:
    """A bad secret's error names the setting but never shows the value."""
    value = "short-secret"
    env = {name: value} if name.startswith("TALLY_") else {}
    config = None if env else write(tmp_path, f'{name} = "{value}"\n')
    with pytest.raises(SettingsError) as exc:
        Settings.from_env(env, config=config)
    assert name in str(exc.value)
    assert value not in str(exc.value)
