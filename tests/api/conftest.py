"""An API on a temporary database file, a fake clock, and keys for two tenants and an
operator."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bindings.keys import create_api_key
from proxy.api.app import close_app, create_app
from proxy.db import open_database

T0 = 1_800_000_000.0
A = "+8613800138000"
B = "+8613900139000"
C = "+8613700137000"
D = "+8618600186000"
X1 = "700123456780001"
X2 = "700123456780002"
X3 = "700123456780003"


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Api:
    client: TestClient
    clock: FakeClock
    db: Path
    admin: dict[str, str]
    acme: dict[str, str]
    globex: dict[str, str]

    def add_pool(self, *numbers: str, tenant: str | None = None, city: str | None = None) -> None:
        body: dict[str, object] = {"numbers": list(numbers)}
        if tenant is not None:
            body["tenant"] = tenant
        if city is not None:
            body["city"] = city
        response = self.client.post("/v1/pool", json=body, headers=self.admin)
        assert response.status_code == 201, response.text

    def bind(self, headers: dict[str, str], **body: object) -> dict[str, object]:
        response = self.client.post("/v1/bindings", json=body, headers=headers)
        assert response.status_code == 201, response.text
        created: dict[str, object] = response.json()
        return created


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_keys(db: Path) -> tuple[str, str, str]:
    conn = open_database(db)
    _, admin = create_api_key(conn, tenant="operator", admin=True, now=T0, actor="cli")
    _, acme = create_api_key(conn, tenant="acme", admin=False, now=T0, actor="cli")
    _, globex = create_api_key(conn, tenant="globex", admin=False, now=T0, actor="cli")
    conn.close()
    return admin, acme, globex


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    db = tmp_path / "api.db"
    clock = FakeClock()
    app = create_app(db, clock=clock, quarantine_s=3600)
    admin, acme, globex = make_keys(db)
    with TestClient(app) as client:
        yield Api(client, clock, db, bearer(admin), bearer(acme), bearer(globex))
    close_app(app)
