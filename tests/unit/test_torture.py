"""The RFC 4475 and RFC 5118 torture messages against parse() and validate()."""

from __future__ import annotations

import pytest

from proxy.sip.address import CSeq
from proxy.sip.errors import SipError
from proxy.sip.message import Request, Response, parse
from proxy.sip.uri import AbsoluteUri, SipUri, parse_uri
from tests.fixtures import load_torture_index, load_torture_messages, torture_path

INDEX = load_torture_index()
MESSAGES = load_torture_messages()
VALID = [row["name"] for row in INDEX if row["class"] == "valid"]
INVALID = [row["name"] for row in INDEX if row["class"] == "invalid"]
NO_2XX = {row["name"] for row in INDEX if row["no2xx"] == "yes"}

#: Statuses we answer with; responses (scalarlg, bigcode) only need to raise, since the
#: adapter drops a bad response silently (RFC 3261 §18.1.2, RFC 4475 §3.1.2.5, §3.1.2.19).
EXPECTED_STATUS: dict[str, set[int]] = {
    "badvers": {505},
    "mismatch02": {501, 400},
    "scalarlg": {400},
    "bigcode": {400},
}
#: Invalid messages the RFC lets an element accept, and that we accept.
ACCEPTED_INVALID = {"baddate"}
#: RFC 5118 files whose Content-Length is shorter than their body (see the corpus README).
SHORT_CONTENT_LENGTH = {"ipv6-in-sdp": 241, "mult-ip-in-sdp": 181, "ipv4-mapped-ipv6": 236}


def parsed(name: str) -> Request | Response:
    message = parse(MESSAGES[name])
    message.validate()
    return message


def request(name: str) -> Request:
    message = parsed(name)
    assert isinstance(message, Request)
    return message


def sip_uri(uri: object) -> SipUri:
    assert isinstance(uri, SipUri)
    return uri


def test_corpus_is_complete() -> None:
    assert len(INDEX) == 61
    assert len(VALID) + len(INVALID) == 61
    assert len(VALID) == 37 and len(INVALID) == 24
    for row in INDEX:
        assert torture_path(row).is_file(), row["name"]


@pytest.mark.parametrize("name", VALID)
def test_valid_message_parses_validates_and_round_trips(name: str) -> None:
    data = MESSAGES[name]
    message = parsed(name)
    # Serialization is byte-exact up to the end of the message (Content-Length, §18.3).
    assert data.startswith(message.to_bytes())
    assert message.to_bytes().endswith(message.body)


@pytest.mark.parametrize("name", INVALID)
def test_invalid_message_is_rejected_with_its_status(name: str) -> None:
    if name in ACCEPTED_INVALID:
        parsed(name)
        return
    with pytest.raises(SipError) as caught:
        parsed(name)
    assert caught.value.status in EXPECTED_STATUS.get(name, {400})
    assert caught.value.detail, "the reason must name the fault"


def test_every_message_that_must_not_get_2xx_is_rejected_or_left_to_the_application() -> None:
    """no2xx=yes: the invalid ones raise; the valid ones (unknown scheme 416, unknown
    extension 420) parse so that the application can answer."""
    for name in sorted(NO_2XX):
        if name in INVALID:
            with pytest.raises(SipError):
                parsed(name)
        else:
            parsed(name)
    assert {"unkscm", "bext01"} <= NO_2XX


def test_baddate_is_accepted_because_date_is_never_used() -> None:
    message = request("baddate")
    assert message.get("date") is not None and "EST" in (message.get("date") or "")


