"""What every protocol session (SMTP, POP3, IMAP) knows about its connection."""

from __future__ import annotations

import time
from typing import Any

from hatoba.config.schema import ListenerConfig
from hatoba.net.stream import Stream


class SessionBase:
    # Slots here let a subclass with __slots__ of its own (ImapSession, whose
    # IDLE connections last for hours) go without a per-instance dict.
    __slots__ = ("ctx", "listener", "stream", "session_id", "client_ip", "tls_info", "started")

    def __init__(
        self,
        ctx: Any,
        listener: ListenerConfig,
        stream: Stream,
        session_id: str,
        client_ip: str,
    ) -> None:
        self.ctx = ctx
        self.listener = listener
        self.stream = stream
        self.session_id = session_id
        self.client_ip = client_ip
        self.tls_info: tuple[str, str, int] | None = None  # (version, cipher, bits) once encrypted
        self.started = time.monotonic()
        if listener.implicit_tls:
            self._record_tls()

    def _record_tls(self) -> None:
        obj = self.stream.get_extra_info("ssl_object")
        if obj is not None:
            cipher = obj.cipher() or ("?", "?", 0)
            self.tls_info = (obj.version() or "TLS", cipher[0], cipher[2])
