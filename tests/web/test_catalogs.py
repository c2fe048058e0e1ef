"""The Japanese catalog covers every English text of the web admin's templates, and nothing else."""

from __future__ import annotations

import re
from importlib import resources

import jinja2
from babel.messages.pofile import read_po

from hatoba.web.admin.i18n import choose, from_accept_language, po_path, translations
from hatoba.web.admin.render import render

TEMPLATES = resources.files("hatoba") / "data" / "web" / "templates"
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def template_messages() -> dict[str, str]:
    """msgid -> the template it is in."""
    env = jinja2.Environment(extensions=["jinja2.ext.i18n"])
    found: dict[str, str] = {}
    for template in sorted(TEMPLATES.iterdir(), key=lambda p: p.name):
        if template.name.endswith(".html"):
            for _line, _function, message in env.extract_translations(template.read_text(encoding="utf-8")):
                for text in message if isinstance(message, tuple) else (message,):
                    if text:
                        found.setdefault(text, template.name)
    return found


def japanese() -> dict[str, str]:
    with po_path("ja").open("rb") as po:
        catalog = read_po(po, locale="ja")
    return {m.id: m.string for m in catalog if m.id}


def test_every_template_text_has_a_japanese_translation_with_the_same_placeholders():
    wanted, have = template_messages(), japanese()
    assert len(wanted) > 100
    missing = {text: where for text, where in wanted.items() if not have.get(text)}
    assert not missing, f"untranslated: {missing}"
    for text in wanted:
        assert sorted(PLACEHOLDER.findall(text)) == sorted(PLACEHOLDER.findall(have[text])), text
        assert have[text] != text or not re.search(r"[A-Za-z]{3}", text), f"copied, not translated: {text}"


def test_the_catalog_holds_no_text_the_templates_lost():
    stale = set(japanese()) - set(template_messages())
    assert not stale, f"in ja/hatoba.po but in no template: {stale}"


def test_the_catalog_is_what_pages_are_rendered_with():
    assert translations("ja").gettext("Log in") == "ログイン"
    assert translations("en").gettext("Log in") == "Log in"
    page = render("login.html", "ja", me=None, path="/admin/login", login_csrf="t", error="failed").decode()
    assert "メールアドレスかパスワードが違います。" in page and '<html lang="ja">' in page


def test_accept_language_is_read_by_quality_and_the_setting_wins():
    assert from_accept_language("ja") == "ja"
    assert from_accept_language("ja-JP,ja;q=0.9,en-US;q=0.8") == "ja"
    assert from_accept_language("en-US,en;q=0.9,ja;q=0.8") == "en"
    assert from_accept_language("fr, de;q=0.9") is None
    assert from_accept_language("ja;q=0, en;q=0.1") == "en"
    assert from_accept_language("ja;q=bogus, en") == "en"
    assert from_accept_language("x," * 10_000 + "ja") is None  # only the first ranges are read
    assert choose("ja", "en") == "en" and choose("ja", None) == "ja" and choose("", "xx") == "en"
