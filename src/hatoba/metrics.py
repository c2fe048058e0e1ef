"""The server's metrics: one registry of `hatoba_` families, answered at GET /metrics.

Rules:
- A registry of our own, never prometheus_client's global one: two servers
  in one process (the tests) count apart, and no library adds families to it.
- Hot paths (accept, TLS, logins, accepted mail) do one inc() on a child
  bound in advance: per listener the children are made once (ListenerMetrics),
  never looked up by label on each connection. prometheus_client's own lock
  per value is the only lock taken.
- Deliveries happen in the delivery process. It reports each recipient's
  result on its stdout (queue/reports.py) and the server counts it here, so
  one scrape shows both processes and a crashed child resets no counter.
  The child's memory and CPU are read from /proc/<pid> at scrape time.
- The queue gauges are read from the spool at scrape time (one directory
  listing, no file opened), and render() runs in a thread, off the event loop.
- Several worker processes: each counts its own sessions; the first asks
  the others for their text at scrape time and adds their samples of the
  session families (SUMMED) to its own, so one scrape speaks for the whole
  server. Each worker's memory is hatoba_worker_resident_memory_bytes.
- Every label value comes from a fixed set (listener names, protocols,
  results, policy reasons), so no client can make new series.
- Names follow Prometheus' conventions (`_total` counters, base units) and,
  where they have one, the Postfix and Dovecot exporters' words.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client import disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from hatoba import __version__
from hatoba.config.schema import SMTP_LISTENERS
from hatoba.queue.reports import BOUNCE_KINDS, KINDS, RESULTS

# The text format generate_latest() writes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PROTOCOLS = ("smtp", "pop3", "imap", "web")
LOGIN_RESULTS = ("ok", "failed", "throttled", "busy", "refused", "abandoned")  # net/login.py
THROTTLE_SCOPES = ("pair", "address", "account")  # policy/auth_throttle.py
# Queue arrival to delivery: local deliveries take milliseconds, remote ones
# seconds, retried ones minutes to days (delivery.max_queue_lifetime is 5 days).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
                   4 * 3600, 86400, 5 * 86400)

# `_created` series double the answer and nobody graphs them (process-wide switch).
disable_created_metrics()


# Where a listener has no such thing (TLS on plain HTTP, mail accepted on IMAP):
# a counter in no registry, so that no series of zeros is shown for it.
_NOWHERE = Counter("hatoba_not_exported", "Never exported.", registry=None)
PLAIN_LISTENERS = ("http",)  # no TLS


class ListenerMetrics:
    """One listener's children, bound once (hot paths only call inc/dec)."""

    __slots__ = ("connections", "open", "refused", "tls_handshakes", "tls_failures", "accepted")

    def __init__(self, metrics: Metrics, name: str) -> None:
        self.connections = metrics.connections_total.labels(name)
        self.open = metrics.connections_open.labels(name)
        self.refused = metrics.connections_refused.labels(name)
        tls = name not in PLAIN_LISTENERS
        self.tls_handshakes = metrics.tls_handshakes.labels(name) if tls else _NOWHERE
        self.tls_failures = metrics.tls_failures.labels(name) if tls else _NOWHERE
        self.accepted = metrics.messages_accepted.labels(name) if name in SMTP_LISTENERS else _NOWHERE


