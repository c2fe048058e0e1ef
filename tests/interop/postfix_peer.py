"""A private Postfix instance that plays the remote MTA in interop tests.

Why Postfix: it is the peer hatoba meets most often on the Internet, and its
SMTP client is strict about STARTTLS levels, reply codes and retries. Tests
that need "a real MTA relays a message to hatoba" start one with
`PostfixPeer`, inject mail into it by SMTP and watch its log and queue.

Rules:
- The instance is private: its own config_directory, queue_directory,
  data_directory and log file under `workdir`; it never reads or changes the
  system instance (/etc/postfix/main.cf) or any other instance.
- It listens on 127.0.0.1:smtp_port only and sends every message to
  `relay_to` (relayhost in brackets, so no MX lookup); DNS is disabled, so
  nothing ever leaves the loopback interface.
- Retries are seconds apart, so a test can watch a defer and a retry.
- Running Postfix needs root (the master binds, then drops to `postfix`).
  A test module marks itself with `postfix_peer_marks()`: a missing postfix
  program is a missing peer (a skip, or a failure under
  HATOBA_REQUIRE_PEERS=1, see tests/support/peers.py); not being root is a
  skip. `start()` checks the same; any other failure raises
  `PostfixPeerError` with the tail of the Postfix log, so a broken setup is
  never hidden as a skip.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import stat
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

TLS_LEVELS = ("none", "may", "encrypt", "dane", "fingerprint", "verify", "secure")

# Postfix configuration values may not contain whitespace or commas in paths
# (they are list separators in main.cf); reject them up front.
_UNSAFE_PATH = re.compile(r"[\s,=#]")

# master.cf: every service Postfix needs to accept and relay mail, no chroot
# (column 5 = n) so the CA file and log file outside the queue stay visible.
_MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
{listen} inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       -       1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       -       0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixPeerError(RuntimeError):
    """The private Postfix instance did not start, stop or behave as asked."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Debian installs postfix, postqueue and smtp-sink in /usr/sbin, which is not on every PATH.
_SBIN_PATH = "/usr/sbin:/sbin"
POSTFIX_INSTALL_HINT = "Debian package postfix; scripts/install-test-peers.sh installs it"
POSTFIX_NEEDS_ROOT = "a private Postfix instance needs root (its master binds and drops to user postfix)"


def _postfix_installed() -> bool:
    return shutil.which("postfix", path=f"{os.environ.get('PATH', '')}:{_SBIN_PATH}") is not None


def postfix_unavailable_reason() -> str | None:
    """Why a PostfixPeer cannot run here, or None when it can (for bench/, which has no pytest)."""
    if not _postfix_installed():
        return f"postfix is not installed ({POSTFIX_INSTALL_HINT})"
    if os.geteuid() != 0:
        return POSTFIX_NEEDS_ROOT
    return None


def postfix_peer_marks() -> list:
    """pytest marks for a test that starts a PostfixPeer: the postfix program, a peer
    (tests/support/peers.py), and root, a capability of the machine (a plain skip)."""
    import pytest
    from support.peers import needs

    return [needs("postfix", why=POSTFIX_INSTALL_HINT),
            pytest.mark.skipif(os.geteuid() != 0, reason=POSTFIX_NEEDS_ROOT)]


