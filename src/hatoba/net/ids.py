"""Session ids: short, random, easy to grep in logs and quote in replies."""

from __future__ import annotations

import secrets

_ALPHABET = "23456789BCDFGHJKLMNPQRSTVWXZ"


def new_session_id() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(8))
