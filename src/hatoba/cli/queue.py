"""`hatoba queue list|flush|delete|hold|release`: look at and steer the mail queue.

Works on the queue files directly, so it also works while the server is
stopped; a running server notices flush and release within a second.
"""

from __future__ import annotations

import argparse
import time

from hatoba.cli.common import CliError, load_config
from hatoba.cli.domain import missing_action
from hatoba.i18n import T
from hatoba.queue.ids import is_queue_id
from hatoba.queue.listing import queue_rows
from hatoba.queue.spool import Spool, SpoolError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("queue", help="list the queue, retry now, delete, hold or release messages")
    missing_action(p, "list|flush|delete ID|hold ID|release ID")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", help="one line per queued message").set_defaults(func=run_list)
    actions.add_parser("flush", help="try every queued message now").set_defaults(func=run_flush)
    for name, func, text in (
        ("delete", run_delete, "remove a message from the queue (it is not delivered)"),
        ("hold", run_hold, "stop delivery attempts for a message until release"),
        ("release", run_release, "resume delivery of a held message, now"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("qid", metavar="ID", help="queue id, as `hatoba queue list` shows")
        action.set_defaults(func=func)


def _spool(args: argparse.Namespace) -> Spool:
    config = load_config(args)
    if not config.paths.queue_dir.is_dir():
        raise CliError(T("no queue at %(folder)s; is the config right? (hatoba init creates it)",
                         folder=str(config.paths.queue_dir)))
    return Spool(config.paths.queue_dir)


def _queued(spool: Spool, qid: str) -> str:
    if not is_queue_id(qid):
        raise CliError(T("%(qid)s is not a queue id; `hatoba queue list` shows them", qid=repr(qid)))
    if not spool.exists(qid):
        raise CliError(T("no message %(qid)s in the queue (already delivered or deleted?)", qid=qid))
    return qid


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def run_list(args: argparse.Namespace) -> int:
    spool = _spool(args)
    now = time.time()
    rows = queue_rows(spool)
    for row in rows:
        if row.unreadable:
            print(f"{row.qid}  {row.unreadable}")
            continue
        if row.held:
            when = "held"
        elif row.attempts == 0:
            when = "now"
        else:
            when = "in " + _age(row.next_try - now)
        print(
            f"{row.qid}  age {_age(now - row.received_at)}  from <{row.sender}>  "
            f"to {', '.join(f'<{r}>' for r in row.pending) or '(done)'}  attempts {row.attempts}  "
            f"next {when}" + (f"  last error: {row.last_error}" if row.last_error else "")
        )
    print(f"{len(rows)} message(s) in the queue")
    return 0


def run_flush(args: argparse.Namespace) -> int:
    spool = _spool(args)
    spool.request_flush()
    print("flush requested: a running server tries every queued message within a second")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    spool = _spool(args)
    spool.remove(_queued(spool, args.qid))
    print(f"deleted {args.qid}")
    return 0


def _set_held(args: argparse.Namespace, held: bool) -> Spool:
    spool = _spool(args)
    qid = _queued(spool, args.qid)
    try:
        spool.set_held(qid, held)
    except SpoolError:  # delivered or deleted since _queued looked
        raise CliError(T("no message %(qid)s in the queue (already delivered or deleted?)", qid=qid)) from None
    return spool


def run_hold(args: argparse.Namespace) -> int:
    _set_held(args, True)
    print(f"held {args.qid}: no delivery attempts until `hatoba queue release {args.qid}`")
    return 0


def run_release(args: argparse.Namespace) -> int:
    spool = _set_held(args, False)
    spool.request_flush()
    print(f"released {args.qid}: delivery is tried again now")
    return 0
