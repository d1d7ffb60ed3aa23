"""Settings for ``privproxy serve``: defaults < TOML < PRIVPROXY_DB < flags; bad values named."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import Config, ConfigError, Listen, load_config


def test_defaults_are_the_readme_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PRIVPROXY_DB", raising=False)
    config = load_config(None, {})
    assert config.listens == (Listen("udp", "127.0.0.1", 5060),)
    assert config.trunk_uri.uri.port == 5080
    assert (config.db, config.ring_timeout, config.grace) == ("./privproxy.db", 60.0, 30.0)
    assert config.advertised() == ("127.0.0.1", 5060)


def test_toml_then_environment_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "privproxy.toml"
    toml.write_text(
        'sip = ["udp:127.0.0.1:6060", "tcp:127.0.0.1:6060"]\n'
        'db = "from-toml.db"\nring_timeout = 20\ntrusted = ["10.0.0.0/8"]\n'
    )
    monkeypatch.setenv("PRIVPROXY_DB", "from-env.db")
    config = load_config(str(toml), {"ring_timeout": 5.0, "advertise": "192.0.2.1:7070"})
    assert [str(listen) for listen in config.listens] == [
        "udp:127.0.0.1:6060",
        "tcp:127.0.0.1:6060",
    ]
    assert config.db == "from-env.db"
    assert config.ring_timeout == 5.0
    assert config.advertised() == ("192.0.2.1", 7070)
    assert [str(n) for n in config.trusted_networks] == ["10.0.0.0/8"]
    assert load_config(str(toml), {"db": "from-flag.db"}).db == "from-flag.db"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sip": ["udp:127.0.0.1"]}, "--sip 'udp:127.0.0.1'"),
        ({"sip": ["sctp:127.0.0.1:5060"]}, "expected udp:HOST:PORT"),
        ({"trunk": "tel:+8613800138000"}, "expected a sip: URI"),
        ({"trunk": "sip:trunk.example.com:5080"}, "must be an IP address"),
        ({"trunk": "sip:127.0.0.1:5080;transport=tls"}, "transport must be udp or tcp"),
        ({"trusted": ["10.0.0.0/33"]}, "--trusted"),
        ({"advertise": "host:port"}, "--advertise"),
        ({"ring_timeout": -1.0}, "ring_timeout"),
        ({"binding_refresh_s": -1.0}, "binding_refresh_s"),
    ],
)
def test_bad_settings_are_named(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(None, overrides)


def test_unknown_toml_keys_are_refused(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text('sipp = ["udp:127.0.0.1:5060"]\n')
    with pytest.raises(ConfigError, match="unknown settings sipp"):
        load_config(str(toml), {})


def test_unreadable_toml_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--config"):
        load_config(str(tmp_path / "missing.toml"), {})


def test_config_is_immutable() -> None:
    with pytest.raises(AttributeError):
        Config().db = "x"  # type: ignore[misc]
