"""Fixtures shared by the loopback, interop and durability tests.

`hatoba_home` is a real setup made by `hatoba init` (private CA, server
certificate, config, SQLite directory) with domain example.test, users
alice/bob/carol and a few aliases. `server` runs the real Server in-process,
in its own thread and event loop, on 127.0.0.1 ports chosen by the kernel.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# needs(program) markers: skip where a peer is missing, fail under HATOBA_REQUIRE_PEERS=1;
# service_dir, a folder for homes served as the service user (tests/service).
pytest_plugins = ["support.peers", "support.service"]


@pytest.fixture
def hatoba_home(tmp_path: Path):
    from support.harness import make_home

    return make_home(tmp_path / "hatoba")


@pytest.fixture
def server(hatoba_home):
    from support.harness import ServerThread

    with ServerThread(hatoba_home) as srv:
        yield srv
