"""A real hatoba setup and a real server for tests (no mocks)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from hatoba.cli.main import main as hatoba_main
from hatoba.config.load import load_config
from hatoba.config.schema import Config
from support.dnsserver import shared_server

PASSWORDS = {
    "alice@example.test": "alice-password-1",
    "bob@example.test": "bob-password-1",
    "carol@example.test": "carol-password-1",
}
ALIASES = {
    "postmaster@example.test": ["alice@example.test"],
    "team@example.test": ["alice@example.test", "bob@example.test", "friends@example.test"],
    "friends@example.test": ["carol@example.test", "bob@example.test"],
    "forward@example.test": ["someone@elsewhere.example"],
}


# The unprivileged user homes made as root run as (hatoba init creates it if missing).
TEST_USER = "hatoba-test"


@dataclass
class HatobaHome:
    root: Path
    config_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def ca_file(self) -> Path:
        return self.root / "tls" / "ca.crt"

    def config(self) -> Config:
        return load_config(self.config_path)

    def maildir(self, address: str) -> Path:
        local, domain = address.split("@")
        return self.root / "data" / "mail" / domain / local.lower() / "Maildir"

    def messages(self, address: str, folder: str = "") -> list[bytes]:
        """Every message in new/ and cur/ (of the Maildir++ folder `folder`, ".Junk", when given).
        An IMAP session may move one from new/ to cur/ while we look: then it is read where it
        went, and once (a message is its unique name, the part before ":2,")."""
        md = self.maildir(address) / folder if folder else self.maildir(address)
        found: dict[str, bytes] = {}
        for _ in range(5):
            found.clear()
            try:
                for sub in ("new", "cur"):
                    if (md / sub).is_dir():
                        for f in sorted((md / sub).iterdir()):
                            found.setdefault(f.name.split(":", 1)[0], f.read_bytes())
                return list(found.values())
            except FileNotFoundError:
                continue
        return list(found.values())

    def wait_messages(self, address: str, count: int, timeout: float = 10.0, folder: str = "") -> list[bytes]:
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages(address, folder)
            if len(msgs) >= count or time.monotonic() > deadline:
                return msgs
            time.sleep(0.02)

    def keep_root(self) -> None:
        """Run as root, a server started from this home stays root (`allow_root`): tests
        write into the home as root while it runs, and the interpreter may live where an
        unprivileged user cannot reach. tests/service/ tests the drop to the service user."""
        if os.geteuid() == 0:
            _merge_config(self.config_path, '[server]\nuser = ""\nallow_root = true\n')

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hatoba", "-c", str(self.config_path), *args],
            input=stdin, capture_output=True, text=True, timeout=60,
        )

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        return ctx


def wait_for(predicate, timeout: float = 10.0) -> bool:
    """Poll `predicate` every 50 ms until it is true (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def make_home(root: Path, *, port_offset: int = 0, extra_config: str = "", hostname: str = "mail.example.test",
              domain: str = "example.test") -> HatobaHome:
    """`hatoba init` + domain, users and aliases, done through the real code. The users and
    aliases are of example.test; `hostname` and `domain` are what init is told (its certificate's names)."""
    from hatoba.store.directory import Directory

    args = ["init", str(root), "--hostname", hostname, "--domain", domain]
    if os.geteuid() == 0:  # as an operator would: a service user owns the data (made if missing)
        args += ["--user", TEST_USER]
    if port_offset:
        args += ["--port-offset", str(port_offset)]
    assert hatoba_main(args) == 0
    config_path = root / "hatoba.toml"
    # Mail for the forward alias's outside domain goes to a closed port: it
    # stays queued (deferred) instead of asking the Internet's DNS.
    _merge_config(config_path, '[delivery.routes]\n"elsewhere.example" = "[127.0.0.1]:1"\n')
    # Every lookup (the incoming-mail checks above all) asks a DNS server of the test's own.
    _merge_config(config_path, f'[dns]\nresolver = "{shared_server().address}"\n')
    if extra_config:
        _merge_config(config_path, extra_config)
    directory = Directory(root / "data" / "directory.sqlite3")
    if "example.test" not in directory.list_domains():
        directory.add_domain("example.test")
    for address, password in PASSWORDS.items():
        directory.add_user(address, password)
    for source, targets in ALIASES.items():
        directory.add_alias(source, targets)
    return HatobaHome(root, config_path)


def _merge_config(path: Path, extra: str) -> None:
    """Append/override TOML tables: each [table] in `extra` replaces keys in the file."""
    import tomllib

    text = path.read_text()
    extra_doc = _flatten_tables(tomllib.loads(extra))
    for table, values in extra_doc.items():
        header = f"[{table}]"
        lines = text.split("\n")
        try:
            start = lines.index(header)
        except ValueError:
            text += f"\n{header}\n" + "".join(f"{_key(k)} = {_toml(v)}\n" for k, v in values.items())
            continue
        end = start + 1
        while end < len(lines) and not lines[end].startswith("["):
            end += 1
        keys = {_key(k) for k in values}
        body = [l for l in lines[start + 1 : end] if l.split("=")[0].strip() not in keys]
        body += [f"{_key(k)} = {_toml(v)}" for k, v in values.items()]
        lines[start + 1 : end] = body
        text = "\n".join(lines)
    path.write_text(text)


def _flatten_tables(doc: dict, prefix: str = "") -> dict[str, dict]:
    """{"delivery": {"tls": "may", "routes": {...}}} -> {"delivery": {...}, "delivery.routes": {...}}."""
    tables: dict[str, dict] = {}
    for name, values in doc.items():
        full = f"{prefix}{_key(name)}"
        scalars = {k: v for k, v in values.items() if not isinstance(v, dict)}
        if scalars or not any(isinstance(v, dict) for v in values.values()):
            tables[full] = scalars
        tables.update(_flatten_tables({k: v for k, v in values.items() if isinstance(v, dict)}, full + "."))
    return tables


def _key(name: str) -> str:
    bare = name.replace("-", "").replace("_", "").isalnum()
    return name if bare else '"' + name.replace('"', '\\"') + '"'


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class ServerThread:
    """The real Server, in-process, on kernel-chosen loopback ports."""

    def __init__(self, home: HatobaHome, config: Config | None = None, **server_options: object) -> None:
        """`server_options`: more arguments for Server (delivery_parts=2)."""
        self.home = home
        self.server_options = server_options
        config = config or home.config()
        listeners = {
            name: dataclasses.replace(lc, host="127.0.0.1", port=0)
            for name, lc in config.listeners.items()
        }
        self.config = dataclasses.replace(config, listeners=listeners)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = None

    def __enter__(self) -> "ServerThread":
        from hatoba.net.server import Server

        self.thread.start()

        async def start():
            self.server = Server(self.config, **self.server_options)
            await self.server.start()

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def port(self, name: str) -> int:
        assert self.server is not None
        return self.server.bound[name][1]

    def call(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


def free_port_offset(names=(25, 587, 465, 110, 995, 143, 993, 80)) -> int:
    """A port offset in 20000..29000 where every standard port + offset is free now."""
    import random

    for _ in range(200):
        offset = random.randrange(20000, 29000)
        ok = True
        for p in names:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p + offset))
                except OSError:
                    ok = False
                    break
        if ok:
            return offset
    raise RuntimeError("no free port offset found")


class ServerProcess:
    """`hatoba serve` as a child process (for kill -9 and outside clients)."""

    def __init__(self, home: HatobaHome, port_offset: int, *, keep_root: bool = True,
                 env: dict[str, str] | None = None) -> None:
        """`keep_root`: see HatobaHome.keep_root; False runs the home as configured.
        `env`: added to the server's environment."""
        self.home = home
        self.offset = port_offset
        self.keep_root = keep_root
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = home.root / "serve.log"

    def start(self, timeout: float = 20.0) -> "ServerProcess":
        if self.keep_root:
            self.home.keep_root()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hatoba", "-c", str(self.home.config_path), "serve"],
            stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
        )
        deadline = time.monotonic() + timeout
        waiting = [25, 587, 465, 110, 995, 143, 993]  # every listener, not only the first bound
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", waiting[0] + self.offset), timeout=1):
                    waiting.pop(0)
                    if not waiting:
                        return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("hatoba serve exited: " + self.log_path.read_text()[-2000:])
                time.sleep(0.05)
        raise RuntimeError("hatoba serve did not start listening on %d" % (waiting[0] + self.offset))

    def port(self, standard: int) -> int:
        return standard + self.offset

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
