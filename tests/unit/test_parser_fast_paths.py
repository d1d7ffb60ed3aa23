"""The SIP parser's fast paths (proxy/sip/address.py, proxy/sip/message.py) against what
they stand for: a spelled-out character class against ``\\s``, a split-and-set IPv4
check against the IPv4 pattern, the Via fast path's received= check against the general
parser, parse()'s own filling of a message's slots against Message.__init__, and the
values worked out when a value is built (Via.branch, NameAddress.tag) against the
parameters they come from."""

from __future__ import annotations

import dataclasses
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.sip.address import (
    _VALUE_CHAR,
    _VIA,
    WHITESPACE,
    NameAddress,
    Via,
    forget_parsed_values,
    is_dotted_ipv4,
)
from proxy.sip.errors import SipError
from proxy.sip.message import Message, Request, Response, parse
from proxy.sip.uri import SipUri

EVERY_CODE_POINT = [chr(code) for code in range(0x110000)]
#: The reference: RFC 3261 §25.1 IPv4address with dec-octet as RFC 3986 §3.2.2 spells it.
_IPV4 = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
)


def test_whitespace_is_what_backslash_s_matches_on_every_code_point() -> None:
    backslash_s = re.compile(r"\s")
    assert [c for c in EVERY_CODE_POINT if backslash_s.fullmatch(c)] == list(WHITESPACE)
    assert [c for c in EVERY_CODE_POINT if c.isspace()] == list(WHITESPACE)


def test_value_character_class_agrees_with_its_backslash_s_form_on_every_code_point() -> None:
    spelled_out = re.compile(_VALUE_CHAR)
    with_category = re.compile(r'[^;\s"]')
    disagreeing = [
        c
        for c in EVERY_CODE_POINT
        if (spelled_out.fullmatch(c) is None) != (with_category.fullmatch(c) is None)
    ]
    assert disagreeing == []
    assert spelled_out.fullmatch("a") and not spelled_out.fullmatch("\u3000")


OCTETS = ["0", "00", "01", "9", "10", "99", "100", "199", "200", "249", "250", "255", "256"]
DOTTED = st.one_of(
    st.lists(st.sampled_from([*OCTETS, "", "1a", "٣", "+1", " 1", "999"]), max_size=6).map(
        ".".join
    ),
    st.text(alphabet="0123456789.:abf[] ", max_size=20),
)


@settings(max_examples=3000, deadline=None)
@given(DOTTED)
def test_dotted_ipv4_check_agrees_with_the_ipv4_pattern(text: str) -> None:
    assert is_dotted_ipv4(text) == (_IPV4.fullmatch(text) is not None)


def test_dotted_ipv4_check_on_every_octet() -> None:
    for number in range(-5, 1000):
        octet = str(number)
        for text in (f"{octet}.0.0.0", f"1.2.3.{octet}", f"0{octet}.1.1.1"):
            assert is_dotted_ipv4(text) == (_IPV4.fullmatch(text) is not None), text


def outcome(parser: object, text: str) -> tuple[object, ...]:
    try:
        value = parser(text)  # type: ignore[operator]
    except SipError as error:
        return ("error", type(error), error.status, str(error))
    return ("value", value, hash(value), repr(value))


RECEIVED = st.one_of(
    DOTTED,
    st.sampled_from(["::1", "[2001:db8::1]", "2001:db8::1", "", "192.0.2.1x", "192.0.2"]),
)


@settings(max_examples=3000, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("received"), RECEIVED),
            st.tuples(st.sampled_from(["branch", "rport", "maddr", "received"]), st.none()),
            st.tuples(st.sampled_from(["branch", "rport", "ttl"]), st.just("z9hG4bK1")),
        ),
        max_size=5,
    )
)
def test_via_fast_path_checks_received_as_the_general_parser_does(
    params: list[tuple[str, str | None]],
) -> None:
    """Where the fast pattern takes a Via whatever its received= holds, the check after
    the match decides: the first received= that is not a dotted IPv4 goes to
    parse_general, which takes IPv6 and refuses the rest."""
    text = "SIP/2.0/UDP 192.0.2.10:5060" + "".join(
        f";{name}" if value is None else f";{name}={value}" for name, value in params
    )
    forget_parsed_values()
    assert outcome(Via.parse, text) == outcome(Via.parse_general, text)


def test_via_pattern_takes_received_of_any_form_and_the_check_decides() -> None:
    text = "SIP/2.0/UDP h;branch=z9hG4bK1;received=junk"
    assert _VIA.fullmatch(text)
    forget_parsed_values()
    try:
        Via.parse(text)
    except SipError as error:
        assert "received" in str(error)
    else:
        raise AssertionError("a received= that is no address must be refused")
    forget_parsed_values()
    assert Via.parse("SIP/2.0/UDP h;received=192.0.2.1;received=junk").received == "192.0.2.1"


def every_slot(message: Message) -> dict[str, object]:
    slots = [name for cls in type(message).__mro__ for name in getattr(cls, "__slots__", ())]
    return {name: getattr(message, name) for name in slots}


REQUEST = (
    b"OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
    b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c1\r\n"
    b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)
RESPONSE = REQUEST.replace(b"OPTIONS sip:bob@example.com SIP/2.0", b"SIP/2.0 200 OK", 1)
FOLDED = REQUEST.replace(b"Call-ID: c1\r\n", b"Call-ID:\r\n c1\r\n")


