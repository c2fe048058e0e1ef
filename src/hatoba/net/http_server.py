"""HttpSession: one connection of the http listener: one HTTP/1.1 request, its answer, close.

h11 parses and frames (a sans-I/O core, as our own protocol cores are);
this module reads, feeds it, asks the route table (web/routes.py) and writes.

Rules:
- One request per connection, answered with `Connection: close`: no
  keep-alive state to bound, and monitoring scrapes once every few seconds.
- The request head (request line and header fields) must arrive within
  limits.http_request_timeout seconds in all, however it drips in: 408,
  then close.
- The head may hold MAX_HEAD bytes (h11's max_incomplete_event_size): past
  that 431, or 414 while the request line has not even ended.
- Bytes that are not HTTP/1.x (garbage, a TLS ClientHello on this plain
  port) get 400; a request line of another version (the HTTP/2 preface
  `PRI * HTTP/2.0`) gets 505. Then the connection closes.
- h11 bounds a head while it arrives; a whole head read at once is checked
  again (MAX_TARGET: 414, MAX_HEAD: 431). A target must be a path or an
  http(s) URL (whose path is used): `*`, authority-form and anything else
  is 400, so no target can steer the redirect to https elsewhere.
- `Expect: 100-continue` is answered before a body is read.
- A route has ANSWER_TIMEOUT to answer (503 past it).
- A request body is read only for a route that takes it (a POST), within
  the same time limit as the head and up to MAX_BODY bytes: 413 past
  that (a Content-Length above it is refused before any is read). Every
  other body is left unread and dropped with the linger below.
- After the answer the rest of the input is read and dropped for at most
  LINGER seconds (LINGER_BYTES), then the connection closes: closing with
  unread input sends a TCP reset, and the client could lose our answer to
  it (nginx's lingering close, for the same reason).
- Answers never carry client input nor exception text; a handler's
  exception is our bug: logged with its traceback, answered 500 with the
  session id.
- Each answer is one log line, at INFO for client errors (the operator sees
  probes and misconfigured scrapers), else at DEBUG: scrapes come every few
  seconds and are no mail events.
"""

from __future__ import annotations

import asyncio
import logging
from email.utils import formatdate
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import h11

from hatoba.net.stream import Stream
from hatoba.web.routes import Request, Response, Router, text_response

if TYPE_CHECKING:
    from hatoba.metrics import Metrics

log = logging.getLogger(__name__)

READ_SIZE = 16384
MAX_HEAD = 8192  # request line and header fields together (nginx: 1 KiB, then 4 x 8 KiB)
MAX_BODY = 16384  # a request body (an Autodiscover request or an admin form: a few hundred bytes)
MAX_TARGET = 4096  # the request target alone (paths here are short): 414 past it
ANSWER_TIMEOUT = 30.0  # seconds a route has to answer once the request is in
WRITE_TIMEOUT = 30.0  # seconds the client has to take the answer
LINGER = 2.0
LINGER_BYTES = 1 << 20
VERSIONS = (b"1.0", b"1.1")
HSTS = "max-age=31536000"  # a year; no includeSubDomains: other names of the domain are not ours

REASONS = {
    200: "OK", 301: "Moved Permanently", 303: "See Other", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 413: "Content Too Large", 414: "URI Too Long", 421: "Misdirected Request", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 503: "Service Unavailable", 505: "HTTP Version Not Supported",
}


