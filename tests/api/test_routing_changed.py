"""Under ``serve`` the API and routing share a process: a release, a binding change or a
blocklist change made through the API reaches routing from memory (bindings/live.py) at
once, not at the next periodic refresh."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bindings.live import LiveBindings
from bindings.sqlite_store import SqliteBindingStore
from proxy.api.app import close_app, create_app
from tests.api.conftest import T0, X1, A, B, FakeClock, bearer, make_keys

LONG_REFRESH_S = 3600.0  # no periodic refresh during a test: only ``changed`` can help
#: the API client, an admin key's headers, the proxy's live bindings and the binding's id
Served = tuple[TestClient, dict[str, str], LiveBindings, str]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    db = tmp_path / "served.db"
    store = SqliteBindingStore.open(db)
    binding = store.add(A, B, X1, now=T0)
    live = LiveBindings(store, refresh_s=LONG_REFRESH_S)
    live.load(T0)
    app = create_app(db, clock=FakeClock(), routing_changed=live.changed)
    admin, _, _ = make_keys(db)
    with TestClient(app) as client:
        yield client, bearer(admin), live, binding.id
    close_app(app)
    store.close()


def test_a_release_through_the_api_stops_routing_at_once(served: Served) -> None:
    client, admin, live, binding_id = served
    assert live.route_for_call(X1, A, T0 + 1)[0] is not None
    assert client.delete(f"/v1/bindings/{binding_id}", headers=admin).status_code == 200
    found, _ = live.route_for_call(X1, A, T0 + 2)
    assert found is not None and found.status == "released"


def test_a_narrower_direction_through_the_api_applies_at_once(served: Served) -> None:
    client, admin, live, binding_id = served
    response = client.patch(
        f"/v1/bindings/{binding_id}", json={"direction": "a_to_b"}, headers=admin
    )
    assert response.status_code == 200, response.text
    found, _ = live.route_for_call(X1, B, T0 + 1)
    assert found is not None and found.direction == "a_to_b"


def test_blocklist_changes_through_the_api_apply_at_once(served: Served) -> None:
    client, admin, live, _ = served
    response = client.post("/v1/blocklist", json={"number": B, "reason": "abuse"}, headers=admin)
    assert response.status_code == 201, response.text
    assert live.route_for_call(X1, A, T0 + 1)[1] is True
    assert client.delete(f"/v1/blocklist/{B}", headers=admin).status_code == 204
    assert live.route_for_call(X1, A, T0 + 2)[1] is False
