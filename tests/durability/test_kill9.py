"""kill -9 while clients send: every message that got 250 is delivered exactly once."""

import collections
import email
import smtplib
import threading
import time

from support.harness import ServerProcess, free_port_offset, make_home

CLIENTS = 6


def sender(port: int, client: int, acked: list[str], stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=5) as c:
                c.ehlo("crash-test")
                while not stop.is_set():
                    n += 1
                    mid = f"<c{client}-m{n}@crash.test>"
                    body = (f"Message-ID: {mid}\r\nSubject: crash {client} {n}\r\n\r\n" + "x" * 2000 + "\r\n").encode()
                    c.sendmail("someone@elsewhere.example", ["bob@example.test", "team@example.test"], body)
                    acked.append(mid)  # only after the 250
        except (smtplib.SMTPException, OSError):
            time.sleep(0.05)  # the server is gone; try again until told to stop


def delivered_ids(home, address: str) -> collections.Counter:
    return collections.Counter(email.message_from_bytes(m)["Message-ID"] for m in home.messages(address))


def test_kill9_loses_nothing_acknowledged(tmp_path):
    offset = free_port_offset()
    home = make_home(tmp_path / "h", port_offset=offset)
    acked: list[str] = []
    rounds = 3
    for round_ in range(rounds):
        proc = ServerProcess(home, offset).start()
        stop = threading.Event()
        threads = [threading.Thread(target=sender, args=(proc.port(25), i + 100 * round_, acked, stop))
                   for i in range(CLIENTS)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        proc.kill9()  # in the middle of sessions, commits and deliveries
        stop.set()
        for t in threads:
            t.join(15)
        proc._log.close()
    assert len(acked) > 50, "the test did not get enough messages acknowledged to mean anything"
    # Restart and let the queue drain.
    users = ("bob@example.test", "alice@example.test", "carol@example.test")
    with ServerProcess(home, offset):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            counts = [delivered_ids(home, u) for u in users]
            if all(c[m] >= 1 for c in counts for m in acked):
                break
            time.sleep(0.2)
        time.sleep(1.0)  # anything delivered twice would show up now
    for user in users:
        got = delivered_ids(home, user)
        missing = [m for m in acked if got[m] == 0]
        dupes = {m: c for m, c in got.items() if c > 1}
        assert missing == [], f"{user}: {len(missing)} acknowledged messages lost"
        assert dupes == {}, f"{user}: delivered more than once: {list(dupes)[:5]}"
