"""Under systemd, stderr is the journal: one line per record, an sd-daemon
`<N>` priority and no time stamp of ours (journald stamps each entry).

Each case runs a small program whose stderr is a file, with JOURNAL_STREAM
naming that file (as systemd names the journal's socket) or something else.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

PROGRAM = """
import logging, sys
from pathlib import Path
from hatoba.logs import setup_logging, stderr_is_journal
setup_logging("INFO", Path(sys.argv[1]))
log = logging.getLogger("hatoba.test")
log.info("journal=%s", stderr_is_journal())
log.warning("careful")
try:
    raise ValueError("boom")
except ValueError:
    log.exception("failed")
"""


def run(tmp_path: Path, journal: str | None) -> tuple[list[str], list[str]]:
    """(stderr lines, log file lines); `journal`: JOURNAL_STREAM, "SELF" for stderr's own device:inode."""
    stderr, log_file = tmp_path / "stderr", tmp_path / "hatoba.log"
    with open(stderr, "w") as err:
        env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
        if journal is not None:
            st = os.fstat(err.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}" if journal == "SELF" else journal
        subprocess.run([sys.executable, "-c", PROGRAM, str(log_file)], stderr=err, env=env, check=True, timeout=60)
    return stderr.read_text().splitlines(), log_file.read_text().splitlines()


STAMPED = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "


def test_journal_stream_gets_priorities_and_no_time_stamps(tmp_path: Path) -> None:
    lines, file_lines = run(tmp_path, "SELF")
    assert lines[:3] == ["<6>INFO [-] hatoba.test: journal=True", "<4>WARNING [-] hatoba.test: careful",
                         "<3>ERROR [-] hatoba.test: failed"]
    # A traceback's lines keep the record's priority (journald files each line apart).
    assert all(line.startswith("<3>") for line in lines[3:]) and lines[-1] == "<3>ValueError: boom"
    assert re.fullmatch(STAMPED + r"INFO \[-\] hatoba.test: journal=True", file_lines[0])  # the file keeps its stamps


def test_a_stderr_that_is_not_the_journal_keeps_time_stamps(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    st = os.stat(tmp_path / "other")
    for journal in (None, f"{st.st_dev}:{st.st_ino}", "not:numbers"):  # unset, inherited but redirected, junk
        lines, _ = run(tmp_path, journal)
        assert re.fullmatch(STAMPED + r"INFO \[-\] hatoba.test: journal=False", lines[0]), (journal, lines[0])
        assert not any(line.startswith("<") for line in lines)
