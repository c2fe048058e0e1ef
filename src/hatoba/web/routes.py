"""The route table of the http listener: which path answers which methods, for whom.

Rules:
- A path is looked up exactly (no patterns): what is not in the table is 404.
- A route may be kept for some networks (metrics, health): a client outside
  them gets 403 whatever the method, before its handler runs.
- A method the route does not take is 405 with an Allow header (RFC 9110 §15.5.6).
  HEAD goes wherever GET does; net/http_server.py drops the body.
- Handlers are async and return a Response; they raise only for our own bugs
  (the server answers 500 then). Their texts never carry client input.

- A router may have a fallback for paths it has no route for (the http
  listener redirects them to https); without one they are 404.
- A body is read only for a route that takes a method other than GET and
  HEAD, and only up to MAX_BODY (net/http_server.py): 413 past that.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from hatoba.policy.relay import TrustedNetworks

TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Request:
    method: str  # as sent (methods are case-sensitive: RFC 9110 §9.1)
    path: str  # without the query
    query: str
    host: str  # the Host header ("" when absent: HTTP/1.0)
    client_ip: str
    body: bytes = b""  # read only for routes that take POST, and bounded (net/http_server.py)
    headers: tuple[tuple[str, str], ...] = ()  # names in lower case, values as sent (latin-1)

    def header(self, name: str) -> str:
        """The value of header field `name` (lower case), "" when absent; repeated fields joined by ", "."""
        return ", ".join(value for key, value in self.headers if key == name)

    @property
    def hostname(self) -> str:
        """The Host header's name: lower case, without the port or a final dot."""
        host = self.host.strip().lower()
        if host.startswith("["):  # an IPv6 literal
            return host.split("]", 1)[0] + "]"
        return host.rsplit(":", 1)[0].rstrip(".") if ":" in host else host.rstrip(".")


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Route:
    path: str
    handler: Handler
    methods: tuple[str, ...] = ("GET", "HEAD")
    networks: TrustedNetworks | None = None  # None: every client


def text_response(status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, text.encode("utf-8") + b"\n", TEXT, headers)


NOT_FOUND = text_response(404, "Not found")
FORBIDDEN = text_response(403, "Forbidden: not answered to your address")


class Router:
    def __init__(self, routes: Iterable[Route], *, fallback: Handler | None = None) -> None:
        """`fallback` answers paths no route has (the http listener's redirect to https)."""
        self._routes: dict[str, Route] = {}
        self._fallback = fallback
        for route in routes:
            if route.path in self._routes:
                raise ValueError(f"two routes for {route.path}")
            self._routes[route.path] = route

    def takes_body(self, method: str, path: str) -> bool:
        """Whether the route for `path` takes a request body with `method` (the server reads it then)."""
        route = self._routes.get(path)
        return route is not None and method in route.methods and method not in ("GET", "HEAD")

    async def answer(self, request: Request) -> Response:
        route = self._routes.get(request.path)
        if route is None:
            return NOT_FOUND if self._fallback is None else await self._fallback(request)
        if route.networks is not None and request.client_ip not in route.networks:
            return FORBIDDEN
        if request.method not in route.methods:
            allowed = ", ".join(route.methods)
            return text_response(405, f"Method not allowed; use {allowed}", (("Allow", allowed),))
        return await route.handler(request)
