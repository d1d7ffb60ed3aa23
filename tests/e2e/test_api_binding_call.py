"""End to end through the HTTP API: ``privproxy serve --api`` as a real process, an admin key
made with the CLI, a pool number and a binding made over HTTP, then a SIPp call A→X reaches
B showing X, and A's number never reaches B."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.proxy_process import PRIVPROXY, ProxyProcess, start_proxy
from tests.e2e.sipp import free_port, require_sipp, run_sipp
from tests.e2e.test_call_path import leaks

pytestmark = pytest.mark.e2e

X = "700123456780042"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ProxyProcess, str, int]]:
    require_sipp()
    api_port, trunk_port = free_port(), free_port()
    process = start_proxy(
        tmp_path,
        sip_port=free_port(),
        trunk_port=trunk_port,
        extra=("--api", f"127.0.0.1:{api_port}"),
    )
    try:
        yield process, f"http://127.0.0.1:{api_port}", trunk_port
    finally:
        assert process.stop() == 0, process.log_text()


def make_key(db: Path, *args: str) -> str:
    created = subprocess.run(
        [PRIVPROXY, "apikey", "create", *args, "--json", "--db", str(db)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    key: str = json.loads(created.stdout)["key"]
    return key


def test_a_binding_made_through_the_api_routes_a_sipp_call(
    served: tuple[ProxyProcess, str, int], tmp_path: Path
) -> None:
    process, base, trunk_port = served
    admin = {"Authorization": f"Bearer {make_key(process.db, '--tenant', 'operator', '--admin')}"}
    tenant = {"Authorization": f"Bearer {make_key(process.db, '--tenant', 'acme')}"}
    assert httpx.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
    added = httpx.post(f"{base}/v1/pool", json={"numbers": [X]}, headers=admin, timeout=5)
    assert added.status_code == 201, added.text
    a, b = "13800138051", "13900139051"
    created = httpx.post(
        f"{base}/v1/bindings", json={"a": a, "b": b, "ttl_s": 600}, headers=tenant, timeout=5
    )
    assert created.status_code == 201, created.text
    assert created.json()["x"] == X

    keys = {"caller": a, "callee": b, "dialed": X}
    with run_sipp(
        "uas_answer.xml",
        None,
        background=True,
        local_port=trunk_port,
        transport="udp",
        calls=1,
        keys=keys,
        timeout_s=20,
        workdir=tmp_path,
    ) as callee_process:
        caller = run_sipp(
            "uac_call.xml",
            f"127.0.0.1:{process.sip_port}",
            local_port=free_port(),
            transport="udp",
            calls=1,
            keys=keys,
            timeout_s=20,
            workdir=tmp_path,
        )
        callee = callee_process.wait(timeout=10)
    caller.assert_clean(1)
    callee.assert_clean(1)
    invite = callee.received_requests("INVITE")[0]
    assert invite.start_line.startswith(f"INVITE sip:{b}@")
    assert (invite.header("From") or "").startswith(f"<sip:{X}@")
    assert leaks(callee.received(), a) == []
    assert leaks(caller.received(), b) == []
    assert "13800138051" not in process.log_text(), "logs mask real numbers"
