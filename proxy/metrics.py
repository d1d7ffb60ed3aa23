"""Prometheus metrics of a running ``privproxy serve`` (issue #6 "Observability").

Nothing is counted twice on the call path: the collector reads the server's own counters
and the core's tables when Prometheus scrapes, so the hot path pays only for the plain
integer increments it already does. Names follow the Prometheus conventions
(``_total`` counters, base units: seconds).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

if TYPE_CHECKING:
    from proxy.server import Server

#: Upper bounds (seconds) of the binding-lookup latency buckets.
LOOKUP_BUCKETS: Final = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05,
)  # fmt: skip


class LatencyHistogram:
    """A histogram without locks or objects per observation: one bisect and two adds
    (``prometheus_client.Histogram.observe`` costs a lock per bucket)."""

    __slots__ = ("buckets", "counts", "total")

    def __init__(self, buckets: tuple[float, ...] = LOOKUP_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        running = 0
        out: list[tuple[str, float]] = []
        for bound, count in zip((*map(str, self.buckets), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out


class ServerCollector:
    """Reads one ``Server`` at scrape time."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        server = self.server
        core = server.core
        counters = server.counters
        yield GaugeMetricFamily(
            "privproxy_active_calls", "Calls in progress.", value=core.active_calls
        )
        calls = CounterMetricFamily(
            "privproxy_calls", "Finished call attempts by disposition.", labels=["disposition"]
        )
        rejects = CounterMetricFamily(
            "privproxy_rejects", "Refused call attempts by reason.", labels=["reason"]
        )
        errors = CounterMetricFamily(
            "privproxy_sip_errors",
            "Malformed messages answered or dropped, by the status they imply.",
            labels=["status"],
        )
        for name, value in sorted(counters.items()):
            if name.startswith("calls_"):
                calls.add_metric([name.removeprefix("calls_")], value)
            elif name.startswith("reject_"):
                rejects.add_metric([name.removeprefix("reject_")], value)
            elif name.startswith("rejected_"):
                errors.add_metric([name.removeprefix("rejected_")], value)
        yield calls
        yield rejects
        yield errors
        transactions = GaugeMetricFamily(
            "privproxy_transactions", "Live SIP transactions.", labels=["kind"]
        )
        transactions.add_metric(["client"], core.layer.client_count)
        transactions.add_metric(["server"], core.layer.server_count)
        yield transactions
        yield GaugeMetricFamily(
            "privproxy_dialogs", "Live dialogs (call legs).", value=len(core.dialogs)
        )
        yield CounterMetricFamily(
            "privproxy_retransmissions",
            "Requests and responses retransmitted by the transaction layer.",
            value=core.layer.retransmissions,
        )
        yield CounterMetricFamily(
            "privproxy_leak_guard_blocks",
            "Outgoing messages the leak guard blocked.",
            value=counters["leak_blocked"],
        )
        yield CounterMetricFamily(
            "privproxy_messages_received", "SIP messages received.", value=counters["received"]
        )
        yield CounterMetricFamily(
            "privproxy_internal_errors",
            "Messages or timers whose handling raised (and was contained).",
            value=counters["internal_errors"],
        )
        yield GaugeMetricFamily(
            "privproxy_tcp_inbound_connections",
            "Open TCP connections peers made to us.",
            value=server.tcp.inbound_total,
        )
        yield CounterMetricFamily(
            "privproxy_tcp_refused_connections",
            "TCP connections closed on accept for going over tcp_max_per_host or tcp_max_inbound.",
            value=server.tcp.refused,
        )
        yield GaugeMetricFamily(
            "privproxy_cdr_queue_depth",
            "Call records submitted and not yet committed.",
            value=server.writer.queued,
        )
        yield CounterMetricFamily(
            "privproxy_cdr_written", "Call records committed.", value=server.writer.written
        )
        histogram = server.lookup_latency
        yield HistogramMetricFamily(
            "privproxy_binding_lookup_seconds",
            "Binding lookup latency, (X, caller) in the store.",
            buckets=histogram.cumulative(),
            sum_value=histogram.total,
        )


def registry_for(server: Server) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(server))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format (``text/plain; version=0.0.4``)."""
    return generate_latest(registry)
