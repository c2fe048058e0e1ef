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
import signal

from hatoba.cli.common import CliError, load_config
from hatoba.logs import setup_logging

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="run the mail server in the foreground")
    p.add_argument("--debug", action="store_true", help="log every protocol line (secrets redacted)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    setup_logging("DEBUG" if args.debug else config.log.level, config.log.file)
    from hatoba.runloop import run as run_loop

    try:
        run_loop(_serve(config))
    except OSError as exc:
        raise CliError(f"cannot start: {exc.strerror or exc} (is another server using the port?)") from None
    return 0


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
