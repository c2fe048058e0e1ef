"""Another process taking a POP3 maildrop lock, as another server worker would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HOLDER = """
import sys, time
from pathlib import Path
from hatoba.store.maildrop_lock import MaildropLock
lock = MaildropLock(Path(sys.argv[1]))
print("held" if lock.acquire() else "busy", flush=True)
if lock.held:
    time.sleep(60)
"""


def try_lock(maildir: Path) -> tuple[subprocess.Popen[str], str]:
    """A process that tries to lock `maildir`'s maildrop: (it, "held" or "busy"). It keeps a lock it got
    for a minute; kill it to see the lock freed, as when a worker dies."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(maildir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()
