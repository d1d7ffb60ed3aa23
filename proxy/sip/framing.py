"""Framing SIP messages on a byte stream (RFC 3261 §18.3; RFC 5626 §3.5.1 keep-alives).

Over TCP a message ends where its Content-Length says, so Content-Length is mandatory
(§18.3; a missing one is taken as 0 here and by ``parse(..., stream=True)``). Between
messages a peer may send the RFC 5626 CRLF keep-alive: a double CRLF "ping", which the
adapter answers with a single CRLF "pong", and a single CRLF, which is a pong (or a stray
line end) and needs no answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from proxy.sip.errors import BadRequest, MessageTooLarge
from proxy.sip.message import DEFAULT_MAX_SIZE
from proxy.sip.uri import is_digits

_CRLF: Final = b"\r\n"
_HEAD_END: Final = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """An RFC 5626 §3.5.1 keep-alive seen between messages."""


@dataclass(frozen=True, slots=True)
class Ping(KeepAlive):
    """CRLF CRLF: the peer asks for a pong; answer with a single CRLF."""


@dataclass(frozen=True, slots=True)
class Pong(KeepAlive):
    """A lone CRLF: a pong to our ping, or a stray line end. Never answered (answering
    it would start an endless exchange)."""


PING: Final = Ping()
PONG: Final = Pong()


def _content_length(head: bytes) -> int:
    """Content-Length of a message head, 0 when absent (RFC 3261 §18.3, §20.14, §7.3.3
    compact form ``l``). Folded values are joined; two values are a fault (RFC 4475
    §3.3.9) because they leave the message end ambiguous."""
    found: bytes | None = None
    lines = head.split(_CRLF)
    count = len(lines)
    for index in range(1, count):
        line = lines[index]
        first = line[:1]
        if not first or first not in b"cClL":
            continue
        colon = line.find(b":")
        if colon < 0:
            continue
        name = line[:colon].rstrip(b" \t").lower()
        if name != b"content-length" and name != b"l":
            continue
        if found is not None:
            raise BadRequest("more than one Content-Length header")
        value = line[colon + 1 :]
        following = index + 1
        while following < count and lines[following][:1] in (b" ", b"\t"):
            value += b" " + lines[following]
            following += 1
        found = value.strip()
    if found is None:
        return 0
    text = found.decode("ascii", "replace")
    if not is_digits(text):
        raise BadRequest("Content-Length is not a non-negative integer")
    return int(text)


class StreamFramer:
    """Cuts a TCP (or TLS) byte stream into messages (RFC 3261 §18.3).

    ``feed`` returns every complete message in arrival order, each exactly its head
    and Content-Length body, and the keep-alives between them. It raises
    ``MessageTooLarge`` when a message would exceed ``max_size`` and ``BadRequest`` for
    a Content-Length it cannot trust; the stream cannot be resynchronised after either,
    so the adapter closes the connection.
    """

    __slots__ = ("_buffer", "_message_end", "_scan_from", "max_size")

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.max_size = max_size
        self._buffer = bytearray()
        #: Where the search for the end of the head resumes: bytes before it were
        #: searched already (kept 3 bytes back so a split CRLFCRLF is found).
        self._scan_from = 0
        #: Buffer offset where the current message ends once its head is known.
        self._message_end: int | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes | KeepAlive]:
        """Add bytes read from the stream; return the messages and keep-alives completed."""
        buffer = self._buffer
        buffer += data
        out: list[bytes | KeepAlive] = []
        pos = 0
        size = len(buffer)
        try:
            while pos < size:
                end = self._message_end
                if end is None:
                    if buffer[pos] == 13:  # CR: a keep-alive, or a stray line end
                        left = size - pos
                        if left < 2 or (left < 4 and buffer.startswith(b"\r\n\r", pos)):
                            break  # wait: the rest of a CRLF or of a CRLFCRLF ping
                        if buffer.startswith(_HEAD_END, pos):
                            out.append(PING)
                            pos += 4
                            self._scan_from = pos
                            continue
                        if buffer.startswith(_CRLF, pos):
                            out.append(PONG)
                            pos += 2
                            self._scan_from = pos
                            continue
                    head_end = buffer.find(_HEAD_END, max(pos, self._scan_from - 3))
                    if head_end < 0:
                        if size - pos > self.max_size:
                            raise MessageTooLarge(f"no end of headers within {self.max_size} bytes")
                        self._scan_from = size
                        break
                    body_start = head_end + 4
                    end = body_start + _content_length(bytes(buffer[pos:head_end]))
                    if end - pos > self.max_size:
                        raise MessageTooLarge(f"{end - pos} bytes, limit {self.max_size}")
                    self._message_end = end
                if end > size:
                    break
                out.append(bytes(buffer[pos:end]))
                pos = end
                self._message_end = None
                self._scan_from = pos
        finally:
            if pos:
                del buffer[:pos]
                self._scan_from = max(0, self._scan_from - pos)
                if self._message_end is not None:
                    self._message_end -= pos
        return out
