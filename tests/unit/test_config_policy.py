"""The access-control, rate-limit and digest settings of ``privproxy serve`` (issue #6)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from proxy.config import Config, ConfigError, load_config
from proxy.server import settings_from


def test_defaults_let_loopback_call_and_switch_the_buckets_off() -> None:
    settings = settings_from(load_config(None, {}))
    policy = settings.policy
    assert [str(n) for n in policy.peers] == ["127.0.0.0/8", "::1/128"]
    assert policy.untrusted_calls == "reject"
    assert (policy.source_rate, policy.caller_rate, policy.max_calls_per_binding) == (0, 0, 0)
    assert (policy.fraud_distinct_x, policy.fraud_window_s, policy.fraud_block_s) == (
        5,
        60.0,
        3600.0,
    )
    assert settings.trusted == ()
    assert settings.digest.peers == ()


def test_settings_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(
        'peers = ["10.0.0.0/8"]\nuntrusted_calls = "drop"\ncaller_rate = 0.1\n'
        "caller_burst = 3\nfraud_distinct_x = 4\nmax_calls_per_binding = 2\n"
        'digest_secret = "0123456789abcdef"\ndigest_peers = ["10.1.0.0/16 switch pw"]\n'
    )
    settings = settings_from(load_config(str(path), {}))
    policy = settings.policy
    assert policy.peers == (ipaddress.ip_network("10.0.0.0/8"),)
    assert (policy.untrusted_calls, policy.caller_rate, policy.caller_burst) == ("drop", 0.1, 3)
    assert (policy.fraud_distinct_x, policy.max_calls_per_binding) == (4, 2)
    [peer] = settings.digest.peers
    assert (str(peer.network), peer.username, peer.password) == ("10.1.0.0/16", "switch", "pw")
    assert settings.digest.secret == b"0123456789abcdef"


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"untrusted_calls": "ignore"}, "call policy"),
        ({"peers": ("10.0.0.0/33",)}, "call policy"),
        ({"caller_rate": -1.0}, "call policy"),
        ({"digest_peers": ("10.0.0.0/8 only-user",)}, "digest_peers"),
        ({"digest_peers": ("10.0.0.0/8 u p",), "digest_secret": "short"}, "digest"),
    ],
)
def test_bad_policy_settings_are_config_errors(overrides: dict[str, object], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        load_config(None, overrides)


def test_tcp_connection_caps(tmp_path: Path) -> None:
    assert (Config().tcp_max_per_host, Config().tcp_max_inbound) == (32, 2048)
    config = tmp_path / "tcp.toml"
    config.write_text("tcp_max_per_host = 4\ntcp_max_inbound = 100\n")
    loaded = load_config(str(config), {})
    assert (loaded.tcp_max_per_host, loaded.tcp_max_inbound) == (4, 100)
    for bad in ({"tcp_max_per_host": 0}, {"tcp_max_per_host": 10, "tcp_max_inbound": 5}):
        with pytest.raises(ConfigError, match="tcp_max_per_host"):
            load_config(None, bad)
