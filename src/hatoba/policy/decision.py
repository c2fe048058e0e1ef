"""The one result type of every policy check (maddy's CheckResult)."""

from __future__ import annotations

from dataclasses import dataclass

from hatoba.proto.smtp.replies import Reply


@dataclass(frozen=True)
class Decision:
    accept: bool
    reply: Reply  # what the session sends
    log_reason: str  # one word or key=value for the mail log
