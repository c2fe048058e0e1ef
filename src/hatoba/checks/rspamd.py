"""rspamd as the spam verdict: its HTTP protocol (/checkv2), and learning (/learnspam, /learnham).

Blocking (http.client), called from the checks' threads. rspamd answers with
an action and a score; checks/judge.py turns the action into ours. When
rspamd cannot be reached or answers nonsense, `RspamdUnavailable` says why in
one line, and the caller falls back to hatoba's own checks: a filter that is
down never loses or refuses mail.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

ACTIONS = ("no action", "greylist", "add header", "rewrite subject", "soft reject", "reject")
MAX_ANSWER = 1024 * 1024  # bytes of JSON we read from rspamd at most
DOWN_LOG_EVERY = 60.0  # seconds between two "unreachable" log lines


class RspamdUnavailable(Exception):
    """rspamd gave no usable answer; the message is one plain line."""


@dataclass(frozen=True)
class RspamdAnswer:
    action: str  # one of ACTIONS
    score: float
    required_score: float
    symbols: tuple[str, ...] = ()
    message: str = ""  # rspamd's smtp_message, when it has one


def _endpoint(url: str, what: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{what} must be an http:// URL of rspamd, not {url!r}")
    return parts.hostname, parts.port or 80, parts.path.rstrip("/")


class Rspamd:
    def __init__(self, url: str, *, controller_url: str = "", password: str = "", timeout: float = 10.0) -> None:
        self.url = url
        self._normal = _endpoint(url, "checks.rspamd_url")
        self._controller = _endpoint(controller_url, "checks.rspamd_controller_url") if controller_url else None
        self.controller_url = controller_url
        self._password = password
        self.timeout = timeout
        self._lock = threading.Lock()
        self._down_logged = 0.0

    def check(self, message: bytes, *, ip: str, helo: str, mail_from: str, recipients: tuple[str, ...],
              queue_id: str = "", hostname: str = "", timeout: float | None = None) -> RspamdAnswer:
        headers = [("IP", ip), ("Helo", helo), ("From", mail_from or "<>"), ("MTA-Name", hostname)]
        headers += [("Rcpt", r) for r in recipients]
        if queue_id:
            headers.append(("Queue-Id", queue_id))
        status, body = self._post(self._normal, "/checkv2", message, headers, timeout)
        if status != 200:
            raise RspamdUnavailable(f"rspamd at {self.url} answered HTTP {status}")
        try:
            data = json.loads(body)
            action = str(data["action"]).lower()
            score = float(data.get("score", 0.0))
            required = float(data.get("required_score", 0.0))
        except (ValueError, KeyError, TypeError):
            raise RspamdUnavailable(f"rspamd at {self.url} sent an answer that is not its JSON") from None
        if action not in ACTIONS:
            raise RspamdUnavailable(f"rspamd at {self.url} answered an unknown action {action!r}")
        symbols = tuple(sorted(data.get("symbols") or {})) if isinstance(data.get("symbols"), dict) else ()
        messages = data.get("messages") if isinstance(data.get("messages"), dict) else {}
        self._up()
        return RspamdAnswer(action, score, required, symbols, str(messages.get("smtp_message", ""))[:200])

    def learn(self, message: bytes, *, spam: bool) -> None:
        """Teach rspamd's classifier (its controller worker); raises RspamdUnavailable."""
        if self._controller is None:
            raise RspamdUnavailable("no rspamd controller configured (checks.rspamd_controller_url)")
        path = "/learnspam" if spam else "/learnham"
        headers = [("Password", self._password)] if self._password else []
        status, body = self._post(self._controller, path, message, headers, None)
        # 208: rspamd already learned this message as that class; nothing to do.
        if status not in (200, 208):
            detail = body[:200].decode("utf-8", "replace").strip()
            raise RspamdUnavailable(f"rspamd at {self.controller_url} refused to learn: HTTP {status} {detail}")

    def _post(self, endpoint: tuple[str, int, str], path: str, message: bytes, headers: list[tuple[str, str]],
              timeout: float | None) -> tuple[int, bytes]:
        host, port, prefix = endpoint
        conn = http.client.HTTPConnection(host, port, timeout=timeout or self.timeout)
        try:
            conn.putrequest("POST", prefix + path, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value.replace("\r", " ").replace("\n", " "))
            conn.putheader("Content-Length", str(len(message)))
            conn.endheaders(message)
            response = conn.getresponse()
            return response.status, response.read(MAX_ANSWER)
        except (OSError, http.client.HTTPException) as exc:
            raise RspamdUnavailable(f"rspamd at {host}:{port} is unreachable ({_reason(exc)})") from None
        finally:
            conn.close()

    def log_down(self, reason: str) -> None:
        """One warning line per minute while rspamd is down, so the log says it without drowning."""
        now = time.monotonic()
        with self._lock:
            if self._down_logged and now - self._down_logged < DOWN_LOG_EVERY:
                return
            self._down_logged = now
        log.warning("%s; judged by hatoba's own checks", reason)

    def _up(self) -> None:
        if self._down_logged:
            with self._lock:
                was, self._down_logged = self._down_logged, 0.0
            if was:
                log.warning("rspamd at %s answers again", self.url)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return " ".join(str(exc).split()) or type(exc).__name__
