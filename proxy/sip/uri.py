"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966), parsed from and written to text.

Fields keep the text as written (escapes included) so that a URI re-serializes unchanged;
comparison (RFC 3261 §19.1.4, RFC 3966 §4) works on the unescaped values.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final, NamedTuple
from urllib.parse import unquote

from proxy.sip.errors import BadRequest

Params = tuple[tuple[str, str | None], ...]

_SCHEME_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-."
)
_HOST_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")
#: Characters a URI never holds unescaped; a regex search is far faster than a set
#: test over every character (parse hot path).
_FORBIDDEN_IN_URI: Final = re.compile(r'[ \t\r\n<>"]')
#: uri-parameters that must match when either URI has them (RFC 3261 §19.1.4).
_STRICT_PARAMS: Final = ("user", "ttl", "method", "maddr", "transport")


#: The common form of a sip/sips URI, as regex text for the header patterns to embed
#: (groups: scheme, user, password, host, port, then the parameters: name and value of
#: a lone lower-case ``;name=value``, else the ``;``-led parameter text). Every character
#: class is a subset of what the general parser accepts in that place and excludes the
#: delimiters it splits on first ("@", "?", ";", ">"), so text that matches parses
#: the same on either path; anything else (IPv6, escapes in the host, URI headers,
#: upper-case schemes, LWS) takes the general parser. Possessive quantifiers (``++``)
#: spare the regex engine its backtracking bookkeeping; they can only make the pattern
#: refuse more, never accept more. The lone parameter (``;user=phone``,
#: ``;transport=udp``) comes out as its two parts, so that no splitting is left to do.
_URI_PARAM_CHARS: Final = r"[A-Za-z0-9\-_.!~*'()%\[\]/:&+$]"
SIP_URI_PATTERN: Final = (
    r"(sips?):"
    r"(?:([A-Za-z0-9\-_.!~*'()%&=+$,]++)(?::([A-Za-z0-9\-_.!~*'()%&=+$,]*+))?+@)?"
    r"([A-Za-z0-9\-._]++)"
    r"(?::([0-9]{1,5}+))?+"
    rf"(?:;([a-z]++)=({_URI_PARAM_CHARS}++)(?![^>])"
    rf"|((?:;{_URI_PARAM_CHARS}++(?:={_URI_PARAM_CHARS}*+)?+)*+))"
)
_SIP_URI: Final = re.compile(SIP_URI_PATTERN)


def is_digits(text: str) -> bool:
    """ASCII ``1*DIGIT`` (RFC 5234 B.1); ``str.isdigit`` also accepts ``"²"`` or ``"٣"``."""
    return text.isascii() and text.isdigit()


def unescape(text: str) -> str:
    """Undo %-escapes once (RFC 3261 §19.1.4: never recursively, RFC 4475 §3.1.1.3)."""
    if "%" not in text:
        return text
    return unquote(text, errors="surrogateescape")


def _parse_params(text: str, what: str) -> Params:
    """Parse ``;name[=value]`` pairs; names are case-insensitive (RFC 3261 §19.1.1)."""
    if not text:
        return ()
    params: list[tuple[str, str | None]] = []
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        name = name.strip()
        if not name:
            raise BadRequest(f"empty parameter in {what}")
        params.append((name.lower(), value.strip() if eq else None))
    return tuple(params)


def split_checked_params(text: str) -> Params:
    """Split ``;name[=value]...`` already matched by a fast-path pattern: no LWS, no
    empty names, so this is ``_parse_params``/``parse_header_params`` minus the checks."""
    if not text:
        return ()
    if text.find(";", 1) < 0:
        # One parameter (;tag=, ;user=phone, ;lr): the common case, without a list.
        name, eq, value = text[1:].partition("=")
        return ((name.lower(), value if eq else None),)
    params: list[tuple[str, str | None]] = []
    for item in text[1:].split(";"):
        name, eq, value = item.partition("=")
        params.append((name.lower(), value if eq else None))
    return tuple(params)


def _format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def param_value(params: Params, name: str) -> str | None:
    """Value of parameter ``name`` ("" for a flag), or None when absent."""
    for key, value in params:
        if key == name:
            return "" if value is None else value
    return None


def parse_host(text: str, what: str) -> tuple[str, int | None]:
    """Split ``host[:port]``; IPv6 references are bracketed (RFC 3261 §25.1, RFC 5118 §4)."""
    if not text:
        raise BadRequest(f"missing host in {what}")
    port_text = ""
    if text[0] == "[":
        end = text.find("]")
        if end < 0:
            raise BadRequest(f"unterminated IPv6 reference in {what}")
        host = text[: end + 1]
        if "%" in host:
            # ipaddress accepts "fe80::1%eth0"; a zone index has no place in a SIP URI.
            raise BadRequest(f"zone index in IPv6 reference in {what}")
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise BadRequest(f"invalid IPv6 address {host} in {what}") from None
        rest = text[end + 1 :]
        if rest:
            if rest[0] != ":":
                raise BadRequest(f"junk after IPv6 reference in {what}")
            port_text = rest[1:]
    else:
        host, colon, port_text = text.partition(":")
        if colon and not port_text:
            raise BadRequest(f"empty port in {what}")
        if not host or not _HOST_CHARS.issuperset(host):
            raise BadRequest(f"invalid host {host!r} in {what}")
    if not port_text:
        return host, None
    if not is_digits(port_text) or len(port_text) > 5 or int(port_text) > 65535:
        raise BadRequest(f"invalid port {port_text!r} in {what}")
    return host, int(port_text)


