"""Run the main coroutine of a hatoba process, on uvloop when it is installed.

uvloop (the [speed] extra, installed by `make run` and `make test`) makes
the event loop itself about a fifth faster for hatoba's workloads; without
it the standard loop does the same job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def run(main: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
