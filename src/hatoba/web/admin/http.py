"""What every web admin answer shares: security headers, cookies, forms, redirects.

Rules:
- Every answer carries a strict Content-Security-Policy (no inline script or
  style, nothing from elsewhere, no framing, forms post only here), and
  no-referrer; the https listener adds HSTS and no-store (net/http_server.py).
- The session cookie is `__Host-` prefixed (RFC 6265bis §4.1.3.2: Secure,
  Path=/, no Domain), HttpOnly and SameSite=Strict.
- A form is application/x-www-form-urlencoded UTF-8 of at most MAX_FIELDS
  fields; anything else is not a form (None).
"""

from __future__ import annotations

from urllib.parse import parse_qs

from hatoba.web.routes import Request, Response

__all__ = ["SESSION_COOKIE", "LOGIN_COOKIE", "cookie", "form", "html", "redirect", "set_cookie", "clear_cookie"]

HTML = "text/html; charset=utf-8"
SESSION_COOKIE = "__Host-hatoba"
LOGIN_COOKIE = "__Host-hatoba-login"  # the login form's own CSRF token (before there is a session)
MAX_FIELDS = 50
CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY = (
    ("Content-Security-Policy", CSP),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()"),
)


def html(status: int, body: bytes, *headers: tuple[str, str], language: str = "en") -> Response:
    return Response(status, body, HTML, (*SECURITY, ("Content-Language", language), *headers))


def redirect(location: str, *headers: tuple[str, str]) -> Response:
    """303 See Other: after a POST the browser GETs `location` (a path of ours)."""
    return Response(303, b"", HTML, (*SECURITY, ("Location", location), *headers))


def cookie(request: Request, name: str) -> str:
    """The value of cookie `name` ("" when absent). Read by hand in one linear pass: the
    standard library's SimpleCookie gives up on the whole header at the first cookie it
    dislikes (another site's JSON value locks the user out) and, before Python 3.11.10, took
    quadratic time on backslashes (CVE-2024-7592), on the event loop. Our own values are
    token characters, so no quoting is needed (RFC 6265 §4.2.1)."""
    for field, text in request.headers:
        if field != "cookie":
            continue  # each Cookie field on its own: joined, two fields would merge their pairs
        for pair in text.split(";"):
            key, found, value = pair.partition("=")
            if found and key.strip() == name:
                return value.strip()
    return ""


def set_cookie(name: str, value: str) -> tuple[str, str]:
    """A session cookie (no Max-Age: gone when the browser closes; the server ends it sooner)."""
    return ("Set-Cookie", f"{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict")


def clear_cookie(name: str) -> tuple[str, str]:
    return ("Set-Cookie", f"{name}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")


def form(request: Request) -> dict[str, str] | None:
    """The posted fields (the first value of each), or None when the body is not a form."""
    kind = request.header("content-type").split(";", 1)[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return None
    try:
        text = request.body.decode("utf-8")
        fields = parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FIELDS, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return None
    return {name: values[0] for name, values in fields.items()}


def query(request: Request) -> dict[str, str]:
    try:
        fields = parse_qs(request.query, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        return {}
    return {name: values[0] for name, values in fields.items()}

