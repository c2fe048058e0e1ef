"""The web admin's languages: English (the source strings) and Japanese (a gettext catalog).

Rules:
- The catalogs are the .po files under hatoba/data/locale/LANG/LC_MESSAGES/
  hatoba.po, read with Babel when first needed (no compiled .mo files to
  keep in step with them).
- The language of a page: the user's own setting when logged in and set,
  else the first language of the browser's Accept-Language (RFC 9110
  §12.5.4, by q-value) that hatoba has, else English.
"""

from __future__ import annotations

import gettext
import io
import threading
from importlib import resources

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

__all__ = ["LANGUAGES", "choose", "translations"]

LANGUAGES = {"en": "English", "ja": "日本語"}
DEFAULT = "en"
DOMAIN = "hatoba"
MAX_RANGES = 20  # language ranges read from one Accept-Language field

_loaded: dict[str, gettext.NullTranslations] = {}
_lock = threading.Lock()


def po_path(language: str):  # type: ignore[no-untyped-def]
    return resources.files("hatoba") / "data" / "locale" / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def translations(language: str) -> gettext.NullTranslations:
    """The catalog of `language` (NullTranslations for English: the strings are English)."""
    if language not in LANGUAGES or language == DEFAULT:
        return gettext.NullTranslations()
    with _lock:
        found = _loaded.get(language)
        if found is None:
            with po_path(language).open("rb") as po:
                catalog = read_po(po, locale=language, domain=DOMAIN)
            mo = io.BytesIO()
            write_mo(mo, catalog)
            mo.seek(0)
            found = _loaded[language] = gettext.GNUTranslations(mo)
        return found


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
