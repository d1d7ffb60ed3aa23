"""SDP privacy rewrite (RFC 8866 §5): the identity-bearing lines of a session description.

The ``o=`` username and the ``s=`` session name are replaced; ``i=``, ``u=``, ``e=`` and
``p=`` lines (information, URI, e-mail, phone: RFC 8866 §5.4–5.6) are dropped wherever they
stand, since any of them can carry a real number. Media and connection lines stay.
"""

from __future__ import annotations

from typing import Final

_DROPPED_PREFIXES: Final = (b"i=", b"u=", b"e=", b"p=")


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
        if not line or line.startswith(_DROPPED_PREFIXES):
            continue
        if line.startswith(b"o="):
            fields = line[2:].split(b" ")
            fields[0] = username
            line = b"o=" + b" ".join(fields)
        elif line.startswith(b"s="):
            line = b"s=" + session_name
        out.append(line)
    return b"\r\n".join(out) + b"\r\n"
