"""A password hasher that counts the Argon2 verifications a directory asks for."""

from __future__ import annotations


class CountingHasher:
    """The directory's hasher, counting the Argon2 verifications it is asked for."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def verify(self, stored: str, password: str) -> bool:
        self.calls.append(password)
        return self.inner.verify(stored, password)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)