class HttpSession:
    __slots__ = ("router", "stream", "client_ip", "session_id", "metrics", "timeout", "https", "_conn", "_line_ended")

    def __init__(
        self, router: Router, stream: Stream, client_ip: str, session_id: str, metrics: Metrics, *, timeout: float,
        https: bool = False,
    ) -> None:
        """`timeout`: seconds for the whole request head (limits.http_request_timeout);
        `https`: answers say Strict-Transport-Security (RFC 6797): this name is https only."""
        self.timeout = timeout
        self.https = https
        self.router = router
        self.stream = stream
        self.client_ip = client_ip
        self.session_id = session_id
        self.metrics = metrics
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self._line_ended = False  # a line end has arrived (else an oversized head is a request line: 414)

    async def run(self) -> None:
        body = b""
        try:
            async with asyncio.timeout(self.timeout):
                event = await self._read_head()
                refusal = _refusal(event) if event is not None else None
                if refusal is not None:
                    assert event is not None
                    await self._finish(event.method.decode("ascii", "replace"), "-", refusal)
                    return
                if event is not None and self.router.takes_body(event.method.decode("ascii", "replace"),
                                                                 _request(event, self.client_ip).path):
                    body_or_refusal = await self._read_body(event)
                    if isinstance(body_or_refusal, Response):
                        await self._finish(event.method.decode("ascii", "replace"), "-", body_or_refusal)
                        return
                    body = body_or_refusal
        except TimeoutError:
            await self._finish("-", "-", text_response(408, "Request timeout: send the request at once"))
            return
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint if exc.error_status_hint in (400, 431) else 400
            if status == 431 and not self._line_ended:
                status = 414
            log.info("http: %d to %s: %s", status, self.client_ip, _capped(str(exc)))
            await self._finish("-", "-", text_response(status, REASONS[status]))
            return
        if event is None:
            return  # closed before a whole request: nobody to answer
        method = event.method.decode("ascii", "replace")
        request = _request(event, self.client_ip, body)
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT):
                response = await self.router.answer(request)
        except TimeoutError:  # a look-up stuck behind a lock, a worker that does not answer
            log.error("http: %s %s took over %.0f s; answered 503", method, _capped(request.path), ANSWER_TIMEOUT)
            response = text_response(503, "Busy; try again later")
        except Exception:  # one catch per request: our bug
            log.exception("http: %s %s failed", method, _capped(request.path))
            response = text_response(500, f"Local error, id={self.session_id}")
        await self._finish(method, request.path, response)

    async def _read_head(self) -> h11.Request | None:
        """The request's head, or None when the connection ends before one."""
        while True:
            event = self._conn.next_event()
            if event is h11.NEED_DATA:
                data = await self.stream.read(READ_SIZE)
                if not self._line_ended and b"\n" in data:
                    self._line_ended = True
                self._conn.receive_data(data)  # b"": the end, which h11 turns into its event or error
                continue
            if isinstance(event, h11.Request):
                return event
            return None  # ConnectionClosed: the only other event before a request

    async def _read_body(self, event: h11.Request) -> bytes | Response:
        """The request's body, at most MAX_BODY bytes; else the 413 to send."""
        length = next((value for name, value in event.headers if name == b"content-length"), None)
        too_large = text_response(413, f"Request body too large; at most {MAX_BODY} bytes")
        if length is not None and int(length) > MAX_BODY:  # h11 has checked it is a number
            return too_large
        if self._conn.they_are_waiting_for_100_continue:  # RFC 9110 §10.1.1: they wait before sending it
            self.stream.write(self._conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        chunks: list[bytes] = []
        size = 0
        while True:
            got = self._conn.next_event()
            if got is h11.NEED_DATA:
                data = await self.stream.read(READ_SIZE)
                self._conn.receive_data(data)
                continue
            if isinstance(got, h11.Data):
                size += len(got.data)
                if size > MAX_BODY:
                    return too_large
                chunks.append(bytes(got.data))
                continue
            if isinstance(got, h11.EndOfMessage):
                return b"".join(chunks)
            return text_response(400, "Incomplete request body")  # the connection ended

    async def _finish(self, method: str, path: str, response: Response) -> None:
        """Send `response`, drop what else comes for a while, and let the caller close."""
        self.metrics.http_response(response.status)
        level = logging.INFO if 400 <= response.status < 500 and response.status != 404 else logging.DEBUG
        if log.isEnabledFor(level):
            log.log(level, "http: %s %s -> %d ip=%s", _capped(method), _capped(path), response.status, self.client_ip)
        try:
            data = self._frame(response, head_only=method == "HEAD")
        except h11.LocalProtocolError:
            log.exception("http: cannot frame a %d answer", response.status)
            return
        self.stream.write(data)
        try:
            async with asyncio.timeout(WRITE_TIMEOUT):
                await self.stream.drain()
        except (OSError, ConnectionError, TimeoutError):
            return
        await self._linger()

    def _frame(self, response: Response, *, head_only: bool) -> bytes:
        headers = [
            ("Date", formatdate(usegmt=True)),
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            *response.headers,
            *((("Strict-Transport-Security", HSTS),) if self.https else ()),
            ("Connection", "close"),
        ]
        conn = self._conn
        reason = REASONS.get(response.status, "")
        data = conn.send(h11.Response(status_code=response.status, headers=headers, reason=reason)) or b""
        if not head_only and response.body:
            data += conn.send(h11.Data(data=response.body)) or b""
        return data + (conn.send(h11.EndOfMessage()) or b"")

    async def _linger(self) -> None:
        dropped = 0
        try:
            async with asyncio.timeout(LINGER):
                while dropped < LINGER_BYTES:
                    data = await self.stream.read(READ_SIZE)
                    if not data:
                        return
                    dropped += len(data)
        except (TimeoutError, OSError, ConnectionError):
            pass


def refusal(text: str) -> bytes:
    """A whole 503 answer for a connection the limits refuse before reading it (net/server.py)."""
    body = text.encode("utf-8") + b"\n"
    conn = h11.Connection(h11.SERVER)  # h11 lets a server answer before any request
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
               ("Retry-After", "10"), ("Connection", "close")]
    data = conn.send(h11.Response(status_code=503, headers=headers, reason=REASONS[503])) or b""
    return data + (conn.send(h11.Data(data=body)) or b"") + (conn.send(h11.EndOfMessage()) or b"")


