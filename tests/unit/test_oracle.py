"""sipmessage (an independent parser) as an oracle on real messages: both must read the
same method or status, Request-URI, From/To URIs and tags, Call-ID and CSeq."""

from __future__ import annotations

from typing import Any

import pytest
import sipmessage

from proxy.sip.message import Request, parse
from proxy.sip.uri import AbsoluteUri, SipUri, TelUri, Uri
from tests.fixtures import load_fixture_messages, load_torture_index, load_torture_messages

_VALID = {row["name"] for row in load_torture_index() if row["class"] == "valid"}
CORPUS = {
    **{f"torture-{name}": data for name, data in load_torture_messages().items() if name in _VALID},
    **{f"fixture-{name}": data for name, data in load_fixture_messages().items()},
}
MIN_COMPARED = 20


def oracle_view(data: bytes) -> dict[str, Any] | str:
    """What sipmessage reads, or why it cannot read the message at all."""
    try:
        theirs = sipmessage.Message.parse(data)
        view: dict[str, Any] = {
            "start": theirs.method if isinstance(theirs, sipmessage.Request) else theirs.code,
            "ruri": uri_fields(theirs.uri) if isinstance(theirs, sipmessage.Request) else None,
            "from": uri_fields(theirs.from_address.uri),
            "to": uri_fields(theirs.to_address.uri),
            "from_tag": theirs.from_address.parameters.get("tag"),
            "to_tag": theirs.to_address.parameters.get("tag"),
            "call_id": theirs.call_id,
            "cseq": (theirs.cseq.sequence, theirs.cseq.method),
        }
    except Exception as error:  # sipmessage raises ValueError, KeyError and others
        return f"sipmessage-cannot-parse-{type(error).__name__}"
    return view


def uri_fields(uri: Any) -> tuple[object, ...]:
    """(scheme, user unescaped, host lower-case, port) of either parser's URI."""
    if isinstance(uri, SipUri):
        return (uri.scheme, uri.user_unescaped, uri.host.lower(), uri.port)
    if isinstance(uri, TelUri):
        return ("tel", uri.user_unescaped, None, None)
    if isinstance(uri, AbsoluteUri):
        return (uri.scheme, None, None, None)
    scheme = uri.scheme.lower()
    if scheme == "tel":
        return ("tel", uri.user, None, None)
    return (scheme, uri.user, uri.host.lower(), uri.port)


def our_view(data: bytes) -> dict[str, Any]:
    ours = parse(data)
    ours.validate()
    is_request = isinstance(ours, Request)
    request_uri: Uri | None = ours.request_uri if isinstance(ours, Request) else None
    return {
        "start": ours.method if isinstance(ours, Request) else ours.status,
        "ruri": uri_fields(request_uri) if is_request else None,
        "from": uri_fields(ours.from_.uri),
        "to": uri_fields(ours.to.uri),
        "from_tag": ours.from_.tag,
        "to_tag": ours.to.tag,
        "call_id": ours.call_id,
        "cseq": (ours.cseq.number, ours.cseq.method),
    }


ORACLE = {name: oracle_view(data) for name, data in sorted(CORPUS.items())}
COMPARABLE = {name: view for name, view in ORACLE.items() if isinstance(view, dict)}


def _case(name: str) -> Any:
    view = ORACLE[name]
    if isinstance(view, str):
        return pytest.param(name, id=f"{name}-SKIP-{view}", marks=pytest.mark.skip(reason=view))
    return pytest.param(name, id=name)


@pytest.mark.parametrize("name", [_case(name) for name in ORACLE])
def test_same_reading_as_sipmessage(name: str) -> None:
    assert our_view(CORPUS[name]) == ORACLE[name]


def test_enough_messages_were_compared() -> None:
    assert len(COMPARABLE) >= MIN_COMPARED
    assert sum(name.startswith("fixture-") for name in COMPARABLE) == len(load_fixture_messages())


def test_oracle_disagrees_when_we_would_be_wrong() -> None:
    """The comparison can fail: a changed tag is noticed."""
    name = "fixture-invite"
    changed = CORPUS[name].replace(b"tag=1928301774", b"tag=1928301775")
    assert our_view(changed) != ORACLE[name]
