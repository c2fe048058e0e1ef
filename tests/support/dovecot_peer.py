"""A private Dovecot 2.3 (Debian's dovecot-core, -imapd, -pop3d) playing the old mail
server that `hatoba import dovecot` moves users away from.

    with DovecotPeer(folder, {"dora@example.test": ("SHA512-CRYPT", "her password")}) as dv:
        dv.deliver("dora@example.test", b"Subject: hi\\n\\nhello\\n")
        imaplib.IMAP4("127.0.0.1", dv.imap_port) ...

Everything lives in `folder`: dovecot.conf, the passwd-file (`passwd_file`, one
line per user, "address:{SCHEME}hash::::::", hashes made by `doveadm pw`), the
Maildirs under `mail_root` as DOMAIN/USER/Maildir (mail_location
maildir:MAIL_ROOT/%d/%n/Maildir, the Maildir++ layout with "." as separator),
base_dir (run/), state_dir (state/) and the log (dovecot.log).

- IMAP and POP3 without TLS, plaintext logins allowed, on 127.0.0.1 only, on ports
  the kernel picked a moment before (never 10xxx or 30xxx, which other stacks use).
  It is a throwaway source system: no TLS, no LMTP, nothing else listens.
- Dovecot refuses to open mail as root, so run as root the mail belongs to
  `nobody` (the folders above `folder` get o+x while it runs, as
  support.service.open_for does for hatoba's service user); run as anyone else,
  everything runs as that user.
- The master runs in the foreground as our child (`dovecot -F`); stop() sends it
  SIGTERM and waits for it (it ends its children itself).
- A missing dovecot, doveadm or imap/pop3 program is a missing peer
  (support.peers: a skip, or a failure under HATOBA_REQUIRE_PEERS=1).
"""

from __future__ import annotations

import grp
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path

import pytest
from support.peers import REQUIRE_ENV, missing_message, peers_required, require

INSTALL_HINT = "Debian packages dovecot-core dovecot-imapd dovecot-pop3d; scripts/install-test-peers.sh installs them"
# The protocol programs the master starts; Debian ships them in dovecot-imapd and dovecot-pop3d.
PROTOCOL_PROGRAMS = {"imap": Path("/usr/lib/dovecot/imap"), "pop3": Path("/usr/lib/dovecot/pop3")}


class DovecotPeerError(RuntimeError):
    """The private Dovecot did not start or did not do what it was asked."""


