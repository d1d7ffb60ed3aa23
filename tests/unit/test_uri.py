"""SIP, SIPS and tel URIs: parsing (RFC 3261 §19.1.1, RFC 3966 §3) and comparison
(RFC 3261 §19.1.4, RFC 3966 §4)."""

from __future__ import annotations

import pytest

from proxy.sip.errors import BadRequest
from proxy.sip.uri import AbsoluteUri, SipUri, TelUri, parse_uri, unescape


def sip(text: str) -> SipUri:
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    return uri


def tel(text: str) -> TelUri:
    uri = parse_uri(text)
    assert isinstance(uri, TelUri)
    return uri


def test_full_sip_uri() -> None:
    uri = sip(
        "sip:alice:secretword@atlanta.com:5061;transport=TCP;lr;maddr=239.255.255.1?subject=x"
    )
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        "sip",
        "alice",
        "secretword",
        "atlanta.com",
        5061,
    )
    assert uri.params == (("transport", "TCP"), ("lr", None), ("maddr", "239.255.255.1"))
    assert uri.param("lr") == "" and uri.param("ttl") is None
    assert uri.transport == "tcp"
    assert uri.headers == (("subject", "x"),)
    assert (
        str(uri)
        == "sip:alice:secretword@atlanta.com:5061;transport=TCP;lr;maddr=239.255.255.1?subject=x"
    )


@pytest.mark.parametrize(
    ("text", "user", "host", "port"),
    [
        ("sip:atlanta.com", None, "atlanta.com", None),
        ("sip:192.0.2.4:5060", None, "192.0.2.4", 5060),
        ("sip:+8613800138000@gw.example.com;user=phone", "+8613800138000", "gw.example.com", None),
        ("sips:bob@[2001:db8::10]:5061", "bob", "[2001:db8::10]", 5061),
        ("sip:[::ffff:192.0.2.2]", None, "[::ffff:192.0.2.2]", None),
        ("SIP:Alice@AtLanTa.CoM", "Alice", "AtLanTa.CoM", None),
    ],
)
def test_user_host_port(text: str, user: str | None, host: str, port: int | None) -> None:
    uri = sip(text)
    assert (uri.user, uri.host, uri.port) == (user, host, port)
    assert uri.scheme == text.split(":", 1)[0].lower()


def test_sips_default_transport_is_tls_and_sip_is_udp() -> None:
    assert sip("sips:b@h").transport == "tls"
    assert sip("sip:b@h").transport == "udp"


def test_escapes_are_kept_as_written_and_unescaped_once() -> None:
    uri = sip("sip:%61lice%2541@h")
    assert uri.user == "%61lice%2541"
    assert uri.user_unescaped == "alice%41"
    assert unescape("a%00b") == "a\x00b"
    assert unescape("plain") == "plain"
    assert str(uri) == "sip:%61lice%2541@h"


def test_tel_uris() -> None:
    uri = tel("tel:+86-138-0013-8000;ext=12")
    assert (uri.number, uri.params, uri.scheme) == ("+86-138-0013-8000", (("ext", "12"),), "tel")
    assert uri.user == uri.number and uri.user_unescaped == "+86-138-0013-8000"
    assert uri.param("ext") == "12"
    assert str(uri) == "tel:+86-138-0013-8000;ext=12"
    local = tel("tel:7042;phone-context=example.com")
    assert local.param("phone-context") == "example.com"
    assert tel("tel:*21#;phone-context=+86").number == "*21#"


