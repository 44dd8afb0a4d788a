"""deploy/: the compose file mirrors what tools/cluster.py runs, and the examples only
use settings that exist, with values Tally accepts."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import yaml  # type: ignore[import-untyped]

from tally.config import CONFIG_ENV, SETTINGS, read_config_file
from tally.web.app import REQUEST_GRACE
from tally.writes import GroupCommit
from tools.cluster import tally_command

DEPLOY = Path(__file__).parent.parent / "deploy"
KNOWN = {s.env for s in SETTINGS} | {CONFIG_ENV}
# what tools/cluster.py passes as a flag, compose passes as a variable
AS_VARIABLE = {"--database": "TALLY_DATABASE_URL", "--redis": "TALLY_REDIS_URL"}


def compose_node() -> dict[str, object]:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    node = compose["services"]["tally"]
    assert isinstance(node, dict)
    return node


def test_compose_runs_what_the_cluster_runs() -> None:
    """Every flag of a tools/cluster.py node is on the compose node's command, or (the
    database and Redis URLs) in its environment."""
    node = compose_node()
    command = node["command"]
    env = node["environment"]
    assert isinstance(command, list)
    assert isinstance(env, dict)
    cluster = tally_command("DATABASE", "REDIS", "commit")[1:]  # without the binary's path
    assert command[:2] == ["tally", cluster[0]]
    i = 1
    while i < len(cluster):
        flag = cluster[i]
        takes_value = i + 1 < len(cluster) and not cluster[i + 1].startswith("--")
        if flag in AS_VARIABLE:
            assert AS_VARIABLE[flag] in env, flag
        elif takes_value:
            assert flag in command, flag
            assert command[command.index(flag) + 1] == cluster[i + 1], flag
        else:
            assert flag in command, flag
        i += 2 if takes_value else 1
    assert "TALLY_TRUSTED_PROXIES" in env  # the cluster's nodes trust their balancer too


def test_examples_name_only_real_settings() -> None:
    """Every TALLY_* variable in the compose file and the systemd units is a setting."""
    used = set(compose_node()["environment"])  # type: ignore[call-overload]
    for unit in (DEPLOY / "systemd").glob("*.service"):
        used |= set(re.findall(r"\b(TALLY_[A-Z_]+)=", unit.read_text()))
    assert used
    assert used <= KNOWN, used - KNOWN


def test_example_config_file_is_valid() -> None:
    """deploy/systemd/tally.toml parses into the settings it says."""
    values = read_config_file(DEPLOY / "systemd" / "tally.toml")
    assert values["database_url"] == "sqlite:////var/lib/tally/tally.db"
    assert values["bootstrap"] is False
    assert values["metrics_address"] == ("127.0.0.1", 9100)
    assert all(net.prefixlen > 0 for net in values["trusted_proxies"])


def test_systemd_waits_for_the_final_commit() -> None:
    """systemd's and compose's stop timeouts outlast the app's own stop (the grace for
    requests inside, then the group commit's deadline), so SIGKILL never cuts a stop
    that is still committing."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string((DEPLOY / "systemd" / "tally.service").read_text())
    service = unit["Service"]
    assert service["ExecStart"].endswith("tally serve")
    assert service["KillSignal"] == "SIGTERM"
    defaults = GroupCommit.__init__.__kwdefaults__ or {}
    stop_timeout = REQUEST_GRACE + defaults["stop_timeout"]
    assert int(service["TimeoutStopSec"]) > stop_timeout
    grace = str(compose_node()["stop_grace_period"])
    assert int(grace.removesuffix("s")) > stop_timeout
