"""``Message.headers_with``: the records of some lines, the same as ``headers`` holds for
them, without building the records of a parsed message's other lines."""

from __future__ import annotations

import pytest

from proxy.sip.build import make_request, make_response
from proxy.sip.message import Message, Request, parse
from tests.fixtures import load_torture_index, load_torture_messages
from tests.unit.test_message_lazy import INVITE

MESSAGES = load_torture_messages()
VALID = [row["name"] for row in load_torture_index() if row["class"] == "valid"]
ABSENT = "x-not-there"


def built_invite() -> Request:
    return make_request(
        "INVITE",
        "sip:13900139000@192.0.2.1",
        via="SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKc9",
        from_="<sip:700123456789012@192.0.2.9>;tag=f9",
        to="<sip:13900139000@192.0.2.1>",
        call_id="c9@192.0.2.9",
        cseq=1,
        contact="<sip:700123456789012@192.0.2.9:5060>",
        headers=(("Supported", "timer"), ("Allow", "INVITE, ACK, BYE")),
        body=b"v=0\r\n",
        content_type="application/sdp",
    )


def messages() -> dict[str, Message]:
    """Parsed ones (the fast path, and the general one with folded lines), built ones,
    and one edited after parsing."""
    found: dict[str, Message] = {name: parse(MESSAGES[name]) for name in VALID}
    found["lazy-invite"] = parse(INVITE)
    invite = built_invite()
    found["built-invite"] = invite
    found["built-200"] = make_response(invite, 200, to_tag="t9")
    edited = parse(INVITE)
    edited.set("subject", "edited")
    found["edited"] = edited
    return found


NAMES = list(messages())


@pytest.mark.parametrize("name", NAMES)
def test_headers_with_are_the_records_headers_holds_for_those_keys(name: str) -> None:
    wanted = {"via", "from", "to", "call-id", "cseq", "timestamp", "route", ABSENT}
    lazy, built = messages()[name], messages()[name]
    expected = [header for header in built.headers if header.key in wanted]
    assert built.headers_with(wanted) == expected
    assert lazy.headers_with(wanted) == expected
    assert lazy.headers_with((ABSENT,)) == []
    assert lazy.headers == built.headers  # and nothing in the message changed
    assert lazy.to_bytes() == built.to_bytes()


def test_a_lazy_message_builds_only_the_records_asked_for() -> None:
    parse(INVITE)  # the first parse of new names takes the general loop and learns them
    message = parse(INVITE)
    assert [h.key for h in message.headers_with(("via", "cseq"))] == ["via", "via", "cseq"]
    assert message._headers is None  # the other lines still have no record
