"""SIP protocol errors, each carrying the response it implies (RFC 3261 §8.2, §21).

A ``SipError`` is a ``ValueError``: parsing raises it, and one place in the transport
adapter turns it into a stateless reply (requests) or a silent drop (responses, §18.1.2).
"""

from __future__ import annotations


class SipError(ValueError):
    """A fault in a SIP message; ``status`` and ``reason`` form the reply it implies."""

    status = 400
    default_reason = "Bad Request"

    def __init__(
        self, detail: str, *, status: int | None = None, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        self.headers = headers

    @property
    def reason(self) -> str:
        """Reason phrase for the reply: the standard phrase plus what was wrong."""
        return f"{self.default_reason} ({self.detail})" if self.detail else self.default_reason


class BadRequest(SipError):
    """400: the message is malformed (RFC 3261 §21.4.1); the detail names the fault."""

    status = 400
    default_reason = "Bad Request"

    @property
    def reason(self) -> str:
        return f"Bad Request - {self.detail}" if self.detail else "Bad Request"


class UnsupportedUriScheme(SipError):
    """416: the Request-URI scheme is not one we serve (RFC 3261 §8.2.2.1, §21.4.14)."""

    status = 416
    default_reason = "Unsupported URI Scheme"


class BadExtension(SipError):
    """420: Require/Proxy-Require names an unknown option (RFC 3261 §8.2.2.3, §21.4.15).

    ``unsupported`` lists the option tags for the Unsupported header of the reply.
    """

    status = 420
    default_reason = "Bad Extension"

    def __init__(self, unsupported: tuple[str, ...]) -> None:
        super().__init__(", ".join(unsupported), headers=(("Unsupported", ", ".join(unsupported)),))
        self.unsupported = unsupported


class TooManyHops(SipError):
    """483: Max-Forwards reached zero (RFC 3261 §16.3 step 3, §21.4.20)."""

    status = 483
    default_reason = "Too Many Hops"


class MessageTooLarge(SipError):
    """513: the message exceeds what we accept (RFC 3261 §21.5.11)."""

    status = 513
    default_reason = "Message Too Large"


class VersionNotSupported(SipError):
    """505: the SIP-Version is not SIP/2.0 (RFC 3261 §8.2.1 is silent; §21.5.6)."""

    status = 505
    default_reason = "Version Not Supported"


class MethodNotImplemented(SipError):
    """501: the method is unknown (RFC 3261 §8.2.1, §21.5.2)."""

    status = 501
    default_reason = "Not Implemented"


class CallDoesNotExist(SipError):
    """481: no dialog or transaction matches (RFC 3261 §12.2.2, §21.4.19)."""

    status = 481
    default_reason = "Call/Transaction Does Not Exist"