def test_other_schemes_are_absolute_uris() -> None:
    uri = parse_uri("urn:service:sos")
    assert isinstance(uri, AbsoluteUri)
    assert (uri.scheme, uri.rest, str(uri)) == ("urn", "service:sos", "urn:service:sos")
    assert uri.user is None and uri.user_unescaped is None and uri.param("x") is None
    assert uri.matches(parse_uri("urn:service:sos"))
    assert not uri.matches(parse_uri("urn:service:police"))


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("alice@example.com", "no scheme"),
        (":x", "no scheme"),
        ("1sip:a@h", "invalid scheme"),
        ("s_p:a@h", "invalid scheme"),
        ("sip:a b@h", "whitespace or delimiter"),
        ("sip:<a>@h", "whitespace or delimiter"),
        ("tel:", "invalid telephone number"),
        ("tel:+", "invalid telephone number"),
        ("tel:+86 138", "whitespace"),
        ("tel:12x45", "invalid telephone number"),
        ("urn:", "empty"),
        ("sip:@h", "empty user"),
        ("sip:a@h?x", "malformed header"),
        ("sip:a@h?=x", "malformed header"),
        ("sip:", "missing host"),
        ("sip:a@", "missing host"),
        ("sip:[2001:db8::1", "unterminated IPv6"),
        ("sip:[fe80::1%25eth0]", "zone index"),
        ("sip:[2001:db8:::1]", "invalid IPv6"),
        ("sip:[::1]x", "junk after IPv6"),
        ("sip:h:", "empty port"),
        ("sip:h:65536", "invalid port"),
        ("sip:h:123456", "invalid port"),
        ("sip:h:\u00b2", "invalid port"),
        ("sip:2001:db8::1", "invalid port"),
        ("sip:ho$t", "invalid host"),
        ("sip:h;;lr", "empty parameter"),
        ("sip:h;=x", "empty parameter"),
    ],
)
def test_uri_errors(text: str, fault: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_uri(text)
    assert caught.value.status == 400
    assert fault in caught.value.reason


def test_headers_refused_where_not_allowed() -> None:
    with pytest.raises(BadRequest, match="headers are not allowed in the Request-URI"):
        parse_uri("sip:a@h?subject=x", what="Request-URI", allow_headers=False)


# RFC 3261 §19.1.4: "The URIs within each of the following sets are equivalent".
EQUIVALENT = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    (
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    ),
    (
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
    ),
]

# "The URIs within each of the following sets are not equivalent".
NOT_EQUIVALENT = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
]


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_rfc3261_equivalent_uris(a: str, b: str) -> None:
    assert sip(a).matches(sip(b))
    assert sip(b).matches(sip(a))


@pytest.mark.parametrize(("a", "b"), NOT_EQUIVALENT)
def test_rfc3261_non_equivalent_uris(a: str, b: str) -> None:
    assert not sip(a).matches(sip(b))
    assert not sip(b).matches(sip(a))


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("sip:a@h;maddr=239.1.1.1", "sip:a@h", False),  # maddr in one only
        ("sip:a@h;ttl=5", "sip:a@h", False),
        ("sip:a@h;user=phone", "sip:a@h", False),
        ("sip:a@h;method=INVITE", "sip:a@h", False),
        ("sip:a@h;foo=1", "sip:a@h;foo=2", False),  # in both: must match
        ("sip:a@h;foo=ABC", "sip:a@h;FOO=abc", True),
        ("sip:a@h;lr", "sip:a@h;%6C%72", True),  # escaped parameter name
        ("sip:a@h;lr", "sip:a@h;lr=on", False),
        ("sip:a:pw@h", "sip:a:PW@h", False),  # userinfo is case-sensitive
        ("sip:a:p%77@h", "sip:a:pw@h", True),
        ("sip:a@h", "sips:a@h", False),
        ("sip:a@h?subject=x", "sip:a@h?SUBJECT=x", True),
        ("sip:a@h?subject=x", "sip:a@h?subject=X", False),
    ],
)
def test_sip_comparison_details(a: str, b: str, equal: bool) -> None:
    assert sip(a).matches(sip(b)) is equal
    assert sip(b).matches(sip(a)) is equal


def test_sip_never_matches_other_kinds() -> None:
    assert not sip("sip:+8613800138000@h").matches(tel("tel:+8613800138000"))
    assert not tel("tel:+8613800138000").matches(sip("sip:+8613800138000@h"))
    assert not sip("sip:a@h").matches("sip:a@h")


# RFC 3966 §4: visual separators ignored, parameters in any order, case-insensitive,
# a global phone-context compared digit by digit.
@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("tel:+1-201-555-0123", "tel:+12015550123", True),
        ("tel:+1(201)555.0123", "tel:+1-201-555-0123", True),
        ("tel:7042;phone-context=example.com", "tel:7042;phone-context=EXAMPLE.com", True),
        ("tel:7042;phone-context=+1-201", "tel:7042;phone-context=+1201", True),
        ("tel:863-1234;phone-context=+1-914-555", "tel:8631234;phone-context=+1914555", True),
        ("tel:+1201;ext=1;isub=2", "tel:+1201;isub=2;ext=1", True),
        ("tel:+1201;ext=1", "tel:+1201", False),
        ("tel:+12015550123", "tel:12015550123;phone-context=+1", False),
        ("tel:+12015550123", "tel:+12015550124", False),
        ("tel:7042;phone-context=example.com", "tel:7042;phone-context=example.net", False),
        ("tel:*21#;phone-context=+86", "tel:*21%23;phone-context=+86", True),
        ("tel:ABC;phone-context=x", "tel:abc;phone-context=x", True),
    ],
)
def test_tel_comparison(a: str, b: str, equal: bool) -> None:
    assert tel(a).matches(tel(b)) is equal
    assert tel(b).matches(tel(a)) is equal