def test_parse_sets_every_slot_as_init_would() -> None:
    """parse() builds a message without running __init__: every slot must still be set,
    to what __init__ would set (nothing derived yet), on the fast path and the general."""
    for data in (REQUEST, RESPONSE, FOLDED, REQUEST, RESPONSE):  # again: names now known
        message = parse(data)
        slots = every_slot(message)  # raises AttributeError on a slot left unset
        for name in ("_cache", "_vias", "_top_via", "_from", "_to", "_cseq", "_call_id"):
            assert slots[name] is None, name
        assert slots["body"] == b""
        if isinstance(message, Request):
            assert (message.method, message.uri) == ("OPTIONS", "sip:bob@example.com")
            built: Message = Request("OPTIONS", "sip:bob@example.com", list(message.headers))
        else:
            assert isinstance(message, Response)
            assert (message.status, message.reason) == (200, "OK")
            built = Response(200, "OK", list(message.headers))
        assert message.to_bytes() == built.to_bytes()
        assert message.call_id == built.call_id == "c1"
        assert message.cseq == built.cseq


def first_param(params: tuple[tuple[str, str | None], ...], wanted: str) -> str | None:
    """The dialog tag / branch as RFC 3261 §19.3 and §8.1.1.7 read them: the first such
    parameter's value, "" when it has none, None when there is none."""
    values = ["" if value is None else value for name, value in params if name == wanted]
    return values[0] if values else None


PARAM_NAMES = ["branch", "BRANCH", "Branch", "tag", "TAG", "rport", "received", "x"]
PARAM_VALUES = [None, "", "z9hG4bK776", "1928301774", "192.0.2.1", "a.b"]
SOME_PARAMS = st.lists(
    st.tuples(st.sampled_from(PARAM_NAMES), st.sampled_from(PARAM_VALUES)), max_size=5
)


def param_text(params: list[tuple[str, str | None]]) -> str:
    return "".join(f";{name}" if value is None else f";{name}={value}" for name, value in params)


@settings(max_examples=2000, deadline=None)
@given(SOME_PARAMS, st.sampled_from(["h", "192.0.2.10:5060", "a.example.com:5"]))
def test_via_branch_is_the_first_branch_parameter_on_both_paths(
    params: list[tuple[str, str | None]], sent_by: str
) -> None:
    """``Via.branch`` is worked out when the value is built (a slot, not a property): the
    fast path's reading and the general parser's agree with the parameters themselves."""
    text = f"SIP/2.0/UDP {sent_by}{param_text(params)}"
    forget_parsed_values()
    outcomes = []
    for parser in (Via.parse, Via.parse_general):
        try:
            via = parser(text)
        except SipError as error:
            outcomes.append(("error", str(error)))
        else:
            assert via.branch == first_param(via.params, "branch")
            outcomes.append(("value", via.branch, via.params))
    assert outcomes[0] == outcomes[1]


def test_via_branch_follows_the_parameters_however_the_via_is_built() -> None:
    fast_text = "SIP/2.0/UDP h;rport;branch;branch=z9hG4bK2"
    assert _VIA.fullmatch(fast_text) is not None  # the fast path, parameter not first
    forget_parsed_values()
    assert Via.parse(fast_text).branch == ""
    assert Via.parse("SIP/2.0/UDP h;branch=z9hG4bK1").branch == "z9hG4bK1"
    assert Via.parse("SIP/2.0/UDP h;rport").branch is None
    built = Via("UDP", "h", None, (("rport", None), ("branch", "z9hG4bK3")))
    assert built.branch == "z9hG4bK3"
    assert dataclasses.replace(built, params=()).branch is None
    assert dataclasses.replace(built, params=(("branch", "b2"),)).branch == "b2"
    # Derived from params: not compared, not hashed, not shown apart from them.
    assert built == Via.parse("SIP/2.0/UDP h;rport;branch=z9hG4bK3")
    assert "branch=" not in repr(built).replace("('branch', 'z9hG4bK3')", "")


@settings(max_examples=2000, deadline=None)
@given(SOME_PARAMS, st.sampled_from(['"Alice" ', "Bob ", ""]))
def test_name_address_tag_is_the_first_tag_parameter_on_both_paths(
    params: list[tuple[str, str | None]], display: str
) -> None:
    """``NameAddress.tag`` is a tuple item worked out when the value is built: the fast
    path's (a lone ;tag= taken by the pattern, or split parameters) and the general
    parser's agree with the parameters themselves, and with a NameAddress built by hand."""
    text = f"{display}<sip:alice@example.com;user=phone>{param_text(params)}"
    forget_parsed_values()
    outcomes = []
    for parser in (NameAddress.parse, NameAddress.parse_general):
        try:
            address = parser(text)
        except SipError as error:
            outcomes.append(("error", str(error)))
        else:
            assert address.tag == first_param(address.params, "tag")
            rebuilt = NameAddress(address.uri, address.display_name, address.params)
            assert rebuilt == address and rebuilt.tag == address.tag
            outcomes.append(("value", address, address.tag))
    assert outcomes[0] == outcomes[1]


def test_name_address_tag_built_by_hand() -> None:
    uri = SipUri("sip", "alice", "example.com")
    assert NameAddress(uri).tag is None
    assert NameAddress(uri, None, (("x", "1"), ("tag", None), ("tag", "b"))).tag == ""
    assert NameAddress(uri, '"A"', (("tag", "a1"),)).tag == "a1"
    assert NameAddress.parse("<sip:alice@example.com>;tag=a1") == NameAddress(
        uri, None, (("tag", "a1"),)
    )
