"""SDP privacy rewrite (RFC 8866 §5)."""

from __future__ import annotations

from proxy.b2bua.sdp import rewrite_sdp

OFFER = (
    b"v=0\n"
    b"o=13800138000 2890844526 2890844527 IN IP4 192.0.2.10\n"
    b"s=Zhang 138 0013 8000\n"
    b"i=private\n"
    b"u=http://example.com/13800138000\n"
    b"e=zhang@example.com (138-0013-8000)\n"
    b"p=+86 138 0013 8000\n"
    b"c=IN IP4 192.0.2.10\n"
    b"b=AS:64\n"
    b"t=0 0\n"
    b"a=tool:softphone 13800138000\n"
    b"a=cat:13800138000\n"
    b"a=keywds:13800138000\n"
    b"m=audio 49170 RTP/AVP 8 0 101\n"
    b"i=media 13800138000\n"
    b"a=rtpmap:8 PCMA/8000\n"
    b"a=rtpmap:101 telephone-event/8000\n"
    b"a=fmtp:101 0-15\n"
    b"a=ptime:20\n"
    b"m=video 0 RTP/AVP 96\n"
)


def test_rewrite_keeps_media_and_replaces_identity() -> None:
    assert rewrite_sdp(OFFER).split(b"\r\n") == [
        b"v=0",
        b"o=- 2890844526 2890844527 IN IP4 192.0.2.10",
        b"s=-",
        b"c=IN IP4 192.0.2.10",
        b"b=AS:64",
        b"t=0 0",
        b"m=audio 49170 RTP/AVP 8 0 101",
        b"a=rtpmap:8 PCMA/8000",
        b"a=rtpmap:101 telephone-event/8000",
        b"a=fmtp:101 0-15",
        b"a=ptime:20",
        b"m=video 0 RTP/AVP 96",
        b"",
    ]


def test_rewrite_is_idempotent_and_normalises_line_ends() -> None:
    once = rewrite_sdp(OFFER)
    assert rewrite_sdp(once) == once
    assert rewrite_sdp(OFFER.replace(b"\n", b"\r\n")) == once
    assert b"\n" not in once.replace(b"\r\n", b"")


def test_rewrite_options_and_edge_cases() -> None:
    assert rewrite_sdp(b"") == b""
    assert rewrite_sdp(b"garbage 13800138000\r\nX=1\r\n") == b""
    custom = rewrite_sdp(b"v=0\r\no=a 1 1 IN IP4 h\r\ns=x\r\n", username=b"pp", session_name=b"c")
    assert custom == b"v=0\r\no=pp 1 1 IN IP4 h\r\ns=c\r\n"