def free_port() -> int:
    """A loopback port that was free a moment ago, outside 10000-10999 and 30000-30999."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port // 1000 not in (10, 30):
            return port


class DovecotPeer:
    """A private Dovecot with passwd-file users and Maildirs; a context manager."""

    def __init__(self, folder: Path, users: Mapping[str, tuple[str, str]], extra_config: str = "") -> None:
        self.folder = Path(folder).resolve()
        self.users = dict(users)  # address -> (doveadm pw scheme, password)
        self.extra_config = extra_config  # appended to dovecot.conf, e.g. "pop3_save_uidl = yes\n"
        self.conf = self.folder / "dovecot.conf"
        self.passwd_file = self.folder / "passwd"
        self.mail_root = self.folder / "mail"
        self.log_path = self.folder / "dovecot.log"
        self.imap_port = 0
        self.pop3_port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._cleanup = ExitStack()

    # -- life ---------------------------------------------------------------

    def start(self) -> DovecotPeer:
        dovecot = require("dovecot", why=INSTALL_HINT)
        self._doveadm = require("doveadm", why=INSTALL_HINT)
        for program in PROTOCOL_PROGRAMS.values():
            if not program.is_file():
                message = missing_message(str(program), INSTALL_HINT)
                if peers_required():
                    pytest.fail(f"{message}; {REQUIRE_ENV}=1 makes a missing peer a failure", pytrace=False)
                pytest.skip(message)
        for sub in ("run", "state", "mail"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        self.imap_port, self.pop3_port = free_port(), free_port()
        self._write_config()
        self._write_passwd_file()
        if os.geteuid() == 0:
            from support.service import open_for

            self._cleanup.enter_context(open_for(self.folder))
            os.chown(self.mail_root, self._uid, self._gid)
        with open(self.folder / "dovecot.out", "ab") as out:
            self._proc = subprocess.Popen([dovecot, "-F", "-c", str(self.conf)], stdout=out, stderr=out,
                                          stdin=subprocess.DEVNULL)
        self._wait_greeting(self.imap_port, b"* OK")
        self._wait_greeting(self.pop3_port, b"+OK")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the master and wait for it; safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self._cleanup.close()

    def __enter__(self) -> DovecotPeer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- use ----------------------------------------------------------------

    def deliver(self, address: str, message: bytes, mailbox: str = "INBOX") -> None:
        """Store `message` as delivery would (`doveadm save`: Dovecot gives it its UID)."""
        self.doveadm("save", "-u", address, "-m", mailbox, stdin=message)

    def doveadm(self, *args: str, stdin: bytes = b"") -> str:
        """Run `doveadm -c CONF ARGS`; its output, or DovecotPeerError with the log's tail."""
        r = subprocess.run([self._doveadm, "-c", str(self.conf), *args], input=stdin, capture_output=True,
                           timeout=30)
        if r.returncode != 0:
            raise DovecotPeerError(f"doveadm {' '.join(args)}: exit {r.returncode}: "
                                   f"{r.stderr.decode(errors='replace')}{self.log_tail()}")
        return r.stdout.decode()

    def log_tail(self, lines: int = 20) -> str:
        text = ""
        for path in (self.log_path, self.folder / "dovecot.out"):
            if path.is_file():
                text += "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
        return f"\n--- dovecot log ---\n{text}" if text else ""

    # -- setup ----------------------------------------------------------------

    @property
    def _uid(self) -> int:
        return pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else os.geteuid()

    @property
    def _gid(self) -> int:
        return pwd.getpwuid(self._uid).pw_gid if os.geteuid() == 0 else os.getegid()

    def _write_config(self) -> None:
        f = self.folder
        if os.geteuid() == 0:
            as_user = ""
        else:  # no root: every process, the login and internal ones too, runs as us
            me, group = pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name
            as_user = (f"default_internal_user = {me}\ndefault_internal_group = {group}\n"
                       f"default_login_user = {me}\n")
        listeners = "".join(
            f"service {proto}-login {{\n  chroot =\n"
            f"  inet_listener {proto} {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n"
            f"  inet_listener {proto}s {{\n    port = 0\n  }}\n}}\n"
            for proto, port in (("imap", self.imap_port), ("pop3", self.pop3_port))
        )
        self.conf.write_text(f"""\
protocols = imap pop3
listen = 127.0.0.1
base_dir = {f}/run
state_dir = {f}/state
log_path = {self.log_path}
{as_user}ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{self.mail_root}/%d/%n/Maildir
mail_uid = {self._uid}
mail_gid = {self._gid}
first_valid_uid = {self._uid}
first_valid_gid = {self._gid}
passdb {{
  driver = passwd-file
  args = username_format=%u {self.passwd_file}
}}
userdb {{
  driver = static
  args = uid={self._uid} gid={self._gid} home={self.mail_root}/%d/%n
}}
namespace inbox {{
  inbox = yes
  separator = .
}}
{listeners}{self.extra_config}""")

    def _write_passwd_file(self) -> None:
        lines = []
        for address, (scheme, password) in self.users.items():
            hashed = self.doveadm("pw", "-s", scheme, "-p", password).strip()
            if not hashed.startswith("{"):
                raise DovecotPeerError(f"doveadm pw -s {scheme} gave {hashed!r}")
            lines.append(f"{address}:{hashed}::::::\n")
        self.passwd_file.write_text("".join(lines))
        self.passwd_file.chmod(0o644)  # the auth process runs as user dovecot

    def _wait_greeting(self, port: int, greeting: bytes, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise DovecotPeerError(f"dovecot exited at start{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    if s.recv(200).startswith(greeting):
                        return
            except OSError as exc:
                last = exc
            time.sleep(0.05)
        raise DovecotPeerError(f"dovecot did not greet on 127.0.0.1:{port} within {timeout:.0f} s ({last})"
                               f"{self.log_tail()}")
