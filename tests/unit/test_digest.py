"""Digest authentication of calling peers (RFC 3261 §22, RFC 7616), pure."""

from __future__ import annotations

import hashlib
import ipaddress

import pytest

from proxy.b2bua import digest
from proxy.b2bua.digest import (
    Challenge,
    DigestAuthenticator,
    DigestPeer,
    DigestSettings,
    Mismatch,
    parse_credentials,
)

T0 = 1_700_000_000.0
SECRET = b"0123456789abcdef0123"
PEER = DigestPeer(ipaddress.ip_network("10.0.0.0/24"), "softswitch", "s3cret")
HOST = "10.0.0.5"
URI = "sip:700100012345678@10.0.0.1"


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def authorization(
    nonce: str,
    *,
    password: str = "s3cret",
    username: str = "softswitch",
    uri: str = URI,
    nc: str = "00000001",
) -> str:
    """Computed here by hand from RFC 7616 §3.4.1, independently of the module."""
    ha1 = md5(f"{username}:privproxy:{password}")
    ha2 = md5(f"INVITE:{uri}")
    response = md5(f"{ha1}:{nonce}:{nc}:0a4f113b:auth:{ha2}")
    return (
        f'Digest username="{username}", realm="privproxy", nonce="{nonce}", uri="{uri}",'
        f' response="{response}", algorithm=MD5, cnonce="0a4f113b", qop=auth, nc={nc}'
    )


def rfc2069(nonce: str, uri: str = URI) -> str:
    """Credentials without qop (RFC 2617 §3.2.2.1): no cnonce, no nonce count."""
    ha1, ha2 = md5("softswitch:privproxy:s3cret"), md5(f"INVITE:{uri}")
    response = md5(f"{ha1}:{nonce}:{ha2}")
    return (
        f'Digest username="softswitch", realm="privproxy", nonce="{nonce}", uri="{uri}",'
        f' response="{response}"'
    )


def authenticator(**overrides: object) -> DigestAuthenticator:
    values: dict[str, object] = {"secret": SECRET, "peers": (PEER,)}
    values.update(overrides)
    return DigestAuthenticator(DigestSettings(**values))  # type: ignore[arg-type]


def nonce_of(challenge: Challenge) -> str:
    params = parse_credentials(challenge.header)
    assert params is not None
    return params["nonce"]


def test_peer_outside_the_table_needs_no_credentials() -> None:
    assert authenticator().check("INVITE", URI, None, "10.0.1.5", "u1", T0) is True


def test_no_credentials_get_a_challenge() -> None:
    result = authenticator().check("INVITE", URI, None, HOST, "u1", T0)
    assert isinstance(result, Challenge)
    assert result.header.startswith('Digest realm="privproxy", nonce="')
    assert 'algorithm=MD5, qop="auth"' in result.header
    assert "stale" not in result.header


def test_right_credentials_pass_and_wrong_ones_fail() -> None:
    auth = authenticator()
    challenge = auth.check("INVITE", URI, None, HOST, "u1", T0)
    assert isinstance(challenge, Challenge)
    nonce = nonce_of(challenge)
    assert auth.check("INVITE", URI, authorization(nonce), HOST, "u2", T0 + 1) is True
    assert (
        auth.check("INVITE", URI, authorization(nonce, password="guess"), HOST, "u2", T0) is False
    )
    assert (
        auth.check("INVITE", URI, authorization(nonce, username="other"), HOST, "u2", T0) is False
    )


def test_nonce_is_bound_to_the_peer_address() -> None:
    auth = authenticator()
    nonce = auth.nonce("u1", "10.0.0.9", T0)
    result = auth.check("INVITE", URI, authorization(nonce), HOST, "u2", T0)
    assert isinstance(result, Challenge) and "stale" not in result.header


def test_forged_nonce_gets_a_fresh_challenge() -> None:
    auth = authenticator()
    nonce = auth.nonce("u1", HOST, T0)
    forged = nonce[:-1] + ("0" if nonce[-1] != "0" else "1")
    assert auth.nonce_state(forged, HOST, T0) == "forged"
    assert auth.nonce_state("garbage", HOST, T0) == "forged"
    assert isinstance(auth.check("INVITE", URI, authorization(forged), HOST, "u2", T0), Challenge)


def test_old_nonce_is_stale_and_rechallenged_with_stale_true() -> None:
    auth = authenticator(nonce_lifetime_s=300.0)
    nonce = auth.nonce("u1", HOST, T0)
    assert auth.nonce_state(nonce, HOST, T0 + 300) == "fresh"
    assert auth.nonce_state(nonce, HOST, T0 + 301) == "stale"
    result = auth.check("INVITE", URI, authorization(nonce), HOST, "u2", T0 + 301)
    assert isinstance(result, Challenge) and result.header.endswith("stale=true")


def test_secret_is_required_with_peers() -> None:
    with pytest.raises(ValueError):
        DigestSettings(peers=(PEER,), secret=b"short")
    with pytest.raises(ValueError):
        DigestSettings(algorithm="SHA-1")


def test_sha256() -> None:
    auth = authenticator(algorithm="SHA-256")
    nonce = auth.nonce("u1", HOST, T0)
    h = lambda text: hashlib.sha256(text.encode()).hexdigest()  # noqa: E731
    ha1, ha2 = h("softswitch:privproxy:s3cret"), h(f"INVITE:{URI}")
    response = h(f"{ha1}:{nonce}:{ha2}")
    value = (
        f'Digest username="softswitch", realm="privproxy", nonce="{nonce}", uri="{URI}",'
        f' response="{response}", algorithm=SHA-256'
    )
    assert auth.check("INVITE", URI, value, HOST, "u2", T0) is True
    assert auth.check("INVITE", URI, authorization(nonce), HOST, "u2", T0) is False  # MD5 refused


