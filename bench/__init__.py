"""Tally's benchmark: `python -m bench` (or `bench/run`). Not part of the test suite."""
