"""Check that the running environment holds exactly what a lock file says.

    python tools/lockcheck.py requirements/serve.txt

Every entry of the lock whose environment marker holds here must be installed at the
locked version, and nothing may be installed that no lock of the project names (Tally
itself and pip aside). Exit 1 with each difference on stderr. scripts/setup runs it
after every install; tests/test_lock.py runs it on the test environment.

Only the standard library and pip's own copy of `packaging` (in every venv that
`python -m venv` makes), since it runs before anything else is known to be installed.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

from pip._vendor.packaging.markers import Marker
from pip._vendor.packaging.utils import canonicalize_name

LOCKS = Path(__file__).resolve().parent.parent / "requirements"
ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")
UNLOCKED = {"tally", "pip"}  # the project itself (editable) and the venv's own pip


def read_lock(path: Path) -> dict[str, str]:
    """The lock's entries that apply to this interpreter: {canonical name: version}."""
    wanted: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = ENTRY.match(line)
        if match is None:
            continue
        name, version, marker = match.groups()
        if marker and not Marker(marker).evaluate():
            continue
        wanted[canonicalize_name(name)] = version
    return wanted


def installed() -> dict[str, str]:
    return {
        canonicalize_name(dist.metadata["Name"]): dist.version for dist in metadata.distributions()
    }


def differences(lock: Path) -> list[str]:
    wanted = read_lock(lock)
    known = set(wanted)
    for other in LOCKS.glob("*.txt"):
        known |= set(read_lock(other))
    have = installed()
    problems = [
        f"{name}: locked {version}, installed {have.get(name, 'nothing')}"
        for name, version in sorted(wanted.items())
        if have.get(name) != version
    ]
    problems += [
        f"{name} {version}: installed, but in no lock of requirements/"
        for name, version in sorted(have.items())
        if name not in known and name not in UNLOCKED
    ]
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tools/lockcheck.py requirements/LOCK.txt", file=sys.stderr)
        return 2
    problems = differences(Path(argv[0]))
    for problem in problems:
        print(f"lockcheck: {problem}", file=sys.stderr)
    if problems:
        print(f"lockcheck: the environment does not match {argv[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