class Metrics:
    """Every family; also the queue manager's DeliveryStats (queue/reports.py)."""

    def __init__(self, listeners: tuple[str, ...] = ()) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.connections_total = Counter(
            "hatoba_connections_total", "Connections accepted, per listener (refused ones too).",
            ["listener"], registry=r)
        self.connections_open = Gauge(
            "hatoba_connections_open", "Connections open now, per listener.", ["listener"], registry=r)
        self.connections_refused = Counter(
            "hatoba_connections_refused_total", "Connections closed at once by limits.max_connections*.",
            ["listener"], registry=r)
        self.tls_handshakes = Counter(
            "hatoba_tls_handshakes_total", "TLS handshakes completed (implicit TLS and STARTTLS/STLS).",
            ["listener"], registry=r)
        self.tls_failures = Counter(
            "hatoba_tls_handshake_failures_total", "TLS handshakes that failed or timed out.",
            ["listener"], registry=r)
        self.logins = Counter(
            "hatoba_logins_total", "Login attempts by protocol and result (net/login.py).",
            ["protocol", "result"], registry=r)
        self.throttled = Counter(
            "hatoba_login_throttled_total", "Login attempts the throttle refused, by the scope that refused.",
            ["scope"], registry=r)
        self.messages_accepted = Counter(
            "hatoba_smtp_messages_accepted_total", "Messages queued (answered 250 after DATA), per listener.",
            ["listener"], registry=r)
        self.messages_rejected = Counter(
            "hatoba_smtp_messages_rejected_total",
            "Senders, recipients and messages refused by policy, by the mail log's reason.",
            ["reason"], registry=r)
        self.deliveries = Counter(
            "hatoba_deliveries_total",
            "Delivery attempts' results per recipient (local: per mailbox); tls only for remote.",
            ["kind", "tls", "result"], registry=r)
        self.latency = Histogram(
            "hatoba_delivery_latency_seconds", "Queue arrival to delivery, per delivered recipient.",
            ["kind"], buckets=LATENCY_BUCKETS, registry=r)
        self.bounces = Counter(
            "hatoba_bounces_total", "Delivery status notifications queued (RFC 3464).", ["kind"], registry=r)
        self.delivery_restarts = Counter(
            "hatoba_delivery_process_restarts_total", "Times the delivery process died and was started again.",
            registry=r)
        self.http_responses = Counter(
            "hatoba_http_responses_total", "Answers of the http listener, by status code.", ["code"], registry=r)
        Info("hatoba_build", "The running version.", registry=r).info({"version": __version__})
        ProcessCollector(registry=r)  # process_*: this (serving) process
        self._listeners: dict[str, ListenerMetrics] = {}
        self._login_children = {(p, res): self.logins.labels(p, res) for p in PROTOCOLS for res in LOGIN_RESULTS}
        for scope in THROTTLE_SCOPES:
            self.throttled.labels(scope)
        self._delivery_children = {
            (kind, tls, result): self.deliveries.labels(kind, "yes" if tls else "no", result)
            for kind in KINDS for tls in (False, True) for result in RESULTS
            if kind == "remote" or not tls
        }
        self._latency_children = {kind: self.latency.labels(kind) for kind in KINDS}
        for kind in BOUNCE_KINDS:
            self.bounces.labels(kind)
        for name in listeners:
            self.listener(name)

    def listener(self, name: str) -> ListenerMetrics:
        found = self._listeners.get(name)
        if found is None:
            found = self._listeners[name] = ListenerMetrics(self, name)
        return found

    def watch_delivery_process(self, pid: Callable[[], int | None], alive: Callable[[], bool]) -> None:
        """The delivery process: hatoba_delivery_process_* (memory, CPU, descriptors) from /proc, and up."""
        self.registry.register(_ChildProcess(pid, alive))

    def watch_queue(self, census: Callable[[], tuple[int, float | None]], clock: Callable[[], float]) -> None:
        """hatoba_queue_messages and the oldest message's age, from `census()` (queue/spool.py) at scrape time."""
        self.registry.register(_Queue(census, clock))

    # -- counting -----------------------------------------------------------------------

    def login(self, protocol: str, result: str) -> None:
        child = self._login_children.get((protocol, result))
        if child is not None:
            child.inc()

    def login_throttled(self, scope: str) -> None:
        if scope in THROTTLE_SCOPES:
            self.throttled.labels(scope).inc()

    def rejected(self, reason: str) -> None:
        self.messages_rejected.labels(reason).inc()

    def delivery(self, kind: str, tls: bool, result: str, seconds: float) -> None:
        child = self._delivery_children.get((kind, tls and kind == "remote", result))
        if child is None:
            return
        child.inc()
        if result == "delivered":
            self._latency_children[kind].observe(seconds)

    def bounce(self, kind: str) -> None:
        if kind in BOUNCE_KINDS:
            self.bounces.labels(kind).inc()

    def http_response(self, code: int) -> None:
        self.http_responses.labels(str(code)).inc()

    # -- the answer ---------------------------------------------------------------------

    def watch_workers(self, pids: Callable[[], dict[int, int]]) -> None:
        """hatoba_worker_resident_memory_bytes per worker process (index -> pid), from /proc."""
        self.registry.register(_ResidentMemory("hatoba_worker_resident_memory_bytes",
                                               "Resident memory of each process that serves connections.",
                                               "worker", pids))

    def watch_delivery_parts(self, pids: Callable[[], dict[int, int]]) -> None:
        """hatoba_delivery_resident_memory_bytes per delivery process (part -> pid), from /proc:
        hatoba_delivery_process_* is the first part's alone."""
        self.registry.register(_ResidentMemory("hatoba_delivery_resident_memory_bytes",
                                               "Resident memory of each delivery process, by its part of the queue.",
                                               "part", pids))

    def render(self, others: Sequence[bytes] = (), departed: Mapping[SampleKey, float] | None = None) -> bytes:
        """The text exposition format, with the SUMMED samples of `others` (other
        workers' render()) and the `departed` counters (departed_counters() of
        worker processes that died) added. Reads /proc and the queue folder: call
        it in a thread."""
        if not others and not departed:
            return generate_latest(self.registry)
        extra = _samples_of(others)
        for key, value in (departed or {}).items():
            extra[key] = extra.get(key, 0.0) + value
        return generate_latest(_Summed(self.registry, extra))


