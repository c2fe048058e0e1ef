"""/metrics and /healthz: for the operator's monitoring, from [metrics] networks only.

/metrics is Prometheus' text format (hatoba/metrics.py), rendered in a
thread: it reads /proc and lists the queue folder. /healthz is 200 "ok"
while every listener accepts and the delivery process runs, else 503 and
one line saying what is wrong (for a load balancer or systemd's watchdog
script, which need no parsing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from hatoba.metrics import CONTENT_TYPE, Metrics, OtherWorkers
from hatoba.policy.relay import TrustedNetworks
from hatoba.web.routes import Request, Response, Route, text_response


def operations_routes(
    metrics: Metrics, health: Callable[[], str | None], networks: TrustedNetworks,
    others: Callable[[], Awaitable[OtherWorkers]] | None = None,
) -> list[Route]:
    """The routes; `health()` is None when all is well, else the reason it is not;
    `others()`: the other worker processes' counters, added to this one's."""

    async def scrape(request: Request) -> Response:
        texts, departed = await others() if others is not None else ([], {})
        body = await asyncio.to_thread(metrics.render, texts, departed)
        return Response(200, body, CONTENT_TYPE)

    async def healthz(request: Request) -> Response:
        problem = health()
        return text_response(200, "ok") if problem is None else text_response(503, problem)

    return [
        Route("/metrics", scrape, networks=networks),
        Route("/healthz", healthz, networks=networks),
    ]