@pytest.mark.parametrize(
    ("name", "detail_words"),
    [
        ("badinv01", "Via"),
        ("clerr", "Content-Length"),
        ("ncl", "Content-Length"),
        ("scalar02", "CSeq"),
        ("quotbal", "quoted"),
        ("ltgtruri", "Request-URI"),
        ("lwsruri", "Request-Line"),
        ("lwsstart", "Request-Line"),
        ("trws", "Request-Line"),
        ("escruri", "Request-URI"),
        ("regbadct", "Contact"),
        ("badaspec", "To"),
        ("baddn", "display name"),
        ("mismatch01", "CSeq"),
        ("insuf", "missing"),
        ("multi01", "more than one"),
        ("mcl01", "Content-Length"),
        ("ipv6-bad", "Request-URI"),
        ("ipv6-bug-abnf-3-colons", "IPv6"),
        ("bigcode", "status code"),
        ("scalarlg", "CSeq"),
    ],
)
def test_rejection_reason_names_the_fault(name: str, detail_words: str) -> None:
    with pytest.raises(SipError) as caught:
        parsed(name)
    assert detail_words in caught.value.reason


def test_semiuri_user_part_keeps_semicolon() -> None:
    uri = sip_uri(request("semiuri").request_uri)
    assert uri.user_unescaped == "user;par=u@example.net"
    assert uri.host == "example.com"
    assert uri.params == ()


def test_port_ambiguous_ipv6_has_no_port() -> None:
    uri = sip_uri(request("port-ambiguous").request_uri)
    assert (uri.host, uri.port) == ("[2001:db8::10:5070]", None)
    unambiguous = sip_uri(request("port-unambiguous").request_uri)
    assert (unambiguous.host, unambiguous.port) == ("[2001:db8::10]", 5070)


def test_esc01_escapes_compare_as_the_characters_they_stand_for() -> None:
    message = request("esc01")
    ruri = sip_uri(message.request_uri)
    assert ruri.user_unescaped == "sips:user@example.com"
    assert ruri.host == "example.net"
    assert message.to.uri.matches(parse_uri("sip:user@example.com"))
    assert message.from_.uri.user_unescaped == "I have spaces"
    contact = message.contacts[0].uri
    assert contact.matches(parse_uri("sip:caller@host5.example.net;lr;name=value%2541"))
    # Unescaped once only: value%2541 is "value%41", never "valueA" (RFC 4475 §3.1.1.3).
    assert not contact.matches(parse_uri("sip:caller@host5.example.net;lr;name=valueA"))
    assert not contact.matches(parse_uri("sip:caller@host5.example.net;lr;name=other"))


def test_escnull_registers_two_distinct_contacts() -> None:
    message = request("escnull")
    first, second = (address.uri for address in message.contacts)
    assert first.user_unescaped == "\x00"
    assert second.user_unescaped == "\x00\x00"
    assert not first.matches(second)
    assert message.to.uri.user_unescaped == "null-\x00-null"


def test_esc02_percent_is_literal_in_method_and_header_names() -> None:
    message = request("esc02")
    assert message.method == "RE%47IST%45R"
    assert message.cseq == CSeq(29344, "RE%47IST%45R")
    assert [str(address.uri) for address in message.contacts] == [
        "sip:alias1@host1.example.com",
        "sip:alias3@host3.example.com",
    ]
    assert message.get("c%6fntact") == "<sip:alias2@host2.example.com>"
    assert message.to.display_name == '"%Z%45"'


def test_dblreq_processes_the_register_and_drops_the_trailing_invite() -> None:
    message = request("dblreq")
    assert message.method == "REGISTER"
    assert message.body == b""
    assert b"INVITE" not in message.to_bytes()
    assert len(message.to_bytes()) < len(MESSAGES["dblreq"])


def test_mpart01_body_is_framed_by_content_length_nuls_and_all() -> None:
    message = request("mpart01")
    length = int(message.get("content-length") or "")
    assert len(message.body) == length
    assert b"\x00" in message.body
    assert MESSAGES["mpart01"].endswith(message.body)
    assert message.content_type == "multipart/mixed"


def test_inv2543_body_is_the_rest_of_the_datagram() -> None:
    data = MESSAGES["inv2543"]
    message = request("inv2543")
    assert not message.has("content-length")
    assert message.body == data[data.index(b"\r\n\r\n") + 4 :]
    assert message.body.startswith(b"v=0")
    assert message.max_forwards is None
    assert message.top_via.branch is None
    assert message.from_.tag is None