def _refusal(event: h11.Request) -> Response | None:
    """What a whole head that h11 took is still refused with: too long (h11 bounds only a head
    still arriving), or a target that is not a path (RFC 9112 §3.2: `*`, authority-form, junk)."""
    if event.http_version not in VERSIONS:  # the HTTP/2 preface too ("PRI * HTTP/2.0")
        return text_response(505, "HTTP version not supported; use HTTP/1.1")
    if len(event.target) > MAX_TARGET:
        return text_response(414, REASONS[414])
    if len(event.target) + sum(len(name) + len(value) + 4 for name, value in event.headers) > MAX_HEAD:
        return text_response(431, REASONS[431])
    if _target(event.target.decode("ascii", "replace")) is None:
        return text_response(400, "Bad request target; send a path (origin-form) or an http(s) URL")
    return None


def _target(target: str) -> str | None:
    """The path and query of a request target: origin-form as it is, absolute-form (RFC 9112
    §3.2.2) reduced to them; None for anything else."""
    if target.startswith("/"):
        return target
    parts = urlsplit(target)
    if parts.scheme.lower() in ("http", "https") and parts.netloc and target.lower().startswith(parts.scheme.lower() + "://"):
        path = parts.path or "/"
        return path + (f"?{parts.query}" if parts.query else "") if path.startswith("/") else None
    return None


def _request(event: h11.Request, client_ip: str, body: bytes = b"") -> Request:
    # h11 has checked the target's characters (RFC 9112 §3.2): printable ASCII, no spaces.
    target = _target(event.target.decode("ascii", "replace")) or "*"  # "*": matches no route
    path, _, query = target.partition("?")
    host = next((value for name, value in event.headers if name == b"host"), b"")
    headers = tuple((name.decode("ascii", "replace"), value.decode("latin-1")) for name, value in event.headers)
    return Request(event.method.decode("ascii", "replace"), path, query,
                   host.decode("ascii", "replace"), client_ip, body, headers)


def _capped(text: str, limit: int = 100) -> str:
    """Client text for a log line: one line, at most `limit` characters."""
    text = text.encode("ascii", "backslashreplace").decode("ascii")
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[:limit] + "..."
