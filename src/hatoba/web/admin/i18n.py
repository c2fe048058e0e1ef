"""The web admin's language (the catalogs are hatoba/i18n.py's).

- The language of a page: the user's own setting when logged in and set,
  else the first language of the browser's Accept-Language (RFC 9110
  §12.5.4, by q-value) that hatoba has, else English.
"""

from __future__ import annotations

from hatoba.i18n import LANGUAGES, po_path, translations

__all__ = ["LANGUAGES", "choose", "from_accept_language", "po_path", "translations"]

DEFAULT = "en"
MAX_RANGES = 20  # language ranges read from one Accept-Language field


def from_accept_language(header: str) -> str | None:
    """The first language of an Accept-Language value that hatoba has, by q-value; None for none."""
    ranked: list[tuple[float, int, str]] = []
    for order, part in enumerate(header.split(",")[:MAX_RANGES]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        primary = tag.strip().lower().split("-", 1)[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, order, primary))
    return min(ranked)[2] if ranked else None


def choose(accept_language: str, setting: str | None = None) -> str:
    if setting in LANGUAGES:
        return setting  # type: ignore[return-value]
    return from_accept_language(accept_language) or DEFAULT
