"""Header names and multi-value splitting (RFC 3261 §7.3, §7.3.1, §7.3.3, §20).

Names are case-insensitive; compact forms expand to their long names (§7.3.3 and the
registrations that followed it). Values split on commas only for headers whose grammar is
a comma-separated list, and only outside quoted strings and angle brackets (§7.3.1).
"""

from __future__ import annotations

from typing import Final

COMPACT_FORMS: Final[dict[str, str]] = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

#: Canonical spelling used when we write a header ourselves.
CANONICAL_NAMES: Final[dict[str, str]] = {
    "accept": "Accept",
    "accept-contact": "Accept-Contact",
    "accept-encoding": "Accept-Encoding",
    "accept-language": "Accept-Language",
    "alert-info": "Alert-Info",
    "allow": "Allow",
    "allow-events": "Allow-Events",
    "authorization": "Authorization",
    "call-id": "Call-ID",
    "call-info": "Call-Info",
    "contact": "Contact",
    "content-disposition": "Content-Disposition",
    "content-encoding": "Content-Encoding",
    "content-language": "Content-Language",
    "content-length": "Content-Length",
    "content-type": "Content-Type",
    "cseq": "CSeq",
    "date": "Date",
    "diversion": "Diversion",
    "error-info": "Error-Info",
    "event": "Event",
    "expires": "Expires",
    "from": "From",
    "history-info": "History-Info",
    "identity": "Identity",
    "identity-info": "Identity-Info",
    "in-reply-to": "In-Reply-To",
    "max-forwards": "Max-Forwards",
    "min-expires": "Min-Expires",
    "min-se": "Min-SE",
    "mime-version": "MIME-Version",
    "organization": "Organization",
    "p-asserted-identity": "P-Asserted-Identity",
    "p-preferred-identity": "P-Preferred-Identity",
    "priority": "Priority",
    "privacy": "Privacy",
    "proxy-authenticate": "Proxy-Authenticate",
    "proxy-authorization": "Proxy-Authorization",
    "proxy-require": "Proxy-Require",
    "rack": "RAck",
    "reason": "Reason",
    "record-route": "Record-Route",
    "refer-to": "Refer-To",
    "referred-by": "Referred-By",
    "remote-party-id": "Remote-Party-ID",
    "reply-to": "Reply-To",
    "require": "Require",
    "retry-after": "Retry-After",
    "route": "Route",
    "rseq": "RSeq",
    "server": "Server",
    "session-expires": "Session-Expires",
    "subject": "Subject",
    "supported": "Supported",
    "timestamp": "Timestamp",
    "to": "To",
    "unsupported": "Unsupported",
    "user-agent": "User-Agent",
    "via": "Via",
    "warning": "Warning",
    "www-authenticate": "WWW-Authenticate",
}

#: Headers whose grammar is ``1#value`` (a comma-separated list): §7.3.1 allows splitting.
LIST_HEADERS: Final[frozenset[str]] = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "alert-info",
        "allow",
        "allow-events",
        "call-info",
        "contact",
        "content-encoding",
        "content-language",
        "diversion",
        "error-info",
        "history-info",
        "in-reply-to",
        "p-asserted-identity",
        "p-preferred-identity",
        "privacy",
        "proxy-require",
        "reason",
        "record-route",
        "remote-party-id",
        "reply-to",
        "require",
        "route",
        "supported",
        "unsupported",
        "via",
        "warning",
    }
)

#: Headers that must appear at most once in a message (RFC 3261 §20, Table 2, "m" = 1).
SINGLE_HEADERS: Final[frozenset[str]] = frozenset(
    {"call-id", "cseq", "from", "to", "max-forwards", "content-length", "content-type"}
)


def canonical_key(name: str) -> str:
    """Lower-case long form of a header name: ``"I"`` → ``"call-id"`` (RFC 3261 §7.3.3)."""
    key = name.lower()
    return COMPACT_FORMS.get(key, key)


def canonical_name(key: str) -> str:
    """How we spell a header we write: ``"call-id"`` → ``"Call-ID"``."""
    name = CANONICAL_NAMES.get(key)
    if name is not None:
        return name
    return "-".join(part.capitalize() for part in key.split("-"))


def split_list(value: str) -> list[str]:
    """Split a list header value on top-level commas (RFC 3261 §7.3.1).

    Commas inside a quoted string or inside ``<...>`` do not separate values. Empty
    elements are kept (as ``""``) so that callers can reject them where the grammar
    demands a value (RFC 4475 §3.1.2.1).
    """
    if "," not in value:
        return [value.strip()]
    if '"' not in value and "<" not in value:
        return [part.strip() for part in value.split(",")]
    parts: list[str] = []
    start = 0
    in_quote = False
    in_angle = False
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if in_quote:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "," and not in_angle:
            parts.append(value[start:i].strip())
            start = i + 1
        i += 1
    parts.append(value[start:].strip())
    return parts
