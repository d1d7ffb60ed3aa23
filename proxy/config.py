"""Frozen settings for ``privproxy serve``: defaults, then a TOML file, then environment,
then command-line flags — each later source overriding the earlier ones."""

from __future__ import annotations

import ipaddress
import os
import socket
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final

from bindings.live import DEFAULT_REFRESH_S
from proxy.b2bua.digest import DigestPeer, DigestSettings
from proxy.b2bua.policy import PolicySettings
from proxy.sip.uri import SipUri, parse_uri


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it."""


@dataclass(frozen=True, slots=True)
class Listen:
    """One SIP listening socket: ``udp:HOST:PORT`` or ``tcp:HOST:PORT``."""

    transport: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Listen:
        transport, _, rest = text.partition(":")
        host, _, port = rest.rpartition(":")
        if transport not in ("udp", "tcp") or not host or not port.isdigit():
            raise ConfigError(f"--sip {text!r}: expected udp:HOST:PORT or tcp:HOST:PORT")
        return cls(transport, host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"{self.transport}:{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Trunk:
    """Where B legs go: a SIP URI such as ``sip:127.0.0.1:5080;transport=udp``."""

    uri: SipUri

    @classmethod
    def parse(cls, text: str) -> Trunk:
        try:
            uri = parse_uri(text, what="trunk URI")
        except ValueError as error:
            raise ConfigError(f"--trunk {text!r}: {error}") from None
        if not isinstance(uri, SipUri):
            raise ConfigError(f"--trunk {text!r}: expected a sip: URI")
        if uri.transport not in ("udp", "tcp"):
            raise ConfigError(f"--trunk {text!r}: transport must be udp or tcp")
        try:
            ipaddress.ip_address(uri.host.strip("[]"))
        except ValueError:
            raise ConfigError(f"--trunk {text!r}: the host must be an IP address") from None
        return cls(uri)


_POLICY: Final = PolicySettings()


@dataclass(frozen=True, slots=True)
class Config:
    """Everything ``serve`` needs; see README "Configuration" for each setting."""

    sip: tuple[str, ...] = ("udp:127.0.0.1:5060",)
    trunk: str = "sip:127.0.0.1:5080;transport=udp"
    db: str = "./privproxy.db"
    advertise: str | None = None
    trusted: tuple[str, ...] = ()
    peers: tuple[str, ...] = tuple(str(network) for network in _POLICY.peers)
    # The call policy's defaults live in PolicySettings (proxy/b2bua/policy.py), not here.
    untrusted_calls: str = _POLICY.untrusted_calls
    source_rate: float = _POLICY.source_rate
    source_burst: float = _POLICY.source_burst
    caller_rate: float = _POLICY.caller_rate
    caller_burst: float = _POLICY.caller_burst
    fraud_distinct_x: int = _POLICY.fraud_distinct_x
    fraud_window_s: float = _POLICY.fraud_window_s
    fraud_block_s: float = _POLICY.fraud_block_s
    max_calls_per_binding: int = _POLICY.max_calls_per_binding
    digest_realm: str = "privproxy"
    digest_secret: str | None = None
    digest_peers: tuple[str, ...] = ()
    ring_timeout: float = 60.0
    grace: float = 30.0
    privacy_prefix: str = "700"
    privacy_length: int = 15
    region: str = "CN"
    dial_format: str = "national"
    node: str = field(default_factory=socket.gethostname)
    log_level: str = "info"
    log_format: str = "text"
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    api: str = "127.0.0.1:8080"
    quarantine_s: float = 86400.0
    max_bindings_per_x: int = 5000
    cdr_retention_days: float | None = None
    cdr_retention_key: str | None = None
    cdr_signing_key: str | None = None
    tcp_max_per_host: int = 32
    tcp_max_inbound: int = 2048
    binding_refresh_s: float = DEFAULT_REFRESH_S

    @property
    def listens(self) -> tuple[Listen, ...]:
        return tuple(Listen.parse(text) for text in self.sip)

    @property
    def trunk_uri(self) -> Trunk:
        return Trunk.parse(self.trunk)

    @property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        try:
            return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in self.trusted)
        except ValueError as error:
            raise ConfigError(f"--trusted: {error}") from None

    @property
    def policy(self) -> PolicySettings:
        """Access control and limits (``proxy.b2bua.policy``): who may start calls
        (``peers``, plus the ``trusted`` networks), and how many."""
        try:
            peers = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in self.peers)
            return PolicySettings(
                peers=peers,
                untrusted_calls=self.untrusted_calls,  # type: ignore[arg-type]
                source_rate=self.source_rate,
                source_burst=self.source_burst,
                caller_rate=self.caller_rate,
                caller_burst=self.caller_burst,
                fraud_distinct_x=self.fraud_distinct_x,
                fraud_window_s=self.fraud_window_s,
                fraud_block_s=self.fraud_block_s,
                max_calls_per_binding=self.max_calls_per_binding,
            )
        except ValueError as error:
            raise ConfigError(f"call policy: {error}") from None

    @property
    def digest(self) -> DigestSettings:
        """Digest authentication: each ``digest_peers`` entry is "CIDR USERNAME PASSWORD";
        ``digest_secret`` seals the nonces (at least 16 characters)."""
        peers = []
        for entry in self.digest_peers:
            parts = entry.split()
            if len(parts) != 3:
                raise ConfigError(
                    f"digest_peers {entry.split()[:1]}: expected CIDR USERNAME PASSWORD"
                )
            try:
                network = ipaddress.ip_network(parts[0], strict=False)
            except ValueError as error:
                raise ConfigError(f"digest_peers: {error}") from None
            peers.append(DigestPeer(network, parts[1], parts[2]))
        try:
            return DigestSettings(
                realm=self.digest_realm,
                secret=(self.digest_secret or "").encode(),
                peers=tuple(peers),
            )
        except ValueError as error:
            raise ConfigError(f"digest: {error}") from None

    @property
    def api_listen(self) -> tuple[str, int] | None:
        """HOST, PORT of the HTTP API, or None when ``api = "off"``."""
        if self.api == "off":
            return None
        host, sep, port = self.api.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"--api {self.api!r}: expected HOST:PORT or off")
        return host.strip("[]"), int(port)

    def advertised(self) -> tuple[str, int]:
        """Host and port we write in Via/Contact: ``--advertise`` or the first listener."""
        first = self.listens[0]
        if not self.advertise:
            return first.host, first.port
        host, _, port = (
            self.advertise.rpartition(":") if ":" in self.advertise else (self.advertise, "", "")
        )
        if port and not port.isdigit():
            raise ConfigError(f"--advertise {self.advertise!r}: bad port")
        return (host or self.advertise), int(port) if port else first.port

    def validate(self) -> Config:
        _ = self.listens, self.trunk_uri, self.trusted_networks, self.advertised()
        _ = self.api_listen, self.policy, self.digest
        if self.cdr_retention_days is not None and (
            self.cdr_retention_days <= 0 or not self.cdr_retention_key
        ):
            raise ConfigError("cdr_retention_days must be positive and needs cdr_retention_key")
        if self.quarantine_s < 0 or self.max_bindings_per_x < 1:
            raise ConfigError("quarantine_s must not be negative and max_bindings_per_x positive")
        if not self.sip:
            raise ConfigError("at least one --sip listener is needed")
        if self.log_format not in ("text", "json"):
            raise ConfigError("log_format must be text or json")
        if self.dial_format not in ("national", "e164"):
            raise ConfigError("dial_format must be national or e164")
        if self.ring_timeout <= 0 or self.grace < 0:
            raise ConfigError("ring_timeout must be positive and grace not negative")
        if self.tcp_max_per_host < 1 or self.tcp_max_inbound < self.tcp_max_per_host:
            raise ConfigError(
                "tcp_max_per_host must be positive and tcp_max_inbound at least as large"
            )
        if self.binding_refresh_s < 0:
            raise ConfigError("binding_refresh_s must not be negative (0: no bindings in memory)")
        return self


_NAMES = {f.name for f in fields(Config)}


def load_config(path: str | None, overrides: dict[str, Any]) -> Config:
    """Defaults < TOML file < environment (``PRIVPROXY_DB``, ``PRIVPROXY_CDR_SIGNING_KEY``)
    < flags (``None`` flags are ignored)."""
    config = Config()
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"--config {path}: {error}") from None
        unknown = set(data) - _NAMES
        if unknown:
            raise ConfigError(f"--config {path}: unknown settings {', '.join(sorted(unknown))}")
        config = replace(config, **_frozen(data))
    if os.environ.get("PRIVPROXY_DB"):
        config = replace(config, db=os.environ["PRIVPROXY_DB"])
    if os.environ.get("PRIVPROXY_CDR_SIGNING_KEY"):
        config = replace(config, cdr_signing_key=os.environ["PRIVPROXY_CDR_SIGNING_KEY"])
    given = {k: v for k, v in overrides.items() if v not in (None, (), [])}
    config = replace(config, **_frozen(given))
    return config.validate()


def _frozen(values: dict[str, Any]) -> dict[str, Any]:
    """Lists (TOML arrays, repeated flags) become tuples: ``Config`` is immutable."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
