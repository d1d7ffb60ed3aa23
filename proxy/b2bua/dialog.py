"""Dialog state of one call leg and in-dialog request building (RFC 3261 §12).

The B2BUA is the UAS of the A leg and the UAC of the B leg; both are ``Dialog``s seen
from our side: ``local_*`` is us, ``remote_*`` the party's switch.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field

from proxy.sip.address import NameAddress
from proxy.sip.build import make_request
from proxy.sip.message import Request, Response
from proxy.sip.transaction import Address
from proxy.sip.uri import SipUri, Uri


@dataclass(slots=True)
class Dialog:
    """RFC 3261 §12.1: Call-ID, tags, URIs, remote target, route set and CSeqs.

    ``fallback`` is where requests go when the remote target's host is a name: the pure
    core resolves no names, and a softswitch neighbour is reached over the flow the
    dialog arrived on.
    """

    call_id: str
    local_tag: str
    remote_tag: str | None
    local_uri: str
    remote_uri: str
    remote_target: Uri
    fallback: Address
    route_set: list[str] = field(default_factory=list)
    local_cseq: int = 0
    remote_cseq: int | None = None

    def next_cseq(self) -> int:
        self.local_cseq += 1
        return self.local_cseq

    def destination(self) -> Address:
        """Next hop (RFC 3261 §12.2.1.1, §8.1.2): first loose route, else the target."""
        uri: Uri = self.remote_target
        if self.route_set:
            uri = NameAddress.parse(self.route_set[0], "Route").uri
        if isinstance(uri, SipUri):
            host = uri.param("maddr") or uri.host
            if _is_ip_literal(host):
                transport = uri.param("transport")
                return Address(
                    (transport or self.fallback.transport).lower(),
                    host.strip("[]"),
                    uri.port or 5060,
                )
        return self.fallback

    def request(
        self,
        method: str,
        *,
        via: str,
        cseq: int | None = None,
        max_forwards: int = 70,
        contact: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        """An in-dialog request (RFC 3261 §12.2.1.1); ``cseq`` is given for ACK/CANCEL."""
        to = (
            self.remote_uri
            if self.remote_tag is None
            else f"{self.remote_uri};tag={self.remote_tag}"
        )
        route_headers = tuple(("Route", route) for route in self.route_set)
        return make_request(
            method,
            str(self.remote_target),
            via=via,
            from_=f"{self.local_uri};tag={self.local_tag}",
            to=to,
            call_id=self.call_id,
            cseq=self.next_cseq() if cseq is None else cseq,
            max_forwards=max_forwards,
            contact=contact,
            headers=route_headers + headers,
            body=body,
            content_type=content_type,
        )

    def update_from_uas_response(self, response: Response) -> None:
        """Learn tag, remote target and route set from a 18x/2xx we received as UAC.

        RFC 3261 §12.1.2: route set = Record-Route in reverse order; remote target = Contact.
        A target refresh on 2xx replaces the early dialog's target (§12.2.1.2).
        """
        self.remote_tag = response.to.tag
        if response.contacts:
            self.remote_target = response.contacts[0].uri
        if response.has("record-route"):
            self.route_set = [str(rr) for rr in reversed(response.record_routes)]


def uas_dialog(request: Request, *, local_tag: str, fallback: Address) -> Dialog:
    """The dialog a UAS forms from a dialog-creating request (RFC 3261 §12.1.1)."""
    target = request.contacts[0].uri if request.contacts else request.from_.uri
    return Dialog(
        call_id=request.call_id,
        local_tag=local_tag,
        remote_tag=request.from_.tag,
        local_uri=f"<{request.to.uri}>",
        remote_uri=f"<{request.from_.uri}>",
        remote_target=target,
        fallback=fallback,
        route_set=[str(rr) for rr in request.record_routes],
        remote_cseq=request.cseq.number,
    )


@functools.lru_cache(maxsize=1024)
def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
