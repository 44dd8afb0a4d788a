"""Secrets handed out once (session ids, single-use link tokens): random, and stored
only as their SHA-256 hash, so a leaked database holds nothing usable."""

from __future__ import annotations

import hashlib
import secrets


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
