"""Digest authentication of a calling peer with a real client: SIPp answers our 401 with
RFC 7616 credentials (qop=auth, its own cnonce and nonce count) and the call goes through;
with a wrong password it gets 403, with credentials for another resource 400."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.cdr.writer import read_records
from tests.e2e.proxy_process import start_proxy
from tests.e2e.sipp import free_port, require_sipp, run_sipp

pytestmark = pytest.mark.e2e

X = "700123456789012"
A, B = "13800138071", "13900139071"
CONFIG = """
digest_secret = "an e2e secret of some length"
digest_peers = ["127.0.0.0/8 switch pw"]
"""


def test_sipp_authenticates_with_digest_and_the_call_goes_through(tmp_path: Path) -> None:
    require_sipp()
    config = tmp_path / "digest.toml"
    config.write_text(CONFIG)
    trunk_port = free_port()
    proxy = start_proxy(
        tmp_path, sip_port=free_port(), trunk_port=trunk_port, extra=("--config", str(config))
    )
    try:
        proxy.bind(A, B, X)
        keys = {"caller": A, "callee": B, "dialed": X}
        remote = f"127.0.0.1:{proxy.sip_port}"
        # SIPp's credentials name "sip:remote_ip:remote_port" unless told the Request-URI,
        # and credentials must name the number dialled (RFC 7616 §3.4.6).
        auth_uri = f"{X}@{remote}"
        with run_sipp(
            "uas_answer.xml",
            None,
            background=True,
            local_port=trunk_port,
            calls=1,
            keys=keys,
            timeout_s=20,
            workdir=tmp_path,
        ) as callee_process:
            caller = run_sipp(
                "uac_auth_call.xml",
                remote,
                local_port=free_port(),
                keys=keys,
                extra=("-au", "switch", "-ap", "pw", "-auth_uri", auth_uri),
                timeout_s=20,
                workdir=tmp_path,
            )
            callee = callee_process.wait(timeout=10)
        caller.assert_clean(1)
        callee.assert_clean(1)
        invites = [m for m in caller.sent() if m.method == "INVITE"]
        assert len(invites) == 2
        assert invites[0].header("Authorization") is None
        credentials = invites[1].header("Authorization") or ""
        assert "qop=auth" in credentials and "nc=00000001" in credentials
        assert f'uri="sip:{auth_uri}"' in credentials
        assert caller.received_responses(401)
        assert len(callee.received_requests("INVITE")) == 1

        # Without the password SIPp's credentials are wrong: 403, and B never rings.
        wrong = run_sipp(
            "uac_auth_call.xml",
            remote,
            local_port=free_port(),
            keys={**keys, "caller": "13800138072"},
            extra=("-au", "switch", "-ap", "guess", "-auth_uri", auth_uri),
            timeout_s=10,
            workdir=tmp_path,
        )
        assert wrong.received_responses(403)
        assert wrong.successful_calls == 0
        # SIPp's default uri names no number: credentials for another resource, 400.
        elsewhere = run_sipp(
            "uac_auth_call.xml",
            remote,
            local_port=free_port(),
            keys={**keys, "caller": "13800138073"},
            extra=("-au", "switch", "-ap", "pw"),
            timeout_s=10,
            workdir=tmp_path,
        )
        assert elsewhere.received_responses(400)
        assert elsewhere.successful_calls == 0
    finally:
        assert proxy.stop() == 0, proxy.log_text()
    records = {r.caller: r for r in read_records(proxy.db)}
    assert (records["+86" + A].disposition, records["+86" + A].sip_status) == ("answered", 200)
    refused = records["+86" + "13800138072"]
    assert (refused.reject_reason, refused.sip_status) == ("untrusted_peer", 403)
    mismatched = records["+86" + "13800138073"]
    assert (mismatched.reject_reason, mismatched.sip_status) == ("untrusted_peer", 400)
