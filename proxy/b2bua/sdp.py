"""SDP privacy rewrite (RFC 8866 §5): the identity-bearing lines of a session description.

The ``o=`` username and the ``s=`` session name are replaced; ``i=``, ``u=``, ``e=`` and
``p=`` lines (information, URI, e-mail, phone: RFC 8866 §5.4–5.6) are dropped wherever they
stand, since any of them can carry a real number, and so are the free-text attributes
(``a=tool``, ``a=cat``, ``a=keywds``: RFC 8866 §6.3–6.5) and any line that is not SDP.
Media, connection, bandwidth, timing and the other attributes stay.
"""

from __future__ import annotations

from typing import Final

_DROPPED_PREFIXES: Final = (b"i=", b"u=", b"e=", b"p=", b"a=tool:", b"a=cat:", b"a=keywds:")
#: The line types of RFC 8866 §5 that may stay (after the rewrites below).
_KEPT_TYPES: Final = frozenset(b"vosctrzbkma")


def rewrite_sdp(body: bytes, *, username: bytes = b"-", session_name: bytes = b"-") -> bytes:
    """Return ``body`` with the origin username and session name replaced.

    ``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>`` keeps every
    field but the first, so that the answerer still sees a stable session id and version
    (RFC 3264 §8). Line endings are normalised to CRLF (RFC 8866 §5).
    """
    if not body:
        return body
    out: list[bytes] = []
    for line in body.splitlines():
        if len(line) < 2 or line[1:2] != b"=" or line[0] not in _KEPT_TYPES:
            continue
        if line.startswith(_DROPPED_PREFIXES):
            continue
        if line.startswith(b"o="):
            fields = line[2:].split(b" ")
            fields[0] = username
            line = b"o=" + b" ".join(fields)
        elif line.startswith(b"s="):
            line = b"s=" + session_name
        out.append(line)
    return b"\r\n".join(out) + b"\r\n" if out else b""
