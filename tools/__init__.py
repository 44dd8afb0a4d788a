"""Operator tools that are not part of the service: the local cluster launcher."""
