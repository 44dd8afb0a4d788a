"""End-to-end tests against real `tally serve` processes (fixtures in conftest.py).

A package so that its conftest.py does not collide with tests/conftest.py (mypy, pytest).
"""

from __future__ import annotations
