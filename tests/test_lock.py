"""requirements/: the locks say exactly what gets installed, and this environment is it.

scripts/setup installs requirements/serve.txt (serving) or requirements/test.txt (the
suite) with pip --require-hashes --no-deps; scripts/lock writes both with uv."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tools import lockcheck

ROOT = Path(__file__).parent.parent
LOCKS = ROOT / "requirements"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def entries(lock: str) -> dict[tuple[str, str], set[str]]:
    """{(name, version): hashes} of every entry of a lock, whatever its marker."""
    found: dict[tuple[str, str], set[str]] = {}
    current: tuple[str, str] | None = None
    for line in (LOCKS / lock).read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            current = (canonicalize_name(match[1]), match[2])
            found[current] = set()
        elif current is not None and "--hash=sha256:" in line:
            found[current].add(line.strip().removesuffix("\\").strip())
        elif not line.startswith(" "):
            current = None
    return found


def names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def test_this_environment_is_the_test_lock() -> None:
    """Every package of requirements/test.txt is installed at its locked version, and
    nothing that no lock names (what `pip freeze` shows is what the lock says)."""
    assert lockcheck.differences(LOCKS / "test.txt") == []


def test_every_entry_is_pinned_with_hashes() -> None:
    for lock in ("serve.txt", "test.txt"):
        found = entries(lock)
        assert found, lock
        for (name, version), hashes in found.items():
            assert hashes, f"{lock}: {name}=={version} has no hash"


def test_serve_lock_is_the_test_lock_without_the_tools() -> None:
    """Serving gets the same versions (and files) as the suite ran on, and no test tool:
    nothing of the `dev` extras unless serving needs it too."""
    serve, test = entries("serve.txt"), entries("test.txt")
    for key, hashes in serve.items():
        assert key in test, f"{key} is in serve.txt but not in test.txt at that version"
        assert hashes == test[key], key
    served = {name for name, _ in serve}
    tools = names(PROJECT["optional-dependencies"]["dev"]) - names(PROJECT["dependencies"])
    assert served & tools == set()
    assert {"pytest", "mypy", "playwright", "schemathesis", "matplotlib"} <= tools


def test_locks_satisfy_pyproject() -> None:
    """Each dependency that pyproject.toml declares is locked at a version it allows:
    the lock was made from this pyproject (re-lock with scripts/lock --no-upgrade)."""
    for lock, declared in (
        ("serve.txt", PROJECT["dependencies"]),
        ("test.txt", PROJECT["dependencies"] + PROJECT["optional-dependencies"]["dev"]),
    ):
        versions: dict[str, list[str]] = {}
        for name, version in entries(lock):
            versions.setdefault(name, []).append(version)
        for text in declared:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate():
                continue
            name = canonicalize_name(requirement.name)
            assert name in versions, f"{lock} does not lock {name}"
            for version in versions[name]:
                assert requirement.specifier.contains(version, prereleases=True), (
                    f"{lock}: {name}=={version} is outside {requirement.specifier}"
                )
