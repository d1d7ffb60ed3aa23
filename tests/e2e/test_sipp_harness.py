"""The SIPp scenarios and the harness that runs them, with no proxy in between.

Each caller scenario is run straight against its callee scenario on loopback. These tests
prove that every pair completes cleanly over UDP and TCP, and that the scenarios really
carry the real numbers the proxy must hide: A's number in every identity-bearing part of the
INVITE, B's number in every identity-bearing part of the responses. A proxy test that finds
no real number at the far side means something only because of these.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from proxy.sip.message import parse
from tests.e2e import sipp
from tests.e2e.sipp import (
    CALLEE_B,
    CALLER_A,
    PRIVACY_X,
    SippMessage,
    SippResult,
    free_port,
    parse_message_trace,
    parse_stat_csv,
    run_pair,
    run_sipp,
)

e2e = pytest.mark.e2e

# Headers of the caller's INVITE that carry the caller's own number.
CALLER_IDENTITY_HEADERS = (
    "From",
    "Contact",
    "Call-ID",
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "Remote-Party-ID",
    "Diversion",
    "History-Info",
    "X-Real-Caller",
    "User-Agent",
    "Subject",
)
# Headers of the callee's 180 and 200 that carry the callee's own number.
CALLEE_IDENTITY_HEADERS = (
    "Contact",
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "Remote-Party-ID",
    "History-Info",
    "X-Real-Callee",
    "Server",
)
# A final error carries no Contact (RFC 3261 section 8.2.6) but the rest.
CALLEE_ERROR_IDENTITY_HEADERS = tuple(h for h in CALLEE_IDENTITY_HEADERS if h != "Contact")

# (caller scenario, callee scenario, extra keys,
#  methods the callee receives, (status, CSeq method) the caller receives)
PAIRS = [
    pytest.param(
        "uac_call",
        "uas_answer",
        {},
        ["INVITE", "ACK", "BYE"],
        [(100, "INVITE"), (180, "INVITE"), (200, "INVITE"), (200, "BYE")],
        id="call",
    ),
    pytest.param(
        "uac_caller_hangs_up",
        "uas_answer",
        {},
        ["INVITE", "ACK", "BYE"],
        [(100, "INVITE"), (180, "INVITE"), (200, "INVITE"), (200, "BYE")],
        id="caller-hangs-up",
    ),
    pytest.param(
        "uac_wait_bye",
        "uas_callee_hangs_up",
        {},
        ["INVITE", "ACK", (200, "BYE")],
        [(100, "INVITE"), (180, "INVITE"), (200, "INVITE"), "BYE"],
        id="callee-hangs-up",
    ),
    pytest.param(
        "uac_cancel",
        "uas_ring_no_answer",
        {},
        ["INVITE", "CANCEL", "ACK"],
        [(100, "INVITE"), (180, "INVITE"), (200, "CANCEL"), (487, "INVITE")],
        id="cancel",
    ),
    pytest.param(
        "uac_expect_error",
        "uas_busy",
        {"expected_status": "486"},
        ["INVITE", "ACK"],
        [(100, "INVITE"), (486, "INVITE")],
        id="busy",
    ),
    pytest.param(
        "uac_load",
        "uas_load",
        {},
        ["INVITE", "ACK", "BYE"],
        [(180, "INVITE"), (200, "INVITE"), (200, "BYE")],
        id="load",
    ),
    pytest.param(
        "uac_options",
        "uas_options",
        {},
        ["OPTIONS"],
        [(200, "OPTIONS")],
        id="options",
    ),
]


def signature(messages: list[SippMessage]) -> list[object]:
    """Requests by method, responses by (status, CSeq method)."""
    return [m.method if m.is_request else (m.status, m.cseq_method) for m in messages]


def only_invite(result: SippResult) -> SippMessage:
    invites = result.received_requests("INVITE")
    assert len(invites) == 1, result.describe()
    return invites[0]


def sdp_line(message: SippMessage, prefix: str) -> str:
    lines = [line for line in message.body.decode().split("\r\n") if line.startswith(prefix)]
    assert len(lines) == 1, message.text
    return lines[0]


# --- the harness's parsers, on literal bytes ---------------------------------------------

TRACE = (
    b"----------------------------------------------- 2026-11-30 19:41:43.525606\n"
    b"UDP message sent (55 bytes):\n\n"
    b"OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n"
    b"\n\n"
    b"----------------------------------------------- 2026-11-30 19:41:43.525891\n"
    b"TCP message received [45] bytes :\n\n"
    b"SIP/2.0 200 OK\r\nl: 4\r\nCSeq: 1 OPTIONS\r\n\r\nv=0\n"
    b"\n\n"
    b"----------------------------------------------- 2026-11-30 19:41:43.527067\n"
    b"UDP message received [300] bytes :\n\n"
    b"SIP/2.0 180 Ringing\r\n"
)


def test_trace_parser_returns_each_message_byte_for_byte() -> None:
    messages = parse_message_trace(TRACE)

    assert [(m.direction, m.transport) for m in messages] == [("sent", "UDP"), ("received", "TCP")]
    assert messages[0].data == b"OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n"
    assert messages[0].method == "OPTIONS"
    assert messages[1].data.endswith(b"\r\n\r\nv=0\n")
    assert messages[1].status == 200
    assert messages[1].body == b"v=0\n"
    assert messages[1].timestamp == "2026-11-30 19:41:43.525891"


def test_trace_parser_stops_at_a_block_still_being_written() -> None:
    assert len(parse_message_trace(TRACE)) == 2
    assert parse_message_trace(TRACE[:60]) == []


def test_header_lookup_unfolds_and_knows_compact_forms() -> None:
    message = SippMessage(
        "received",
        "UDP",
        "",
        b"INVITE sip:x@h SIP/2.0\r\nf: <sip:a@h>;tag=1\r\nX-Real-Caller: 138\r\n 0013\r\n"
        b"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nv: SIP/2.0/UDP g;branch=z9hG4bK2\r\n\r\n",
    )

    assert message.header("From") == "<sip:a@h>;tag=1"
    assert message.header("x-real-caller") == "138 0013"
    assert message.headers("Via") == [
        "SIP/2.0/UDP h;branch=z9hG4bK1",
        "SIP/2.0/UDP g;branch=z9hG4bK2",
    ]
    assert message.header("Route") is None


STAT_HEADER = (
    "StartTime;CurrentCall;SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);"
    "FailedMaxUDPRetrans(C);FailedUnexpectedMessage(C);Retransmissions(P);Retransmissions(C);"
    "OutOfCallMsgs(C);DeadCallMsgs(C);IncomingCall(C);OutgoingCall(C);\n"
)


def test_stat_parser_reads_the_last_cumulative_row() -> None:
    text = (
        STAT_HEADER
        + "2026-11-30\t19:41:57;3;5;5;0;0;0;0;0;0;0;0;0;5;\n"
        + "2026-11-30\t19:41:58;0;2;98;1;2;1;1;4;7;3;1;0;100;\n"
    )

    stats = parse_stat_csv(text)

    assert stats is not None
    assert (stats.successful_calls, stats.failed_calls, stats.retransmissions) == (98, 2, 7)
    assert (stats.outgoing_calls, stats.incoming_calls, stats.current_calls) == (100, 0, 0)
    assert (stats.out_of_call_messages, stats.dead_call_messages) == (3, 1)
    assert stats.failures == {"FailedMaxUDPRetrans": 1, "FailedUnexpectedMessage": 1}
    assert not stats.clean


def test_a_run_with_retransmissions_is_not_clean() -> None:
    stats = parse_stat_csv(STAT_HEADER + "t;0;0;10;0;0;0;0;0;1;0;0;10;0;\n")

    assert stats is not None
    assert stats.failed_calls == 0
    assert not stats.clean
    quiet = parse_stat_csv(STAT_HEADER + "t;0;0;10;0;0;0;0;0;0;0;0;10;0;\n")
    assert quiet is not None and quiet.clean
    assert parse_stat_csv(STAT_HEADER) is None


def test_missing_sipp_skips_locally_and_fails_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        sipp.require_sipp()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        sipp.require_sipp()


def test_command_line_for_a_tcp_client() -> None:
    files = sipp.SippFiles.in_dir(Path("/tmp/w"), "uac_call_5070")
    command = sipp.build_command(
        "/usr/bin/sipp",
        sipp.scenario_path("uac_call"),
        "127.0.0.1:5060",
        files,
        local_port=5070,
        transport="tcp",
        calls=3,
        rate=2.5,
        keys={"caller": CALLEE_B},
        timeout_s=12,
        extra=["-d", "100"],
    )
    joined = " ".join(command)

    assert command[:2] == ["/usr/bin/sipp", "127.0.0.1:5060"]
    assert "-t t1" in joined and "-p 5070" in joined and "-i 127.0.0.1" in joined
    assert "-m 3" in joined and "-r 2.5" in joined and "-timeout 12s -timeout_error" in joined
    assert f"-key caller {CALLEE_B}" in joined and f"-key dialed {PRIVACY_X}" in joined
    assert f"-message_file {files.messages}" in joined
    assert command[-2:] == ["-d", "100"]
    quiet = sipp.build_command(
        "/usr/bin/sipp",
        sipp.scenario_path("uas_load"),
        None,
        files,
        local_port=5080,
        transport="udp",
        calls=None,
        rate=10,
        keys={},
        timeout_s=30,
        extra=[],
        trace_messages=False,
    )
    assert "-trace_msg" not in quiet and "-m" not in quiet and "-r" not in quiet
    assert "-trace_stat" in quiet and quiet[1] == "-sf"


def test_free_port_is_free_for_udp_and_tcp() -> None:
    import socket

    port = free_port()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
    ):
        udp.bind(("127.0.0.1", port))
        tcp.bind(("127.0.0.1", port))


# --- scenario pairs through SIPp ---------------------------------------------------------


@e2e
@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(("uac", "uas", "keys", "callee_receives", "caller_receives"), PAIRS)
def test_pair_completes_cleanly(
    tmp_path: Path,
    transport: sipp.Transport,
    uac: str,
    uas: str,
    keys: dict[str, str],
    callee_receives: list[object],
    caller_receives: list[object],
) -> None:
    caller, callee = run_pair(uac, uas, transport=transport, keys=keys, workdir=tmp_path)

    caller.assert_clean(calls=1)
    callee.assert_clean(calls=1)
    assert signature(callee.received()) == callee_receives
    assert signature(caller.received()) == caller_receives
    # Straight from one SIPp to the other, what one side sent is what the other received.
    assert [m.data for m in caller.sent()] == [m.data for m in callee.received()]
    assert {m.transport for m in caller.messages} == {transport.upper()}


@e2e
@pytest.mark.parametrize("uac", ["uac_call", "uac_wait_bye", "uac_cancel", "uac_expect_error"])
def test_caller_invite_carries_the_caller_number_everywhere(tmp_path: Path, uac: str) -> None:
    uas = {
        "uac_call": "uas_answer",
        "uac_wait_bye": "uas_callee_hangs_up",
        "uac_cancel": "uas_ring_no_answer",
        "uac_expect_error": "uas_busy",
    }[uac]
    caller, callee = run_pair(uac, uas, keys={"expected_status": "486"}, workdir=tmp_path)
    caller.assert_ok(calls=1)
    invite = only_invite(callee)

    assert re.fullmatch(rf"INVITE sip:{PRIVACY_X}@127\.0\.0\.1:\d+ SIP/2\.0", invite.start_line)
    for name in CALLER_IDENTITY_HEADERS:
        value = invite.header(name)
        assert value is not None and CALLER_A in value, (name, invite.text)
    assert (invite.header("From") or "").startswith(f'"{CALLER_A}" <sip:{CALLER_A}@')
    assert invite.header("P-Preferred-Identity") == f"<tel:+86{CALLER_A}>"
    assert (invite.header("Call-ID") or "").startswith(f"{CALLER_A}///")
    assert sdp_line(invite, "o=").split()[0] == f"o={CALLER_A}"
    assert sdp_line(invite, "s=") == f"s={CALLER_A}"
    assert CALLEE_B not in invite.text


@e2e
@pytest.mark.parametrize(
    ("uas", "statuses", "headers"),
    [
        ("uas_answer", [180, 200], CALLEE_IDENTITY_HEADERS),
        ("uas_callee_hangs_up", [180, 200], CALLEE_IDENTITY_HEADERS),
        ("uas_ring_no_answer", [180, 487], CALLEE_ERROR_IDENTITY_HEADERS),
        ("uas_busy", [486], CALLEE_ERROR_IDENTITY_HEADERS),
    ],
)
def test_callee_responses_carry_the_callee_number_everywhere(
    tmp_path: Path, uas: str, statuses: list[int], headers: tuple[str, ...]
) -> None:
    uac = {
        "uas_answer": "uac_call",
        "uas_callee_hangs_up": "uac_wait_bye",
        "uas_ring_no_answer": "uac_cancel",
        "uas_busy": "uac_expect_error",
    }[uas]
    caller, _ = run_pair(uac, uas, keys={"expected_status": "486"}, workdir=tmp_path)
    caller.assert_ok(calls=1)

    for status in statuses:
        (response,) = caller.received_responses(status, "INVITE")
        for name in headers:
            value = response.header(name)
            assert value is not None and CALLEE_B in value, (status, name, response.text)
        if status == 200:
            assert sdp_line(response, "o=").split()[0] == f"o={CALLEE_B}"
            assert sdp_line(response, "s=") == f"s={CALLEE_B}"


@e2e
def test_reverse_call_swaps_the_numbers_by_keys(tmp_path: Path) -> None:
    caller, callee = run_pair(
        "uac_call",
        "uas_answer",
        uac_keys={"caller": CALLEE_B},
        uas_keys={"callee": CALLER_A},
        workdir=tmp_path,
    )
    caller.assert_clean(calls=1)
    invite = only_invite(callee)
    (answer,) = caller.received_responses(200)

    assert invite.header("X-Real-Caller") == CALLEE_B
    assert invite.header("P-Asserted-Identity") == f'"{CALLEE_B}" <sip:{CALLEE_B}@127.0.0.1>'
    assert answer.header("X-Real-Callee") == CALLER_A


@e2e
def test_unexpected_final_status_fails_the_call_after_acking_it(tmp_path: Path) -> None:
    caller, callee = run_pair(
        "uac_expect_error", "uas_busy", keys={"expected_status": "404"}, workdir=tmp_path
    )

    assert caller.returncode == sipp.EXIT_SOME_CALLS_FAILED
    assert caller.failed_calls == 1 and caller.successful_calls == 0
    assert not caller.ok
    callee.assert_ok(calls=1)
    assert signature(callee.received()) == ["INVITE", "ACK"]


@e2e
def test_success_where_an_error_is_expected_fails_the_call(tmp_path: Path) -> None:
    caller, _ = run_pair(
        "uac_expect_error",
        "uas_answer",
        keys={"expected_status": "486"},
        timeout_s=3,
        workdir=tmp_path,
    )

    assert caller.failed_calls == 1
    assert caller.stats is not None
    assert caller.stats.failures.get("FailedUnexpectedMessage") == 1


@e2e
def test_load_pair_holds_a_rate_without_retransmissions(tmp_path: Path) -> None:
    caller, callee = run_pair(
        "uac_load", "uas_load", calls=60, rate=200, workdir=tmp_path, uac_extra=["-l", "60"]
    )

    caller.assert_clean(calls=60)
    callee.assert_clean(calls=60)
    assert caller.stats is not None and caller.stats.outgoing_calls == 60
    assert callee.stats is not None and callee.stats.incoming_calls == 60
    call_ids = {m.header("Call-ID") for m in callee.received_requests("INVITE")}
    assert len(call_ids) == 60


@e2e
def test_every_scenario_message_parses_with_the_proxy_parser(tmp_path: Path) -> None:
    for uac, uas in [
        ("uac_call", "uas_answer"),
        ("uac_wait_bye", "uas_callee_hangs_up"),
        ("uac_cancel", "uas_ring_no_answer"),
    ]:
        caller, callee = run_pair(uac, uas, workdir=tmp_path / uac)
        for message in caller.messages + callee.messages:
            parse(message.data).validate()


@e2e
def test_background_callee_is_stopped_by_pid(tmp_path: Path) -> None:
    port = free_port()
    callee = run_sipp(
        "uas_answer", None, local_port=port, calls=None, background=True, workdir=tmp_path
    )
    with callee:
        caller = run_sipp("uac_call", f"127.0.0.1:{port}", local_port=free_port(), workdir=tmp_path)
        caller.assert_clean(calls=1)
        assert callee.running()
        assert signature(callee.received_messages()) == ["INVITE", "ACK", "BYE"]
        started = time.monotonic()
    assert not callee.running()
    assert time.monotonic() - started < sipp.STOP_GRACE_S * 3
    result = callee.result()
    assert result.successful_calls == 1
    assert not sipp._port_bound(port, "udp")


@e2e
def test_a_caller_nobody_answers_is_bounded_by_its_timeout(tmp_path: Path) -> None:
    silent = free_port()
    started = time.monotonic()

    result = run_sipp(
        "uac_call", f"127.0.0.1:{silent}", local_port=free_port(), timeout_s=1, workdir=tmp_path
    )

    assert time.monotonic() - started < 1 + sipp.KILL_GRACE_S
    assert not result.ok
    assert result.returncode != sipp.EXIT_ALL_CALLS_OK
    assert result.sent()[0].method == "INVITE"
