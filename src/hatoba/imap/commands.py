"""The IMAP commands: the one COMMANDS table the session dispatches on.

The handlers live by group: cmd_session.py (connection and login:
CAPABILITY, STARTTLS, LOGIN, ENABLE, IDLE, COMPRESS...), cmd_mailbox.py
(SELECT, CREATE, LIST, STATUS, APPEND, QUOTA...), cmd_message.py
(FETCH, STORE, SEARCH, SORT, COPY, MOVE, EXPUNGE, UID...) and
cmd_notify.py (NOTIFY); shared helpers in common.py.

Each handler takes the session and the parsed command, calls the store in
threads, and writes untagged responses and the tagged result. Syntax errors
are ArgError (BAD), arguments the server cannot take ArgRefused (NO); store
refusals are the store/errors.py types (NO, led by the response code that
replies.py gives each type).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeAlias

from hatoba.imap.cmd_mailbox import (
    PERMANENT_FLAGS,
    SYSTEM_FLAGS,
    cmd_append,
    cmd_create,
    cmd_delete,
    cmd_examine,
    cmd_getquota,
    cmd_getquotaroot,
    cmd_list,
    cmd_lsub,
    cmd_namespace,
    cmd_rename,
    cmd_select,
    cmd_setquota,
    cmd_status,
    cmd_subscribe,
    cmd_unsubscribe,
)
from hatoba.imap.cmd_message import (
    FETCH_BATCH,
    FETCH_BATCH_BYTES,
    FETCH_BATCH_WITH_BODIES,
    SORT_FIELDS,
    cmd_cancelupdate,
    cmd_close,
    cmd_copy,
    cmd_expunge,
    cmd_fetch,
    cmd_move,
    cmd_search,
    cmd_sort,
    cmd_store,
    cmd_thread,
    cmd_uid,
    cmd_unselect,
)
from hatoba.imap.cmd_notify import cmd_notify
from hatoba.imap.cmd_session import (
    cmd_authenticate,
    cmd_capability,
    cmd_check,
    cmd_compress,
    cmd_enable,
    cmd_id,
    cmd_idle,
    cmd_language,
    cmd_login,
    cmd_logout,
    cmd_noop,
    cmd_starttls,
)
from hatoba.proto.imap.reader import RawCommand

if TYPE_CHECKING:
    from hatoba.imap.session import ImapSession

__all__ = [
    "FETCH_BATCH",
    "FETCH_BATCH_BYTES",
    "FETCH_BATCH_WITH_BODIES",
    "PERMANENT_FLAGS",
    "SORT_FIELDS",
    "SYSTEM_FLAGS",
    "COMMANDS",
    "Handler",
    "cmd_append",
    "cmd_authenticate",
    "cmd_capability",
    "cmd_cancelupdate",
    "cmd_check",
    "cmd_close",
    "cmd_compress",
    "cmd_copy",
    "cmd_create",
    "cmd_delete",
    "cmd_enable",
    "cmd_examine",
    "cmd_expunge",
    "cmd_fetch",
    "cmd_getquota",
    "cmd_getquotaroot",
    "cmd_id",
    "cmd_idle",
    "cmd_language",
    "cmd_list",
    "cmd_login",
    "cmd_logout",
    "cmd_lsub",
    "cmd_move",
    "cmd_namespace",
    "cmd_noop",
    "cmd_notify",
    "cmd_rename",
    "cmd_search",
    "cmd_select",
    "cmd_setquota",
    "cmd_sort",
    "cmd_starttls",
    "cmd_status",
    "cmd_store",
    "cmd_subscribe",
    "cmd_thread",
    "cmd_uid",
    "cmd_unselect",
    "cmd_unsubscribe",
]

Handler: TypeAlias = "Callable[[ImapSession, RawCommand], Awaitable[None]]"

COMMANDS: dict[str, Handler] = {
    "CAPABILITY": cmd_capability,
    "NOOP": cmd_noop,
    "LOGOUT": cmd_logout,
    "ID": cmd_id,
    "LANGUAGE": cmd_language,
    "STARTTLS": cmd_starttls,
    "LOGIN": cmd_login,
    "AUTHENTICATE": cmd_authenticate,
    "ENABLE": cmd_enable,
    "SELECT": cmd_select,
    "EXAMINE": cmd_examine,
    "CREATE": cmd_create,
    "DELETE": cmd_delete,
    "RENAME": cmd_rename,
    "SUBSCRIBE": cmd_subscribe,
    "UNSUBSCRIBE": cmd_unsubscribe,
    "LIST": cmd_list,
    "LSUB": cmd_lsub,
    "NAMESPACE": cmd_namespace,
    "STATUS": cmd_status,
    "APPEND": cmd_append,
    "IDLE": cmd_idle,
    "GETQUOTA": cmd_getquota,
    "GETQUOTAROOT": cmd_getquotaroot,
    "SETQUOTA": cmd_setquota,
    "COMPRESS": cmd_compress,
    "CHECK": cmd_check,
    "CLOSE": cmd_close,
    "UNSELECT": cmd_unselect,
    "EXPUNGE": cmd_expunge,
    "SEARCH": cmd_search,
    "FETCH": cmd_fetch,
    "STORE": cmd_store,
    "COPY": cmd_copy,
    "MOVE": cmd_move,
    "UID": cmd_uid,
    "SORT": cmd_sort,
    "THREAD": cmd_thread,
    "CANCELUPDATE": cmd_cancelupdate,
    "NOTIFY": cmd_notify,
}
