"""Pages from Jinja2 templates (hatoba/data/web/templates), one environment per language.

Autoescaping is on for every template: any text from the directory, the
queue or the request is escaped. Templates never hold script or style
(the Content-Security-Policy forbids inline ones); hatoba.css and
hatoba.js are served from /admin/static/.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from importlib import resources

import jinja2

from hatoba.i18n import LANGUAGES, say, translations

__all__ = ["environment", "ready", "render", "static_files"]

_environments: dict[str, jinja2.Environment] = {}
_lock = threading.Lock()
STATIC_TYPES = {"hatoba.css": "text/css; charset=utf-8", "hatoba.js": "text/javascript; charset=utf-8"}


def _web():  # type: ignore[no-untyped-def]
    return resources.files("hatoba") / "data" / "web"


def _when(seconds: float | None) -> str:
    if not seconds:
        return "-"
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _size(size: int) -> str:
    """Bytes as people read them: 812 B, 4.1 KiB, 12.5 MiB, 1.2 GiB."""
    amount, unit = float(size), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            break
        amount /= 1024
    return f"{int(amount)} B" if unit == "B" else f"{amount:.1f} {unit}"


def environment(language: str) -> jinja2.Environment:
    with _lock:
        env = _environments.get(language)
        if env is None:
            env = jinja2.Environment(
                loader=jinja2.FileSystemLoader(str(_web() / "templates")),
                auto_reload=False,  # templates are read once, not stat()ed at every page
                autoescape=True,
                undefined=jinja2.StrictUndefined,  # a misspelt name is our bug, found by the tests
                extensions=["jinja2.ext.i18n"],
                trim_blocks=True,
                lstrip_blocks=True,
            )
            env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
            env.filters["when"] = _when
            env.filters["size"] = _size
            env.filters["say"] = lambda text, language=language: say(text, language)  # a Text in this language
            env.globals["LANGUAGES"] = LANGUAGES
            _environments[language] = env
        return env


def ready(language: str) -> bool:
    """Whether the pages of `language` can be rendered without reading files (the first
    time reads its catalog, ~0.2 s: callers do that in a thread, never on the event loop)."""
    return language in _environments


def render(template: str, language: str, **context: object) -> bytes:
    return environment(language).get_template(template).render(lang=language, **context).encode("utf-8")


def static_files() -> dict[str, tuple[bytes, str]]:
    """hatoba.css and hatoba.js with their types, read once when the routes are made."""
    return {name: ((_web() / "static" / name).read_bytes(), kind) for name, kind in STATIC_TYPES.items()}
