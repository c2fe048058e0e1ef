"""The route table: exact paths, networks before methods, Allow on 405."""

from __future__ import annotations

import asyncio

import pytest

from hatoba.policy.relay import TrustedNetworks
from hatoba.web.routes import Request, Response, Route, Router

LOOPBACK = TrustedNetworks.parse(["127.0.0.0/8", "::1/128"])


async def hello(request: Request) -> Response:
    return Response(200, b"hello " + request.client_ip.encode())


ROUTER = Router([Route("/metrics", hello, networks=LOOPBACK), Route("/open", hello)])


def answer(path: str, ip: str = "127.0.0.1", method: str = "GET") -> Response:
    return asyncio.run(ROUTER.answer(Request(method, path, "", "x", ip)))


@pytest.mark.parametrize("ip", ["127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"])
def test_loopback_clients_are_answered(ip):
    assert answer("/metrics", ip).status == 200


@pytest.mark.parametrize("ip", ["192.0.2.10", "10.0.0.1", "2001:db8::1", "::ffff:192.0.2.10", "?", ""])
def test_other_clients_are_refused(ip):
    response = answer("/metrics", ip)
    assert response.status == 403 and b"hello" not in response.body
    assert answer("/metrics", ip, method="POST").status == 403  # the network is asked first


def test_routes_without_networks_answer_anyone():
    assert answer("/open", "192.0.2.10").status == 200


def test_unknown_paths_and_methods():
    assert answer("/Metrics").status == 404
    assert answer("/metrics/").status == 404
    response = answer("/metrics", method="POST")
    assert response.status == 405 and ("Allow", "GET, HEAD") in response.headers
    assert answer("/metrics", method="get").status == 405  # methods are case-sensitive
    assert answer("/metrics", method="HEAD").status == 200


def test_one_route_per_path():
    with pytest.raises(ValueError):
        Router([Route("/a", hello), Route("/a", hello)])
