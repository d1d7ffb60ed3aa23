"""``GET /v1/cdrs`` and ``/v1/cdrs/stats``: tenant scope, masking, pages, filters."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from proxy.api.cdrs import router
from proxy.api.deps import Principal, database, principal
from proxy.db import connect
from tests.unit.test_cdr_chain import REAL_NUMBER, fill, sample


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, list[Principal]]]:
    path = tmp_path / "api.db"
    fill(path, sample())
    app = FastAPI()
    app.include_router(router)
    who = [Principal("key-ride", "ride", admin=False)]

    def conn() -> Iterator[sqlite3.Connection]:
        connection = connect(path, check_same_thread=False)
        try:
            yield connection
        finally:
            connection.close()

    app.dependency_overrides[database] = conn
    app.dependency_overrides[principal] = lambda: who[0]
    yield TestClient(app), who


def test_a_tenant_sees_its_own_records_masked(client: tuple[TestClient, list[Principal]]) -> None:
    http, _ = client
    response = http.get("/v1/cdrs")
    assert response.status_code == 200
    body = response.json()
    assert {item["tenant"] for item in body["items"]} == {"ride"}
    assert len(body["items"]) == 13 and body["next_cursor"] is None
    assert not REAL_NUMBER.search(response.text)
    first = body["items"][0]
    assert first["caller"] == "138****8000" and first["invite_at"].endswith("Z")
    assert first["a_call_id"].startswith("138****8000")
    assert "salt" not in first and "hash" not in first
    assert http.get("/v1/cdrs", params={"tenant": "default"}).status_code == 403


def test_an_admin_sees_every_tenant_and_pages_through(
    client: tuple[TestClient, list[Principal]],
) -> None:
    http, who = client
    who[0] = Principal("key-op", "operator", admin=True)
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 6}
        if cursor is not None:
            params["cursor"] = cursor
        body = http.get("/v1/cdrs", params=params).json()
        seen += [item["seq"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(range(20, 0, -1))
    rejected = http.get("/v1/cdrs", params={"tenant": "default"}).json()["items"]
    assert len(rejected) == 7 and {r["disposition"] for r in rejected} == {"rejected"}


def test_filters(client: tuple[TestClient, list[Principal]]) -> None:
    http, who = client
    who[0] = Principal("key-op", "operator", admin=True)
    items = http.get(
        "/v1/cdrs",
        params={"since": "2027-01-15T08:00:03Z", "until": "2027-01-15T08:00:09Z"},
    ).json()["items"]
    assert [i["seq"] for i in items] == [9, 8, 7, 6, 5, 4]
    by_reason = http.get("/v1/cdrs", params={"reject_reason": "no_binding"}).json()["items"]
    assert len(by_reason) == 7
    assert http.get("/v1/cdrs", params={"disposition": "nonsense"}).status_code == 422
    assert http.get("/v1/cdrs", params={"since": "soon"}).status_code == 422
    assert http.get("/v1/cdrs", params={"limit": 5000}).status_code == 422


def test_stats(client: tuple[TestClient, list[Principal]]) -> None:
    http, who = client
    stats = http.get("/v1/cdrs/stats").json()
    assert (stats["calls"], stats["answered"], stats["asr"], stats["acd_s"]) == (13, 13, 1.0, 60.0)
    who[0] = Principal("key-op", "operator", admin=True)
    stats = http.get("/v1/cdrs/stats").json()
    assert stats["calls"] == 20 and stats["rejects_by_reason"] == {"no_binding": 7}
    assert stats["asr"] == 0.65 and stats["asr_routed"] == 1.0
    assert [d["day"] for d in stats["per_day"]] == ["2027-01-15"]


def test_through_the_real_app_with_api_keys(tmp_path: Path) -> None:
    from bindings.keys import create_api_key
    from proxy.api.app import create_app
    from proxy.db import open_database

    path = tmp_path / "app.db"
    fill(path, sample())
    conn = open_database(path)
    _, ride_token = create_api_key(conn, tenant="ride", admin=False, now=0.0, actor="test")
    _, admin_token = create_api_key(conn, tenant="op", admin=True, now=0.0, actor="test")
    conn.close()
    http = TestClient(create_app(path))
    assert http.get("/v1/cdrs").status_code == 401
    ride = http.get("/v1/cdrs", headers={"Authorization": f"Bearer {ride_token}"})
    assert ride.status_code == 200 and len(ride.json()["items"]) == 13
    assert not REAL_NUMBER.search(ride.text)
    stats = http.get("/v1/cdrs/stats", headers={"Authorization": f"Bearer {admin_token}"})
    assert stats.json()["calls"] == 20
    assert "/v1/cdrs" in http.get("/openapi.json").json()["paths"]
