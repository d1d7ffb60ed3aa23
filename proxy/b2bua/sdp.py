"""SDP privacy rewrite (RFC 8866 §5): the identity-bearing lines of a session description.

The ``o=`` username and the ``s=`` session name are replaced; ``i=``, ``u=``, ``e=`` and
``p=`` lines (information, URI, e-mail, phone: RFC 8866 §5.4–5.6) are dropped wherever they
stand, since any of them can carry a real number, and so are the free-text attributes
(``a=tool``, ``a=cat``, ``a=keywds``: RFC 8866 §6.3–6.5) and any line that is not SDP.
Media, connection, bandwidth, timing and the other attributes stay.
"""

from __future__ import annotations

from typing import Final

#: Free-text attributes, dropped (RFC 8866 §6.3–6.5).
_DROPPED_ATTRIBUTES: Final = (b"a=tool:", b"a=cat:", b"a=keywds:")
#: How each line type of RFC 8866 §5 crosses; a type not listed (``i=``, ``u=``, ``e=``,
#: ``p=``, anything else) is dropped.
_KEPT, _ORIGIN, _SESSION_NAME, _ATTRIBUTE = range(4)
_LINE_TYPES: Final = {
    **{b"%c=" % kept: _KEPT for kept in b"vctrzbkm"},
    b"o=": _ORIGIN,
    b"s=": _SESSION_NAME,
    b"a=": _ATTRIBUTE,
}


def rewrite_sdp(body: bytes, *, username: bytes = b"-", session_name: bytes = b"-") -> bytes:
    """Return ``body`` with the origin username and session name replaced.

    ``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>`` keeps every
    field but the first, so that the answerer still sees a stable session id and version
    (RFC 3264 §8). Line endings are normalised to CRLF (RFC 8866 §5).
    """
    if not body:
        return body
    out: list[bytes] = []
    line_types = _LINE_TYPES
    for line in body.splitlines():
        kind = line_types.get(line[:2])
        if kind == _KEPT:
            out.append(line)
        elif kind == _ATTRIBUTE:
            if not line.startswith(_DROPPED_ATTRIBUTES):
                out.append(line)
        elif kind == _ORIGIN:
            fields = line[2:].split(b" ")
            fields[0] = username
            out.append(b"o=" + b" ".join(fields))
        elif kind == _SESSION_NAME:
            out.append(b"s=" + session_name)
    return b"\r\n".join(out) + b"\r\n" if out else b""
