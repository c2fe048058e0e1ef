"""What of the queue a backup takes (layout in spool.py).

- active/QID.msg is complete and never changed once it has that name: a hard
  link is a consistent copy. It may vanish under us: it was delivered, and
  the mail store, copied after the queue, has it.
- active/QID.state is replaced whole (write_atomic): copied. An older state
  only repeats a delivery, and local deliveries notice they are done.
- incoming/ holds messages still being received, never acknowledged: left out.
"""

from __future__ import annotations

import os
from pathlib import Path

from hatoba.store.snapshot import Copier

MESSAGE_SUFFIX = ".msg"


def copy_queue(source: Path, target: Path, copier: Copier) -> None:
    """Copy the queue folder of a running server."""
    copier.folder(target, like=source)
    for sub in ("active", "incoming"):
        if (source / sub).is_dir():
            copier.folder(target / sub, like=source / sub)
    active = source / "active"
    if not active.is_dir():
        return
    # Sorted: QID.msg before QID.state, so a state is never newer than a message we lack.
    for name in sorted(os.listdir(active)):
        if name.startswith("."):
            continue  # a state being written (write_atomic's temporary name)
        try:
            if name.endswith(MESSAGE_SUFFIX):
                copier.link(active / name, target / "active" / name)
            else:
                copier.copy(active / name, target / "active" / name)
        except FileNotFoundError as exc:
            if exc.filename != str(active / name):
                raise
            # Delivered (or deleted by the operator) meanwhile.


def is_queued_message(path: Path) -> bool:
    """A message file of the queue (active/QID.msg): immutable, linked rather than copied."""
    return path.parent.name == "active" and path.name.endswith(MESSAGE_SUFFIX)