def test_parse_credentials() -> None:
    assert parse_credentials('Digest a="x, y", b=tok ,c="q\\"d"') == {
        "a": "x, y",
        "b": "tok",
        "c": 'q"d',
    }
    assert parse_credentials("Basic dXNlcjpwYXNz") is None
    assert parse_credentials('Digest a="unterminated') is None
    assert parse_credentials("Digest novalue") is None


# -- replays and credentials for another request -------------------------------------------


def test_credentials_for_another_request_uri_are_a_mismatch() -> None:
    """RFC 7616 §3.4.6: a response captured for one privacy number must not place a call
    to another."""
    auth = authenticator()
    nonce = auth.nonce("u1", HOST, T0)
    other = "sip:700100099999999@10.0.0.1"
    result = auth.check("INVITE", URI, authorization(nonce, uri=other), HOST, "u2", T0)
    assert isinstance(result, Mismatch)
    assert "uri" in result.reason
    # The number decides, not the host: a proxy on the way may rewrite the Request-URI's
    # host, port or parameters (RFC 2617 §3.2.2.5).
    rewritten = "sip:700100012345678@192.0.2.7:5080;transport=udp"
    credentials = authorization(nonce, uri="sip:700100012345678@switch.example.com")
    assert auth.check("INVITE", rewritten, credentials, HOST, "u2", T0) is True
    for wrong_form in ("sips:700100012345678@10.0.0.1", "sip:10.0.0.1", "tel:700100012345678"):
        other_form = rfc2069(auth.nonce("u9", HOST, T0), wrong_form)
        assert isinstance(auth.check("INVITE", URI, other_form, HOST, "u9", T0), Mismatch)
    assert auth.check("INVITE", URI, rfc2069(nonce, "not a uri"), HOST, "u3", T0) == Mismatch(
        "Digest uri does not match the Request-URI"
    )


def test_a_nonce_count_that_does_not_grow_is_a_replay() -> None:
    auth = authenticator()
    nonce = auth.nonce("u1", HOST, T0)
    first = authorization(nonce, nc="00000001")
    assert auth.check("INVITE", URI, first, HOST, "u2", T0) is True
    replay = auth.check("INVITE", URI, first, HOST, "u3", T0 + 1)
    assert isinstance(replay, Challenge) and replay.header.endswith("stale=true")
    assert auth.check("INVITE", URI, authorization(nonce, nc="00000003"), HOST, "u4", T0) is True
    again = auth.check("INVITE", URI, authorization(nonce, nc="00000002"), HOST, "u5", T0)
    assert isinstance(again, Challenge)
    # Another nonce keeps its own count.
    other = auth.nonce("u6", HOST, T0)
    assert auth.check("INVITE", URI, authorization(other), HOST, "u7", T0) is True


def test_a_nonce_used_without_qop_is_spent() -> None:
    auth = authenticator()
    nonce = auth.nonce("u1", HOST, T0)
    assert auth.check("INVITE", URI, rfc2069(nonce), HOST, "u2", T0) is True
    assert isinstance(auth.check("INVITE", URI, rfc2069(nonce), HOST, "u3", T0), Challenge)


def test_a_malformed_nonce_count_is_refused() -> None:
    auth = authenticator()
    nonce = auth.nonce("u1", HOST, T0)
    for nc in ("1", "0000000g", "000000001"):
        assert auth.check("INVITE", URI, authorization(nonce, nc=nc), HOST, "u2", T0) is False


def test_wrong_credentials_are_refused_before_the_replay_check() -> None:
    auth = authenticator()
    nonce = auth.nonce("u1", HOST, T0)
    assert auth.check("INVITE", URI, authorization(nonce), HOST, "u2", T0) is True
    wrong = authorization(nonce, password="guess", nc="00000002")
    assert auth.check("INVITE", URI, wrong, HOST, "u3", T0) is False


def test_the_table_of_used_nonces_is_bounded_and_forgets_safely(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past ``MAX_TRACKED_NONCES`` the first-used nonces are dropped; a dropped nonce that
    is still fresh is re-challenged, never accepted again; expired ones just go."""
    monkeypatch.setattr(digest, "MAX_TRACKED_NONCES", 3)
    auth = authenticator(nonce_lifetime_s=300.0)
    nonces = [auth.nonce(f"n{i}", HOST, T0 + i) for i in range(5)]
    for i, nonce in enumerate(nonces):
        assert auth.check("INVITE", URI, authorization(nonce), HOST, "u", T0 + i) is True
    assert len(auth._counts) == 3
    dropped = auth.check("INVITE", URI, authorization(nonces[0], nc="00000002"), HOST, "u", T0 + 5)
    assert isinstance(dropped, Challenge) and dropped.header.endswith("stale=true")
    kept = authorization(nonces[4], nc="00000002")
    assert auth.check("INVITE", URI, kept, HOST, "u", T0 + 5) is True
    # A nonce issued after the dropped ones is good for its first use.
    late = auth.nonce("late", HOST, T0 + 10)
    assert auth.check("INVITE", URI, authorization(late), HOST, "u", T0 + 10) is True
    # Long after, the expired entries leave the table on the next use.
    fresh = auth.nonce("fresh", HOST, T0 + 1000)
    assert auth.check("INVITE", URI, authorization(fresh), HOST, "u", T0 + 1000) is True
    assert list(auth._counts) == [fresh]
