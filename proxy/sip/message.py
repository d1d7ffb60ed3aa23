"""SIP messages on bytes: parse, typed header views, serialize (RFC 3261 §7, §20).

Parsing is lazy (design.md §5): the head is split once into raw header lines; a typed
value (Via, From, CSeq …) is parsed the first time it is asked for and then cached.
``validate()`` forces the values every SIP element needs (RFC 3261 §8.1.1) so that a
malformed message is refused before any decision is taken on it.
"""

from __future__ import annotations

import sys
from collections.abc import Container, Sequence
from typing import Final, NamedTuple

from proxy.sip.address import CSeq, NameAddress, Via, is_token
from proxy.sip.errors import (
    BadRequest,
    MessageTooLarge,
    MethodNotImplemented,
    TooManyHops,
    VersionNotSupported,
)
from proxy.sip.headers import COMPACT_FORMS, LIST_HEADERS, canonical_name, split_list
from proxy.sip.uri import Uri, is_digits, parse_uri

SIP_VERSION: Final = "SIP/2.0"
DEFAULT_MAX_SIZE: Final = 65535
#: Header lines a message may have (continuation lines included); real traffic has 10-40.
MAX_HEADER_LINES: Final = 256
#: Via values a message may carry: Max-Forwards starts at 70 (RFC 3261 §8.1.1.6), so more
#: hops than that mean a loop or an attack.
MAX_VIAS: Final = 70
KNOWN_METHODS: Final = frozenset(
    {
        "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE",
        "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
    }
)  # fmt: skip

REASON_PHRASES: Final[dict[int, str]] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Moved Temporarily", 305: "Use Proxy",
    380: "Alternative Service", 400: "Bad Request", 401: "Unauthorized",
    402: "Payment Required", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 407: "Proxy Authentication Required", 408: "Request Timeout",
    410: "Gone", 413: "Request Entity Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    421: "Extension Required", 423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 493: "Undecipherable",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 600: "Busy Everywhere", 603: "Decline",
    604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}  # fmt: skip

#: Status-Code text → value: the three ASCII digits 100-699 (RFC 3261 §7.2, §25.1), and
#: nothing else (not "+99", "٢٠٠" or "2_00", which int() would take).
_STATUS_CODES: Final[dict[str, int]] = {str(code): code for code in range(100, 700)}
#: Keys with a hyphen, interned as the header keys are (``_header_key``): a literal is
#: interned only when it looks like an identifier, and list.count/index compare by
#: identity first.
_CALL_ID: Final = sys.intern("call-id")
_CONTENT_LENGTH: Final = sys.intern("content-length")
_MAX_FORWARDS: Final = sys.intern("max-forwards")
_CONTENT_TYPE: Final = sys.intern("content-type")
_MANDATORY: Final = ("via", "from", "to", _CALL_ID, "cseq")
_SINGLE: Final = ("from", "to", _CALL_ID, "cseq", _MAX_FORWARDS, _CONTENT_TYPE)
_FOLD_CHARS: Final = (" ", "\t")
#: Header names as written (checked tokens) → canonical key; bounded so that a peer
#: sending random names cannot grow it without limit.
_NAME_KEYS: dict[str, str] = {}
_NAME_CACHE_LIMIT: Final = 1024
#: Builds a Header without the Python-level NamedTuple constructor (a hot path).
_new_header = tuple.__new__
#: A message without __init__ run: ``parse`` sets its slots itself.
_new_object = object.__new__
#: The parsers the typed views call on every message, bound once.
_parse_name_address = NameAddress.parse
_parse_via = Via.parse
_parse_cseq = CSeq.parse


class Header(NamedTuple):
    """One header line: canonical key, the name as written, its unfolded value, and the
    original text (None once we wrote it ourselves) for unchanged re-serialization."""

    key: str
    name: str
    value: str
    raw: str | None


