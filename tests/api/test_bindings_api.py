"""``/v1/bindings`` through FastAPI's test client: create, idempotency, errors, tenants,
expiry, quarantine, changes and release, listings, audit."""

from __future__ import annotations

import json

import pytest

from proxy import audit
from proxy.db import open_database
from tests.api.conftest import T0, X1, X2, X3, A, Api, B, C, D


def test_create_allocates_from_the_pool_and_answers_the_whole_binding(api: Api) -> None:
    api.add_pool(X1, X2)
    created = api.bind(
        api.acme,
        a="138 0013 8000",
        b="+86 139-0013-9000",
        ttl_s=600,
        direction="a_to_b",
        max_call_s=300,
        order_id="o-1",
        scenario="delivery",
    )
    assert created["id"].startswith("b_")  # type: ignore[union-attr]
    assert (created["a"], created["b"], created["x"]) == (A, B, X1)
    assert created["tenant"] == "acme" and created["status"] == "active"
    assert created["expires_at"] == "2027-01-15T08:10:00Z"
    assert (created["direction"], created["max_call_s"]) == ("a_to_b", 300)
    assert (created["order_id"], created["scenario"]) == ("o-1", "delivery")
    fetched = api.client.get(f"/v1/bindings/{created['id']}", headers=api.acme)
    assert fetched.status_code == 200 and fetched.json() == created


def test_fast_path_and_fastapi_route_answer_alike(api: Api) -> None:
    # application/json takes the fast path (CreateFastPath); another JSON media type goes
    # through FastAPI's route. Both must give the same answers.
    api.add_pool(X1)
    body = {"a": A, "b": B, "ttl_s": 600, "request_id": "r-1", "order_id": "o-9"}
    fast = api.client.post("/v1/bindings", json=body, headers=api.acme)
    assert fast.status_code == 201 and fast.headers["content-type"] == "application/json"
    via_route = {**api.acme, "Content-Type": "application/merge-patch+json"}
    routed = api.client.post("/v1/bindings", content=json.dumps(body), headers=via_route)
    assert routed.status_code == 200 and routed.json() == fast.json()
    refused = {"a": C, "b": A}
    fast_refusal = api.client.post("/v1/bindings", json=refused, headers=api.acme)
    routed_refusal = api.client.post("/v1/bindings", content=json.dumps(refused), headers=via_route)
    assert fast_refusal.status_code == routed_refusal.status_code == 409
    assert fast_refusal.json() == routed_refusal.json()
    assert "no free privacy number" in fast_refusal.json()["detail"]
    malformed = api.client.post("/v1/bindings", json={"a": A, "b": A}, headers=api.acme)
    assert malformed.status_code == 422 and malformed.json()["detail"][0]["loc"] == ["body", "b"]


def test_a_pair_sharing_a_party_gets_another_x_and_disjoint_pairs_share(api: Api) -> None:
    api.add_pool(X1, X2)
    assert api.bind(api.acme, a=A, b=B)["x"] == X1
    assert api.bind(api.acme, a=A, b=C)["x"] == X2
    assert api.bind(api.acme, a=C, b=D)["x"] == X1


