"""Tally: a self-hostable counting service that speaks the CounterAPI V2 wire format."""

__version__ = "0.1.0"
