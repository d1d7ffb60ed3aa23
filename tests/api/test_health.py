"""``/healthz``, ``/readyz`` and ``/metrics``: no key, the Prometheus text format, and the
readiness and metrics a server passes in (issue #6 "Observability")."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from proxy.api.app import close_app, create_app
from proxy.api.deps import ConnectionPool
from tests.api.conftest import Api

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def test_healthz_needs_no_key_and_reads_the_database(api: Api) -> None:
    response = api.client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_without_a_probe_is_ready_while_the_database_answers(api: Api) -> None:
    response = api.client.get("/readyz")
    assert (response.status_code, response.json()) == (200, {"ready": True})


def test_a_broken_database_makes_healthz_and_readyz_answer_503(tmp_path: Path) -> None:
    app = create_app(tmp_path / "ok.db")
    try:
        with TestClient(app) as client:
            app.state.db_pool.close()
            # A pool on a file that cannot be opened: what a vanished volume looks like.
            app.state.db_pool = ConnectionPool(tmp_path / "no-such-directory" / "gone.db")
            health = client.get("/healthz")
            ready = client.get("/readyz")
    finally:
        close_app(app)
    assert health.status_code == 503 and health.json()["status"] == "error"
    assert ready.status_code == 503
    assert ready.json()["ready"] is False and ready.json()["reason"].startswith("database:")


def test_readyz_reports_the_servers_reason(tmp_path: Path) -> None:
    state = {"ready": (False, "draining: not taking new calls")}
    app = create_app(tmp_path / "r.db", ready=lambda: state["ready"])
    try:
        with TestClient(app) as client:
            draining = client.get("/readyz")
            state["ready"] = (True, "ok")
            serving = client.get("/readyz")
    finally:
        close_app(app)
    assert draining.status_code == 503
    assert draining.json() == {"ready": False, "reason": "draining: not taking new calls"}
    assert (serving.status_code, serving.json()) == (200, {"ready": True})


def test_a_failing_probe_is_not_ready_rather_than_an_error(tmp_path: Path) -> None:
    def probe() -> tuple[bool, str]:
        raise sqlite3.OperationalError("disk I/O error")

    app = create_app(tmp_path / "r.db", ready=probe)
    try:
        with TestClient(app) as client:
            response = client.get("/readyz")
    finally:
        close_app(app)
    assert response.status_code == 503
    assert "disk I/O error" in response.json()["reason"]


def test_metrics_serve_what_the_server_renders(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    calls = Gauge("privproxy_active_calls", "Calls in progress.", registry=registry)
    calls.set(3)
    app = create_app(tmp_path / "m.db", metrics=lambda: generate_latest(registry))
    try:
        with TestClient(app) as client:
            first = client.get("/metrics")
            calls.set(0)
            second = client.get("/metrics")
    finally:
        close_app(app)
    assert first.status_code == 200
    assert first.headers["content-type"] == PROMETHEUS_TEXT
    assert "privproxy_active_calls 3.0" in first.text
    assert "privproxy_active_calls 0.0" in second.text  # rendered per scrape, not cached


def test_metrics_default_to_the_process_registry(api: Api) -> None:
    response = api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == PROMETHEUS_TEXT
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert "python_info" in names  # the default registry's platform collector


def test_observability_is_in_the_openapi_document_and_needs_no_key(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    for path in ("/healthz", "/readyz", "/metrics"):
        assert "get" in paths[path]
        assert api.client.get(path).status_code == 200
