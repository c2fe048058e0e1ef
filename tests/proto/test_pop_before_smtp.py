from hatoba.policy.pop_before_smtp import PopBeforeSmtp


def test_window_opens_and_closes():
    now = [1000.0]
    p = PopBeforeSmtp(5, clock=lambda: now[0])
    assert p.login_for("192.0.2.1") is None
    p.record_login("192.0.2.1", "bob@example.test")
    assert p.login_for("192.0.2.1") == "bob@example.test"
    assert p.login_for("192.0.2.2") is None
    now[0] += 299
    assert p.login_for("192.0.2.1") == "bob@example.test"
    now[0] += 2
    assert p.login_for("192.0.2.1") is None


def test_off_records_nothing():
    p = PopBeforeSmtp(0)
    p.record_login("192.0.2.1", "bob@example.test")
    assert not p.enabled and p.login_for("192.0.2.1") is None
