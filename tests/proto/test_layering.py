"""The dependency rules of STYLE.md §2, checked on the source (not only written down)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "hatoba"

FORBIDDEN = {
    "proto": {"asyncio", "ssl", "socket", "os", "subprocess", "hatoba.store", "hatoba.policy", "hatoba.net",
              "hatoba.imap", "hatoba.config", "hatoba.queue", "hatoba.delivery", "hatoba.cli"},
    "policy": {"asyncio", "socket", "ssl", "hatoba.net", "hatoba.imap", "hatoba.cli"},
    "store": {"socket", "ssl", "hatoba.net", "hatoba.imap", "hatoba.cli", "hatoba.proto.smtp"},
    "queue": {"socket", "ssl", "hatoba.net", "hatoba.imap", "hatoba.cli"},
    "delivery": {"hatoba.net", "hatoba.imap", "hatoba.cli"},
    "config": {"asyncio", "socket", "hatoba.net", "hatoba.imap", "hatoba.cli", "hatoba.store", "hatoba.queue"},
    "pki": {"hatoba.net", "hatoba.imap", "hatoba.store", "hatoba.queue", "hatoba.cli"},
    # hatoba.imap is built on net (streams, TLS, logins); net must not need it back.
    "net": {"hatoba.imap"},
    # Privileges, accounts and the unit are called by cli/ and the server, never the reverse.
    "system": {"asyncio", "socket", "ssl", "hatoba.net", "hatoba.imap", "hatoba.store", "hatoba.queue",
               "hatoba.delivery", "hatoba.cli"},
    # Routes and handlers of the http listener: net/http_server.py speaks HTTP for them.
    "web": {"socket", "ssl", "h11", "hatoba.net", "hatoba.imap", "hatoba.cli"},
    # Imports read other systems' files and write through the store; the CLI calls them.
    "migrate": {"asyncio", "socket", "ssl", "hatoba.net", "hatoba.imap", "hatoba.cli", "hatoba.queue",
                "hatoba.delivery"},
    "imap": {"hatoba.cli", "hatoba.queue", "hatoba.delivery", "hatoba.net.server", "hatoba.net.smtp_session",
             "hatoba.net.pop3_session"},
}
# The one place that wires every protocol's session to its listener.
EXCEPTIONS = {"net/server.py": {"hatoba.imap"}}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_packages_respect_their_import_rules():
    problems = []
    for package, forbidden in FORBIDDEN.items():
        paths = list((SRC / package).rglob("*.py"))
        assert len(paths) >= 2, f"no modules found in {SRC / package}"  # __init__.py and at least one more
        for path in paths:
            allowed = EXCEPTIONS.get(str(path.relative_to(SRC)), set())
            for name in imported_modules(path):
                if any(name == f or name.startswith(f + ".") for f in forbidden - allowed):
                    problems.append(f"{path.relative_to(SRC)} imports {name}")
    assert problems == []


def test_every_package_says_what_it_must_not_import():
    inits = list(SRC.glob("*/__init__.py"))
    assert {init.parent.name for init in inits} >= set(FORBIDDEN), inits
    for init in inits:
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, f"{init} has no docstring"
