#!/usr/bin/env python3
"""Break one security, durability or lock rule at a time and see a test fail.

Each mutation below is a small, plausible mistake in hatoba's code: a removed
fsync, a missing TLS guard, a lock released only on a clean QUIT. For each,
the script copies the checkout to a temporary folder, applies the one change,
runs the tests that guard that rule and reports whether they caught it.
A mutation whose tests still pass "survives": the rule has no guard.

    .venv/bin/python scripts/mutate.py            # every mutation
    .venv/bin/python scripts/mutate.py -k fsync   # names containing "fsync"
    .venv/bin/python scripts/mutate.py --list     # names, rules, files

The exit status is the number of survivors plus the mutations that no longer
apply (their code moved): both need a look. Add a mutation when a rule lands.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 600  # seconds for one mutation's tests


@dataclass(frozen=True)
class Mutation:
    name: str
    rule: str  # what the tests must guard, in words
    path: str  # file under the checkout
    old: str  # text that must occur exactly once
    new: str
    tests: tuple[str, ...]  # pytest node ids or files


MUTATIONS = [
    # -- durability ------------------------------------------------------------------------------
    Mutation(
        "spool-commit-file-fsync", "a queued message's file is fsynced before 250",
        "src/hatoba/queue/spool.py",
        "            write_all(self._fd, b\"\".join(chunks))\n            os.fsync(self._fd)\n",
        "            write_all(self._fd, b\"\".join(chunks))\n",
        ("tests/durability/test_fsync_order.py",),
    ),
    Mutation(
        "spool-commit-folder-fsync", "the queue folder is fsynced after the rename, before 250",
        "src/hatoba/queue/spool.py",
        "        await self._spool._active_sync.sync()\n",
        "",
        ("tests/durability/test_fsync_order.py",),
    ),
    Mutation(
        "spool-inject-file-fsync", "a bounce's file is fsynced before it counts as queued",
        "src/hatoba/queue/spool.py",
        "                write_all(fd, b\"\".join([message, envelope_json, FOOTER_FORMAT % len(envelope_json)]))\n"
        "                os.fsync(fd)\n",
        "                write_all(fd, b\"\".join([message, envelope_json, FOOTER_FORMAT % len(envelope_json)]))\n",
        ("tests/durability/test_fsync_order.py",),
    ),
    Mutation(
        "spool-inject-folder-fsync", "a bounce's rename is made durable by a folder fsync",
        "src/hatoba/queue/spool.py",
        "            os.rename(tmp, self.message_path(qid))\n            fsync_dir(self.active_dir)\n",
        "            os.rename(tmp, self.message_path(qid))\n",
        ("tests/durability/test_fsync_order.py",),
    ),
    Mutation(
        "maildir-file-fsync", "a delivered message's file is fsynced before the rename into new/",
        "src/hatoba/store/maildir.py",
        "                    return DeliveredMessage(mailbox, existing, duplicate=True)\n            os.fsync(fd)\n",
        "                    return DeliveredMessage(mailbox, existing, duplicate=True)\n",
        ("tests/durability/test_fsync_order.py",),
    ),
    Mutation(
        "maildir-folder-fsync", "new/ is fsynced after a delivery's rename",
        "src/hatoba/store/maildir.py",
        "        os.rename(tmp, final)\n        fsync_dir(final.parent)\n",
        "        os.rename(tmp, final)\n",
        ("tests/durability/test_fsync_order.py",),
    ),
    Mutation(
        "write-atomic-data-fsync", "a replaced file (UID list, state) is fsynced before the rename",
        "src/hatoba/fsutil.py",
        "            write_all(fd, data)\n            os.fsync(fd)\n",
        "            write_all(fd, data)\n",
        ("tests/durability/test_fsync_order.py",),
    ),
    Mutation(
        "write-atomic-folder-fsync", "a replaced file's new name is made durable",
        "src/hatoba/fsutil.py",
        "    if sync_dir:\n        fsync_dir(path.parent)\n",
        "",
        ("tests/durability/test_fsync_order.py",),
    ),
    Mutation(
        "directory-synchronous-normal", "every acknowledged directory change survives a power cut",
        "src/hatoba/store/directory.py",
        "PRAGMA synchronous=FULL",
        "PRAGMA synchronous=NORMAL",
        ("tests/durability/test_fsync_order.py",),
    ),
    Mutation(
        "backup-copy-fsync", "a file copied into a backup is fsynced before the backup says done",
        "src/hatoba/store/snapshot.py",
        "                os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))\n                os.fsync(fd)\n",
        "                os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))\n",
        ("tests/durability/test_backup_fsync.py",),
    ),
    Mutation(
        "backup-folders-fsync", "every folder of a backup is fsynced before its manifest is written",
        "src/hatoba/store/backup.py",
        "            copier.finish()\n            write_manifest(dest, manifest)\n",
        "            write_manifest(dest, manifest)\n",
        ("tests/durability/test_backup_fsync.py",),
    ),
    Mutation(
        "backup-mail-before-queue", "a backup copies the queue before the mail store (no message falls between)",
        "src/hatoba/store/backup.py",
        "        copy_queue(config.paths.queue_dir, dest / \"data\" / \"queue\", copier)\n"
        "    steps[\"mail\"] = time.time()\n"
        "    with explained(f\"cannot copy the mail store {config.paths.mail_dir}\"):\n"
        "        vanished = copy_mail(config.paths.mail_dir, dest / \"data\" / \"mail\", copier)"
        " if config.paths.mail_dir.is_dir() else 0\n",
        "        vanished = copy_mail(config.paths.mail_dir, dest / \"data\" / \"mail\", copier)\n"
        "        copy_queue(config.paths.queue_dir, dest / \"data\" / \"queue\", copier)\n"
        "    steps[\"mail\"] = time.time()\n",
        ("tests/durability/test_backup_fsync.py",),
    ),
    Mutation(
        "backup-maildir-one-pass", "a message moved between folders during a backup is found",
        "src/hatoba/store/snapshot.py",
        "MAILDIR_PASSES = 2\n",
        "MAILDIR_PASSES = 1\n",
        ("tests/store/test_backup.py::test_expunges_and_moves_during_the_copy",),
    ),
    # -- no password before TLS ------------------------------------------------------------------
    Mutation(
        "imap-authenticate-before-tls", "IMAP AUTHENTICATE is refused before STARTTLS",
        "src/hatoba/imap/session.py",
        "        if not self.facts.may_login:\n"
        "            self.tagged(tag, \"NO\", \"[PRIVACYREQUIRED] Use STARTTLS first, or port 993\")\n"
        "            return\n",
        "",
        ("tests/loopback/test_plaintext_wire.py",),
    ),
    Mutation(
        "imap-login-before-tls", "IMAP LOGIN is refused before STARTTLS",
        "src/hatoba/imap/cmd_session.py",
        "    if not s.facts.may_login:\n"
        "        s.tagged(cmd.tag, \"NO\", \"[PRIVACYREQUIRED] Use STARTTLS first, or port 993: no passwords in clear\")\n"
        "        return\n",
        "",
        ("tests/loopback/test_plaintext_wire.py",),
    ),
    Mutation(
        "pop3-login-before-tls", "POP3 USER/PASS, APOP and AUTH are refused before STLS",
        "src/hatoba/proto/pop3/server.py",
        "        return self.tls_active or self.facts.allow_plaintext_auth\n",
        "        return True\n",
        ("tests/loopback/test_plaintext_wire.py",),
    ),
    Mutation(
        "smtp-auth-before-tls", "SMTP AUTH is refused before STARTTLS",
        "src/hatoba/proto/smtp/server.py",
        "        if not (self.tls_active or self.facts.allow_plaintext_auth):\n"
        "            return self._core((\"AUTH\", R.R538_ENCRYPTION_REQUIRED))\n",
        "",
        ("tests/loopback/test_plaintext_wire.py",),
    ),
    Mutation(
        "login-path-without-tls", "the shared login path refuses passwords without TLS on its own",
        "src/hatoba/net/login.py",
        "        return session.tls_info is not None or self.plaintext_allowed(session.listener, session.client_ip)\n",
        "        return True\n",
        ("tests/loopback/test_plaintext_wire.py",),
    ),
    # -- SMTP smuggling --------------------------------------------------------------------------
    Mutation(
        "smtp-bare-lf-ends-data", "only CRLF.CRLF ends DATA (no smuggling with bare LF)",
        "src/hatoba/proto/smtp/data.py",
        "                and real_crlf\n                and self._after_crlf\n",
        "",
        ("tests/loopback/test_bad_input.py::test_smuggling_does_not_split_messages",),
    ),
    # -- locks and dropped connections -----------------------------------------------------------
    Mutation(
        "pop3-lock-kept-after-drop", "a dropped POP3 client's maildrop lock is released",
        "src/hatoba/net/pop3_session.py",
        "            if self.mailbox is not None:\n                self.ctx.locks.release(self.mailbox)\n",
        "            if self.mailbox is not None and self.conn.state.name == \"CLOSED\":\n"
        "                self.ctx.locks.release(self.mailbox)\n",
        ("tests/loopback/test_pop3.py",),
    ),
    Mutation(
        "pop3-deletes-on-drop", "a dropped POP3 client's DELEs are not made (RFC 1939 §6)",
        "src/hatoba/net/pop3_session.py",
        "            await self._abandon_scram()\n            if self.mailbox is not None:\n",
        "            await self._abandon_scram()\n"
        "            if self.maildrop is not None and self.conn.deleted:\n"
        "                await asyncio.to_thread(self.maildrop.delete, self.conn.deleted)\n"
        "            if self.mailbox is not None:\n",
        ("tests/loopback/test_pop3.py",),
    ),
    Mutation(
        "smtp-stores-half-a-message", "a client dropped inside DATA leaves nothing queued",
        "src/hatoba/net/smtp_session.py",
        "            if self.message is not None:\n                await self.message.abort()\n                self.message = None\n",
        "            if self.message is not None and self.mail_event is not None:\n"
        "                await self._data_end(DataEnd(0, None))\n",
        ("tests/loopback/test_bad_input.py::test_dropped_in_the_middle_of_data_stores_nothing",),
    ),
    # -- DKIM and certificates -------------------------------------------------------------------
    Mutation(
        "dkim-signs-strangers-mail", "only mail of authenticated senders is DKIM-signed",
        "src/hatoba/queue/manager.py",
        "        if self.dkim is not None and envelope.auth_login:\n",
        "        if self.dkim is not None:\n",
        ("tests/dkim",),
    ),
    Mutation(
        "check-ignores-expiry", "hatoba check calls an expired certificate critical",
        "src/hatoba/selfcheck/certificates.py",
        "        if now > after:\n",
        "        if False:\n",
        ("tests/selfcheck",),
    ),
]


def copy_checkout(into: Path) -> None:
    """The files git knows, as they are in the work tree (uncommitted changes too)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        rel = raw.decode()
        source = ROOT / rel
        if not source.is_file():
            continue
        target = into / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def apply(tree: Path, mutation: Mutation) -> str | None:
    """Make the change; None when done, else why it cannot be made."""
    path = tree / mutation.path
    if not path.is_file():
        return f"{mutation.path} is gone"
    text = path.read_text()
    count = text.count(mutation.old)
    if count != 1:
        return f"the code to change occurs {count} times in {mutation.path}"
    path.write_text(text.replace(mutation.old, mutation.new))
    return None


