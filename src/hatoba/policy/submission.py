"""Which MAIL FROM an authenticated user may use (Postfix's
reject_sender_login_mismatch): their own address or an alias pointing to them."""

from __future__ import annotations

from hatoba.policy.decision import Decision
from hatoba.proto.address import Path
from hatoba.proto.smtp import replies as R


def check_sender(path: Path, *, login: str, owned: frozenset[str]) -> Decision:
    """`owned` comes from UserDB.sender_addresses(login), lower-cased."""
    if path.address is None:
        # The null sender is for bounces and auto-replies; it claims no identity.
        return Decision(True, R.R250_SENDER_OK, "null-sender")
    sender = str(path.address).lower()
    if sender == login.lower() or sender in owned:
        return Decision(True, R.R250_SENDER_OK, "owned")
    return Decision(
        False,
        R.R553_SENDER_NOT_OWNED.with_text(
            f"Sender address rejected: {sender} is not owned by {login}; "
            "send as your own address or an alias of it"
        ),
        "sender-not-owned",
    )
