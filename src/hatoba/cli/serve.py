"""`hatoba serve`: run every enabled listener in the foreground.

Start-up, in this order: read the config; open the log; bind every port;
started as root, give the data folder to `[server] user` and become that
user for good; then recover the queue, start the delivery process and
accept connections. No byte from a client is read before root is gone.

SIGHUP reloads the certificates and keys (open connections stay up).
SIGTERM and SIGINT stop it gracefully: listeners close, sessions get a few
seconds to finish, the queue manager completes in-flight deliveries.
Under systemd (Type=notify) the service manager hears READY=1 once the
listeners accept, RELOADING=1/READY=1 around a reload and STOPPING=1.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import socket
import sys

from hatoba.cli.common import CliError, load_config
from hatoba.config.schema import Config
from hatoba.logs import setup_logging
from hatoba.net.sdnotify import Notifier
from hatoba.system.privileges import ServiceUser

log = logging.getLogger(__name__)

# Blocked from the bind until the event loop handles them (see run).
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="run the mail server in the foreground")
    p.add_argument("--debug", action="store_true", help="log every protocol line (secrets redacted)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hatoba.net.listen import bind_all, close_all
    from hatoba.net.server import served_listeners
    from hatoba.system.privileges import PrivilegeError, plan

    _limit_malloc_arenas()
    config = load_config(args)
    try:
        user = plan(config.server, os.geteuid())
    except PrivilegeError as exc:
        raise CliError(str(exc)) from None
    try:
        log_file = setup_logging("DEBUG" if args.debug else config.log.level, config.log.file)
    except OSError as exc:
        raise CliError(f"cannot open log file {config.log.file}: {exc.strerror or exc}") from None
    notifier = Notifier.from_environment()  # connected now: the socket may be root's alone
    if user is not None:
        _check_reach(config, user)
    # Once bound, the ports take connections (into the backlog) and clients may
    # think the server is up; a SIGHUP or SIGTERM then must wait for the event
    # loop's handlers instead of killing the process (their default action).
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        sockets = bind_all(served_listeners(config))
    except OSError as exc:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        raise CliError(f"cannot start: {exc.strerror or exc} (is another server using the port?)") from None
    try:
        if user is not None:
            _become(config, user)
        from hatoba.runloop import run as run_loop

        log_fd = log_file.stream.fileno() if isinstance(log_file, logging.StreamHandler) else None
        run_loop(_serve(config, sockets, notifier, log_fd, dropped=user is not None))
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise CliError(f"cannot start: {exc.strerror or exc}{where}") from None
    finally:
        close_all(sockets)  # those the server took are closed already
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    return 0


def _check_reach(config: Config, user: ServiceUser) -> None:
    """Refuse, in one line, what the service user could not reach once root is gone."""
    from hatoba.system.reach import program_needs, unreachable

    tls = config.tls
    files = [tls.cert, tls.key, *(f for d in tls.domains.values() for f in (d.cert, d.key))]
    if tls.ca_file is not None:
        files.append(tls.ca_file)
    needs = [(config.config_path, os.R_OK)] if config.config_path else []
    needs.append((config.paths.data_dir, os.F_OK))  # made if missing, and given to the user, before the drop
    needs += [(path, os.R_OK) for path in files]
    problem = unreachable(user, needs + program_needs())
    if problem:
        raise CliError(problem)


def _become(config: Config, user: ServiceUser) -> None:
    """Give the data folder to `user`, then become it for good."""
    from hatoba.system.ownership import give_to
    from hatoba.system.privileges import PrivilegeError, drop

    data = config.paths.data_dir
    if not data.exists():
        data.mkdir(mode=0o700, parents=True)
    given = give_to(data, user.uid, user.gid)
    try:
        drop(user)
    except PrivilegeError as exc:
        raise CliError(str(exc)) from None
    if given.changed:
        log.info("gave %d file(s) in %s back to user %s (made by commands run as root)", given.changed, data, user.name)
    if given.left:
        log.warning("left %d entries in %s to others than user %s: special files, or files with several names "
                    "(fs.protected_hardlinks is off); chown them to %s if they are hatoba's",
                    given.left, data, user.name, user.name)
    log.info("running as user %s (uid %d, gid %d)", user, user.uid, user.gid)


def _say_who_runs(config: Config) -> None:
    """Not dropping root: say so when it matters."""
    import pwd

    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    if uid == 0:
        log.warning("running as root ([server] allow_root = true): a flaw in hatoba would give away the machine; "
                    'set [server] user = "hatoba"')
    elif config.server.user and config.server.user != name:
        log.info("running as user %s, who started it ([server] user %s applies when started as root)",
                 name, config.server.user)


# glibc gives threads that allocate at once arenas of their own (up to 8 per core), and
# memory freed in them mostly stays with the process: the threads that read and write
# mail files kept about 10 MiB that way. Two arenas, as MALLOC_ARENA_MAX=2 would give.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt(3)


def _limit_malloc_arenas() -> bool:
    """Before any thread starts; whether the limit was set. An operator's MALLOC_ARENA_MAX
    or glibc.malloc.arena_max tunable wins (glibc reads those itself)."""
    if (not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ
            or "arena_max" in os.environ.get("GLIBC_TUNABLES", "")):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a C library without mallopt
        return False
    return bool(mallopt(_M_ARENA_MAX, MALLOC_ARENAS))  # 1 on success (musl's stub: 0)


# Collect young objects every this many allocations (Python's default: 700).
GC_YOUNG_THRESHOLD = 10_000


def _settle_garbage_collector() -> None:
    """Keep full collections short: they paused commands on a large mailbox for 20 ms and more.

    What start-up loaded (modules, configuration, TLS contexts) lives as long as the
    process, so it leaves the collector's generations; sessions allocate tens of
    thousands of records per SELECT, so the young generation is collected less often.
    """
    gc.collect()  # start-up garbage in cycles is freed now, not kept frozen for ever
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


async def _serve(config: Config, sockets: dict[str, list[socket.socket]], notifier: Notifier,
                 log_fd: int | None, *, dropped: bool) -> None:
    from hatoba.delivery.setup import DeliverySetupError
    from hatoba.net.server import Server
    from hatoba.pki.tlsctx import TlsSetupError

    try:
        server = Server(config, log_fd=log_fd)
    except (TlsSetupError, DeliverySetupError) as exc:
        raise CliError(str(exc)) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    ready = False  # a reload is told to the manager only between READY=1 and STOPPING=1

    def reload() -> None:
        # Runs on the event loop, so a second SIGHUP waits for this reload to end.
        if stop.is_set():
            return
        told = ready
        if told:
            notifier.reloading()
        try:
            server.reload_tls()
        finally:
            if told:
                notifier.ready()

    loop.add_signal_handler(signal.SIGHUP, reload)
    # Handled from here on (those that came since the ports were bound too); unblocked
    # before the delivery process starts, which would inherit the mask.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    await server.start(sockets)
    _settle_garbage_collector()
    if not dropped:
        _say_who_runs(config)
    log.info("hatoba is running as %s; stop with Ctrl-C or SIGTERM", config.server.hostname)
    notifier.ready(f"serving {', '.join(server.bound)}")
    ready = True
    await stop.wait()
    notifier.stopping()
    log.info("stopping")
    await server.stop()
    log.info("stopped")
    notifier.close()
