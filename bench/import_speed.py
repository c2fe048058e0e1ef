"""How fast `hatoba import dovecot` moves a Dovecot Maildir tree in, against the
ways operators copy such a tree by hand today (`cp -a`, `rsync -a`), which
carry the files but none of the users, passwords or aliases.

The tree: USERS users, each MESSAGES messages of 4 KB in INBOX and a quarter as
many in a folder, with dovecot-uidlist and dovecot-keywords as Dovecot writes
them. hatoba imports with hard links (the source already belongs to hatoba's
service user; needs root), with copies (it belongs to someone else), and each
a second time with nothing changed (the cost of "import again before the
cut-over").

    .venv/bin/python bench/import_speed.py [--users 20] [--messages 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hatoba_command, run  # noqa: E402

BODY = ("x" * 76 + "\n") * 52  # about 4 KB


def build_tree(root: Path, users: int, messages: int) -> tuple[Path, Path, int]:
    mail = root / "mail"
    passwd = root / "passwd"
    lines = []
    total = 0
    for n in range(users):
        address = f"user{n}@example.test"
        lines.append(f"{address}:{{PLAIN}}password-{n}-long::::::")
        inbox = mail / "example.test" / f"user{n}" / "Maildir"
        for index, (folder, count) in enumerate(((inbox, messages), (inbox / ".Archive", messages // 4))):
            for sub in ("cur", "new", "tmp"):
                (folder / sub).mkdir(parents=True, exist_ok=True)
            uids = []
            for i in range(count):
                data = f"Subject: message {i}\nFrom: a@example.org\n\n{BODY}".encode()
                wire = len(data) + data.count(b"\n")
                base = f"{1700000000 + i}.M{i}P{n}.old,S={len(data)},W={wire}"
                letters = "Sa" if i % 3 == 0 else "S" if i % 2 else ""
                (folder / "cur" / f"{base}:2,{letters}").write_bytes(data)
                uids.append(f"{i + 1} :{base}")
            (folder / "dovecot-uidlist").write_text(
                f"3 V{1690000000 + n} N{count + 1} G{n:016x}{index:016x}\n" + "\n".join(uids) + "\n")
            (folder / "dovecot-keywords").write_text("0 $Forwarded\n")
            total += count
    passwd.write_text("\n".join(lines) + "\n")
    return passwd, mail, total


def timed(argv: list[str]) -> float:
    start = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True)
    return time.monotonic() - start


def hatoba_run(work: Path, name: str, passwd: Path, mail: Path, user: str) -> tuple[float, float]:
    """Two imports into a new home whose files belong to `user` ("" = whoever runs this)."""
    home = work / name
    run([*hatoba_command(), "init", str(home), "--hostname", "mail.example.test", "--user", ""])
    config = home / "hatoba.toml"
    config.write_text(config.read_text().replace('user = ""', f'user = "{user}"', 1))
    argv = [*hatoba_command(), "-c", str(config), "import", "dovecot",
            "--passwd-file", str(passwd), "--mail-root", str(mail)]
    first = timed(argv)
    again = timed(argv)
    return first, again


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--messages", type=int, default=1000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hatoba-bench-import-", dir="/var/tmp"))
    try:
        passwd, mail, total = build_tree(work / "old", args.users, args.messages)
        print(f"tree: {args.users} users, {total} messages of about 4 KB, 2 folders each")
        rows = []
        if os.geteuid() == 0:
            # Links need the old files to be hatoba's user's already; copies are made otherwise.
            subprocess.run(["chown", "-R", "nobody:nogroup", str(mail)], check=True)
            linked, again = hatoba_run(work, "linked", passwd, mail, "nobody")
            rows += [("hatoba import (hard links)", linked), ("hatoba import again, nothing changed", again)]
        copied, again = hatoba_run(work, "copied", passwd, mail, "")
        rows += [("hatoba import (copies, fsynced)", copied), ("hatoba import again (copies), unchanged", again)]
        rows.append(("cp -a (copies, no fsync)", timed(["cp", "-a", str(mail), str(work / "cp")])))
        if shutil.which("rsync"):
            rows.append(("rsync -a (copies, no fsync)", timed(["rsync", "-a", f"{mail}/", str(work / "rsync")])))
        print(f"{'how':40} {'seconds':>8} {'msg/s':>9}")
        for label, seconds in rows:
            print(f"{label:40} {seconds:8.2f} {total / seconds:9.0f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
