"""Typed header values: name-addr/addr-spec, Via and CSeq (RFC 3261 §20, §25.1).

Each is immutable, compared field by field, with a ``parse`` that raises ``BadRequest``
naming the fault. Via is a frozen dataclass; NameAddress and CSeq, read on every
message, are typed tuples (as ``uri.SipUri``): one C call builds one.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, Self

from proxy.sip.errors import BadRequest
from proxy.sip.uri import (
    _PARSED_URIS,
    SIP_URI_PATTERN,
    Params,
    SipUri,
    Uri,
    is_digits,
    param_value,
    parse_host,
    parse_uri,
    split_checked_params,
)

_TOKEN_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
)
_MAX_CSEQ: Final = 2**32 - 1


def is_token(text: str) -> bool:
    """RFC 3261 §25.1 ``token``."""
    return bool(text) and _TOKEN_CHARS.issuperset(text)


def is_dotted_ipv4(text: str) -> bool:
    """Whether ``text`` is a dotted IPv4 address (RFC 3261 §25.1 IPv4address: four
    decimal octets 0-255, no leading zeros), by a split and a set lookup, no regex."""
    parts = text.split(".")
    return len(parts) == 4 and _IPV4_PARTS.issuperset(parts)


def _end_of_quoted(text: str, start: int) -> int:
    """Index just past the closing quote of the quoted-string opening at ``start``."""
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i + 1
        i += 1
    raise BadRequest("unterminated quoted string")


#: The common case of ``*( SEMI generic-param )``: token names, values without LWS or
#: quotes. Text that matches parses the same on the fast path as on the general one.
_SIMPLE_PARAMS: Final = re.compile(r"(?:;[A-Za-z0-9\-.!%*_+`'~]+(?:=[^;\s\"]+)?)+")


#: What ``\s`` matches in a str pattern (every character for which str.isspace() holds),
#: spelled out: a class of plain characters compiles to a lookup table, while ``\s`` inside
#: a class costs a Unicode category call per character (tests/unit/
#: test_parser_fast_paths.py checks that the two agree on every code point).
WHITESPACE: Final = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _class_without(excluded: str) -> str:
    """The character class of every code point but ``excluded``, as ranges: ``[^...]``
    tests every excluded item before it accepts a character, a class of ranges accepts
    an ASCII one at its first lookup."""
    ranges: list[str] = []
    start = 0
    for code in sorted({ord(character) for character in excluded}):
        if code > start:
            ranges.append(f"\\U{start:08x}-\\U{code - 1:08x}")
        start = code + 1
    ranges.append(f"\\U{start:08x}-\\U0010ffff")
    return f"[{''.join(ranges)}]"


#: ``[^;\s"]``: a character of a parameter value without quotes or LWS.
_VALUE_CHAR: Final = _class_without(';"' + WHITESPACE)
_TOKEN: Final = r"[A-Za-z0-9\-.!%*_+`'~]++"
_SIMPLE_PARAMS_TEXT: Final = rf"(?:;{_TOKEN}(?:={_VALUE_CHAR}++)?+)*+"

#: The common forms of the header values the proxy reads on every message. Each
#: accepts a subset of what the general parser accepts, and for text that matches both
#: produce the same value (tests/unit/test_fuzz.py checks this on generated input);
#: anything else (LWS around separators, escaped quotes, IPv6, upper-case schemes,
#: addr-spec without <>) takes the general parser.
#: ``[display] <sip-uri> *(;param)``: display a quoted string without escapes or
#: tokens separated by single spaces (what " ".join(words) gives back unchanged).
#: A lone ``;tag=`` (From and To) comes out as its value: no splitting left to do.
_NAME_ADDR: Final = re.compile(
    rf'(?:("[^"\\]*+")[ \t]*+|({_TOKEN}(?: {_TOKEN})*+)[ \t]*+)?'
    rf"<{SIP_URI_PATTERN}>(?:;tag=({_VALUE_CHAR}++)|({_SIMPLE_PARAMS_TEXT}))"
)
#: ``SIP/2.0/transport host[:port] *(;param)`` with a hostname or dotted IPv4 host.
#: The transport upper-case and the parameter names lower-case, as they are written in
#: practice and as the general parser stores them: nothing left to case-fold. The first
#: three parameters come out as (name, value) groups, an absent value as None, as
#: ``Params`` holds them: only a fourth and later are split. A ``received`` parameter is
#: checked after the match, and only when the text names it (``Via.parse``): inside the
#: pattern, keeping it out of every other name cost a lookahead per parameter.
_LOWER_TOKEN: Final = r"[a-z0-9\-.!%*_+`'~]++"
_VIA_PARAM_GROUPS: Final = rf"(?:;({_LOWER_TOKEN})(?:=({_VALUE_CHAR}++))?+)?+"
_VIA: Final = re.compile(
    r"SIP/2\.0/([A-Z0-9\-.!%*_+`'~]++) ([A-Za-z0-9\-._]++)(?::([0-9]{1,5}+))?+"
    + _VIA_PARAM_GROUPS * 3
    + rf"((?:;{_LOWER_TOKEN}(?:={_VALUE_CHAR}++)?+)*+)"
)
#: The four parts of a dotted IPv4 address: 0-255, no leading 0.
_IPV4_PARTS: Final = frozenset(str(number) for number in range(256))
_CSEQ: Final = re.compile(rf"([0-9]{{1,10}}+) ({_TOKEN})")

#: Parsed values by their exact text, one table per type. A call repeats most of its
#: values (the From of its INVITE in the ACK and BYE; Via, From and CSeq in every
#: response to one request) and a trunk repeats some across calls (``1 INVITE``, its
#: Contact); the values are frozen, so one parse serves every message with the same text.
#: Only successful parses are kept, so a malformed value is refused every time; a table
#: is emptied when full, so a peer sending endless distinct values cannot grow it.
#: Small on purpose: it spans the last few dozen transactions, whose responses repeat
#: their request's values within milliseconds. Every entry keeps parsed values alive
#: that would otherwise be freed with their message: the garbage collector walks them
#: and new values land in memory that is not in the CPU caches, so under new calls'
#: values a larger table costs more than its later hits save (``benchmarks/parse.py``,
#: values never seen, 200 OK with typed access: 48k/s with 4096 entries, 76k/s with
#: 256; with 64, 134k instructions a message down to 126k, the collector no longer
#: run by the parse alone, and 3.5x sipmessage's rate up to 3.85x).
_PARSED_LIMIT: Final = 64
_PARSED_ADDRESSES: dict[str, NameAddress] = {}
_PARSED_VIAS: dict[str, Via] = {}
_PARSED_CSEQS: dict[str, CSeq] = {}


def forget_parsed_values() -> None:
    """Empty the tables of parsed values (Via, name-addr, CSeq, URIs): for benchmarks that
    must measure a parse of values never seen before, and for tests."""
    _PARSED_ADDRESSES.clear()
    _PARSED_VIAS.clear()
    _PARSED_CSEQS.clear()
    _PARSED_URIS.clear()


def parse_header_params(text: str, what: str) -> Params:
    """Parse ``*( SEMI generic-param )`` with LWS and quoted values (RFC 3261 §25.1)."""
    text = text.strip()
    if not text:
        return ()
    if _SIMPLE_PARAMS.fullmatch(text) is not None:
        return split_checked_params(text)
    if text[0] != ";":
        raise BadRequest(f"junk before parameters in {what}")
    params: list[tuple[str, str | None]] = []
    n = len(text)
    i = 1
    while True:
        j = i
        while j < n and text[j] not in ";=":
            j += 1
        name = text[i:j].strip()
        if not is_token(name):
            raise BadRequest(f"empty or invalid parameter name in {what}")
        value: str | None = None
        if j < n and text[j] == "=":
            k = j + 1
            while k < n and text[k] in " \t":
                k += 1
            if k < n and text[k] == '"':
                close = _end_of_quoted(text, k)
                value = text[k:close]
                j = text.find(";", close)
                j = n if j < 0 else j
                if text[close:j].strip():
                    raise BadRequest(f"junk after quoted parameter in {what}")
            else:
                j = text.find(";", k)
                j = n if j < 0 else j
                value = text[k:j].strip()
                if not value:
                    raise BadRequest(f"parameter {name} has no value in {what}")
        params.append((name.lower(), value))
        if j >= n:
            return tuple(params)
        i = j + 1


def _param_or_empty(params: Params, wanted: str) -> str | None:
    """The first ``wanted`` parameter's value ("" when it has none), or None."""
    for name, value in params:
        if name == wanted:
            return "" if value is None else value
    return None


