"""``Message.compact()``: a message kept after its last use holds its header lines as
text only, and reads, writes and edits exactly as it did before."""

from __future__ import annotations

import gc

import pytest

from proxy.sip.build import make_request, make_response
from proxy.sip.message import Message, Request, _PartsOfLines, parse
from proxy.sip.transaction import ServerTransaction
from tests.fixtures import load_torture_index, load_torture_messages
from tests.unit.b2bua_harness import B_SDP, bound_network
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


def messages() -> list[tuple[str, Message]]:
    """Parsed ones (fast path, general path with folded lines) and built ones."""
    found: list[tuple[str, Message]] = [(name, parse(MESSAGES[name])) for name in VALID]
    found.append(("lazy-invite", parse(INVITE)))
    invite = built_invite()
    found.append(("built-invite", invite))
    found.append(("built-200", make_response(invite, 200, to_tag="t9")))
    edited = parse(INVITE)
    edited.set("subject", "edited")  # records built and edited before compacting
    found.append(("edited", edited))
    return found


def twin(name: str) -> Message:
    return dict(messages())[name]


def reading(message: Message) -> list[object]:
    """Everything a reader can ask of a message, an error standing for its answer."""
    out: list[object] = []

    def read(what: str, thunk: object) -> None:
        try:
            out.append((what, thunk()))  # type: ignore[operator]
        except ValueError as error:
            out.append((what, type(error).__name__, str(error)))

    # Before ``headers`` builds every record: the records of some lines alone.
    for wanted in (("via", "from", "to", "call-id", "cseq"), ("contact",), (ABSENT,)):
        out.append([(h.key, h.name, h.value) for h in message.headers_with(wanted)])
    keys = [*sorted({header.key for header in message.headers}), ABSENT]
    out.append([(h.key, h.name, h.value) for h in message.headers])
    for key in keys:
        read(f"get {key}", lambda key=key: message.get(key))
        read(f"get_all {key}", lambda key=key: message.get_all(key))
        read(f"has {key}", lambda key=key: message.has(key))
    read("vias", lambda: message.vias)
    read("top_via", lambda: message.top_via)
    read("from", lambda: message.from_)
    read("to", lambda: message.to)
    read("call_id", lambda: message.call_id)
    read("cseq", lambda: message.cseq)
    read("max_forwards", lambda: message.max_forwards)
    read("contacts", lambda: message.contacts)
    read("content_type", lambda: message.content_type)
    read("validate", message.validate)
    read("bytes", message.to_bytes)
    out.append(message.body)
    if isinstance(message, Request):
        read("ruri", lambda: message.request_uri)
    return out


NAMES = [name for name, _ in messages()]


@pytest.mark.parametrize("name", NAMES)
def test_a_compacted_message_reads_as_before(name: str) -> None:
    kept, compacted = twin(name), twin(name)
    compacted.compact()
    assert reading(compacted) == reading(kept)


@pytest.mark.parametrize("name", NAMES)
def test_a_compacted_message_serializes_and_edits_as_before(name: str) -> None:
    kept, compacted = twin(name), twin(name)
    compacted.compact()
    assert compacted.to_bytes() == kept.to_bytes()  # before any record is rebuilt
    for message in (kept, compacted):
        message.set("subject", "after")
        message.add("x-extra", "1")
        message.remove("max-forwards")
    assert compacted.to_bytes() == kept.to_bytes()
    assert reading(compacted) == reading(kept)


def test_compact_keeps_text_only_and_is_idempotent() -> None:
    for name, message in messages():
        before = message.to_bytes()
        # A folded line, or space before a colon, would not read back the same from its
        # text alone: such a message is left as it is.
        as_is = any(
            h.raw is not None and ("\n" in h.raw or h.raw.partition(":")[0] != h.name)
            for h in message.headers
        )
        message.compact()
        message.compact()
        assert message.to_bytes() == before, name
        if as_is:
            assert message._headers is not None, name
            continue
        assert isinstance(message._parts, _PartsOfLines), name
        assert message._headers is None and message._vias is None and message._from is None
        # Tuples of strings, which the cyclic collector stops tracking after one pass.
        assert type(message._lines) is tuple and type(message._keys) is tuple


def test_compact_keeps_the_call_id_at_hand() -> None:
    message = parse(INVITE)
    assert message.call_id == "c1@example.com"
    message.compact()
    assert message._call_id == "c1@example.com"


def test_a_finished_call_leaves_its_lingering_transactions_compacted() -> None:
    """After BYE, the INVITE and BYE transactions live on for Timers J, L and M (up to
    32 s): what they hold is compacted, so the collector walks a few objects per message
    instead of every header record and parsed value."""
    network, _ = bound_network()
    network.call()
    network.callee_responds(180)
    network.callee_responds(200, body=B_SDP)
    network.advance(5)
    network.inject("caller", network.caller.in_dialog("BYE", network.now))
    network.run()
    layer = network.core.layer
    held: list[Message] = []
    for txn in [*layer._servers.values(), *layer._clients.values()]:
        held.append(txn.request)
        if isinstance(txn, ServerTransaction) and txn.last_response is not None:
            held.append(txn.last_response)
    kinds = sorted(m.to_bytes().split(b"\r\n", 1)[0].split(b" ")[0] for m in held)
    assert kinds == [b"BYE", b"BYE", b"INVITE", b"INVITE", b"SIP/2.0", b"SIP/2.0"]
    gc.collect()
    for message in held:
        assert isinstance(message._parts, _PartsOfLines)
        # Tracked by the collector: the message and its _parts, not a record per line.
        tracked = [
            o for o in gc.get_referents(message) if gc.is_tracked(o) and not isinstance(o, type)
        ]
        assert tracked == [message._parts], tracked


@pytest.mark.parametrize("name", NAMES)
def test_headers_with_are_the_records_headers_holds_for_those_keys(name: str) -> None:
    wanted = {"via", "from", "to", "call-id", "cseq", "timestamp", "route", ABSENT}
    lazy, compacted, built = twin(name), twin(name), twin(name)
    compacted.compact()
    expected = [header for header in built.headers if header.key in wanted]
    assert built.headers_with(wanted) == expected
    assert lazy.headers_with(wanted) == expected
    # A record we wrote has no raw text; once compacted, its line is that text.
    assert [(h.key, h.name, h.value, h.raw or f"{h.name}: {h.value}") for h in expected] == [
        tuple(h) for h in compacted.headers_with(wanted)
    ]
    assert lazy.headers == built.headers  # and nothing in the message changed
