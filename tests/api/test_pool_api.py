"""``/v1/pool``: admin keys add (numbers, ranges) and remove; everyone reads stats."""

from __future__ import annotations

import pytest

from tests.api.conftest import X1, X2, A, Api, B


def test_admin_adds_numbers_and_ranges_once(api: Api) -> None:
    body = {"numbers": ["700 1234 5678 0001"], "ranges": ["700123456780000-700123456780009"]}
    first = api.client.post("/v1/pool", json=body, headers=api.admin)
    assert first.status_code == 201 and first.json() == {"added": 10, "already_present": 0}
    again = api.client.post("/v1/pool", json=body, headers=api.admin)
    assert again.json() == {"added": 0, "already_present": 10}
    listed = api.client.get("/v1/pool", headers=api.admin).json()
    assert [n["x"] for n in listed] == [X1] + [f"70012345678000{i}" for i in range(10) if i != 1]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"numbers": ["70012345678"]}, "numbers"),  # wrong length
        ({"numbers": ["13800138000"]}, "numbers"),
        ({"ranges": ["700123456780009-700123456780000"]}, "ranges"),
        ({"ranges": ["700123456780000"]}, "ranges"),
        ({"ranges": ["700123400000000-700123499999999"]}, "ranges"),  # too many
        ({}, "numbers"),
        ({"numbers": [X1], "owner": "acme"}, "owner"),
    ],
)
def test_bad_pool_input_is_422_naming_the_field(
    api: Api, body: dict[str, object], field: str
) -> None:
    response = api.client.post("/v1/pool", json=body, headers=api.admin)
    assert response.status_code == 422, response.text
    assert [field] in [error["loc"][1:2] for error in response.json()["detail"]]


def test_only_admin_keys_change_the_pool(api: Api) -> None:
    response = api.client.post("/v1/pool", json={"numbers": [X1]}, headers=api.acme)
    assert response.status_code == 403 and "admin" in response.json()["detail"]
    api.add_pool(X1)
    assert api.client.delete(f"/v1/pool/{X1}", headers=api.acme).status_code == 403
    assert api.client.post("/v1/pool", json={"numbers": [X2]}).status_code == 401


def test_removal_only_when_unused(api: Api) -> None:
    api.add_pool(X1)
    made = api.bind(api.acme, a=A, b=B, ttl_s=30)
    busy = api.client.delete(f"/v1/pool/{X1}", headers=api.admin)
    assert busy.status_code == 409 and "live bindings" in busy.json()["detail"]
    api.clock.advance(30)  # the binding lapses; removal sweeps it first
    assert api.client.delete(f"/v1/pool/{X1}", headers=api.admin).status_code == 204
    assert api.client.delete(f"/v1/pool/{X1}", headers=api.admin).status_code == 404
    gone = api.client.post("/v1/bindings", json={"a": A, "b": B, "x": X1}, headers=api.acme)
    assert gone.status_code == 409 and "not in the number pool" in gone.json()["detail"]
    assert made["x"] == X1


def test_stats_show_load_and_free_capacity_per_view(api: Api) -> None:
    api.add_pool(X1)
    api.add_pool(X2, tenant="globex")
    api.bind(api.acme, a=A, b=B)
    whole = api.client.get("/v1/pool/stats", headers=api.admin).json()
    assert whole == {
        "numbers": 2,
        "numbers_in_use": 1,
        "live_bindings": 1,
        "mean_bindings_per_number": 0.5,
        "busiest_number_bindings": 1,
        "max_per_number": 5000,
        "free_capacity": 9999,
    }
    acme = api.client.get("/v1/pool/stats", headers=api.acme).json()
    assert (acme["numbers"], acme["free_capacity"]) == (1, 4999)
    acme_pool = api.client.get("/v1/pool", headers=api.acme).json()
    assert [n["x"] for n in acme_pool] == [X1]
    globex = api.client.get("/v1/pool/stats", headers=api.globex).json()
    assert globex["numbers"] == 2
    assert api.client.get("/v1/pool/stats?tenant=globex", headers=api.acme).status_code == 403
    assert api.client.get("/v1/pool/stats?tenant=acme", headers=api.admin).json()["numbers"] == 1
