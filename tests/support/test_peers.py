"""HATOBA_REQUIRE_PEERS: a missing outside program is a skip, or with the switch a failure.

Runs pytest in a subprocess on a tiny test file that needs a program no machine has.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support import peers

TESTS = Path(__file__).resolve().parent.parent
MISSING = "hatoba-no-such-peer-7f3a"

SAMPLE = f'''
from support.peers import needs, require

@needs("{MISSING}", why="the marker")
def test_marked():
    pass

def test_inline():
    require("{MISSING}", why="the call")

@needs("sh")
def test_present():
    assert require("sh")
'''


def run_sample(tmp_path: Path, switch: str | None) -> str:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = {k: v for k, v in os.environ.items() if k != peers.REQUIRE_ENV and not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH", "")]))
    env["COLUMNS"] = "500"  # summary lines in full
    if switch is not None:
        env[peers.REQUIRE_ENV] = switch
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "support.peers", "-p", "no:cacheprovider", "-rA", "-q",
         "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path / "test_sample.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    return done.stdout + done.stderr


def test_without_the_switch_a_missing_peer_is_a_skip_that_names_it(tmp_path):
    out = run_sample(tmp_path, None)
    assert "2 skipped" in out and "1 passed" in out and "failed" not in out, out
    assert f"test peer {MISSING} is not installed (the marker)" in out, out
    assert f"test peer {MISSING} is not installed (the call)" in out, out


def test_switch_set_to_0_is_off(tmp_path):
    out = run_sample(tmp_path, "0")
    assert "2 skipped" in out and "1 passed" in out and "failed" not in out, out


def test_with_the_switch_a_missing_peer_fails_and_names_it(tmp_path):
    out = run_sample(tmp_path, "1")
    # The marker fails the setup (before any fixture starts a server): pytest counts an error.
    assert "1 failed, 1 passed, 1 error" in out and "skipped" not in out, out
    for outcome, name, why in (("ERROR", "test_marked", "the marker"), ("FAILED", "test_inline", "the call")):
        line = next(line for line in out.splitlines() if line.startswith(f"{outcome} test_sample.py::{name}"))
        assert f"test peer {MISSING} is not installed ({why}); HATOBA_REQUIRE_PEERS=1" in line, out


def test_find_answers_a_path_or_none():
    assert peers.find(MISSING) is None
    found = peers.find("sh")
    assert found is not None and Path(found).is_absolute() and os.access(found, os.X_OK)
