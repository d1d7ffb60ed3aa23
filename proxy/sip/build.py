"""Building requests and responses (RFC 3261 §8.1.1, §8.2.6, §9.1, §17.1.1.3).

Headers copied from another message keep their original text (``Header.raw``), so a
Via, From or Call-ID comes out byte for byte as it came in: RFC 3261 §8.2.6.2 asks for
the response's Via, From, Call-ID and CSeq to equal the request's, and §17.1.1.3 and §9.1
ask the same of an ACK and a CANCEL.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from proxy.sip.errors import SipError
from proxy.sip.headers import CANONICAL_NAMES, canonical_key, canonical_name, split_list
from proxy.sip.message import REASON_PHRASES, Header, Request, Response

#: Builds a Header without the Python-level NamedTuple constructor (a hot path).
_new_header = tuple.__new__

DEFAULT_MAX_FORWARDS: Final = 70
#: Reason phrase of the class when a code has none of its own (RFC 3261 §21).
_CLASS_REASONS: Final = {
    1: "Trying",
    2: "OK",
    3: "Multiple Choices",
    4: "Bad Request",
    5: "Server Internal Error",
    6: "Busy Everywhere",
}
#: The headers a response copies from its request (RFC 3261 §8.2.6.2), in the order it
#: writes them: key → its place. A 100 copies Timestamp too (§8.2.6.1).
_RESPONSE_COPIES: Final = {"via": 0, "from": 1, "to": 2, "call-id": 3, "cseq": 4}
_TRYING_COPIES: Final = {**_RESPONSE_COPIES, "timestamp": 5}
#: Header names as the B2BUA writes them → their keys, so that the usual names skip
#: ``canonical_key``.
_KEYS_OF_NAMES: Final = {name: key for key, name in CANONICAL_NAMES.items()}
#: Keys set from the body arguments only.
_BODY_KEYS: Final = frozenset({"content-length", "content-type"})


def _written(key: str, value: str, name: str | None = None) -> Header:
    """A header we write ourselves (``name`` when the caller knows it is canonical); CR or
    LF in a value would inject a header line."""
    if name is None:
        name = canonical_name(key)
    if "\r" in value or "\n" in value:
        raise ValueError(f"CR or LF in the value of {name}")
    return _new_header(Header, (key, name, value, None))


def _extra(headers: Iterable[tuple[str, str]]) -> list[Header]:
    written = []
    keys_of_names = _KEYS_OF_NAMES
    for name, value in headers:
        key = keys_of_names.get(name)
        if key is None:  # not written the canonical way: write it so
            key = canonical_key(name)
            canonical = canonical_name(key)
        else:
            canonical = name
        if key in _BODY_KEYS:
            raise ValueError(f"{name} is set from the body and content_type arguments")
        written.append(_written(key, value, canonical))
    return written


def _body_headers(body: bytes, content_type: str | None) -> list[Header]:
    """Content-Type (when given) and a Content-Length that is always present: over a
    stream it is mandatory (RFC 3261 §18.3, §20.14)."""
    length = _new_header(Header, ("content-length", "Content-Length", str(len(body)), None))
    if content_type is None:
        return [length]
    return [_written("content-type", content_type, "Content-Type"), length]


def reason_phrase(status: int) -> str:
    """The standard reason phrase for ``status``, else that of its class (RFC 3261 §21)."""
    return REASON_PHRASES.get(status) or _CLASS_REASONS.get(status // 100, "Unknown")


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> Response:
    """A response to ``request`` (RFC 3261 §8.2.6).

    Via (all, in order), From, To, Call-ID and CSeq are copied; To gets ``;tag=to_tag``
    when it has no tag and ``status`` is above 100 (§8.2.6.2); a 100 copies Timestamp
    (§8.2.6.1). Works on a request that failed validation too, so that the adapter can
    answer 400: headers that are absent are simply not copied.
    """
    if not 100 <= status <= 699:
        raise ValueError(f"status {status} is not 100-699")
    # One pass over the request's headers, each copied one into its group.
    copies = _TRYING_COPIES if status == 100 else _RESPONSE_COPIES
    groups: list[list[Header]] = [[], [], [], [], [], []]
    for header in request.headers_with(copies):
        groups[copies[header[0]]].append(header)
    vias, froms, to_headers, call_ids, cseqs, timestamps = groups
    if to_tag is not None and status > 100 and len(to_headers) == 1:
        try:
            has_tag = request.to.tag is not None
        except SipError:
            has_tag = True  # a To we cannot parse is echoed as it came
        if not has_tag:
            to_headers = [_written("to", f"{to_headers[0].value};tag={to_tag}", "To")]
    out = vias
    out += froms
    out += to_headers
    out += call_ids
    out += cseqs
    if timestamps:
        out += timestamps
    if headers:
        out += _extra(headers)
    out += _body_headers(body, content_type)
    return Response(status, reason_phrase(status) if reason is None else reason, out, body)


def make_request(
    method: str,
    uri: str,
    *,
    via: str,
    from_: str,
    to: str,
    call_id: str,
    cseq: int,
    max_forwards: int = DEFAULT_MAX_FORWARDS,
    contact: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> Request:
    """A new request (RFC 3261 §8.1.1) with its headers in the conventional order: Via,
    Max-Forwards, From, To, Call-ID, CSeq, Contact, the others, Content-Type,
    Content-Length."""
    if not 0 <= max_forwards <= 255:
        raise ValueError("Max-Forwards must be 0-255 (RFC 3261 §20.22)")
    if not 0 <= cseq < 2**32:
        raise ValueError("CSeq must be below 2**32 (RFC 3261 §8.1.1.5)")
    if " " in uri or "\r" in uri or "\n" in uri:
        raise ValueError("whitespace in the Request-URI")
    if "\r" in method or "\n" in method:
        raise ValueError("CR or LF in the method")
    out = [
        _written("via", via, "Via"),
        _new_header(Header, ("max-forwards", "Max-Forwards", str(max_forwards), None)),
        _written("from", from_, "From"),
        _written("to", to, "To"),
        _written("call-id", call_id, "Call-ID"),
        _new_header(Header, ("cseq", "CSeq", f"{cseq} {method}", None)),
    ]
    if contact is not None:
        out.append(_written("contact", contact, "Contact"))
    if headers:
        out += _extra(headers)
    out += _body_headers(body, content_type)
    return Request(method, uri, out, body)


def _top_via(request: Request) -> Header:
    """The first Via value alone, as written (a Via line may carry several values)."""
    first = request.headers_with(("via",))[0]
    values = split_list(first.value)
    if len(values) == 1:
        return first
    return Header("via", first.name, values[0], None)


def _hop_headers(invite: Request, method: str, to: list[Header]) -> list[Header]:
    """Headers shared by ACK and CANCEL: one Via, Max-Forwards, From, To, Call-ID, CSeq
    with the INVITE's number, and the INVITE's Route set."""
    max_forwards = invite.max_forwards
    return [
        _top_via(invite),
        _written(
            "max-forwards", str(DEFAULT_MAX_FORWARDS if max_forwards is None else max_forwards)
        ),
        *invite.headers_with(("from",)),
        *to,
        *invite.headers_with(("call-id",)),
        _written("cseq", f"{invite.cseq.number} {method}"),
        *invite.headers_with(("route",)),
        _written("content-length", "0"),
    ]


def make_ack_for(invite: Request, response: Response) -> Request:
    """The ACK a client transaction sends for a non-2xx final response (RFC 3261
    §17.1.1.3): the INVITE's Request-URI, top Via, From, Call-ID and Route, CSeq number
    with method ACK, and the To of the response (which carries the UAS tag)."""
    if invite.method != "INVITE":
        raise ValueError("an ACK acknowledges an INVITE")
    return Request("ACK", invite.uri, _hop_headers(invite, "ACK", response.headers_with(("to",))))


def make_cancel(invite: Request) -> Request:
    """CANCEL for a pending request (RFC 3261 §9.1): Request-URI, Call-ID, To, From and
    CSeq number as in the request, its top Via alone, its Route set, method CANCEL."""
    return Request(
        "CANCEL", invite.uri, _hop_headers(invite, "CANCEL", invite.headers_with(("to",)))
    )
