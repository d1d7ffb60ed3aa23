"""``/v1/blocklist`` through the real app: admin keys only, numbers normalised, listings
masked unless unmasked (audited), 422 naming the field, 404 for a number not listed."""

from __future__ import annotations

import pytest

from bindings import blocklist
from proxy import audit
from proxy.db import open_database
from tests.api.conftest import T0, A, Api, B


def _audit(api: Api, action: str) -> list[audit.AuditEvent]:
    conn = open_database(api.db)
    try:
        return audit.events(conn, action=action)
    finally:
        conn.close()


def _is_blocked(api: Api, number: str) -> bool:
    conn = open_database(api.db)
    try:
        return blocklist.is_blocked(conn, number, api.clock.now)
    finally:
        conn.close()


def test_an_admin_blocks_a_number_in_any_usual_form(api: Api) -> None:
    response = api.client.post(
        "/v1/blocklist",
        json={"number": "+86 138-0013-8000", "reason": "marketing calls"},
        headers=api.admin,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["number"], body["reason"], body["expires_at"]) == (A, "marketing calls", None)
    assert body["created_by"].startswith("k_")
    assert _is_blocked(api, A)
    (event,) = _audit(api, "blocklist.add")
    assert (event.actor, event.after) == (
        body["created_by"],
        {"number": A, "reason": "marketing calls", "expires_at": None},
    )


def test_a_block_with_a_ttl_lapses(api: Api) -> None:
    response = api.client.post(
        "/v1/blocklist",
        json={"number": "13900139000", "reason": "fraud", "ttl_s": 60},
        headers=api.admin,
    )
    assert response.status_code == 201, response.text
    assert response.json()["expires_at"].startswith("2027-01-15T08:01:00")
    assert _is_blocked(api, B)
    api.clock.advance(60)
    assert not _is_blocked(api, B)
    assert api.client.get("/v1/blocklist", headers=api.admin).json() == []
    lapsed = api.client.get("/v1/blocklist?include_expired=true", headers=api.admin).json()
    assert [entry["number"] for entry in lapsed] == ["139****9000"]


def test_the_listing_is_masked_unless_unmasked_which_is_audited(api: Api) -> None:
    for number in (A, B):
        api.client.post(
            "/v1/blocklist", json={"number": number, "reason": "r"}, headers=api.admin
        ).raise_for_status()
        api.clock.advance(1)
    masked = api.client.get("/v1/blocklist", headers=api.admin)
    assert [entry["number"] for entry in masked.json()] == ["139****9000", "138****8000"]
    assert A not in masked.text and B not in masked.text
    assert _audit(api, "blocklist.unmask") == []
    unmasked = api.client.get("/v1/blocklist?unmasked=true", headers=api.admin)
    assert [entry["number"] for entry in unmasked.json()] == [B, A]
    (event,) = _audit(api, "blocklist.unmask")
    assert event.after == {"entries": 2}
    assert event.actor == unmasked.json()[0]["created_by"]


def test_delete_unblocks_and_a_number_not_listed_is_404(api: Api) -> None:
    api.client.post(
        "/v1/blocklist", json={"number": A, "reason": "r"}, headers=api.admin
    ).raise_for_status()
    response = api.client.delete("/v1/blocklist/013800138000", headers=api.admin)
    assert response.status_code == 204, response.text
    assert not _is_blocked(api, A)
    assert len(_audit(api, "blocklist.remove")) == 1
    again = api.client.delete(f"/v1/blocklist/{A}", headers=api.admin)
    assert again.status_code == 404
    assert A not in again.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"number": "12345", "reason": "r"}, "number"),
        ({"number": "700123456789012", "reason": "r"}, "number"),  # a privacy number
        ({"number": A, "reason": ""}, "reason"),
        ({"number": A, "reason": "   "}, "reason"),
        ({"number": A, "reason": "a\nb"}, "reason"),
        ({"number": A, "reason": "r", "ttl_s": 0}, "ttl_s"),
        ({"number": A}, "reason"),
        ({"number": A, "reason": "r", "colour": "red"}, "colour"),
    ],
)
def test_malformed_requests_are_422_naming_the_field(
    api: Api, body: dict[str, object], field: str
) -> None:
    response = api.client.post("/v1/blocklist", json=body, headers=api.admin)
    assert response.status_code == 422, response.text
    assert any(error["loc"][-1] == field for error in response.json()["detail"]), response.text
    assert not _is_blocked(api, A)


def test_a_malformed_path_number_is_422(api: Api) -> None:
    response = api.client.delete("/v1/blocklist/not-a-number", headers=api.admin)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "number"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/blocklist"), ("GET", "/v1/blocklist"), ("DELETE", f"/v1/blocklist/{A}")],
)
def test_tenant_keys_get_403_and_no_key_401(api: Api, method: str, path: str) -> None:
    body = {"number": A, "reason": "r"} if method == "POST" else None
    tenant = api.client.request(method, path, json=body, headers=api.acme)
    anonymous = api.client.request(method, path, json=body)
    assert tenant.status_code == 403, tenant.text
    assert anonymous.status_code == 401, anonymous.text
    assert not _is_blocked(api, A)


def test_the_clock_stamps_the_entry(api: Api) -> None:
    api.clock.now = T0 + 0.5
    api.client.post(
        "/v1/blocklist", json={"number": A, "reason": "r"}, headers=api.admin
    ).raise_for_status()
    conn = open_database(api.db)
    try:
        entry = blocklist.get(conn, A)
    finally:
        conn.close()
    assert entry is not None and entry.created_at == T0 + 0.5