class SipUri(NamedTuple):
    """A ``sip:`` or ``sips:`` URI (RFC 3261 §19.1.1). Text fields are as written.

    Immutable and compared field by field, as a frozen dataclass would be, but a tuple:
    the parser builds one in a single C call (``tuple.__new__``) where a frozen
    dataclass costs one guarded ``__setattr__`` per field (design.md §5). Equal only to
    another SipUri, never to a plain tuple with the same items.
    """

    scheme: str
    user: str | None
    host: str
    port: int | None = None
    password: str | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is SipUri and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return tuple.__hash__(self)

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out += [":", self.password]
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out += [":", str(self.port)]
        out.append(_format_params(self.params))
        if self.headers:
            out += ["?", "&".join(f"{k}={v}" for k, v in self.headers)]
        return "".join(out)

    def param(self, name: str) -> str | None:
        """A uri-parameter by (lower-case) name; "" for a flag such as ``lr``."""
        return param_value(self.params, name)

    @property
    def user_unescaped(self) -> str | None:
        return None if self.user is None else unescape(self.user)

    @property
    def transport(self) -> str:
        """Transport named by ``;transport=`` (lower-case), ``tls`` for sips, else ``udp``."""
        value = self.param("transport")
        if value:
            return value.lower()
        return "tls" if self.scheme == "sips" else "udp"

    def matches(self, other: object) -> bool:
        """URI equivalence per RFC 3261 §19.1.4."""
        if not isinstance(other, SipUri) or self.scheme != other.scheme:
            return False
        if (self.user_unescaped, self.password and unescape(self.password)) != (
            other.user_unescaped,
            other.password and unescape(other.password),
        ):
            return False
        if self.host.lower() != other.host.lower() or self.port != other.port:
            return False
        mine = _comparable_params(self.params)
        theirs = _comparable_params(other.params)
        for name in _STRICT_PARAMS:
            if (name in mine) != (name in theirs):
                return False
        if any(mine[name] != theirs[name] for name in mine.keys() & theirs.keys()):
            return False
        mine_h = {unescape(k).lower(): unescape(v) for k, v in self.headers}
        theirs_h = {unescape(k).lower(): unescape(v) for k, v in other.headers}
        return mine_h == theirs_h


_new_tuple = tuple.__new__


def sip_uri_from_match(
    scheme: str,
    user: str | None,
    password: str | None,
    host: str,
    port_text: str | None,
    param_name: str | None,
    param_value_text: str | None,
    param_text: str | None,
) -> SipUri | None:
    """The SipUri for the groups of ``SIP_URI_PATTERN``; None (take the general parser,
    which names the fault) when the port is above 65535."""
    port: int | None = None
    if port_text is not None:
        port = int(port_text)
        if port > 65535:
            return None
    if param_name is not None:
        params: Params = ((param_name, param_value_text),)
    elif param_text:
        params = split_checked_params(param_text)
    else:
        params = ()
    uri: SipUri = _new_tuple(SipUri, (scheme, user, host, port, password, params, ()))
    return uri


def _comparable_params(params: Params) -> dict[str, str | None]:
    """uri-parameters as §19.1.4 compares them: escapes undone (once) in names and
    values, both case-insensitive ("all other components ... case-insensitive")."""
    return {
        unescape(name).lower(): None if value is None else unescape(value).lower()
        for name, value in params
    }


_VISUAL_SEPARATORS: Final = str.maketrans("", "", "-.()")
#: RFC 3966 §3 phonedigit-hex plus visual separators; "%" for an escaped "#".
_TEL_CHARS: Final = frozenset("0123456789abcdefABCDEF*#-.()%")


def _tel_param_key(name: str, value: str | None) -> tuple[str, str]:
    """How a tel parameter compares (RFC 3966 §4): a global-number phone-context digit
    by digit without visual separators, everything else case-insensitively."""
    text = unescape(value or "")
    if name == "phone-context" and text.startswith("+"):
        text = text.translate(_VISUAL_SEPARATORS)
    return name, text.lower()


