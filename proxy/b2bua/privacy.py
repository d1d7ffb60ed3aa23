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


def _option_tags(value: str) -> str | None:
    tags = [tag.strip() for tag in value.split(",")]
    kept = [tag for tag in tags if tag.lower() in RELAYED_OPTION_TAGS]
    return ", ".join(kept) if kept else None


def _same(value: str) -> str | None:
    return value


def _session_expires(value: str) -> str | None:
    """RFC 4028 §4: delta-seconds plus refresher; nothing else passes."""
    delta, _, params = value.partition(";")
    if not delta.strip().isdigit():
        return None
    refresher = [p.strip() for p in params.split(";") if p.strip().lower().startswith("refresher=")]
    return ";".join([delta.strip(), *refresher])


def _digits_only(value: str) -> str | None:
    return value.strip() if value.strip().isdigit() else None


#: header key → filter; a filter returning None drops the header (deny by default).
ALLOWED_HEADERS: Final[dict[str, Callable[[str], str | None]]] = {
    "allow": _same,
    "accept": _same,
    "supported": _option_tags,
    "require": _option_tags,
    "session-expires": _session_expires,
    "min-se": _digits_only,
}

#: Body types that may cross, each with its rewrite (RFC 3261 §20.15).
ALLOWED_BODIES: Final[dict[str, Callable[[bytes], bytes]]] = {
    "application/sdp": rewrite_sdp,
    "application/dtmf-relay": lambda body: body,
    "application/dtmf": lambda body: body,
}


def allowed_headers(source: Message) -> tuple[tuple[str, str], ...]:
    """The allow-listed headers of ``source``, filtered, in their original order."""
    out: list[tuple[str, str]] = []
    for header in source.headers:
        rewrite = ALLOWED_HEADERS.get(header.key)
        if rewrite is None:
            continue
        value = rewrite(header.value)
        if value:
            out.append((canonical_name(header.key), value))
    return tuple(out)


def relayed_body(source: Message) -> tuple[bytes, str | None]:
    """The body to put on the far leg and its Content-Type, or ``(b"", None)``."""
    if not source.body:
        return b"", None
    content_type = source.content_type
    rewrite = ALLOWED_BODIES.get(content_type or "")
    if rewrite is None or content_type is None:
        return b"", None
    return rewrite(source.body), content_type


def uri_user(uri: Uri) -> str | None:
    """The number-bearing part of a URI: the user of sip/sips, the number of tel."""
    if isinstance(uri, SipUri):
        return uri.user_unescaped
    if isinstance(uri, TelUri):
        return uri.user_unescaped
    return None
