"""Run the main coroutine of a hatoba process, on uvloop when it is installed;
and the memory settings every serving process makes before it serves.

uvloop (the [speed] extra, installed by `make run` and `make test`) makes
the event loop itself about a fifth faster for hatoba's workloads; without
it the standard loop does the same job.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hatoba.config.schema import Config


def start_child(name: str, config_path: Path, log_level: str, log_fd: int | None) -> Config | None:
    """What each child process of `hatoba serve` (a worker, a delivery process) does
    first: leave Ctrl-C (it reaches the whole process group) and SIGHUP to serve, which
    decides when children stop and passes reloads on; load the config without its
    warnings (serve showed them); log where serve logs. None, after one line on
    stderr, when the config cannot be loaded."""
    from hatoba.config.load import ConfigError, load_config
    from hatoba.logs import setup_logging

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    limit_malloc_arenas()
    logging.getLogger("hatoba.config").setLevel(logging.ERROR)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return None
    setup_logging(log_level, config.log.file, file_fd=log_fd)
    return config


def run_child(name: str, main: Coroutine[Any, Any, Any]) -> int:
    """run(main) in a child process of serve: its exit status (what `main` returns
    when that is a number, else 0), with one line on stderr for a setup error
    (certificates, delivery settings) instead of a traceback."""
    from hatoba.delivery.setup import DeliverySetupError
    from hatoba.pki.tlsctx import TlsSetupError

    try:
        status = run(main)
    except (DeliverySetupError, TlsSetupError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    return status if isinstance(status, int) else 0


def run(main: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


# glibc gives threads that allocate at once arenas of their own (up to 8 per core), and
# memory freed in them mostly stays with the process: the threads that read and write
# mail files kept about 10 MiB that way. Two arenas, as MALLOC_ARENA_MAX=2 would give.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt(3)


def limit_malloc_arenas() -> bool:
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


def settle_garbage_collector() -> None:
    """Keep full collections short: they paused commands on a large mailbox for 20 ms and more.

    What start-up loaded (modules, configuration, TLS contexts) lives as long as the
    process, so it leaves the collector's generations; sessions allocate tens of
    thousands of records per SELECT, so the young generation is collected less often.
    """
    gc.collect()  # start-up garbage in cycles is freed now, not kept frozen for ever
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