def run_tests(tree: Path, mutation: Mutation) -> tuple[bool, float, str]:
    """(caught, seconds, last line of pytest's output)."""
    env = dict(os.environ, PYTHONPATH=str(tree / "src"), PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
               "--basetemp", str(tree / ".pytest-tmp"), *mutation.tests]
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return True, time.monotonic() - started, f"tests ran over {TIMEOUT} s"
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    summary = lines[-1] if lines else done.stderr.strip()[-200:]
    # 1: a test failed (caught). 0: all passed (survived). Anything else (no
    # tests collected, a collection error) says the mutation or the list is
    # broken, and catches nothing.
    if done.returncode not in (0, 1):
        return False, time.monotonic() - started, f"pytest exit status {done.returncode}: {summary}"
    return done.returncode == 1, time.monotonic() - started, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", dest="match", default="", help="only mutations whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the mutations and stop")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if args.match in m.name]
    if args.list:
        for m in chosen:
            print(f"{m.name:32} {m.path:40} {m.rule}")
        return 0
    if not chosen:
        print(f"no mutation name contains {args.match!r}", file=sys.stderr)
        return 1
    bad = 0
    with tempfile.TemporaryDirectory(prefix="hatoba-mutate-") as scratch:
        pristine = Path(scratch) / "pristine"
        copy_checkout(pristine)
        # The tests must pass unchanged, or a failure proves nothing.
        baseline = Mutation("baseline", "", "", "", "", tuple(dict.fromkeys(t for m in chosen for t in m.tests)))
        failed, took, summary = run_tests(pristine, baseline)
        if failed or "passed" not in summary:
            print(f"the tests fail without any mutation ({took:.0f} s): {summary}", file=sys.stderr)
            return 100
        print(f"baseline  {len(baseline.tests)} test sets pass ({took:.0f} s)", flush=True)
        for m in chosen:
            tree = Path(scratch) / m.name
            shutil.copytree(pristine, tree, symlinks=True)
            problem = apply(tree, m)
            if problem is not None:
                print(f"STALE     {m.name}: {problem}", flush=True)
                bad += 1
            else:
                caught, took, summary = run_tests(tree, m)
                verdict = "caught  " if caught else "SURVIVED"
                bad += not caught
                print(f"{verdict}  {m.name} ({took:.0f} s): {summary}", flush=True)
            shutil.rmtree(tree, ignore_errors=True)
    print(f"{len(chosen)} mutations, {bad} survived or stale")
    return min(bad, 100)


if __name__ == "__main__":
    sys.exit(main())