def test_request_id_makes_creation_idempotent(api: Api) -> None:
    api.add_pool(X1, X2)
    first = api.client.post(
        "/v1/bindings", json={"a": A, "b": B, "request_id": "order-7"}, headers=api.acme
    )
    again = api.client.post(
        "/v1/bindings", json={"a": A, "b": B, "request_id": "order-7"}, headers=api.acme
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    other = api.client.post(
        "/v1/bindings", json={"a": A, "b": C, "request_id": "order-7"}, headers=api.acme
    )
    assert other.status_code == 409 and "request_id" in other.json()["detail"]
    # Another tenant's request_id space is its own.
    api.add_pool(X3, tenant="globex")
    mine = api.client.post(
        "/v1/bindings", json={"a": A, "b": B, "request_id": "order-7"}, headers=api.globex
    )
    assert mine.status_code == 201 and mine.json()["id"] != first.json()["id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"a": "not-a-number", "b": B}, "a"),
        ({"a": A, "b": "12"}, "b"),
        ({"a": A, "b": "13800138000"}, "b"),  # A = B once normalised
        ({"a": A, "b": B, "x": "70012345678"}, "x"),  # a 700 number of the wrong length
        ({"a": A, "b": B, "x": "800123456780001"}, "x"),
        ({"a": A, "b": X1}, "b"),  # a privacy number is never a real party
        ({"a": A, "b": B, "expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({"a": A, "b": B, "expires_at": "2030-01-01T00:00:00"}, "expires_at"),  # no zone
        ({"a": A, "b": B, "ttl_s": 0}, "ttl_s"),
        ({"a": A, "b": B, "ttl_s": 5, "expires_at": "2030-01-01T00:00:00Z"}, "ttl_s"),
        ({"a": A, "b": B, "direction": "sideways"}, "direction"),
        ({"a": A, "b": B, "model": "axn"}, "model"),
        ({"a": A, "b": B, "max_call_s": -1}, "max_call_s"),
        ({"a": A, "b": B, "colour": "red"}, "colour"),  # unknown field
        ({"b": B}, "a"),
    ],
)
def test_bad_input_is_422_naming_the_field(api: Api, body: dict[str, object], field: str) -> None:
    api.add_pool(X1)
    response = api.client.post("/v1/bindings", json=body, headers=api.acme)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert [field] in [error["loc"][1:2] for error in detail], detail
    assert all(error["msg"] for error in detail)


def test_refusals_are_409_saying_why(api: Api) -> None:
    api.add_pool(X1)
    api.add_pool(X2, tenant="globex")
    api.bind(api.acme, a=A, b=B, x=X1)

    def refused(**body: object) -> str:
        response = api.client.post("/v1/bindings", json=body, headers=api.acme)
        assert response.status_code == 409, response.text
        detail: str = response.json()["detail"]
        assert "+86" not in detail and "13800138000" not in detail, "numbers are masked"
        return detail

    assert "already uses X" in refused(a=A, b=C, x=X1)
    assert "no free privacy number" in refused(a=C, b=B)
    assert "another tenant" in refused(a=C, b=D, x=X2)
    assert "not in the number pool" in refused(a=C, b=D, x="700123456789999")


def test_per_x_cap_moves_allocation_on(api: Api, tmp_path: object) -> None:
    from fastapi.testclient import TestClient

    from proxy.api.app import close_app, create_app
    from tests.api.conftest import bearer, make_keys

    db = api.db.with_name("capped.db")
    app = create_app(db, clock=api.clock, max_per_x=2)
    admin, acme, _ = make_keys(db)
    with TestClient(app) as client:
        client.post("/v1/pool", json={"numbers": [X1, X2]}, headers=bearer(admin))
        parties = [f"+861380013{n:04d}" for n in range(6)]
        xs = [
            client.post(
                "/v1/bindings", json={"a": parties[i], "b": parties[i + 1]}, headers=bearer(acme)
            ).json()["x"]
            for i in (0, 2, 4)
        ]
        assert xs == [X1, X1, X2]
        full = client.post("/v1/bindings", json={"a": C, "b": D, "x": X1}, headers=bearer(acme))
        assert full.status_code == 409 and "cap" in full.json()["detail"]
    close_app(app)


def test_city_is_preferred_then_any_number(api: Api) -> None:
    api.add_pool(X1, city="shanghai")
    api.add_pool(X2, city="beijing")
    assert api.bind(api.acme, a=A, b=B, city="beijing")["x"] == X2
    assert api.bind(api.acme, a=C, b=D, city="shenzhen")["x"] == X1
    # A tenant's own numbers come before the shared pool.
    api.add_pool(X3, tenant="acme")
    assert api.bind(api.acme, a="+8613300133000", b="+8613400134000")["x"] == X3


def test_tenants_are_isolated(api: Api) -> None:
    api.add_pool(X1)
    mine = api.bind(api.acme, a=A, b=B)
    path = f"/v1/bindings/{mine['id']}"
    for method in ("get", "delete"):
        response = api.client.request(method, path, headers=api.globex)
        assert response.status_code == 404 and "no such binding" in response.json()["detail"]
    response = api.client.patch(path, json={"direction": "a_to_b"}, headers=api.globex)
    assert response.status_code == 404
    listed = api.client.get("/v1/bindings", headers=api.globex).json()
    assert listed["items"] == []
    assert api.client.get(path, headers=api.acme).json()["status"] == "active"
    # The operator sees every tenant's.
    assert api.client.get(path, headers=api.admin).status_code == 200
    forbidden = api.client.get("/v1/bindings?tenant=acme", headers=api.globex)
    assert forbidden.status_code == 403


def test_auth_is_required_and_checked(api: Api) -> None:
    for headers in (
        {},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer ppk.k_0000000000000000.wrong"},
        {"Authorization": "Bearer " + api.acme["Authorization"][7:-1] + "x"},
    ):
        response = api.client.get("/v1/bindings", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json()["detail"]


def test_expiry_stops_the_binding_at_once_and_frees_the_parties(api: Api) -> None:
    api.add_pool(X1)
    made = api.bind(api.acme, a=A, b=B, ttl_s=60)
    api.clock.advance(60)
    seen = api.client.get(f"/v1/bindings/{made['id']}", headers=api.acme).json()
    assert seen["status"] == "expired"
    # Same pair again: no stranger, so no quarantine.
    assert api.bind(api.acme, a=B, b=A)["x"] == X1


def test_quarantine_keeps_a_released_party_off_x_for_strangers(api: Api) -> None:
    api.add_pool(X1, X2)
    made = api.bind(api.acme, a=A, b=B, x=X1)
    api.clock.advance(10)
    assert api.client.delete(f"/v1/bindings/{made['id']}", headers=api.acme).status_code == 200
    api.clock.advance(10)
    # A with a stranger: X1 is quarantined for A, the allocator takes X2 ...
    assert api.bind(api.acme, a=A, b=C)["x"] == X2
    # ... and asking for X1 says why not.
    response = api.client.post("/v1/bindings", json={"a": B, "b": D, "x": X1}, headers=api.acme)
    assert response.status_code == 409 and "quarantined" in response.json()["detail"]
    api.clock.advance(3600)
    assert api.bind(api.acme, a=B, b=D, x=X1)["x"] == X1


def test_patch_changes_expiry_and_direction_and_refuses_ended(api: Api) -> None:
    api.add_pool(X1)
    made = api.bind(api.acme, a=A, b=B, ttl_s=60)
    path = f"/v1/bindings/{made['id']}"
    changed = api.client.patch(path, json={"ttl_s": 3600, "direction": "b_to_a"}, headers=api.acme)
    assert changed.status_code == 200
    assert (changed.json()["expires_at"], changed.json()["direction"]) == (
        "2027-01-15T09:00:00Z",
        "b_to_a",
    )
    forever = api.client.patch(path, json={"expires_at": None}, headers=api.acme)
    assert forever.json()["expires_at"] is None
    for body, field in (
        ({}, "expires_at"),
        ({"expires_at": "2000-01-01T00:00:00Z"}, "expires_at"),
        ({"direction": None}, "direction"),
        ({"x": X1}, "x"),
    ):
        response = api.client.patch(path, json=body, headers=api.acme)
        assert response.status_code == 422, body
        assert [field] in [error["loc"][1:2] for error in response.json()["detail"]]
    released = api.client.delete(path, headers=api.acme).json()
    assert (released["status"], released["ended_at"]) == ("released", "2027-01-15T08:00:00Z")
    again = api.client.patch(path, json={"direction": "both"}, headers=api.acme)
    assert again.status_code == 409 and "released" in again.json()["detail"]
    assert api.client.delete(path, headers=api.acme).json() == released


def test_list_filters_and_pages(api: Api) -> None:
    api.add_pool(X1, X2)
    made = []
    for i in range(5):
        api.clock.advance(1)
        made.append(
            api.bind(api.acme, a=f"+861380013{i:04d}", b=f"+861390013{i:04d}", ttl_s=100 + i)
        )
    first = api.client.get("/v1/bindings?limit=2", headers=api.acme).json()
    assert [item["id"] for item in first["items"]] == [made[4]["id"], made[3]["id"]]
    assert first["next_offset"] == 2
    last = api.client.get("/v1/bindings?limit=2&offset=4", headers=api.acme).json()
    assert [item["id"] for item in last["items"]] == [made[0]["id"]]
    assert last["next_offset"] is None
    by_party = api.client.get("/v1/bindings?party=13900130002", headers=api.acme).json()
    assert [item["id"] for item in by_party["items"]] == [made[2]["id"]]
    api.clock.advance(97)  # T0 + 102: only the first (expiring at T0 + 101) has lapsed
    expired = api.client.get("/v1/bindings?status=expired", headers=api.acme).json()
    assert [item["id"] for item in expired["items"]] == [made[0]["id"]]
    bad = api.client.get("/v1/bindings?party=xyz&limit=0", headers=api.acme)
    assert bad.status_code == 422
    assert ["limit"] in [error["loc"][1:2] for error in bad.json()["detail"]]


def test_every_change_is_audited_with_the_key_as_actor(api: Api) -> None:
    api.add_pool(X1)
    made = api.bind(api.acme, a=A, b=B, ttl_s=60)
    path = f"/v1/bindings/{made['id']}"
    api.client.patch(path, json={"direction": "a_to_b"}, headers=api.acme)
    api.client.delete(path, headers=api.acme)
    conn = open_database(api.db)
    events = audit.events(conn, subject=str(made["id"]))
    pool_events = audit.events(conn, action="pool.")
    conn.close()
    assert [event.action for event in events] == [
        "binding.create",
        "binding.update",
        "binding.release",
    ]
    assert {event.actor for event in events} == {events[0].actor}
    assert events[0].actor.startswith("k_")
    assert events[0].at == T0
    shown = audit.masked(events[0])
    assert shown.after is not None and shown.after["a"] == "138****8000"
    assert [event.action for event in pool_events] == ["pool.add"]


def test_openapi_and_docs_are_served(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    for path in ("/v1/bindings", "/v1/bindings/{binding_id}", "/v1/pool", "/v1/pool/stats"):
        assert path in spec["paths"]
    assert api.client.get("/docs").status_code == 200
    assert api.client.get("/healthz").json() == {"status": "ok"}