# The families every worker counts for its own sessions.
SUMMED = frozenset({
    "hatoba_connections", "hatoba_connections_open", "hatoba_connections_refused", "hatoba_tls_handshakes",
    "hatoba_tls_handshake_failures", "hatoba_logins", "hatoba_login_throttled", "hatoba_smtp_messages_accepted",
    "hatoba_smtp_messages_rejected", "hatoba_http_responses",
})
# Those that only grow: what a worker process counted in them stays counted after it
# died (a total that went down would read as a counter reset to Prometheus).
KEPT_AFTER_EXIT = SUMMED - {"hatoba_connections_open"}

SampleKey = tuple[str, tuple[tuple[str, str], ...]]


class OtherWorkers(NamedTuple):
    """What a scrape adds from the other worker processes (net/worker_procs.py)."""

    texts: list[bytes]  # each one's render(): its last answer if it did not answer in time
    departed: dict[SampleKey, float]  # departed_counters() of the processes that died, added up


def departed_counters(text: bytes) -> dict[SampleKey, float]:
    """The counters in the last render() of a worker process that died, to keep adding."""
    return _samples_of([text], KEPT_AFTER_EXIT)


def _samples_of(texts: Sequence[bytes], names: frozenset[str] = SUMMED) -> dict[SampleKey, float]:
    """The samples of the families `names` in `texts`, added up by name and labels."""
    summed: dict[SampleKey, float] = {}
    for text in texts:
        try:
            families = list(text_string_to_metric_families(text.decode("utf-8")))
        except (ValueError, UnicodeDecodeError):
            continue  # a worker's broken answer: its figures are missing, not wrong
        for family in families:
            if family.name not in names:
                continue
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                summed[key] = summed.get(key, 0.0) + sample.value
    return summed


class _Summed:
    """A registry's families with other workers' samples added (generate_latest reads collect())."""

    def __init__(self, registry: CollectorRegistry, extra: dict[SampleKey, float]) -> None:
        self._registry = registry
        self._extra = extra

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            if family.name in SUMMED:
                seen = set()
                samples = []
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    seen.add(key)
                    samples.append(sample._replace(value=sample.value + self._extra.get(key, 0.0)))
                names = {s.name for s in family.samples} or {family.name + suffix for suffix in ("", "_total")}
                for key, value in self._extra.items():  # label values only other workers have seen
                    if key not in seen and key[0] in names:
                        samples.append(Sample(key[0], dict(key[1]), value))
                family.samples = samples
            yield family


class _ResidentMemory(Collector):
    """One gauge of resident memory per process of a kind, labelled by its number."""

    def __init__(self, name: str, documentation: str, label: str, pids: Callable[[], dict[int, int]]) -> None:
        self._name, self._documentation, self._label = name, documentation, label
        self._pids = pids

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self._name, self._documentation, labels=[self._label])
        page = os.sysconf("SC_PAGE_SIZE")
        for index, pid in sorted(self._pids().items()):
            try:
                with open(f"/proc/{pid}/statm", encoding="ascii") as statm:
                    resident = int(statm.read().split()[1]) * page
            except (OSError, ValueError, IndexError):
                continue  # ended meanwhile
            family.add_metric([str(index)], float(resident))
        yield family

    def describe(self) -> Iterator[Metric]:
        return iter(())


class _ChildProcess(Collector):
    def __init__(self, pid: Callable[[], int | None], alive: Callable[[], bool]) -> None:
        self._pid = pid
        self._alive = alive
        # registry=None: read through this collector only, while the child runs.
        self._proc = ProcessCollector(namespace="hatoba_delivery", pid=self._current, registry=None)
        self._seen: int | None = None

    def _current(self) -> int:
        assert self._seen is not None
        return self._seen

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("hatoba_delivery_process_up",
                                "1 while the delivery processes run and are ready (or rest, with nothing to deliver).",
                                value=1.0 if self._alive() else 0.0)
        self._seen = self._pid()
        if self._seen is not None:
            yield from self._proc.collect()

    def describe(self) -> Iterator[Metric]:
        return iter(())  # its families come and go with the child


class _Queue(Collector):
    def __init__(self, census: Callable[[], tuple[int, float | None]], clock: Callable[[], float]) -> None:
        self._census = census
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        try:
            count, oldest = self._census()
        except OSError:
            return  # the queue folder went missing: no figure rather than a wrong one
        yield GaugeMetricFamily("hatoba_queue_messages", "Messages in the queue (held ones included).",
                                value=float(count))
        age = max(0.0, self._clock() - oldest) if oldest is not None else 0.0
        yield GaugeMetricFamily("hatoba_queue_oldest_message_age_seconds",
                                "Seconds since the oldest queued message arrived (0: the queue is empty).",
                                value=age)

    def describe(self) -> Iterator[Metric]:
        return iter(())
