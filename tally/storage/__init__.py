"""Storage backends, chosen from the database URL's scheme."""

from __future__ import annotations

from collections.abc import Callable

from tally.storage.base import Store


def _sqlite(url: str, node: str) -> Store:
    from tally.storage.sqlite import SQLiteStore

    return SQLiteStore.from_url(url, node=node)


def _postgres(url: str, node: str) -> Store:
    from tally.storage.postgres import PostgresStore

    return PostgresStore.from_url(url, node=node)


BACKENDS: dict[str, Callable[[str, str], Store]] = {
    "sqlite": _sqlite,
    "postgresql": _postgres,
    "postgres": _postgres,
}


def store_from_url(url: str, node: str = "local") -> Store:
    """An unopened Store for `url` (call `await store.open()`)."""
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    try:
        factory = BACKENDS[scheme]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ValueError(f"unsupported database URL scheme {scheme!r} (known: {known})") from None
    return factory(url, node)


__all__ = ["BACKENDS", "Store", "store_from_url"]