def test_transports_via_values_keep_every_transport() -> None:
    message = request("transports")
    assert [via.transport for via in message.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert [via.host for via in message.vias] == [f"t{i}.example.com" for i in range(1, 6)]


def test_wsinv_folding_compact_forms_and_tags() -> None:
    message = request("wsinv")
    assert message.to.tag == "1918181833n"
    assert str(message.to.uri) == "sip:vivekg@chair-dnrc.example.com"
    assert message.from_.tag == "98asjd8"
    assert message.from_.display_name == '"J Rosenberg \\\\\\""'
    assert message.max_forwards == 68
    assert message.cseq == CSeq(9, "INVITE")
    assert message.call_id == "wsinv.ndaksdj@192.0.2.1"
    vias = message.vias
    assert [(via.transport, via.host, via.branch) for via in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert message.get("newfangledheader") == "newfangled value continued newfangled value"
    assert message.get("unknownheaderwithunusualvalue") == ";;,,;;,;"
    assert message.get("subject") == ""
    (contact,) = message.contacts
    assert contact.display_name == '"Quoted string \\"\\""'
    assert contact.params == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))
    (route,) = message.routes
    assert route.uri.param("lr") == ""
    assert route.uri.param("unknownwith") == "value"
    assert len(message.body) == 150


def test_intmeth_unusual_method_user_and_password() -> None:
    message = request("intmeth")
    assert message.method == "!interesting-Method0123456789_*+`.%indeed'~"
    uri = sip_uri(message.request_uri)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"
    assert message.from_.tag == "_token~1'+`*%!-."
    assert message.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert message.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert message.to.display_name is not None and "\x00" in message.to.display_name


@pytest.mark.parametrize(
    ("name", "scheme"), [("unkscm", "nobodyknowsthisscheme"), ("novelsc", "soap.beep")]
)
def test_unknown_request_uri_scheme_parses_as_absolute_uri(name: str, scheme: str) -> None:
    uri = request(name).request_uri
    assert isinstance(uri, AbsoluteUri)
    assert uri.scheme == scheme


def test_unksm2_non_sip_addresses_parse() -> None:
    message = request("unksm2")
    assert message.to.uri.scheme == "isbn"
    assert [address.uri.scheme for address in message.contacts] == ["name"]


@pytest.mark.parametrize(("name", "length"), sorted(SHORT_CONTENT_LENGTH.items()))
def test_rfc5118_short_content_length_truncates_the_body(name: str, length: int) -> None:
    data = MESSAGES[name]
    message = request(name)
    body_start = data.index(b"\r\n\r\n") + 4
    assert message.get("content-length") == str(length)
    assert len(data) - body_start > length
    assert message.body == data[body_start : body_start + length]


def test_bext01_keeps_the_unknown_option_tags_for_a_420() -> None:
    message = request("bext01")
    assert message.get_all("require") == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert message.get_all("proxy-require") == [
        "noProxiesSupportThis",
        "norDoAnyProxiesSupportThis",
    ]


def test_received_parameter_with_and_without_brackets() -> None:
    assert request("via-received-param-with-delim").top_via.received == "[2001:db8::9:255]"
    assert request("via-received-param-no-delim").top_via.received == "2001:db8::9:255"


def test_responses_parse() -> None:
    unreason = parsed("unreason")
    assert isinstance(unreason, Response) and unreason.status == 200
    assert "простое" in unreason.reason
    noreason = parsed("noreason")
    assert isinstance(noreason, Response) and (noreason.status, noreason.reason) == (100, "")
    bcast = parsed("bcast")
    assert bcast.vias[1].host == "255.255.255.255"


def test_zero_max_forwards_parses_for_the_proxy_to_refuse() -> None:
    assert request("zeromf").max_forwards == 0