class PostfixPeer:
    """A private Postfix that relays everything to `relay_to`; a context manager.

    `tls_level` is Postfix's smtp_tls_security_level towards `relay_to`
    (none, may, encrypt, verify, ...); `ca_file` becomes smtp_tls_CAfile.
    `main_cf_extra` adds or overrides main.cf settings (for example
    `{"smtp_tls_verify_cert_match": "mail.example.test"}`).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        smtp_port: int,
        relay_to: str,
        tls_level: str = "encrypt",
        ca_file: Path | None = None,
        hostname: str = "peer.example.net",
        main_cf_extra: Mapping[str, str] | None = None,
    ) -> None:
        if tls_level not in TLS_LEVELS:
            raise ValueError(f"tls_level {tls_level!r} is not one of {', '.join(TLS_LEVELS)}")
        host, sep, port = relay_to.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"relay_to {relay_to!r} must be HOST:PORT, e.g. 127.0.0.1:10025")
        self.workdir = Path(workdir).resolve()
        for path in (self.workdir, ca_file):
            if path is not None and _UNSAFE_PATH.search(str(path)):
                raise ValueError(f"path {path} contains whitespace, ',', '=' or '#'; Postfix cannot use it")
        self.smtp_port = smtp_port
        self.relay_host = host.strip("[]")
        self.relay_port = int(port)
        self.tls_level = tls_level
        self.ca_file = Path(ca_file).resolve() if ca_file is not None else None
        self.hostname = hostname
        self.main_cf_extra = dict(main_cf_extra or {})
        self.config_dir = self.workdir / "conf"
        self.queue_dir = self.workdir / "queue"
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "postfix.log"
        self._master_pid: int | None = None

    # -- configuration -----------------------------------------------------

    def main_cf(self) -> dict[str, str]:
        """The main.cf settings of this instance, in the order written."""
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": self.hostname,
            "mydomain": self.hostname.partition(".")[2] or self.hostname,
            "myorigin": "$myhostname",
            # Nothing is local: every recipient goes to the relayhost.
            "mydestination": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "relay_domains": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "smtpd_recipient_restrictions": "",
            "smtpd_banner": "$myhostname ESMTP",
            "relayhost": f"[{self.relay_host}]:{self.relay_port}",
            # No DNS at all: the relayhost is an address literal, the client
            # resolves with getaddrinfo only, the server skips PTR lookups.
            "smtp_dns_support_level": "disabled",
            "smtp_host_lookup": "native",
            "smtpd_peername_lookup": "no",
            "smtp_tls_security_level": self.tls_level,
            "smtp_tls_loglevel": "1",
            "default_destination_concurrency_limit": "2",
            # Retries seconds apart instead of minutes.
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "smtp_connect_timeout": "5s",
            "smtp_helo_timeout": "10s",
            "maillog_file": str(self.log_path),
            "maillog_file_prefixes": str(self.workdir),
            "biff": "no",
        }
        if self.ca_file is not None:
            settings["smtp_tls_CAfile"] = str(self.ca_file)
        settings.update(self.main_cf_extra)
        return settings

    def write_config(self) -> None:
        """Write main.cf and master.cf and create the directories Postfix expects."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.queue_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = [f"{key} = {value}".rstrip() for key, value in self.main_cf().items()]
        (self.config_dir / "main.cf").write_text("\n".join(lines) + "\n")
        listen = f"127.0.0.1:{self.smtp_port}"
        (self.config_dir / "master.cf").write_text(_MASTER_CF.format(listen=listen))
        owner = pwd.getpwnam("postfix")
        # The master creates its lock file in data_directory as mail_owner.
        os.chown(self.data_dir, owner.pw_uid, owner.pw_gid)
        # postsuper may open the log after dropping to mail_owner.
        self.log_path.touch()
        os.chown(self.log_path, owner.pw_uid, owner.pw_gid)
        _make_traversable(self.data_dir)

    # -- life cycle --------------------------------------------------------

    def start(self) -> PostfixPeer:
        """Write the config and start the instance; returns when smtpd accepts."""
        if not _postfix_installed():
            from support.peers import require  # under pytest only: bench/ checks postfix_unavailable_reason()

            require("postfix", why=POSTFIX_INSTALL_HINT)
        if os.geteuid() != 0:
            import pytest

            pytest.skip(POSTFIX_NEEDS_ROOT)
        self.write_config()
        self._postfix("check")
        self._postfix("start")
        self._master_pid = self._read_master_pid()
        self._wait_listening(timeout=15.0)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the instance and make sure its master process is gone."""
        if not (self.config_dir / "main.cf").is_file():
            return  # never configured, so never started
        pid = self._master_pid or self._read_master_pid()
        subprocess.run(
            ["postfix", "-c", str(self.config_dir), "stop"],
            capture_output=True, text=True, timeout=30, env=self._env(),
        )
        if pid is None:
            return
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        self._master_pid = None

    def __enter__(self) -> PostfixPeer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- use ---------------------------------------------------------------

    def send(self, mail_from: str, rcpts: Sequence[str], message: bytes) -> str:
        """Inject one message by SMTP into this Postfix; returns its queue id."""
        with smtplib.SMTP("127.0.0.1", self.smtp_port, local_hostname="client.example.net", timeout=15) as smtp:
            smtp.ehlo()
            code, reply = smtp.mail(mail_from)
            if code != 250:
                raise PostfixPeerError(f"Postfix refused MAIL FROM:<{mail_from}>: {code} {reply!r}")
            for rcpt in rcpts:
                code, reply = smtp.rcpt(rcpt)
                if code not in (250, 251):
                    raise PostfixPeerError(f"Postfix refused RCPT TO:<{rcpt}>: {code} {reply!r}")
            code, reply = smtp.data(message)
            if code != 250:
                raise PostfixPeerError(f"Postfix refused the message data: {code} {reply!r}")
        match = re.search(rb"queued as ([0-9A-Za-z]+)", reply)
        return match.group(1).decode() if match else ""

    def log_text(self) -> str:
        """Everything this instance logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        """Wait until the log matches the regular expression `pattern`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.log_text())
            if match:
                return match
            if time.monotonic() > deadline:
                raise PostfixPeerError(f"Postfix log never matched {pattern!r} in {timeout}s:\n{self._log_tail()}")
            time.sleep(0.05)

    def queue(self) -> list[dict[str, object]]:
        """The messages still queued, as `postqueue -j` reports them."""
        proc = subprocess.run(
            ["postqueue", "-c", str(self.config_dir), "-j"],
            capture_output=True, text=True, timeout=30, env=self._env(),
        )
        if proc.returncode != 0:
            raise PostfixPeerError(f"postqueue -j failed: {proc.stderr.strip()}")
        return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]

    def wait_queue_empty(self, timeout: float = 15.0) -> None:
        """Wait until every message left the queue (delivered or bounced)."""
        deadline = time.monotonic() + timeout
        while True:
            queued = self.queue()
            if not queued:
                return
            if time.monotonic() > deadline:
                raise PostfixPeerError(f"Postfix queue not empty after {timeout}s: {queued}\n{self._log_tail()}")
            time.sleep(0.1)

    def flush(self) -> None:
        """Ask Postfix to retry every deferred message now."""
        proc = subprocess.run(
            ["postqueue", "-c", str(self.config_dir), "-f"],
            capture_output=True, text=True, timeout=30, env=self._env(),
        )
        if proc.returncode != 0:
            raise PostfixPeerError(f"postqueue -f failed: {proc.stderr.strip()}")

    # -- internals ---------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAIL_")}
        env["MAIL_CONFIG"] = str(self.config_dir)
        env["PATH"] = f"{env.get('PATH', '')}:{_SBIN_PATH}"
        return env

    def _postfix(self, command: str) -> None:
        proc = subprocess.run(
            ["postfix", "-c", str(self.config_dir), command],
            capture_output=True, text=True, timeout=60, env=self._env(),
        )
        if proc.returncode != 0:
            raise PostfixPeerError(
                f"postfix {command} failed (exit {proc.returncode}): {proc.stderr.strip()}\n{self._log_tail()}"
            )

    def _read_master_pid(self) -> int | None:
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=1) as s:
                    s.settimeout(5)
                    if s.recv(512).startswith(b"220"):
                        s.sendall(b"QUIT\r\n")
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise PostfixPeerError(f"Postfix smtpd not answering on 127.0.0.1:{self.smtp_port}:\n{self._log_tail()}")
            time.sleep(0.05)

    def _log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours would still answer kill(0); the master is not
    # our child (postfix daemonizes it), so this is the real state.
    return True


def _make_traversable(path: Path) -> None:
    """Let user postfix reach `path` (search permission only, no listing).

    Postfix daemons open data_directory by absolute path after dropping to
    mail_owner, so every ancestor needs o+x; private temp folders (0700) do
    not have it.
    """
    for ancestor in [path, *path.parents]:
        st = ancestor.stat()
        if st.st_uid == os.geteuid() and not st.st_mode & stat.S_IXOTH:
            os.chmod(ancestor, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
