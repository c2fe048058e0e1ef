"""`hatoba serve`: run every enabled listener in the foreground.

SIGHUP reloads the certificates and keys (open connections stay up).
SIGTERM and SIGINT stop it gracefully: listeners close, sessions get a few
seconds to finish, the queue manager completes in-flight deliveries.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys

from hatoba.cli.common import CliError, load_config
from hatoba.logs import setup_logging

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="run the mail server in the foreground")
    p.add_argument("--debug", action="store_true", help="log every protocol line (secrets redacted)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    _limit_malloc_arenas()
    config = load_config(args)
    setup_logging("DEBUG" if args.debug else config.log.level, config.log.file)
    from hatoba.runloop import run as run_loop

    try:
        run_loop(_serve(config))
    except OSError as exc:
        raise CliError(f"cannot start: {exc.strerror or exc} (is another server using the port?)") from None
    return 0


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


async def _serve(config) -> None:  # type: ignore[no-untyped-def]
    from hatoba.delivery.setup import DeliverySetupError
    from hatoba.net.server import Server
    from hatoba.pki.tlsctx import TlsSetupError

    try:
        server = Server(config)
    except (TlsSetupError, DeliverySetupError) as exc:
        raise CliError(str(exc)) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload_tls)
    await server.start()
    _settle_garbage_collector()
    log.info("hatoba is running as %s; stop with Ctrl-C or SIGTERM", config.server.hostname)
    await stop.wait()
    log.info("stopping")
    await server.stop()
    log.info("stopped")
