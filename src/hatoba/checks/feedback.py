"""Junk that learns: what a user moves into Junk is spam, what they move out of it is ham.

The IMAP session calls `JunkFeedback.transferred` after a COPY or MOVE; it
returns at once and the work (reading the messages, recording the verdicts,
teaching rspamd) runs in a thread, so the client's answer does not wait on
rspamd. "Out of Junk" means to any folder but Trash: deleting spam is no
verdict that it is wanted. Nothing here can fail a user's command: problems
are logged.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import hashlib
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from hatoba.checks.rspamd import Rspamd, RspamdUnavailable
from hatoba.logs import mail_log
from hatoba.store.spamlists import SpamListError, SpamLists

log = logging.getLogger(__name__)

JUNK, TRASH = "\\Junk", "\\Trash"
MAX_LEARN = 10 * 1024 * 1024  # bytes: larger messages are recorded, not taught to rspamd


def direction(source_use: str | None, dest_use: str | None) -> str | None:
    """"spam", "ham" or None for a transfer between folders of these special uses."""
    if dest_use == JUNK and source_use != JUNK:
        return "spam"
    if source_use == JUNK and dest_use not in (JUNK, TRASH):
        return "ham"
    return None


def message_id(data: bytes) -> str:
    """The Message-ID, or a digest of the message when it has none."""
    header = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(data[:65536])
    found = (header.get("Message-ID") or "").strip()
    if found:
        return " ".join(found.split())[:998]
    return "sha256:" + hashlib.sha256(data).hexdigest()


class JunkFeedback:
    def __init__(self, lists: SpamLists, rspamd: Rspamd | None = None) -> None:
        self.lists = lists
        self.rspamd = rspamd if rspamd is not None and rspamd.controller_url else None
        self._tasks: set[asyncio.Future[None]] = set()
        # One thread of its own: a slow rspamd never takes the threads the sessions need.
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="hatoba-junk-feedback")

    def transferred(self, account: str, boxes: object, source: str, dest: object, uids: Iterable[int]) -> None:
        """A COPY or MOVE of `uids` (their UIDs in `dest`) from folder `source` to mailbox `dest`."""
        task = asyncio.get_running_loop().run_in_executor(
            self._pool, self._learn, account, boxes, source, dest, list(uids))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def idle(self) -> None:
        """Wait until the feedback handed over so far is done (tests, shutdown)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    def _learn(self, account: str, boxes, source: str, dest, uids: list[int]) -> None:  # type: ignore[no-untyped-def]
        try:
            uses = {info.name: info.special_use for info in boxes.list()}
            verdict = direction(uses.get(source), uses.get(dest.name))
            if verdict is None:
                return
            for uid in uids:
                data = dest.message(uid)
                if data is None:
                    continue
                self.learn(account, data, verdict)
        except Exception:  # a folder gone meanwhile, a broken message: never the user's problem
            log.exception("Junk feedback of %s not recorded", account)

    def learn(self, account: str, data: bytes, verdict: str) -> None:
        mid = message_id(data)
        try:
            self.lists.record_feedback(account, mid, verdict)
        except SpamListError as exc:
            log.error("Junk feedback of %s not recorded: %s", account, exc)
        taught = ""
        if self.rspamd is not None and len(data) <= MAX_LEARN:
            try:
                self.rspamd.learn(data, spam=verdict == "spam")
                taught = "rspamd"
            except RspamdUnavailable as exc:
                log.warning("%s; the verdict is recorded, not taught", exc)
        mail_log("junk-feedback", account=account, verdict=verdict, message_id=mid, taught=taught or None)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.lists.close()