class Message:
    """Headers and body shared by requests and responses."""

    # A parsed message keeps its header lines as they came (``_lines``), each split at
    # its first colon (``_parts``: name, ":", value), with their keys (``_keys``), and
    # builds the Header records only when ``headers`` is read or edited (design.md §5):
    # the typed views read the few values they need straight from ``_parts``.
    # ``_headers`` is None until then. ``headers`` is edited through
    # set/add/remove, which drop the typed values and the key index derived from it. The
    # values read on every message have a slot each (cheaper than a dict entry); the
    # others live in ``_cache``.
    __slots__ = (
        "_cache", "_call_id", "_cseq", "_from", "_headers", "_keys", "_lines", "_parts",
        "_to", "_top_via", "_vias", "body",
    )  # fmt: skip

    def __init__(self, headers: list[Header] | None = None, body: bytes = b"") -> None:
        self._headers: list[Header] | None = headers if headers is not None else []
        self._lines: Sequence[str] = ()
        self._parts: Sequence[tuple[str, str, str]] = ()
        self.body = body
        # What _forget() sets, spelled out: one call less per parsed message.
        self._cache: dict[str, object] | None = None
        self._keys: list[str] | None = None
        self._vias: list[Via] | None = None
        self._top_via: Via | None = None
        self._from: NameAddress | None = None
        self._to: NameAddress | None = None
        self._cseq: CSeq | None = None
        self._call_id: str | None = None

    @property
    def headers(self) -> list[Header]:
        """Every header line in order, as Header records (built on first use)."""
        headers = self._headers
        if headers is None:
            keys = self._keys or []
            headers = self._headers = [
                _new_header(Header, (key, name, value.strip(), line))
                for key, (name, _, value), line in zip(keys, self._parts, self._lines, strict=True)
            ]
            self._lines = self._parts = ()
        return headers

    @headers.setter
    def headers(self, headers: list[Header]) -> None:
        self._headers = headers
        self._lines = self._parts = ()
        self._forget()

    def headers_with(self, keys: Container[str]) -> list[Header]:
        """The Header records of the lines whose key is in ``keys``, in order: what
        ``headers`` holds for them, without building the records of the other lines of
        a parsed message (a response copies five of an INVITE's twenty)."""
        headers = self._headers
        if headers is not None:
            return [header for header in headers if header[0] in keys]
        parts, lines = self._parts, self._lines
        return [
            _new_header(Header, (key, parts[place][0], parts[place][2].strip(), lines[place]))
            for place, key in enumerate(self._keys or ())
            if key in keys
        ]

    def _value_at(self, place: int) -> str:
        """The value of the header line at ``place`` (an index into ``_keys``)."""
        headers = self._headers
        if headers is None:
            return self._parts[place][2].strip()
        return headers[place][2]

    # -- raw header access -------------------------------------------------------------

    def get(self, key: str) -> str | None:
        """Value of the first header with this canonical key (lower-case long name)."""
        headers = self._headers
        if headers is None:
            keys = self._keys or self._key_index()
            if key in keys:
                return self._parts[keys.index(key)][2].strip()
            return None
        for header in headers:
            if header.key == key:
                return header.value
        return None

    def get_all(self, key: str) -> list[str]:
        """Every value of a header, list headers split on commas (RFC 3261 §7.3.1)."""
        values: list[str] = []
        keys = self._keys or self._key_index()
        if key not in keys:
            return values
        value_at = self._value_at
        for place, other in enumerate(keys):
            if other == key:
                if key in LIST_HEADERS:
                    values += split_list(value_at(place))
                else:
                    values.append(value_at(place))
        return values

    def has(self, key: str) -> bool:
        headers = self._headers
        if headers is None:
            return key in (self._keys or self._key_index())
        return any(header.key == key for header in headers)

    def set(self, key: str, value: str) -> None:
        """Replace every header with this key by one, where the first one stood."""
        new = Header(key, canonical_name(key), value, None)
        headers = self.headers
        for i, header in enumerate(headers):
            if header.key == key:
                headers[i] = new
                headers[i + 1 :] = [h for h in headers[i + 1 :] if h.key != key]
                break
        else:
            headers.append(new)
        self._forget()

    def add(self, key: str, value: str, *, first: bool = False) -> None:
        """Add a header line; ``first`` puts it before the others with the same key."""
        new = Header(key, canonical_name(key), value, None)
        headers = self.headers
        if first:
            for i, header in enumerate(headers):
                if header.key == key:
                    headers.insert(i, new)
                    break
            else:
                headers.append(new)
        else:
            headers.append(new)
        self._forget()

    def replace_top_via(self, value: str) -> None:
        """Rewrite the topmost Via value, leaving the others as they were (the server
        transport's ``received``/``rport`` stamp, RFC 3261 §18.2.1, RFC 3581 §4)."""
        headers = self.headers
        for i, header in enumerate(headers):
            if header.key == "via":
                rest = split_list(header.value)[1:]
                headers[i] = Header("via", header.name, ", ".join([value, *rest]), None)
                self._forget()
                return
        raise BadRequest("missing Via header")

    def remove(self, key: str) -> None:
        self.headers = [h for h in self.headers if h.key != key]

    def set_body(self, body: bytes, content_type: str | None = None) -> None:
        """Set the body and keep Content-Length (and Content-Type) true to it."""
        self.body = body
        if content_type is not None:
            self.set("content-type", content_type)
        elif not body:
            self.remove("content-type")
        self.set("content-length", str(len(body)))

    def _forget(self) -> None:
        """Drop what was derived from the headers after they changed."""
        self._cache = None
        self._keys = None
        self._vias = None
        self._top_via = None
        self._from = None
        self._to = None
        self._cseq = None
        self._call_id = None

    # -- typed, cached views -----------------------------------------------------------

    def _key_index(self) -> list[str]:
        # list.count/list.index over the keys run in C: the typed views find their
        # header without a Python loop over every header line (and without building a
        # key → place dict, which costs more than the few lookups a message needs).
        keys = self._keys
        if keys is None:
            keys = self._keys = [header[0] for header in self.headers]
        return keys

    def _single(self, key: str) -> str | None:
        keys = self._keys or self._key_index()
        count = keys.count(key)
        if count == 1:
            return self._value_at(keys.index(key))
        if count:
            raise BadRequest(f"more than one {canonical_name(key)} header")
        return None

    def _values(self, key: str) -> list[str]:
        """Every value of a list header, in order, split on commas (``get_all``)."""
        keys = self._keys or self._key_index()
        count = keys.count(key)
        value_at = self._value_at
        if count == 1:
            value = value_at(keys.index(key))
            return split_list(value) if "," in value else [value.strip()]
        values: list[str] = []
        i = -1
        for _ in range(count):
            i = keys.index(key, i + 1)
            value = value_at(i)
            if "," in value:
                values += split_list(value)
            else:
                values.append(value.strip())
        return values

    def _required(self, key: str) -> str:
        keys = self._keys or self._key_index()
        if keys.count(key) == 1:
            place = keys.index(key)
            headers = self._headers
            if headers is None:  # _value_at, written out: read for every typed view
                return self._parts[place][2].strip()
            return headers[place][2]
        value = self._single(key)
        if value is None:
            raise BadRequest(f"missing {canonical_name(key)} header")
        return value

    def _via_values(self) -> list[str]:
        values = self._values("via")
        if not values:
            raise BadRequest("missing Via header")
        if "" in values:
            raise BadRequest("empty Via value")
        return values

    @property
    def vias(self) -> list[Via]:
        """All Via values, top first (RFC 3261 §20.42)."""
        vias = self._vias
        if vias is None:
            values = self._via_values()
            parse_via = Via.parse
            top = self._top_via
            if top is None:
                vias = [parse_via(value) for value in values]
            else:
                vias = [top, *[parse_via(value) for value in values[1:]]]
            self._vias = vias
        return vias

    @property
    def top_via(self) -> Via:
        """The top Via alone, the only one a transaction reads (RFC 3261 §17.2.3, §18.2);
        the others are parsed when ``vias`` (or ``validate()``) asks for them."""
        if self._vias is not None:
            return self._vias[0]
        top = self._top_via
        if top is None:
            keys = self._keys or self._key_index()
            if keys.count("via") == 1 and self._headers is None:
                # One Via line holding one value: what a request from a UA carries and
                # every response to it. ``_via_values`` (and its checks) for the rest.
                value = self._parts[keys.index("via")][2].strip()
                if value and "," not in value:
                    top = self._top_via = _parse_via(value)
                    return top
            top = self._top_via = Via.parse(self._via_values()[0])
        return top

    @property
    def from_(self) -> NameAddress:
        """From (RFC 3261 §20.20)."""
        address = self._from
        if address is None:
            keys = self._keys
            if keys is not None and self._headers is None and keys.count("from") == 1:
                text = self._parts[keys.index("from")][2].strip()  # _required, written out
            else:
                text = self._required("from")
            address = self._from = _parse_name_address(text, "From")
        return address

    @property
    def to(self) -> NameAddress:
        """To (RFC 3261 §20.39)."""
        address = self._to
        if address is None:
            keys = self._keys
            if keys is not None and self._headers is None and keys.count("to") == 1:
                text = self._parts[keys.index("to")][2].strip()  # _required, written out
            else:
                text = self._required("to")
            address = self._to = _parse_name_address(text, "To")
        return address

    @property
    def call_id(self) -> str:
        value = self._call_id
        if value is None:
            keys = self._keys
            if keys is not None and self._headers is None and keys.count(_CALL_ID) == 1:
                value = self._parts[keys.index(_CALL_ID)][2].strip()  # _required, written out
            else:
                value = self._required(_CALL_ID)
            if not value or " " in value or "\t" in value:
                raise BadRequest("malformed Call-ID")
            self._call_id = value
        return value

    @property
    def cseq(self) -> CSeq:
        cseq = self._cseq
        if cseq is None:
            keys = self._keys
            if keys is not None and self._headers is None and keys.count("cseq") == 1:
                text = self._parts[keys.index("cseq")][2].strip()  # _required, written out
            else:
                text = self._required("cseq")
            cseq = self._cseq = _parse_cseq(text)
        return cseq

    @property
    def max_forwards(self) -> int | None:
        value = self._single(_MAX_FORWARDS)
        if value is None:
            return None
        if not is_digits(value) or int(value) > 255:
            raise BadRequest("Max-Forwards is not an integer from 0 to 255")
        return int(value)

    def _address_list(self, key: str) -> list[NameAddress]:
        cache = self._cache
        if cache is None:
            cache = self._cache = {}
        cached = cache.get(key)
        if cached is None:
            values = self._values(key)
            if not values or (values == ["*"] and key == "contact"):
                cached = []
            else:
                what = canonical_name(key)
                cached = [NameAddress.parse(value, what) for value in values]
            cache[key] = cached
        return cached  # type: ignore[return-value]

    @property
    def contacts(self) -> list[NameAddress]:
        """Contact values (RFC 3261 §20.10); ``*`` (REGISTER only) yields none."""
        return self._address_list("contact")

    @property
    def routes(self) -> list[NameAddress]:
        return self._address_list("route")

    @property
    def record_routes(self) -> list[NameAddress]:
        return self._address_list("record-route")

    @property
    def p_asserted_identities(self) -> list[NameAddress]:
        """P-Asserted-Identity values (RFC 3325 §9.1)."""
        return self._address_list("p-asserted-identity")

    @property
    def content_length(self) -> int:
        return len(self.body)

    @property
    def content_type(self) -> str | None:
        """The media type, lower-case and without parameters (RFC 3261 §20.15)."""
        value = self._single(_CONTENT_TYPE)
        if value is None:
            return None
        return value.partition(";")[0].strip().lower()

    # -- serialization ----------------------------------------------------------------

    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Serialize; headers we did not touch come out exactly as they came in."""
        headers = self._headers
        if headers is None:
            text = "\r\n".join([self.start_line(), *self._lines, "\r\n"])
            return text.encode("utf-8", "surrogateescape") + self.body
        lines = [self.start_line()]
        for header in headers:
            lines.append(header.raw if header.raw is not None else f"{header.name}: {header.value}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    def validate(self) -> None:
        """Check what every element relies on (RFC 3261 §8.1.1, §8.2.2, RFC 4475 §3)."""
        keys = self._keys or self._key_index()
        present = set(keys)
        if len(present) != len(keys):  # a name repeats (Via may): not one that must not
            count = keys.count
            for key in _SINGLE:
                if count(key) > 1:
                    raise BadRequest(f"more than one {canonical_name(key)} header")
        if not present.issuperset(_MANDATORY):
            missing = next(key for key in _MANDATORY if key not in present)
            raise BadRequest(f"missing {canonical_name(missing)} header")
        if len(self.vias) > MAX_VIAS:
            # More hops than Max-Forwards could ever allow: a loop or an attack.
            raise TooManyHops(f"more than {MAX_VIAS} Via values")
        _ = self.from_, self.to, self.call_id, self.cseq
        self.max_forwards  # noqa: B018 - parses and range-checks
        self.contacts  # noqa: B018


class Request(Message):
    """A SIP request (RFC 3261 §7.1)."""

    __slots__ = ("method", "uri")

    def __init__(
        self, method: str, uri: str, headers: list[Header] | None = None, body: bytes = b""
    ) -> None:
        Message.__init__(self, headers, body)
        self.method = method
        self.uri = uri

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {SIP_VERSION}"

    @property
    def request_uri(self) -> Uri:
        """The Request-URI; headers are not allowed in it (RFC 3261 §19.1.1)."""
        cache = self._cache
        if cache is None:
            cache = self._cache = {}
        cached = cache.get("ruri")
        if cached is None:
            cached = cache["ruri"] = parse_uri(self.uri, what="Request-URI", allow_headers=False)
        return cached  # type: ignore[return-value]

    def validate(self) -> None:
        """Request checks of RFC 3261 §8.2 and RFC 4475 §3.1.2.17–18."""
        super().validate()
        self.request_uri  # noqa: B018
        cseq_method = self.cseq.method
        if cseq_method != self.method:
            if self.method not in KNOWN_METHODS:
                raise MethodNotImplemented(f"{self.method} (CSeq names {cseq_method})")
            raise BadRequest("CSeq method does not match the request method")


class Response(Message):
    """A SIP response (RFC 3261 §7.2)."""

    __slots__ = ("reason", "status")

    def __init__(
        self, status: int, reason: str, headers: list[Header] | None = None, body: bytes = b""
    ) -> None:
        Message.__init__(self, headers, body)
        self.status = status
        self.reason = reason

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"

    def start_line(self) -> str:
        return f"{SIP_VERSION} {self.status} {self.reason}"


def parse(
    data: bytes, *, stream: bool = False, max_size: int = DEFAULT_MAX_SIZE
) -> Request | Response:
    """Parse one message from a datagram or a framed stream chunk (RFC 3261 §7, §18.3).

    Over a datagram, bytes beyond Content-Length are discarded (§18.3) and a missing
    Content-Length means "the rest of the datagram"; over a stream it means no body.
    Raises a ``SipError`` whose status is the reply the fault implies.
    """
    if len(data) > max_size:
        raise MessageTooLarge(f"{len(data)} bytes, limit {max_size}")
    # CRLFs before a message (RFC 3261 §7.5); a one-byte slice is a shared object, a
    # two-byte one a new one for every message.
    while data[:1] == b"\r" and data[:2] == b"\r\n":
        data = data[2:]
    head, blank_line, rest = data.partition(b"\r\n\r\n")
    if not blank_line:
        raise BadRequest("no empty line after the headers")
    lines = head.decode("utf-8", "surrogateescape").split("\r\n")
    if len(lines) > MAX_HEADER_LINES + 1:
        raise BadRequest(f"more than {MAX_HEADER_LINES} header lines")
    joined = "".join(lines)
    if "\r" in joined or "\n" in joined:
        # A bare CR or LF inside a value would become a line break in whatever
        # re-emits it: header injection (RFC 3261 §7.3.1 allows only CRLF).
        raise BadRequest("bare CR or LF in the headers")
    header_lines = lines[1:]
    keys_of = _NAME_KEYS
    headers: list[Header] | None = None
    parts = [line.partition(":") for line in header_lines]
    try:
        # Fast path: every name seen (and checked to be a token) before, no continuation
        # line; the Header records wait until someone asks for them (``headers``). A line
        # without a colon yields no key (one key short); a continuation line starts with
        # SP/HTAB, so its "name" is never a token. Either falls back to the general
        # loop, which names the fault or unfolds.
        keys = [keys_of[name] for name, colon, _ in parts if colon]
        if len(keys) != len(parts):
            raise KeyError
    except KeyError:
        headers = _parse_header_lines(header_lines)
        keys = [header[0] for header in headers]
    lengths = keys.count(_CONTENT_LENGTH)
    if lengths:
        if lengths > 1:
            raise BadRequest("more than one Content-Length header")
        place = keys.index(_CONTENT_LENGTH)
        content_length = parts[place][2].strip() if headers is None else headers[place].value
        if not (content_length.isascii() and content_length.isdigit()):  # is_digits
            raise BadRequest("Content-Length is not a non-negative integer")
        length = int(content_length)
        if length > len(rest):
            raise BadRequest("Content-Length is larger than the body")
        body = rest[:length]
    else:
        body = b"" if stream else rest
    message = _start_line(lines[0])
    # Message.__init__, written out for what parse knows (one frame instead of three,
    # each slot set once); tests/unit/test_message_lazy.py checks that every slot is set.
    if headers is None:
        message._headers = None
        message._lines = header_lines
        message._parts = parts
    else:
        message._headers = headers
        message._lines = message._parts = ()
    message._keys = keys
    message.body = body
    message._cache = message._vias = message._top_via = message._from = message._to = None
    message._cseq = message._call_id = None
    return message


def _parse_header_lines(lines: list[str]) -> list[Header]:
    """Header lines in full generality: continuation lines unfolded (RFC 3261 §7.3.1),
    every name checked to be a token and remembered for the fast path."""
    headers: list[Header] = []
    for line in lines:
        if line[:1] in _FOLD_CHARS:
            if not headers:
                raise BadRequest("continuation line before any header")
            prev = headers[-1]
            more = line.strip()
            value = f"{prev.value} {more}" if prev.value else more
            headers[-1] = _new_header(Header, (prev.key, prev.name, value, f"{prev.raw}\r\n{line}"))
            continue
        colon = line.find(":")
        if colon <= 0:
            raise BadRequest("header line without a name and colon")
        key, name = _header_key(line[:colon])
        if key == "content-length" and any(h.key == key for h in headers):
            raise BadRequest("more than one Content-Length header")
        headers.append(_new_header(Header, (key, name, line[colon + 1 :].strip(), line)))
    return headers


def _header_key(raw_name: str) -> tuple[str, str]:
    """(canonical key, name as written) of a header name, checked to be a token
    (RFC 3261 §7.3.1, §25.1) and remembered: a peer sends the same few dozen names."""
    key = _NAME_KEYS.get(raw_name)
    if key is not None:
        return key, raw_name
    name = raw_name.rstrip(" \t")
    if not is_token(name):
        raise BadRequest(f"invalid header name {name[:40]!r}")
    key = name.lower()
    # Interned: the typed views find their line with list.count/index, which compare by
    # identity first, and the keys they look for are interned literals.
    key = sys.intern(COMPACT_FORMS.get(key, key))
    # Only names without trailing LWS are remembered: the fast path takes the name as
    # written for Header.name, which is then the same as the stripped one.
    if name == raw_name and len(_NAME_KEYS) < _NAME_CACHE_LIMIT:
        _NAME_KEYS[raw_name] = key
    return key, name


def _start_line(line: str) -> Request | Response:
    """Request-Line or Status-Line (RFC 3261 §7.1, §7.2); single SP separators only.
    The message comes back with its start line only: ``parse`` sets the other slots."""
    if line[:4] == "SIP/":
        version, _, rest = line.partition(" ")
        if version != SIP_VERSION:
            raise VersionNotSupported(version)
        code, _, reason = rest.partition(" ")
        status = _STATUS_CODES.get(code)
        if status is None:
            raise BadRequest("status code is not 100-699")
        response: Response = _new_object(Response)
        response.status = status
        response.reason = reason
        return response
    parts = line.split(" ")
    if len(parts) != 3:
        raise BadRequest("Request-Line must be: method SP Request-URI SP SIP-Version")
    method, uri, version = parts
    if method not in KNOWN_METHODS and not is_token(method):
        raise BadRequest("invalid method")
    if version != SIP_VERSION:
        if version.startswith("SIP/"):
            raise VersionNotSupported(version)
        raise BadRequest("invalid SIP-Version")
    if not uri:
        raise BadRequest("empty Request-URI")
    request: Request = _new_object(Request)
    request.method = method
    request.uri = uri
    return request