@dataclass(frozen=True, slots=True)
class TelUri:
    """A ``tel:`` URI (RFC 3966 §3): a global (+digits) or local number with parameters."""

    number: str
    params: Params = ()

    def __str__(self) -> str:
        return f"tel:{self.number}{_format_params(self.params)}"

    @property
    def scheme(self) -> str:
        return "tel"

    @property
    def user(self) -> str:
        """The number as written, so that routing reads tel and sip URIs alike."""
        return self.number

    @property
    def user_unescaped(self) -> str:
        return unescape(self.number)

    def param(self, name: str) -> str | None:
        return param_value(self.params, name)

    def matches(self, other: object) -> bool:
        """Equivalence per RFC 3966 §4: numbers without visual separators, same params."""
        if not isinstance(other, TelUri):
            return False
        mine = unescape(self.number).translate(_VISUAL_SEPARATORS).lower()
        theirs = unescape(other.number).translate(_VISUAL_SEPARATORS).lower()
        if mine != theirs or not mine.lstrip("+"):
            return False
        return sorted(_tel_param_key(k, v) for k, v in self.params) == sorted(
            _tel_param_key(k, v) for k, v in other.params
        )


@dataclass(frozen=True, slots=True)
class AbsoluteUri:
    """Any other scheme (RFC 3261 §25.1 absoluteURI), kept as written."""

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"

    @property
    def user(self) -> None:
        return None

    @property
    def user_unescaped(self) -> None:
        return None

    def param(self, name: str) -> str | None:
        return None

    def matches(self, other: object) -> bool:
        return (
            isinstance(other, AbsoluteUri)
            and self.scheme == other.scheme
            and self.rest == other.rest
        )


Uri = SipUri | TelUri | AbsoluteUri

#: Parsed URIs by their exact text: the Request-URI of a trunk's calls and of every
#: in-dialog request repeats. URIs are frozen, so one parse serves every message with
#: the same text. Only successful parses without URI headers are kept (whether headers
#: are allowed depends on where the URI stands); emptied when full, so that a peer
#: sending endless distinct URIs cannot grow it. Small, as ``address._PARSED_LIMIT``.
_PARSED_LIMIT: Final = 64
_PARSED_URIS: dict[str, Uri] = {}


def forget_parsed_uris() -> None:
    """Empty the table of parsed URIs (see ``address.forget_parsed_values``)."""
    _PARSED_URIS.clear()


def parse_uri(text: str, *, what: str = "URI", allow_headers: bool = True) -> Uri:
    """Parse a URI (RFC 3261 §19.1.1, §25.1; RFC 3966 §3).

    ``allow_headers`` is False for a Request-URI, where headers are not allowed
    (RFC 3261 §19.1.1 table; RFC 4475 §3.1.2.11).
    """
    cached = _PARSED_URIS.get(text)
    if cached is not None:
        return cached
    uri: Uri | None = None
    match = _SIP_URI.fullmatch(text)
    if match is not None:
        uri = sip_uri_from_match(*match.groups())
    if uri is None:
        uri = parse_uri_general(text, what=what, allow_headers=allow_headers)
        if isinstance(uri, SipUri) and uri.headers:
            return uri  # valid or not depending on allow_headers: never kept
    if len(_PARSED_URIS) >= _PARSED_LIMIT:
        _PARSED_URIS.clear()
    _PARSED_URIS[text] = uri
    return uri


def parse_uri_general(text: str, *, what: str = "URI", allow_headers: bool = True) -> Uri:
    """``parse_uri`` without the fast path: every form, every check, the fault named."""
    colon = text.find(":")
    if colon <= 0:
        raise BadRequest(f"{what} has no scheme")
    scheme = text[:colon]
    if not _SCHEME_CHARS.issuperset(scheme) or not scheme[0].isalpha():
        raise BadRequest(f"invalid scheme in {what}")
    if _FORBIDDEN_IN_URI.search(text) is not None:
        raise BadRequest(f"whitespace or delimiter inside {what}")
    scheme = scheme.lower()
    rest = text[colon + 1 :]
    if scheme in ("sip", "sips"):
        return _parse_sip(scheme, rest, what, allow_headers)
    if scheme == "tel":
        number, _, params = rest.partition(";")
        digits = number[1:] if number.startswith("+") else number
        if not digits or not _TEL_CHARS.issuperset(digits):
            raise BadRequest(f"invalid telephone number in {what}")
        return TelUri(number, _parse_params(params, what))
    if not rest:
        raise BadRequest(f"empty {what}")
    return AbsoluteUri(scheme, rest)


def _parse_sip(scheme: str, rest: str, what: str, allow_headers: bool) -> SipUri:
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo = rest[:at]
        rest = rest[at + 1 :]
        user, colon, pw = userinfo.partition(":")
        if colon:
            password = pw
        if not user:
            raise BadRequest(f"empty user in {what}")
    rest, qmark, header_text = rest.partition("?")
    headers: tuple[tuple[str, str], ...] = ()
    if qmark:
        if not allow_headers:
            raise BadRequest(f"headers are not allowed in the {what}")
        pairs = []
        for item in header_text.split("&"):
            name, eq, value = item.partition("=")
            if not name or not eq:
                raise BadRequest(f"malformed header in {what}")
            pairs.append((name, value))
        headers = tuple(pairs)
    hostport, _, params = rest.partition(";")
    host, port = parse_host(hostport, what)
    return SipUri(scheme, user, host, port, password, _parse_params(params, what), headers)