class _NameAddressFields(NamedTuple):
    uri: Uri
    display_name: str | None
    params: Params
    tag: str | None


class NameAddress(_NameAddressFields):
    """From, To, Contact, Route, P-Asserted-Identity and kin (RFC 3261 §20.10, §20.20).

    ``display_name`` is as written (quotes kept); ``params`` are header parameters such
    as ``tag`` — never URI parameters (§20: addr-spec parameters belong to the header).
    ``tag`` is the dialog tag (RFC 3261 §19.3), the first ``tag`` parameter's value (""
    when it has none) or None: worked out from ``params`` when the value is built, and
    read as a tuple item (a C getter), not by a property function looping over the
    parameters, as every dialog and transaction decision reads it.
    Equal only to another NameAddress, never to a plain tuple with the same items.
    """

    __slots__ = ()

    def __new__(cls, uri: Uri, display_name: str | None = None, params: Params = ()) -> Self:
        return tuple.__new__(cls, (uri, display_name, params, _param_or_empty(params, "tag")))

    def __eq__(self, other: object) -> bool:
        return type(other) is NameAddress and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return tuple.__hash__(self)

    @classmethod
    def parse(cls, text: str, what: str = "address") -> NameAddress:
        address = _PARSED_ADDRESSES.get(text)
        if address is not None:
            return address
        # The fast path, written out (From and To are parsed on every message):
        # ``sip_uri_from_match`` and ``split_checked_params`` inlined.
        match = _NAME_ADDR_MATCH(text)
        if match is not None:
            (quoted, tokens, scheme, user, password, host, port_text, uri_param,
             uri_param_value, uri_param_text, tag, param_text) = match.groups()  # fmt: skip
            port: int | None = None
            if port_text is not None:
                port = int(port_text)
            if port is None or port <= 65535:
                if uri_param is not None:
                    uri_params: Params = ((uri_param, uri_param_value),)
                elif uri_param_text:
                    uri_params = split_checked_params(uri_param_text)
                else:
                    uri_params = ()
                if tag is not None:
                    params: Params = (("tag", tag),)
                elif param_text:
                    params = split_checked_params(param_text)
                    tag = _param_or_empty(params, "tag")
                else:
                    params = ()
                uri = _new_tuple(SipUri, (scheme, user, host, port, password, uri_params, ()))
                address = _new_tuple(NameAddress, (uri, quoted or tokens, params, tag))
        if address is None:
            address = cls.parse_general(text, what)
        if len(_PARSED_ADDRESSES) >= _PARSED_LIMIT:
            _PARSED_ADDRESSES.clear()
        _PARSED_ADDRESSES[text] = address
        return address

    @classmethod
    def parse_general(cls, text: str, what: str = "address") -> NameAddress:
        """``parse`` without the fast path: every form, every check, the fault named."""
        text = text.strip()
        if not text:
            raise BadRequest(f"empty {what}")
        display: str | None = None
        if text[0] == '"':
            close = _end_of_quoted(text, 0)
            display = text[:close]
            rest = text[close:].lstrip()
            if not rest.startswith("<"):
                raise BadRequest(f"display name not followed by <URI> in {what}")
            return cls._bracketed(rest, display, what)
        lt = text.find("<")
        if lt >= 0:
            words = text[:lt].split()
            if words and not all(is_token(word) for word in words):
                raise BadRequest(f"display name is neither token nor quoted in {what}")
            display = " ".join(words) or None
            return cls._bracketed(text[lt:], display, what)
        uri_text, semi, param_text = text.partition(";")
        if "?" in uri_text or "," in uri_text:
            raise BadRequest(f"URI with '?' or ',' must be in <> in {what}")
        uri = parse_uri(uri_text.rstrip(), what=what)
        params = parse_header_params(semi + param_text, what) if semi else ()
        return cls(uri, None, params)

    @classmethod
    def _bracketed(cls, text: str, display: str | None, what: str) -> NameAddress:
        gt = text.find(">")
        if gt < 0:
            raise BadRequest(f"missing '>' in {what}")
        uri = parse_uri(text[1:gt], what=what)
        return cls(uri, display, parse_header_params(text[gt + 1 :], what))

    def __str__(self) -> str:
        head = f"{self.display_name} <{self.uri}>" if self.display_name else f"<{self.uri}>"
        params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params)
        return head + params

    def param(self, name: str) -> str | None:
        return param_value(self.params, name)


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value (RFC 3261 §20.42, §18.2.1; RFC 3581 rport).

    ``branch`` (RFC 3261 §8.1.1.7) is the first ``branch`` parameter's value ("" when it
    has none) or None: worked out from ``params`` when the value is built, and read as a
    slot, not by a property function looping over the parameters, as every transaction
    match reads it (§17.1.3, §17.2.3). Not compared: ``params`` holds it."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()
    branch: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "branch", _param_or_empty(self.params, "branch"))

    @classmethod
    def parse(cls, text: str) -> Via:
        via = _PARSED_VIAS.get(text)
        if via is not None:
            return via
        match = _VIA_MATCH(text)
        if match is not None:
            (transport, host, port_text, name1, value1, name2, value2, name3, value3,
             more) = match.groups()  # fmt: skip
            port = None if port_text is None else int(port_text)
            if port is None or port <= 65535:
                # The pattern took lower-case names only: nothing to case-fold.
                params: Params
                if name1 is None:
                    params = ()
                elif name2 is None:
                    params = ((name1, value1),)
                elif name3 is None:
                    params = ((name1, value1), (name2, value2))
                else:
                    params = ((name1, value1), (name2, value2), (name3, value3))
                    if more:
                        params += tuple(
                            [
                                (name, value if equals else None)
                                for item in more[1:].split(";")
                                for name, equals, value in (item.partition("="),)
                            ]
                        )
                plain = True
                if "received" in text:
                    # parse_general checks the first received= (RFC 3261 §18.2.1): here
                    # a dotted IPv4 one passes, any other form (IPv6, junk, none) is left
                    # to parse_general.
                    received = _param_or_empty(params, "received")
                    plain = received is None or is_dotted_ipv4(received)
                if plain:
                    if name1 == "branch":  # where RFC 3261 §8.1.1.7 clients put it
                        branch = "" if value1 is None else value1
                    else:
                        branch = _param_or_empty(params, "branch")
                    fields: Any = _ViaFields(transport, host, port, params, branch)
                    fields.__class__ = Via
                    via = fields
        if via is None:
            via = cls.parse_general(text)
        if len(_PARSED_VIAS) >= _PARSED_LIMIT:
            _PARSED_VIAS.clear()
        _PARSED_VIAS[text] = via
        return via

    @classmethod
    def parse_general(cls, text: str) -> Via:
        """``parse`` without the fast path: every form, every check, the fault named."""
        slash1 = text.find("/")
        slash2 = text.find("/", slash1 + 1) if slash1 >= 0 else -1
        if slash2 < 0:
            raise BadRequest("malformed Via sent-protocol")
        protocol = text[:slash1].strip()
        version = text[slash1 + 1 : slash2].strip()
        if protocol.upper() != "SIP" or version != "2.0":
            raise BadRequest(f"unsupported Via protocol {protocol}/{version}")
        rest = text[slash2 + 1 :].lstrip()
        parts = rest.split(None, 1)
        if len(parts) != 2:
            raise BadRequest("Via lacks sent-by")
        transport = parts[0].upper()
        if not is_token(transport):
            raise BadRequest("invalid Via transport")
        sent_by, semi, param_text = parts[1].partition(";")
        # LWS is allowed around the colon only (COLON = SWS ":" SWS, RFC 3261 §25.1).
        sent_by = ":".join(part.strip() for part in sent_by.split(":"))
        if " " in sent_by or "\t" in sent_by:
            raise BadRequest("whitespace inside the host of Via sent-by")
        host, port = parse_host(sent_by, "Via sent-by")
        params = parse_header_params(semi + param_text, "Via") if semi else ()
        received = param_value(params, "received")
        if received is not None:
            _validate_received(received)
        return cls(transport, host, port, params)

    def __str__(self) -> str:
        sent_by = self.host if self.port is None else f"{self.host}:{self.port}"
        params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params)
        return f"SIP/2.0/{self.transport} {sent_by}{params}"

    def param(self, name: str) -> str | None:
        return param_value(self.params, name)

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    @property
    def received(self) -> str | None:
        return param_value(self.params, "received")

    @property
    def rport(self) -> str | None:
        """ "" when the client asked for rport (RFC 3581 §3), the port once filled in."""
        return param_value(self.params, "rport")

    @property
    def maddr(self) -> str | None:
        return param_value(self.params, "maddr")


