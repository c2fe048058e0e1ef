"""A small HTTPS client with a cookie jar for the web admin tests: what a browser does, minus the script.

It keeps cookies as a browser would for one site (the __Host- ones included),
fills in the CSRF token of the last page it saw, and never follows redirects
by itself (tests look at them)."""

from __future__ import annotations

import html
import http.client
import re
import ssl
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import urlencode

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Answer:
    status: int
    headers: dict[str, list[str]]
    body: str

    def header(self, name: str) -> str:
        return ", ".join(self.headers.get(name.lower(), []))

    @property
    def text(self) -> str:
        """The page's visible text, tags dropped, entities decoded, spaces squeezed."""
        body = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", self.body, flags=re.S)
        return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


@dataclass
class WebClient:
    port: int
    context: ssl.SSLContext
    host: str = "mail.example.test"
    language: str = "en"
    cookies: dict[str, str] = field(default_factory=dict)
    csrf: str = ""

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Answer:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context, timeout=30)
        conn._tunnel_host = None  # noqa: SLF001
        sent = {"Host": self.host, "Accept-Language": self.language, **(headers or {})}
        if self.cookies and "Cookie" not in sent:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            conn.request(method, path, body=body or None, headers=sent)
            response = conn.getresponse()
            data = response.read().decode("utf-8", "replace")
            found: dict[str, list[str]] = {}
            for name, value in response.getheaders():
                found.setdefault(name.lower(), []).append(value)
        finally:
            conn.close()
        for line in found.get("set-cookie", []):
            jar = SimpleCookie(line)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        token = CSRF.search(data)
        if token:
            self.csrf = token.group(1)
        return Answer(response.status, found, data)

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def post(self, path: str, fields: dict[str, str], *, csrf: str | None = None) -> Answer:
        """POST a form with the last page's CSRF token (or `csrf`; "" sends none)."""
        token = self.csrf if csrf is None else csrf
        data = dict(fields)
        if token:
            data["csrf"] = token
        return self.request("POST", path, urlencode(data).encode(),
                            {"Content-Type": "application/x-www-form-urlencoded"})

    def login(self, address: str, password: str) -> Answer:
        self.get("/admin/login")
        return self.post("/admin/login", {"address": address, "password": password})
