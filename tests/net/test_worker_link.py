"""The first worker and the others: the line protocol, the sockets they share, the summed metrics."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from hatoba.config.schema import ListenerConfig
from hatoba.linebatch import LineBatch
from hatoba.metrics import Metrics, departed_counters
from hatoba.net.worker_procs import WorkerProcesses
from hatoba.net import worker_link as W
from hatoba.net.listen import bind_workers, close_all
from hatoba.queue.ids import new_queue_id
from hatoba.store.changes import NEW, MessagesChanged, NameChanged, SubscriptionChanged, in_folder


@pytest.mark.parametrize("message", [
    W.Ready(),
    W.Queued(new_queue_id()),
    W.Changed("alice@example.test", ()),
    W.Changed("alice@example.test", (in_folder("INBOX", "new", "flags"), NameChanged("Work", "Old work"),
                                     NameChanged("Fresh"), SubscriptionChanged("Lists/hatoba", False))),
    W.Changed("bob@example.test", (MessagesChanged("Fächer \"quoted\"\n", frozenset()),)),
    W.MetricsAsked(),
    W.MetricsText(b"# HELP x y\nx 1.0\n"),
    W.Reload(),
])
def test_every_message_survives_the_line(message):
    line = W.encode(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert W.decode(line) == message


@pytest.mark.parametrize("line", [
    b"", b"\n", b"hello\n", b"queued not-a-queue-id\n", b"queued ../../etc/passwd\n",
    b"changed {\n", b'changed {"u": 5, "c": []}\n', b'changed {"u": "a", "c": [["x", "n", 1]]}\n',
    b'changed {"u": "a", "c": [["m", "INBOX", [1]]]}\n', b'changed {"u": "a"}\n', b"metrics !!!\n",
    b'changed {"u": "a", "c": [["m", "INBOX"]]}\n',
])
def test_anything_else_is_no_message_and_no_exception(line):
    assert W.decode(line) is None


def _listener(name: str, port: int) -> ListenerConfig:
    return ListenerConfig(name=name, host="127.0.0.1", port=port, enabled=True)


def test_every_worker_shares_one_socket_per_port_and_http_is_the_first_workers_only():
    per_worker = bind_workers([_listener("smtp", 0), _listener("http", 0)], 3)
    try:
        assert len(per_worker) == 3
        shared = per_worker[0]["smtp"][0]
        assert all(sockets["smtp"] == [shared] for sockets in per_worker)  # one queue: load decides who takes
        assert not shared.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        assert "http" in per_worker[0] and all("http" not in s for s in per_worker[1:])
    finally:
        for sockets in per_worker:
            close_all(sockets)


def test_a_port_another_program_listens_on_fails_the_start_with_several_workers():
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # even one that would share
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(OSError) as caught:
            bind_workers([_listener("imap", 0), _listener("smtp", port)], 2)
        assert f"smtp on 127.0.0.1:{port}" in str(caught.value.strerror)


def test_one_scrape_adds_the_other_workers_session_counters_to_the_first_workers():
    first, second, third = Metrics(("smtp", "imaps")), Metrics(("smtp", "imaps")), Metrics(("smtp",))
    for _ in range(3):
        first.listener("smtp").connections.inc()
    second.listener("smtp").connections.inc()
    second.listener("imaps").open.inc()
    third.listener("smtp").connections.inc()
    third.login("imap", "failed")
    third.rejected("relay-denied")  # a label value the first worker has not seen
    second.delivery("local", False, "delivered", 1.0)  # not a session family: never summed

    text = first.render([second.render(), third.render(), b"\xff not metrics"]).decode()
    assert 'hatoba_connections_total{listener="smtp"} 5.0' in text
    assert 'hatoba_connections_open{listener="imaps"} 1.0' in text
    assert 'hatoba_logins_total{protocol="imap",result="failed"} 1.0' in text
    assert 'hatoba_smtp_messages_rejected_total{reason="relay-denied"} 1.0' in text
    assert 'hatoba_deliveries_total{kind="local",result="delivered",tls="no"} 0.0' in text
    assert first.render().decode().count('hatoba_connections_total{listener="smtp"} 3.0') == 1  # alone: its own


def test_counters_of_a_worker_that_died_stay_counted_and_its_open_connections_do_not():
    first, gone = Metrics(("smtp",)), Metrics(("smtp",))
    first.listener("smtp").connections.inc()
    gone.listener("smtp").connections.inc(4)
    gone.listener("smtp").open.inc(2)
    gone.login("imap", "failed")
    departed = departed_counters(gone.render())
    text = first.render([], departed).decode()
    assert 'hatoba_connections_total{listener="smtp"} 5.0' in text
    assert 'hatoba_logins_total{protocol="imap",result="failed"} 1.0' in text
    assert 'hatoba_connections_open{listener="smtp"} 0.0' in text


class _FakeStdin:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return False


class _FakeProcess:
    def __init__(self, lines: list[bytes]) -> None:
        self.stdin = _FakeStdin()
        self.stdout = asyncio.StreamReader()
        for line in lines:
            self.stdout.feed_data(line)
        self.stdout.feed_eof()
        self.returncode = None


def test_a_change_one_worker_reports_reaches_the_first_and_every_other_worker_but_itself():
    async def main() -> None:
        heard: list[W.Changed] = []
        workers = WorkerProcesses(Path("hatoba.toml"), [{}, {}, {}], log_level="INFO", log_fd=None,
                                  counts_fd=None, on_queued=lambda qid: None, on_changed=heard.append)
        line = W.encode(W.Changed("bob@example.test", (in_folder("INBOX", NEW),)))
        procs = {w.index: _FakeProcess([line] if w.index == 2 else []) for w in workers._workers}
        for worker in workers._workers:
            worker.proc = procs[worker.index]  # type: ignore[assignment]
        reporter = next(w for w in workers._workers if w.index == 2)
        await workers._read(reporter, procs[2])  # type: ignore[arg-type]
        await asyncio.sleep(0)  # written at the end of the loop's turn
        assert heard == [W.decode(line)]
        assert procs[1].stdin.written == [line] and procs[3].stdin.written == [line]
        assert procs[2].stdin.written == []

    asyncio.run(main())


def test_lines_of_one_turn_of_the_loop_go_in_one_write_and_none_without_a_pipe():
    async def main() -> None:
        pipe = _FakeStdin()
        current: list[_FakeStdin | None] = [pipe]
        batch = LineBatch(lambda: current[0])
        batch.add(b"a\n")
        batch.add(b"b\n")
        assert pipe.written == []
        await asyncio.sleep(0)
        assert pipe.written == [b"a\nb\n"]
        batch.add(b"c\n")
        batch.flush()  # at a stop: at once
        assert pipe.written == [b"a\nb\n", b"c\n"]
        await asyncio.sleep(0)
        assert pipe.written == [b"a\nb\n", b"c\n"]  # nothing twice
        current[0] = None  # the process is not running: dropped
        batch.add(b"d\n")
        await asyncio.sleep(0)
        current[0] = pipe
        batch.flush()
        assert pipe.written == [b"a\nb\n", b"c\n"]

    asyncio.run(main())
