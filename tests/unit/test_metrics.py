"""Prometheus exposition of a Server's state (proxy/metrics.py)."""

from __future__ import annotations

from pathlib import Path

from proxy.cdr.writer import CdrWriter
from proxy.config import load_config
from proxy.metrics import LatencyHistogram, registry_for, render
from proxy.server import Server
from proxy.sip.transaction import Address

OPTIONS = (
    b"OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-m1\r\n"
    b"From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: m1@x\r\n"
    b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


def test_histogram_buckets_are_cumulative() -> None:
    histogram = LatencyHistogram((0.001, 0.01))
    for seconds in (0.0005, 0.002, 0.003, 0.5):
        histogram.observe(seconds)
    assert histogram.cumulative() == [("0.001", 1.0), ("0.01", 3.0), ("+Inf", 4.0)]
    assert abs(histogram.total - 0.5055) < 1e-9


def test_metrics_read_the_server(tmp_path: Path) -> None:
    server = Server(load_config(None, {"db": str(tmp_path / "m.db"), "api": "off"}))
    server.writer = CdrWriter(tmp_path / "m.db")
    outputs = server.core.receive(OPTIONS, Address("udp", "127.0.0.1", 5070), 1000.0)
    assert outputs
    server.counters["rejected_400"] += 2
    server.counters["calls_answered"] += 3
    server.counters["reject_no_binding"] += 1
    server.lookup_latency.observe(0.00002)
    server.tcp.inbound_total, server.tcp.refused = 3, 7
    text = render(registry_for(server)).decode()
    assert "privproxy_active_calls 0.0" in text
    assert 'privproxy_calls_total{disposition="answered"} 3.0' in text
    assert 'privproxy_rejects_total{reason="no_binding"} 1.0' in text
    assert 'privproxy_sip_errors_total{status="400"} 2.0' in text
    assert 'privproxy_transactions{kind="server"} 0.0' in text  # OPTIONS is answered statelessly
    assert 'privproxy_binding_lookup_seconds_bucket{le="2.5e-05"} 1.0' in text
    assert "privproxy_cdr_queue_depth 0.0" in text
    assert "privproxy_retransmissions_total 0.0" in text
    assert "privproxy_tcp_inbound_connections 3.0" in text
    assert "privproxy_tcp_refused_connections_total 7.0" in text
