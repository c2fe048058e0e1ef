"""The queue as `hatoba queue list` and the web admin's queue page show it: one row per message."""

from __future__ import annotations

from dataclasses import dataclass

from hatoba.queue.spool import Spool, SpoolError

__all__ = ["QueueRow", "queue_rows"]


@dataclass(frozen=True, slots=True)
class QueueRow:
    qid: str
    received_at: float
    sender: str
    pending: tuple[str, ...]  # recipients not yet delivered
    attempts: int
    held: bool
    next_try: float
    last_error: str
    unreadable: str = ""  # why the envelope could not be read ("" when it could)


def queue_rows(spool: Spool) -> list[QueueRow]:
    """Every queued message, oldest id first; one delivered while we look is left out."""
    rows: list[QueueRow] = []
    for qid in spool.list_ids():
        try:
            env = spool.envelope(qid)
        except FileNotFoundError:
            continue
        except SpoolError as exc:
            rows.append(QueueRow(qid, 0.0, "", (), 0, False, 0.0, "", unreadable=str(exc)))
            continue
        state = spool.state(qid)
        pending = tuple(state.pending or [r for r in env.recipients if r not in state.done])
        rows.append(QueueRow(qid, env.received_at, env.mail_from, pending, state.attempts, state.held,
                             state.next_try, state.last_error or ""))
    return rows
