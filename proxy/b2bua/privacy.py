"""The privacy rewrite: what crosses from one leg to the other (design.md §4).

Requests and responses on the far leg are *built*, never copied: only the headers on
the allow-list below pass, each through its own filter, and the body passes only when
its type is listed (SDP through ``rewrite_sdp``). Everything else — From, To,
P-Asserted-Identity, Remote-Party-ID, Diversion, History-Info, Call-Info, Contact,
Call-ID, Via, Record-Route, User-Agent, Server, X- headers and the rest — is dropped and
written anew by the B2BUA where the protocol needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from proxy.b2bua.sdp import rewrite_sdp
from proxy.sip.headers import canonical_name
from proxy.sip.message import Message
from proxy.sip.uri import SipUri, TelUri, Uri

#: Option tags we relay (RFC 4028 session timers); 100rel and histinfo are not relayed
#: until reliable provisionals and History-Info are supported end to end.
RELAYED_OPTION_TAGS: Final = frozenset({"timer"})
#: Methods the far leg may be told we take (RFC 3261 §20.5): what the B2BUA relays or
#: answers in a dialog. Advertising REFER or PRACK would invite requests we refuse.
RELAYED_METHODS: Final = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "UPDATE", "INFO")
#: A delta-seconds value that crosses has at most this many digits: no telephone number
#: is that short, and no session timer that long (RFC 4028 §4 recommends 1800 s).
_MAX_DELTA_DIGITS: Final = 6
_REFRESHERS: Final = frozenset({"uac", "uas"})


def _tokens(value: str) -> list[str]:
    return [token.strip() for token in value.split(",") if token.strip()]


def _option_tags(value: str) -> str | None:
    """Supported (RFC 3261 §20.37): only the option tags we relay."""
    kept = [tag.lower() for tag in _tokens(value) if tag.lower() in RELAYED_OPTION_TAGS]
    return ", ".join(kept) if kept else None


def _methods(value: str) -> str | None:
    """Allow (RFC 3261 §20.5): only methods the B2BUA handles, written as we write them."""
    offered = {token.upper() for token in _tokens(value)}
    kept = [method for method in RELAYED_METHODS if method in offered]
    return ", ".join(kept) if kept else None


def _media_types(value: str) -> str | None:
    """Accept (RFC 3261 §20.1): only body types that can cross, parameters dropped."""
    offered = {token.partition(";")[0].strip().lower() for token in _tokens(value)}
    kept = [media for media in ALLOWED_BODIES if media in offered]
    return ", ".join(kept) if kept else None


def _delta_seconds(text: str) -> str | None:
    text = text.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= _MAX_DELTA_DIGITS):
        return None
    return str(int(text))


def _session_expires(value: str) -> str | None:
    """Session-Expires (RFC 4028 §4): delta-seconds and a ``refresher`` of uac or uas."""
    delta_text, _, params = value.partition(";")
    delta = _delta_seconds(delta_text)
    if delta is None:
        return None
    for param in params.split(";"):
        name, _, refresher = param.partition("=")
        if name.strip().lower() == "refresher" and refresher.strip().lower() in _REFRESHERS:
            return f"{delta};refresher={refresher.strip().lower()}"
    return delta


def _min_se(value: str) -> str | None:
    """Min-SE (RFC 4028 §5): delta-seconds only, its generic parameters dropped."""
    return _delta_seconds(value.partition(";")[0])


#: header key → filter; a filter returning None drops the header (deny by default).
#: Each filter rebuilds the value from what it recognised, so that free text never
#: crosses (design.md §4: Allow, Supported, Accept, Session-Expires, Min-SE; the body and
#: its Content-Type go through ``relayed_body``).
ALLOWED_HEADERS: Final[dict[str, Callable[[str], str | None]]] = {
    "allow": _methods,
    "accept": _media_types,
    "supported": _option_tags,
    "session-expires": _session_expires,
    "min-se": _min_se,
}

_DTMF_EVENTS: Final = frozenset(b"0123456789*#ABCDabcd")


def _dtmf_relay(body: bytes) -> bytes:
    """application/dtmf-relay (the de-facto INFO format): ``Signal`` and ``Duration``
    rebuilt from what they hold; anything else in the body stays behind."""
    fields: dict[bytes, bytes] = {}
    for line in body.splitlines():
        name, _, value = line.partition(b"=")
        fields[name.strip().lower()] = value.strip()
    signal = fields.get(b"signal", b"")
    duration = fields.get(b"duration", b"")
    if len(signal) != 1 or signal[0] not in _DTMF_EVENTS:
        return b""
    out = b"Signal=" + signal + b"\r\n"
    if duration.isdigit() and len(duration) <= _MAX_DELTA_DIGITS:
        out += b"Duration=" + duration + b"\r\n"
    return out


def _dtmf(body: bytes) -> bytes:
    """application/dtmf: one event (RFC 2976 usage); anything longer stays behind."""
    event = body.strip()
    return event if len(event) == 1 and event[0] in _DTMF_EVENTS else b""


#: Body types that may cross, each with its rewrite (RFC 3261 §20.15); a rewrite that
#: returns nothing drops the body.
ALLOWED_BODIES: Final[dict[str, Callable[[bytes], bytes]]] = {
    "application/sdp": rewrite_sdp,
    "application/dtmf-relay": _dtmf_relay,
    "application/dtmf": _dtmf,
}


def allowed_headers(source: Message) -> tuple[tuple[str, str], ...]:
    """The allow-listed headers of ``source``, filtered, in their original order."""
    # Most messages carry none of them (provisionals, ACK, BYE): asking by key first
    # leaves the header records of a parsed message unbuilt (``Message.headers``).
    if not any(map(source.has, ALLOWED_HEADERS)):
        return ()
    out: list[tuple[str, str]] = []
    allowed = ALLOWED_HEADERS
    for header in source.headers:
        rewrite = allowed.get(header.key)
        if rewrite is not None and (rewritten := rewrite(header.value)):
            out.append((canonical_name(header.key), rewritten))
    return tuple(out) if out else ()


def relayed_body(source: Message) -> tuple[bytes, str | None]:
    """The body to put on the far leg and its Content-Type, or ``(b"", None)``.

    A multipart/mixed body (SIP-I: SDP beside an ISUP IAM that carries both numbers)
    crosses as its SDP part alone (RFC 5621 §3); every other part stays behind.
    """
    body, content_type = source.body, source.content_type
    if not body or content_type is None:
        return b"", None
    if content_type == "multipart/mixed":
        body = _sdp_part(body, source.get("content-type") or "")
        content_type = "application/sdp"
    rewrite = ALLOWED_BODIES.get(content_type)
    relayed = rewrite(body) if rewrite is not None and body else b""
    return (relayed, content_type) if relayed else (b"", None)


def _sdp_part(body: bytes, content_type: str) -> bytes:
    """The first application/sdp part of a multipart body (RFC 2046 §5.1.1), or b""."""
    boundary = ""
    for param in content_type.split(";")[1:]:
        key, _, text = param.partition("=")
        if key.strip().lower() == "boundary":
            boundary = text.strip().strip('"')
    if not boundary:
        return b""
    for part in body.split(b"--" + boundary.encode())[1:]:
        head, separator, content = part.lstrip(b"\r\n").partition(b"\r\n\r\n")
        if not separator:
            continue
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() in (b"content-type", b"c"):
                media = value.partition(b";")[0].strip().lower()
                if media == b"application/sdp":
                    return content.removesuffix(b"\r\n")
    return b""


def uri_user(uri: Uri) -> str | None:
    """The number-bearing part of a URI: the user of sip/sips, the number of tel."""
    if isinstance(uri, SipUri):
        return uri.user_unescaped
    if isinstance(uri, TelUri):
        return uri.user_unescaped
    return None
