"""The Japanese catalog covers every English text of the web admin's templates, and nothing else."""

from __future__ import annotations

import ast
import re
from importlib import resources
from pathlib import Path

import jinja2
from babel.messages.pofile import read_po

from hatoba.i18n import T, say, terminal_language
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


def source_messages() -> dict[str, str]:
    """msgid -> the module it is in, for every T("...") in hatoba's Python source (hatoba/i18n.py)."""
    found: dict[str, str] = {}
    root = Path(resources.files("hatoba"))  # type: ignore[arg-type]
    for module in sorted(root.rglob("*.py")):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "T":
                first = node.args[0] if node.args else None
                assert isinstance(first, ast.Constant) and isinstance(first.value, str), (
                    f"{module}:{node.lineno}: T() takes a literal message id")
                found.setdefault(first.value, str(module.relative_to(root)))
    return found


def all_messages() -> dict[str, str]:
    return {**source_messages(), **template_messages()}


def japanese() -> dict[str, str]:
    with po_path("ja").open("rb") as po:
        catalog = read_po(po, locale="ja")
    return {m.id: m.string for m in catalog if m.id}


def test_every_text_has_a_japanese_translation_with_the_same_placeholders():
    wanted, have = all_messages(), japanese()
    assert len(wanted) > 100
    missing = {text: where for text, where in wanted.items() if not have.get(text)}
    assert not missing, f"untranslated: {missing}"
    for text in wanted:
        assert sorted(PLACEHOLDER.findall(text)) == sorted(PLACEHOLDER.findall(have[text])), text
        code = re.match(r"\[[A-Z][A-Z0-9/-]*\] ", text)  # an IMAP response code: clients parse it
        assert code is None or have[text].startswith(code.group()), text
        assert have[text] != text or not re.search(r"[a-z]{3}", PLACEHOLDER.sub("", text)), (
            f"copied, not translated: {text}")


def test_the_catalog_holds_no_text_the_templates_lost():
    stale = set(japanese()) - set(all_messages())
    assert not stale, f"in ja/hatoba.po but in no template or T(): {stale}"


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


def test_a_text_is_english_until_said_in_another_language():
    text = T("Log in")
    assert text == "Log in" and isinstance(text, str) and say(text, "ja") == "ログイン" and say(text, "en") == "Log in"
    nested = T("You are logged in as %(account)s.", account="alice@example.test")
    assert nested == "You are logged in as alice@example.test."
    assert say(nested, "ja") == "alice@example.test としてログインしています。"
    assert say("plain text", "ja") == "plain text"
    assert say(T("no such message id %(x)s", x=1), "ja") == "no such message id 1"  # untranslated: English
    assert terminal_language({"LANG": "ja_JP.UTF-8"}) == "ja"
    assert terminal_language({"LC_ALL": "C", "LANG": "ja_JP.UTF-8"}) == "en"
    assert terminal_language({"LC_MESSAGES": "ja_JP"}) == "ja" and terminal_language({}) == "en"


def test_the_cli_speaks_the_terminals_language(tmp_path):
    import os
    import subprocess
    import sys

    from support.harness import make_home

    home = make_home(tmp_path / "hatoba")

    def run(*args: str, lang: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LC_")}
        return subprocess.run([sys.executable, "-m", "hatoba", "-c", str(home.config_path), *args],
                              capture_output=True, text=True, timeout=60, env={**env, "LANG": lang})

    english = run("domain", "add", "example.test", lang="C.UTF-8")
    japanese = run("domain", "add", "example.test", lang="ja_JP.UTF-8")
    assert english.returncode == japanese.returncode == 1
    assert english.stderr == "hatoba: example.test is already a local domain\n"
    assert japanese.stderr.startswith("hatoba: ") and "example.test" in japanese.stderr
    assert re.search(r"[\u3040-\u30ff]", japanese.stderr), japanese.stderr  # kana: Japanese, not English
    report = run("check", "--no-live", "--no-dns", lang="ja_JP.UTF-8").stdout
    assert "== 設定 ==" in report and "まとめ:" in report and "Summary:" not in report
    assert "== Configuration ==" in run("check", "--no-live", "--no-dns", lang="en_US.UTF-8").stdout
    # Scripts read JSON: it stays English whatever the terminal.
    assert '"title": "Config file valid"' in run("check", "--json", "--no-live", "--no-dns", lang="ja_JP.UTF-8").stdout
