"""Texts people read, in English or Japanese: the gettext catalogs and translatable texts.

Rules:
- The catalogs are the .po files under hatoba/data/locale/LANG/LC_MESSAGES/
  hatoba.po (one domain for the web pages, the self-check, the CLI's
  refusals), read with Babel when first needed: no compiled .mo files to
  keep in step with them.
- A text made with T("English with %(name)s", name=value) is the English
  string itself (a str: logs, JSON, tests and the CLI see English), and
  remembers its message id and values, so say(text, "ja") can give it in
  Japanese later, where the reader's language is known (a web page, a
  terminal with LANG=ja_JP.UTF-8). Values that are Texts are translated
  too. A translation that does not fit its values falls back to English.
- Only literal message ids are marked with T(): tests/web/test_catalogs.py
  finds them in the source and requires a translation for each.
"""

from __future__ import annotations

import gettext
import io
import os
import threading
from importlib import resources
from typing import Any

__all__ = ["LANGUAGES", "T", "Text", "capitalized", "po_path", "refusal", "say", "terminal_language", "translations"]

LANGUAGES = {"en": "English", "ja": "日本語"}
DEFAULT = "en"
DOMAIN = "hatoba"

_loaded: dict[str, gettext.NullTranslations] = {}
_lock = threading.Lock()


class Text(str):
    """An English text that can be said in another language (see the module docstring)."""

    msgid: str
    values: dict[str, Any]

    def __new__(cls, msgid: str, values: dict[str, Any]) -> Text:
        text = super().__new__(cls, msgid % values if values else msgid)
        text.msgid, text.values = msgid, values
        return text

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return Text, (self.msgid, self.values)  # pickled (between processes) as what it was made from


def T(msgid: str, **values: Any) -> Text:  # noqa: N802 - the gettext-style marker
    return Text(msgid, values)


def po_path(language: str):  # type: ignore[no-untyped-def]
    return resources.files("hatoba") / "data" / "locale" / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def translations(language: str) -> gettext.NullTranslations:
    """The catalog of `language` (NullTranslations for English: the texts are English)."""
    if language not in LANGUAGES or language == DEFAULT:
        return gettext.NullTranslations()
    with _lock:
        found = _loaded.get(language)
        if found is None:
            from babel.messages.mofile import write_mo  # only when a catalog is first needed
            from babel.messages.pofile import read_po

            with po_path(language).open("rb") as po:
                catalog = read_po(po, locale=language, domain=DOMAIN)
            mo = io.BytesIO()
            write_mo(mo, catalog)
            mo.seek(0)
            found = _loaded[language] = gettext.GNUTranslations(mo)
        return found


def say(text: object, language: str) -> str:
    """`text` in `language` when it is a Text with a translation, else as it is."""
    if not isinstance(text, Text) or language not in LANGUAGES or language == DEFAULT:
        return str(text)
    translated = translations(language).gettext(text.msgid)
    if not text.values:
        return translated
    values = {name: say(value, language) for name, value in text.values.items()}
    try:
        return translated % values
    except (KeyError, ValueError, TypeError):
        return str.__str__(text)


def terminal_language(environ: os._Environ[str] | dict[str, str] = os.environ) -> str:
    """The language of the terminal's locale (LC_ALL, LC_MESSAGES, LANG, as gettext reads them)."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name, "")
        if value:
            primary = value.split(".", 1)[0].split("_", 1)[0].lower()
            return primary if primary in LANGUAGES else DEFAULT
    return DEFAULT


def refusal(exc: BaseException) -> str:
    """An exception's message, kept as the Text it was raised with (so it can be said in another
    language later), else as str() gives it."""
    first = exc.args[0] if len(exc.args) == 1 else None
    return first if isinstance(first, str) else str(exc)


def capitalized(text: str) -> str:
    """`text` with its first letter in upper case, as a sentence starts; a Text stays one (with
    its translation, where capitals mean nothing), so a detail can begin a sentence and still
    be said in another language."""
    english = text[:1].upper() + text[1:]
    if not isinstance(text, Text):
        return english
    out = str.__new__(Text, english)
    out.msgid, out.values = text.msgid, text.values
    return out
