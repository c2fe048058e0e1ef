"""SharedCounts, and ConnectionLimiter on it across real processes.

The processes are fresh interpreters, started as the primary starts its
listener workers: subprocess with the block's descriptor in pass_fds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import hatoba
from hatoba.net.limits import ConnectionLimiter, LocalCounts
from hatoba.net.shared_counts import SharedCounts

IP = "192.0.2.1"


@pytest.fixture
def block():
    counts = SharedCounts.create(3)
    yield counts
    counts.close()


def test_counts_are_the_sum_over_the_regions(block):
    worker = SharedCounts.attach(block.fd, 3, 2)  # in this process, as a worker would map it
    try:
        block.add(IP, 2)
        worker.add(IP, 1)
        worker.add(("alice@example.test", IP, "imap"), 4)
        block.add_total(2)
        worker.add_total(5)
        assert block.count(IP) == worker.count(IP) == 3
        assert block.count(("alice@example.test", IP, "imap")) == 4
        assert block.count((IP,)) == 0 and block.count("192.0.2.2") == 0  # a 1-tuple is not its str
        assert block.total() == worker.total() == 7
        worker.add(IP, -1)
        assert block.count(IP) == 2
    finally:
        worker.close()


def test_clear_forgets_one_region_only(block):
    worker = SharedCounts.attach(block.fd, 3, 1)
    try:
        block.add(IP, 1)
        block.add_total(1)
        worker.add(IP, 3)
        worker.add_total(3)
        block.clear(1)
        assert block.count(IP) == 1 and block.total() == 1
    finally:
        worker.close()


def test_attach_checks_the_block(block):
    with pytest.raises(ValueError):
        SharedCounts.attach(block.fd, 4, 1)
    with pytest.raises(ValueError):
        SharedCounts.attach(block.fd, 3, 3)


def test_without_memfd_an_unlinked_file_serves(monkeypatch):
    monkeypatch.delattr(os, "memfd_create")
    counts = SharedCounts.create(2)
    try:
        assert os.fstat(counts.fd).st_nlink == 0
        counts.add(IP, 1)
        assert counts.count(IP) == 1
    finally:
        counts.close()


def test_a_narrow_table_collides_but_never_counts_low():
    counts = SharedCounts.create(2, width=2)
    try:
        for n, key in enumerate(["a", "b", "c", "d", "e", "f"], start=1):
            counts.add(key, n)
        assert all(counts.count(key) >= n for n, key in enumerate("abcdef", start=1))
        assert any(counts.count(key) > n for n, key in enumerate("abcdef", start=1))  # it does collide
    finally:
        counts.close()


def test_ten_thousand_keys_are_counted_closely(block):
    worker = SharedCounts.attach(block.fd, 3, 1)
    try:
        keys = [f"10.{i >> 8}.{i & 255}.1" for i in range(10_000)]
        for i, key in enumerate(keys):
            (block if i % 2 else worker).add(key, 1)
        excess = [block.count(key) - 1 for key in keys]
        # Expected (module docstring): 0.5 % one too high, 2·10^-6 two.
        assert min(excess) == 0 and max(excess) <= 2
        assert sum(1 for e in excess if e) < 150
    finally:
        worker.close()


def test_no_false_refusals_with_ten_thousand_connections(block):
    worker = SharedCounts.attach(block.fd, 3, 1)
    try:
        primary = ConnectionLimiter(max_total=20_000, max_per_ip=50, shared=block)
        other = ConnectionLimiter(max_total=20_000, max_per_ip=50, shared=worker)
        addresses = [f"10.{i >> 8}.{i & 255}.1" for i in range(2_000)]
        for _ in range(5):
            for i, ip in enumerate(addresses):
                assert (primary if i % 2 else other).acquire(ip) is None
        assert primary.total == 10_000
        assert all(primary.acquire(ip) is None for ip in addresses)
    finally:
        worker.close()


def test_local_counts_forget_keys_back_at_zero():
    counts = LocalCounts()
    counts.add_at(IP, 2)
    counts.add_at(IP, -2)
    assert counts.count_at(IP) == 0 and not counts._counts


WORKER = """
import sys
from hatoba.net.limits import ConnectionLimiter
from hatoba.net.shared_counts import SharedCounts

fd, workers, index = map(int, sys.argv[1:])
limits = ConnectionLimiter(max_total=100, max_per_ip=5, shared=SharedCounts.attach(fd, workers, index))
print("ready", flush=True)
for line in sys.stdin:
    verb, ip = line.split()
    if verb == "acquire":
        refusal = limits.acquire(ip)
        print("ok" if refusal is None else refusal.text, flush=True)
    else:
        limits.release(ip)
        print("ok", flush=True)
"""


class Worker:
    """A listener worker in a fresh interpreter, told what to do one line at a time."""

    def __init__(self, block: SharedCounts, index: int) -> None:
        src = str(Path(hatoba.__file__).parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(block.fd), str(block.workers), str(index)],
            pass_fds=[block.fd], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        assert self.ask(None) == "ready"

    def ask(self, line: str | None) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if line is not None:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def acquire(self, times: int) -> list[str]:
        return [self.ask(f"acquire {IP}") for _ in range(times)]

    def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            self.proc.communicate()


def test_the_per_address_limit_holds_across_processes(block):
    primary = ConnectionLimiter(max_total=100, max_per_ip=5, shared=block)
    one, two = Worker(block, 1), Worker(block, 2)
    try:
        assert one.acquire(3) == ["ok", "ok", "ok"]
        got = two.acquire(3)
        assert got[:2] == ["ok", "ok"] and "not logged in (5)" in got[2]
        assert primary.acquire(IP) is not None
        assert primary.connections_from(IP) == 5 and primary.total == 5
        assert two.ask(f"release {IP}") == "ok"  # a close in one process makes room in another
        assert one.acquire(2)[0] == "ok"

        # Worker 1 dies holding 4 connections; they count until the primary clears its region.
        one.stop()
        assert primary.connections_from(IP) == 5 and primary.acquire(IP) is not None
        block.clear(1)
        assert primary.connections_from(IP) == 1 and primary.total == 1
        assert [primary.acquire(IP) for _ in range(4)] == [None] * 4
        assert primary.acquire(IP) is not None and "(5)" in two.acquire(1)[0]
    finally:
        one.stop()
        two.stop()


def test_loads_leave_out_workers_whose_heartbeat_stopped(block):
    import time

    from hatoba.net.shared_counts import ALIVE_WITHIN

    second, third = SharedCounts.attach(block.fd, 3, 1), SharedCounts.attach(block.fd, 3, 2)
    try:
        block.add_total(5)
        second.add_total(3)
        assert block.loads() == (5, 5)  # nobody else beats yet: no one to leave connections to
        second.beat()
        third.beat()
        assert block.loads() == (5, 0) and second.loads() == (3, 0)
        time.sleep(ALIVE_WITHIN + 0.1)
        second.beat()  # the third stopped beating (dead, stopped, stuck)
        assert block.loads() == (5, 3)
        block.clear(1)  # a dead worker's region, heartbeat included
        assert block.loads() == (5, 5)
    finally:
        second.close()
        third.close()
