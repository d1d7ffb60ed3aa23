"""Dialog state of one call leg and in-dialog request building (RFC 3261 §12).

The B2BUA is the UAS of the A leg and the UAC of the B leg; both are ``Dialog``s seen
from our side: ``local_*`` is us, ``remote_*`` the party's switch.
"""

from __future__ import annotations

import functools
import ipaddress

from proxy.sip.address import NameAddress
from proxy.sip.build import make_request
from proxy.sip.message import Request, Response
from proxy.sip.transaction import Address
from proxy.sip.uri import SipUri, Uri


class Dialog:
    """RFC 3261 §12.1: Call-ID, tags, URIs, remote target, route set and CSeqs.

    ``fallback`` is where requests go when the remote target's host is a name: the pure
    core resolves no names, and a softswitch neighbour is reached over the flow the
    dialog arrived on.

    What every request of the dialog repeats — the From and To values, the next hop — is
    worked out once and kept until the remote tag, target or route set changes; a UAS
    dialog writes its URIs only when it first sends a request of its own (most calls
    never do on the side that hangs up).
    """

    __slots__ = (
        "_destination",
        "_from_value",
        "_local_uri",
        "_origin",
        "_remote_tag",
        "_remote_target",
        "_remote_uri",
        "_route_set",
        "_target_text",
        "_to_value",
        "call_id",
        "fallback",
        "local_cseq",
        "local_tag",
        "remote_cseq",
    )

    def __init__(
        self,
        *,
        call_id: str,
        local_tag: str,
        remote_tag: str | None,
        local_uri: str | None,
        remote_uri: str | None,
        remote_target: Uri,
        fallback: Address,
        route_set: list[str] | None = None,
        local_cseq: int = 0,
        remote_cseq: int | None = None,
        origin: Request | None = None,
    ) -> None:
        if (local_uri is None or remote_uri is None) and origin is None:
            raise ValueError("a dialog needs its URIs or the request they come from")
        self.call_id = call_id
        self.local_tag = local_tag
        self._remote_tag = remote_tag
        self._local_uri = local_uri
        self._remote_uri = remote_uri
        self._origin = origin
        self._remote_target = remote_target
        self.fallback = fallback
        self._route_set = route_set if route_set is not None else []
        self.local_cseq = local_cseq
        self.remote_cseq = remote_cseq
        self._from_value: str | None = None
        self._to_value: str | None = None
        self._destination: Address | None = None
        self._target_text: str | None = None

    # -- what the dialog's requests repeat --------------------------------------------

    @property
    def local_uri(self) -> str:
        """Our URI, as a name-addr (``<sip:…>``): the From of our requests."""
        if self._local_uri is None:
            assert self._origin is not None
            self._local_uri = f"<{self._origin.to.uri}>"
        return self._local_uri

    @property
    def remote_uri(self) -> str:
        """The party's URI, as a name-addr: the To of our requests."""
        if self._remote_uri is None:
            assert self._origin is not None
            self._remote_uri = f"<{self._origin.from_.uri}>"
        return self._remote_uri

    @property
    def remote_tag(self) -> str | None:
        return self._remote_tag

    @remote_tag.setter
    def remote_tag(self, tag: str | None) -> None:
        self._remote_tag = tag
        self._to_value = None

    @property
    def remote_target(self) -> Uri:
        return self._remote_target

    @remote_target.setter
    def remote_target(self, target: Uri) -> None:
        self._remote_target = target
        self._destination = None
        self._target_text = None

    @property
    def route_set(self) -> list[str]:
        """The route set; replace it (``dialog.route_set = [...]``), never edit it in
        place, so that the next hop is worked out again."""
        return self._route_set

    @route_set.setter
    def route_set(self, routes: list[str]) -> None:
        self._route_set = routes
        self._destination = None

    def from_value(self) -> str:
        value = self._from_value
        if value is None:
            value = self._from_value = f"{self.local_uri};tag={self.local_tag}"
        return value

    def to_value(self) -> str:
        value = self._to_value
        if value is None:
            remote_tag = self._remote_tag
            value = self.remote_uri if remote_tag is None else f"{self.remote_uri};tag={remote_tag}"
            self._to_value = value
        return value

    def next_cseq(self) -> int:
        self.local_cseq += 1
        return self.local_cseq

    def destination(self) -> Address:
        """Next hop (RFC 3261 §12.2.1.1, §8.1.2): first loose route, else the target."""
        destination = self._destination
        if destination is None:
            destination = self._destination = self._next_hop()
        return destination

    def _next_hop(self) -> Address:
        uri: Uri = self._remote_target
        if self._route_set:
            uri = NameAddress.parse(self._route_set[0], "Route").uri
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
        if self._route_set:
            headers = tuple(("Route", route) for route in self._route_set) + headers
        target = self._target_text
        if target is None:
            target = self._target_text = str(self._remote_target)
        return make_request(
            method,
            target,
            via=via,
            from_=self.from_value(),
            to=self.to_value(),
            call_id=self.call_id,
            cseq=self.next_cseq() if cseq is None else cseq,
            max_forwards=max_forwards,
            contact=contact,
            headers=headers,
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
        record_routes = response.record_routes
        if record_routes:
            self.route_set = [str(rr) for rr in reversed(record_routes)]


def uas_dialog(request: Request, *, local_tag: str, fallback: Address) -> Dialog:
    """The dialog a UAS forms from a dialog-creating request (RFC 3261 §12.1.1)."""
    target = request.contacts[0].uri if request.contacts else request.from_.uri
    return Dialog(
        call_id=request.call_id,
        local_tag=local_tag,
        remote_tag=request.from_.tag,
        local_uri=None,
        remote_uri=None,
        origin=request,
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
