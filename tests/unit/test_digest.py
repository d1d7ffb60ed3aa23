"""Digest authentication of calling peers (RFC 3261 §22, RFC 7616), pure."""

from __future__ import annotations

import hashlib
import ipaddress

import pytest

from proxy.b2bua.digest import (
    Challenge,
    DigestAuthenticator,
    DigestPeer,
    DigestSettings,
    parse_credentials,
)

T0 = 1_700_000_000.0
SECRET = b"0123456789abcdef0123"
PEER = DigestPeer(ipaddress.ip_network("10.0.0.0/24"), "softswitch", "s3cret")
HOST = "10.0.0.5"
URI = "sip:700100012345678@10.0.0.1"


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def authorization(nonce: str, *, password: str = "s3cret", username: str = "softswitch") -> str:
    """Computed here by hand from RFC 7616 §3.4.1, independently of the module."""
    ha1 = md5(f"{username}:privproxy:{password}")
    ha2 = md5(f"INVITE:{URI}")
    response = md5(f"{ha1}:{nonce}:00000001:0a4f113b:auth:{ha2}")
    return (
        f'Digest username="{username}", realm="privproxy", nonce="{nonce}", uri="{URI}",'
        f' response="{response}", algorithm=MD5, cnonce="0a4f113b", qop=auth, nc=00000001'
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
    assert authenticator().check("INVITE", None, "10.0.1.5", "u1", T0) is True


def test_no_credentials_get_a_challenge() -> None:
    result = authenticator().check("INVITE", None, HOST, "u1", T0)
    assert isinstance(result, Challenge)
    assert result.header.startswith('Digest realm="privproxy", nonce="')
    assert 'algorithm=MD5, qop="auth"' in result.header
    assert "stale" not in result.header


def test_right_credentials_pass_and_wrong_ones_fail() -> None:
    auth = authenticator()
    challenge = auth.check("INVITE", None, HOST, "u1", T0)
    assert isinstance(challenge, Challenge)
    nonce = nonce_of(challenge)
    assert auth.check("INVITE", authorization(nonce), HOST, "u2", T0 + 1) is True
    assert auth.check("INVITE", authorization(nonce, password="guess"), HOST, "u2", T0) is False
    assert auth.check("INVITE", authorization(nonce, username="other"), HOST, "u2", T0) is False


def test_nonce_is_bound_to_the_peer_address() -> None:
    auth = authenticator()
    nonce = auth.nonce("u1", "10.0.0.9", T0)
    result = auth.check("INVITE", authorization(nonce), HOST, "u2", T0)
    assert isinstance(result, Challenge) and "stale" not in result.header


def test_forged_nonce_gets_a_fresh_challenge() -> None:
    auth = authenticator()
    nonce = auth.nonce("u1", HOST, T0)
    forged = nonce[:-1] + ("0" if nonce[-1] != "0" else "1")
    assert auth.nonce_state(forged, HOST, T0) == "forged"
    assert auth.nonce_state("garbage", HOST, T0) == "forged"
    assert isinstance(auth.check("INVITE", authorization(forged), HOST, "u2", T0), Challenge)


def test_old_nonce_is_stale_and_rechallenged_with_stale_true() -> None:
    auth = authenticator(nonce_lifetime_s=300.0)
    nonce = auth.nonce("u1", HOST, T0)
    assert auth.nonce_state(nonce, HOST, T0 + 300) == "fresh"
    assert auth.nonce_state(nonce, HOST, T0 + 301) == "stale"
    result = auth.check("INVITE", authorization(nonce), HOST, "u2", T0 + 301)
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
    assert auth.check("INVITE", value, HOST, "u2", T0) is True
    assert auth.check("INVITE", authorization(nonce), HOST, "u2", T0) is False  # MD5 refused


def test_parse_credentials() -> None:
    assert parse_credentials('Digest a="x, y", b=tok ,c="q\\"d"') == {
        "a": "x, y",
        "b": "tok",
        "c": 'q"d',
    }
    assert parse_credentials("Basic dXNlcjpwYXNz") is None
    assert parse_credentials('Digest a="unterminated') is None
    assert parse_credentials("Digest novalue") is None
