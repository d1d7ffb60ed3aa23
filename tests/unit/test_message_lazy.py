"""Lazy header records and the typed tuples of proxy/sip (design.md §5): what parse()
defers must read the same as what it used to build at once."""

from __future__ import annotations

import dataclasses

import pytest

from proxy.sip.address import CSeq, NameAddress, Via, forget_parsed_values
from proxy.sip.errors import BadRequest
from proxy.sip.message import Header, parse
from proxy.sip.uri import SipUri

INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1;rport\r\n"
    b"v: SIP/2.0/TCP 198.51.100.7;branch=z9hG4bK2;received=198.51.100.8\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: Alice <sip:alice@example.com>;tag=a1\r\n"
    b"t: <sip:bob@example.com;user=phone>\r\n"
    b"Call-ID:  c1@example.com \r\n"
    b"CSeq: 7 INVITE\r\n"
    b"Subject: a: b\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"body"
)


def test_headers_are_built_on_first_read_as_the_lines_were() -> None:
    parse(INVITE)  # the first parse of new names takes the general loop and learns them
    message = parse(INVITE)
    assert message._headers is None
    assert message.headers[0] == Header(
        "via", "Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1;rport",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1;rport",
    )  # fmt: skip
    assert message.headers[5] == Header(
        "call-id", "Call-ID", "c1@example.com", "Call-ID:  c1@example.com "
    )
    assert message.headers[7].value == "a: b"
    assert [h.key for h in message.headers] == [
        "via", "via", "max-forwards", "from", "to", "call-id", "cseq", "subject",
        "content-length",
    ]  # fmt: skip


def test_raw_access_reads_the_same_before_and_after_the_records_exist() -> None:
    parse(INVITE)
    lazy, built = parse(INVITE), parse(INVITE)
    assert lazy._headers is None
    built.headers  # noqa: B018 - builds the records
    for message in (lazy, built):
        assert message.get("call-id") == "c1@example.com"
        assert message.get("to") == "<sip:bob@example.com;user=phone>"
        assert message.get("x-absent") is None
        assert message.get_all("via") == [
            "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1;rport",
            "SIP/2.0/TCP 198.51.100.7;branch=z9hG4bK2;received=198.51.100.8",
        ]
        assert message.has("subject") and not message.has("route")
        assert message.to_bytes() == INVITE
        assert message.top_via.branch == "z9hG4bK1"
        assert [via.branch for via in message.vias] == ["z9hG4bK1", "z9hG4bK2"]
        assert message.call_id == "c1@example.com"


def test_editing_a_lazy_message_builds_the_records_and_keeps_the_others_verbatim() -> None:
    message = parse(INVITE)
    assert message.cseq == CSeq(7, "INVITE")
    message.set("cseq", "8 INVITE")
    assert message.cseq == CSeq(8, "INVITE")
    message.remove("subject")
    data = message.to_bytes()
    assert b"CSeq: 8 INVITE\r\n" in data and b"Subject" not in data
    assert b"v: SIP/2.0/TCP 198.51.100.7;branch=z9hG4bK2;received=198.51.100.8\r\n" in data


def test_a_repeated_single_header_is_refused_by_its_view() -> None:
    message = parse(INVITE.replace(b"CSeq: 7 INVITE\r\n", b"CSeq: 7 INVITE\r\nCSeq: 8 INVITE\r\n"))
    with pytest.raises(BadRequest, match="more than one CSeq"):
        message.cseq  # noqa: B018
    with pytest.raises(BadRequest, match="more than one CSeq"):
        message.validate()


def test_a_line_without_a_colon_named_like_a_header_is_refused() -> None:
    parse(INVITE)  # "Via" is a known name now
    with pytest.raises(BadRequest, match="without a name and colon"):
        parse(INVITE.replace(b"Max-Forwards: 70\r\n", b"Via\r\n"))


def test_typed_tuples_equal_only_their_own_type_and_hash_as_before() -> None:
    forget_parsed_values()
    address = parse(INVITE).from_
    expected = NameAddress(SipUri("sip", "alice", "example.com"), "Alice", (("tag", "a1"),))
    assert address == expected
    assert (address != expected) is False
    assert hash(address) == hash(expected)
    assert address != (expected.uri, "Alice", (("tag", "a1"),))
    assert CSeq(7, "INVITE") != (7, "INVITE")
    assert SipUri("sip", None, "h") != ("sip", None, "h", None, None, (), ())
    with pytest.raises(AttributeError):
        address.display_name = "Mallory"  # type: ignore[misc]


def test_fast_path_via_is_a_frozen_dataclass_like_any_other() -> None:
    forget_parsed_values()
    via = parse(INVITE).top_via
    expected = Via("UDP", "192.0.2.10", 5060, (("branch", "z9hG4bK1"), ("rport", None)))
    assert type(via) is Via and via == expected and hash(via) == hash(expected)
    with pytest.raises(dataclasses.FrozenInstanceError):
        via.host = "203.0.113.9"  # type: ignore[misc]
    assert str(dataclasses.replace(via, params=())) == "SIP/2.0/UDP 192.0.2.10:5060"


@pytest.mark.parametrize(
    "value",
    [
        "SIP/2.0/UDP h;received=192.0.2.300",
        "SIP/2.0/UDP h;received",
        "SIP/2.0/UDP h;received=example.com",
    ],
)
def test_a_bad_received_is_refused_whichever_path_reads_it(value: str) -> None:
    forget_parsed_values()
    with pytest.raises(BadRequest, match="received"):
        Via.parse(value)


def test_received_forms_the_fast_pattern_leaves_to_the_general_parser() -> None:
    forget_parsed_values()
    assert Via.parse("SIP/2.0/UDP h;received=[2001:db8::1]").received == "[2001:db8::1]"
    assert Via.parse("SIP/2.0/UDP h;receivedx=1;a;b;c;d").params == (
        ("receivedx", "1"), ("a", None), ("b", None), ("c", None), ("d", None),
    )  # fmt: skip