def _validate_received(value: str) -> None:
    """``received`` holds an IPv4 or IPv6 address, bracketed or not (RFC 5118 §4.5)."""
    if is_dotted_ipv4(value):
        return
    bare = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        raise BadRequest(f"Via received={value!r} is not an IP address") from None


class CSeq(NamedTuple):
    """CSeq: sequence number and method (RFC 3261 §20.16; number < 2**32, §8.1.1.5).
    Equal only to another CSeq, never to a plain tuple with the same items."""

    number: int
    method: str

    def __eq__(self, other: object) -> bool:
        return type(other) is CSeq and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return tuple.__hash__(self)

    @classmethod
    def parse(cls, text: str) -> CSeq:
        cseq = _PARSED_CSEQS.get(text)
        if cseq is not None:
            return cseq
        match = _CSEQ_MATCH(text)
        if match is not None:
            digits, method = match.groups()
            number = int(digits)
            if number <= _MAX_CSEQ:
                cseq = _new_tuple(CSeq, (number, method))
        if cseq is None:
            cseq = cls.parse_general(text)
        if len(_PARSED_CSEQS) >= _PARSED_LIMIT:
            _PARSED_CSEQS.clear()
        _PARSED_CSEQS[text] = cseq
        return cseq

    @classmethod
    def parse_general(cls, text: str) -> CSeq:
        """``parse`` without the fast path: every form, every check, the fault named."""
        parts = text.split()
        if len(parts) != 2:
            raise BadRequest("malformed CSeq")
        digits, method = parts
        if not is_digits(digits) or len(digits) > 10 or int(digits) > _MAX_CSEQ:
            raise BadRequest("CSeq number is not an integer below 2**32")
        if not is_token(method):
            raise BadRequest("invalid CSeq method")
        return cls(int(digits), method)

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


_NAME_ADDR_MATCH: Final = _NAME_ADDR.fullmatch
_CSEQ_MATCH: Final = _CSEQ.fullmatch
_VIA_MATCH: Final = _VIA.fullmatch
_new_tuple = tuple.__new__


class _ViaFields:
    """Via's slots under a plain ``__init__``: the fast path fills one and makes it a Via
    (the same slots, so ``__class__`` may change; a field added to Via and not here makes
    that assignment raise TypeError on every fast-path parse, which every test would
    see). Cheaper than a frozen dataclass's guarded ``object.__setattr__`` per field, or
    a slot descriptor call per field. Never seen outside."""

    __slots__ = ("branch", "host", "params", "port", "transport")

    def __init__(
        self, transport: str, host: str, port: int | None, params: Params, branch: str | None
    ) -> None:
        self.transport = transport
        self.host = host
        self.port = port
        self.params = params
        self.branch = branch
