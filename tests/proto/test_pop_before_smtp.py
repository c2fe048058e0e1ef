from pathlib import Path

import pytest
from test_policy import TableDirectory, addr

from hatoba.policy.pop_before_smtp import PopBeforeSmtp, WindowStoreError


class Windows:
    """A WindowStore that holds its windows in a dict (the real one is SQLite: tests/store)."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, float]] = {}
        self.broken = False
        self.pruned: list[float] = []
        self.looked: list[str] = []

    def open_window(self, address: str, login: str, until: float) -> None:
        if self.broken:
            raise WindowStoreError("disk I/O error")
        self.rows[address] = (login, until)

    def window(self, address: str) -> tuple[str, float] | None:
        self.looked.append(address)
        if self.broken:
            raise WindowStoreError("disk I/O error")
        return self.rows.get(address)

    def prune(self, before: float) -> None:
        self.pruned.append(before)
        self.rows = {a: w for a, w in self.rows.items() if w[1] >= before}

    def close(self) -> None:
        pass


def test_window_opens_and_closes():
    now = [1000.0]
    p = PopBeforeSmtp(5, Windows(), clock=lambda: now[0])
    assert p.login_for("192.0.2.1") is None
    p.record_login("192.0.2.1", "bob@example.test")
    assert p.login_for("192.0.2.1") == "bob@example.test"
    assert p.login_for("192.0.2.2") is None
    now[0] += 299
    assert p.login_for("192.0.2.1") == "bob@example.test"
    now[0] += 2
    assert p.login_for("192.0.2.1") is None


def test_a_window_ending_too_far_ahead_is_closed():
    """The clock set back (or the window shortened since): no window lasts longer than configured."""
    windows = Windows()
    now = [1000.0]
    p = PopBeforeSmtp(5, windows, clock=lambda: now[0])
    p.record_login("192.0.2.1", "bob@example.test")
    now[0] -= 3600
    assert p.login_for("192.0.2.1") is None
    assert PopBeforeSmtp(1, windows, clock=lambda: 1000.0).login_for("192.0.2.1") is None


def test_ended_windows_are_pruned_now_and_then():
    windows = Windows()
    now = [1000.0]
    p = PopBeforeSmtp(5, windows, clock=lambda: now[0])
    p.record_login("192.0.2.1", "bob@example.test")
    now[0] += 400
    p.record_login("192.0.2.2", "alice@example.test")
    assert windows.pruned == [1000.0]  # not again within PRUNE_EVERY
    now[0] += 300
    p.record_login("192.0.2.3", "carol@example.test")
    assert windows.pruned == [1000.0, 1700.0]
    assert set(windows.rows) == {"192.0.2.2", "192.0.2.3"}


def test_a_store_that_cannot_be_written_does_not_stop_the_login(caplog):
    windows = Windows()
    windows.broken = True
    p = PopBeforeSmtp(5, windows)
    p.record_login("192.0.2.1", "bob@example.test")
    assert "cannot record the login of bob@example.test" in caplog.text
    windows.broken = False
    assert p.login_for("192.0.2.1") is None


def test_off_records_nothing_and_opens_no_database(tmp_path: Path):
    p = PopBeforeSmtp.open(0, tmp_path / "nothing.sqlite3")
    p.record_login("192.0.2.1", "bob@example.test")
    assert not p.enabled and p.login_for("192.0.2.1") is None
    assert p.store is None and not any(tmp_path.iterdir())
    p.close()


def test_a_window_opens_relaying_on_port_25_and_mail_to_local_users_looks_up_nothing():
    windows = Windows()
    p = PopBeforeSmtp(5, windows, clock=lambda: 1000.0)
    directory = TableDirectory()
    p.record_login("192.0.2.1", "alice@example.test")
    decision, login = p.check_recipient(addr("<alice@example.test>"), "192.0.2.1", relay_allowed=False,
                                        directory=directory)
    assert decision.accept and login is None and windows.looked == []  # local: no look-up
    decision, login = p.check_recipient(addr("<x@elsewhere.example>"), "192.0.2.1", relay_allowed=False,
                                        directory=directory)
    assert decision.accept and decision.log_reason == "relay" and login == "alice@example.test"
    decision, login = p.check_recipient(addr("<x@elsewhere.example>"), "192.0.2.9", relay_allowed=False,
                                        directory=directory)
    assert not decision.accept and decision.reply.code == 554 and login is None
    looked = len(windows.looked)
    decision, login = p.check_recipient(addr("<x@elsewhere.example>"), "192.0.2.1", relay_allowed=False,
                                        directory=directory, windows_apply=False)  # submission: AUTH only
    assert not decision.accept and len(windows.looked) == looked
    off = PopBeforeSmtp(0)
    decision, login = off.check_recipient(addr("<x@elsewhere.example>"), "192.0.2.1", relay_allowed=False,
                                          directory=directory)
    assert not decision.accept and login is None


def test_windows_that_cannot_be_read_raise_for_a_temporary_error():
    windows = Windows()
    p = PopBeforeSmtp(5, windows, clock=lambda: 1000.0)
    windows.broken = True
    with pytest.raises(WindowStoreError):
        p.check_recipient(addr("<x@elsewhere.example>"), "192.0.2.1", relay_allowed=False,
                          directory=TableDirectory())
