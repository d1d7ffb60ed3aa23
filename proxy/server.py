"""``privproxy serve``: wires transports, the B2BUA core, the binding store, call records
and the leak guard; starts, drains and stops (design.md §2).

Everything here runs on one event loop thread except the call-record writer. The core is
pure; this module is where bytes meet sockets, ``now`` meets the clock and lookups meet
the database.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bindings.live import LiveBindings, Routes
from bindings.sqlite_store import SqliteBindingStore
from proxy.b2bua.b2bua import B2BUA, error_reply
from proxy.b2bua.context import B2buaSettings
from proxy.b2bua.events import CallFinished, CallSummary, LookupBinding
from proxy.b2bua.leak_guard import guard_for
from proxy.cdr.checkpoint import load_signing_key
from proxy.cdr.record import CallRecord, q850_for_status
from proxy.cdr.retention import daily_maintenance, load_retention_key
from proxy.cdr.writer import CdrWriter
from proxy.config import Config, ConfigError
from proxy.db import open_database
from proxy.metrics import LatencyHistogram, registry_for, render
from proxy.numbers import NumberPlan, mask
from proxy.sip.errors import SipError
from proxy.sip.message import parse
from proxy.sip.transaction import Address, Send, TimerSettings
from proxy.transport.tcp import TcpPool
from proxy.transport.udp import UdpProtocol, listen_udp

log = logging.getLogger("privproxy")
SWEEP_INTERVAL_S = 60.0
#: A TCP connection silent this long is closed (softswitch trunks send OPTIONS or CRLF
#: keep-alives far more often).
TCP_IDLE_S = 600.0
MAINTENANCE_FIRST_DELAY_S = 60.0
MAINTENANCE_INTERVAL_S = 86400.0
call_log = logging.getLogger("privproxy.call")


def settings_from(config: Config) -> B2buaSettings:
    host, port = config.advertised()
    trunk = config.trunk_uri.uri
    return B2buaSettings(
        advertise_host=host,
        advertise_port=port,
        trunk=Address(trunk.transport, trunk.host.strip("[]"), trunk.port or 5060),
        trunk_host=trunk.host,
        trunk_port=trunk.port,
        plan=NumberPlan(
            privacy_prefix=config.privacy_prefix,
            privacy_length=config.privacy_length,
            region=config.region,
            dial_format=config.dial_format,
        ),
        ring_timeout=config.ring_timeout,
        trusted=config.trusted_networks,
        policy=config.policy,
        digest=config.digest,
    )


@dataclass
class Server:
    """One privproxy process."""

    config: Config
    core: B2BUA = field(init=False)
    store: SqliteBindingStore = field(init=False)
    #: what ``lookup`` asks: the live bindings in memory, or the store itself when
    #: ``binding_refresh_s`` is 0
    routes: Routes = field(init=False)
    writer: CdrWriter = field(init=False)
    counters: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.core = B2BUA(
            settings_from(self.config),
            seed=secrets.token_hex(4),
            timers=TimerSettings(self.config.t1, self.config.t2, self.config.t4),
        )
        self.udp: list[UdpProtocol] = []
        self.tcp = TcpPool(
            self.deliver,
            max_per_host=self.config.tcp_max_per_host,
            max_inbound=self.config.tcp_max_inbound,
        )
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = asyncio.Event()
        #: messages the leak guard blocked, so that their retransmissions are dropped quietly
        self._blocked: dict[bytes, None] = {}
        self._cdr_keys = cdr_keys(self.config)
        self.lookup_latency = LatencyHistogram()

    # -- life cycle --------------------------------------------------------------------

    async def start(self) -> None:
        self.store = SqliteBindingStore.open(self.config.db)
        self.routes = self.store
        if self.config.binding_refresh_s > 0:
            live = LiveBindings(self.store, refresh_s=self.config.binding_refresh_s)
            live.load(time.time())
            self.routes = live
            log.info("%d live bindings in memory", len(live))
        self.writer = CdrWriter(self.config.db)
        self.writer.start()
        for listen in self.config.listens:
            if listen.transport == "udp":
                self.udp.append(await listen_udp(listen.host, listen.port, self.deliver))
            else:
                await self.tcp.listen(listen.host, listen.port)
            log.info("listening on %s", listen)
        log.info("trunk %s, database %s", self.config.trunk, self.config.db)

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT, then drain and stop."""
        await self.start()
        tune_gc()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        sweeper = asyncio.create_task(self._sweep_expired_bindings())
        maintenance = asyncio.create_task(self._daily_cdr_maintenance())
        idle_tcp = asyncio.create_task(self.tcp.close_idle(TCP_IDLE_S, TCP_IDLE_S / 4))
        api_task = None
        # The API outlives the drain: /readyz says "draining" and /metrics can be scraped
        # while calls end; it stops once the SIP side has.
        api_stop = asyncio.Event()
        if self.config.api_listen is not None:
            from proxy.api.app import create_app, serve_api

            host, port = self.config.api_listen
            app = create_app(
                self.config.db,
                plan=settings_from(self.config).plan,
                quarantine_s=self.config.quarantine_s,
                max_per_x=self.config.max_bindings_per_x,
                metrics=partial(render, registry_for(self)),
                ready=self.readiness,
                routing_changed=(
                    self.routes.changed if isinstance(self.routes, LiveBindings) else None
                ),
            )
            api_task = asyncio.create_task(serve_api(app, host, port, api_stop))
            # An API that cannot listen stops the whole server: better than running without it.
            api_task.add_done_callback(lambda _: self._stopping.set())
            log.info("HTTP API on %s:%d", host, port)
        await self._stopping.wait()
        sweeper.cancel()
        maintenance.cancel()
        idle_tcp.cancel()
        api_failed = api_task is not None and api_task.done()
        await self.drain()
        api_stop.set()
        if api_task is not None:
            try:
                await api_task
            except Exception as error:
                log.error("HTTP API failed: %s", error)
                api_failed = True
        if api_failed:
            raise SystemExit(1)

    def readiness(self) -> tuple[bool, str]:
        """For ``/readyz``: ready while listening and taking calls with a working database."""
        if not self.core.accepting:
            return False, "draining: not taking new calls"
        if not self.udp and not self.tcp.servers:
            return False, "not listening yet"
        try:
            self.store.find_for_call("0", "0", time.time())
        except Exception as error:
            return False, f"database: {error}"
        return True, "ok"

    async def _sweep_expired_bindings(self) -> None:
        """Mark bindings past their expiry (routing never needs it: an expired binding stops
        routing at once; listings and exports do)."""
        while True:
            try:
                expired = self.store.expire_due(time.time())
            except Exception:
                log.exception("binding sweep failed")
            else:
                if expired:
                    log.info("%d bindings expired", expired)
            await asyncio.sleep(SWEEP_INTERVAL_S)

    async def _daily_cdr_maintenance(self) -> None:
        """Once at start and then every day: purge records past the retention period and
        store the day's (signed) checkpoint of the record chain (issue #5), off the loop
        thread on a connection of its own."""
        config = self.config
        retention_key, signing_key = self._cdr_keys

        def run() -> tuple[int, object]:
            conn = open_database(config.db)
            try:
                return daily_maintenance(
                    conn,
                    time.time(),
                    retention_days=config.cdr_retention_days,
                    retention_key=retention_key,
                    signing_key=signing_key,
                )
            finally:
                conn.close()

        await asyncio.sleep(MAINTENANCE_FIRST_DELAY_S)
        while True:
            try:
                purged, checkpoint = await asyncio.to_thread(run)
            except Exception:
                log.exception("call-record maintenance failed")
            else:
                log.info("call records: %d purged, checkpoint %s", purged, checkpoint)
            await asyncio.sleep(MAINTENANCE_INTERVAL_S)

    async def drain(self) -> None:
        """Stop taking calls, let calls end for ``grace`` seconds, BYE the rest, flush."""
        self.core.accepting = False
        log.info(
            "draining: %d calls in progress, grace %.0f s",
            self.core.active_calls,
            self.config.grace,
        )
        deadline = time.monotonic() + self.config.grace
        while self.core.active_calls and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.core.active_calls:
            log.info("ending %d calls after the grace period", self.core.active_calls)
            self.process(self.core.shutdown(time.time()))
        # Give the BYEs we just sent a moment to be answered (bounded).
        end = time.monotonic() + 2.0
        while self.core.layer.client_count and time.monotonic() < end:
            await asyncio.sleep(0.05)
        self.writer.close()
        self.store.close()
        for protocol in self.udp:
            if protocol.transport is not None:
                protocol.transport.close()
        self.tcp.close()
        log.info("stopped: %d call records written", self.writer.written)

    # -- input -------------------------------------------------------------------------

    def deliver(self, data: bytes, source: Address) -> None:
        """Every received message enters here; nothing a peer sends can crash us."""
        now = time.time()
        self.counters["received"] += 1
        try:
            outputs = self.core.receive(data, source, now)
        except SipError as error:
            # The one place where a protocol error becomes a stateless reply.
            self.counters[f"rejected_{error.status}"] += 1
            reply = error_reply(error, data, source)
            if reply is not None:
                self.send(reply)
            return
        except Exception:
            self.counters["internal_errors"] += 1
            log.exception("internal error on a message from %s", source.host)
            return
        self.process(outputs)

    def process(self, outputs: list[object]) -> None:
        """Carry out what the core asked for; one failing item (a database error in a
        lookup, say) is logged and counted and does not cost the others."""
        for item in outputs:
            try:
                if isinstance(item, Send):
                    self.send(item)
                elif isinstance(item, LookupBinding):
                    self.lookup(item)
                elif isinstance(item, CallFinished):
                    self.finished(item.summary)
            except Exception:
                self.counters["internal_errors"] += 1
                log.exception("internal error carrying out %s", type(item).__name__)
        self._arm_timer()

    def lookup(self, request: LookupBinding) -> None:
        """The binding of (X, caller) and the blocklist verdict on the caller and on the
        binding's parties; a database error fails the call with 503 (never left routing)."""
        now = time.time()
        started = time.perf_counter()
        try:
            binding, blocked = self.routes.route_for_call(
                request.attempt.x, request.attempt.caller, now
            )
        except Exception:
            self.counters["lookup_errors"] += 1
            log.exception("binding lookup failed; the call gets 503")
            self.process(self.core.lookup_failed(request.call_ref, now))
            return
        self.lookup_latency.observe(time.perf_counter() - started)
        self.process(self.core.route_call(request.call_ref, binding, now, blocked=blocked))

    # -- output ------------------------------------------------------------------------

    def send(self, item: Send) -> None:
        """Write one message, after the leak guard (design.md §4) has passed it."""
        if item.guard:
            leaked = guard_for(item.guard, self.config.region).find(item.data)
            if leaked is not None:
                self.counters["leak_blocked"] += 1
                if item.data in self._blocked:
                    return  # a retransmission of a message already blocked and reported
                self._blocked[item.data] = None
                while len(self._blocked) > 1024:
                    del self._blocked[next(iter(self._blocked))]
                log.error(
                    "leak guard blocked a message to %s: it carried %s",
                    item.destination.host,
                    leaked,
                )
                self._abort_leaking_call(item.data)
                return
        try:
            if item.destination.transport == "udp":
                if self.udp:
                    self.udp[0].send(item.data, item.destination)
            else:
                self.tcp.send(item.data, item.destination)
        except (OSError, ValueError) as error:
            # An address the socket cannot take (another family, a name to resolve): this
            # message is lost like a dropped datagram, the rest of the work goes on.
            self.counters["send_errors"] += 1
            log.warning(
                "cannot send to %s:%s: %s", item.destination.host, item.destination.port, error
            )

    def _abort_leaking_call(self, data: bytes) -> None:
        try:
            call_id = parse(data).call_id
        except SipError:
            return
        self.process(self.core.abort_call(call_id, time.time(), reason="leak"))

    def finished(self, summary: CallSummary) -> None:
        try:
            record = call_record(summary, self.config.node)
        except ValueError:
            self.counters["record_errors"] += 1
            log.exception(
                "inconsistent call summary for call %d; no record written", summary.call_ref
            )
            return
        self.writer.submit(record)
        self.counters[f"calls_{record.disposition}"] += 1
        if record.reject_reason is not None:
            self.counters[f"reject_{record.reject_reason}"] += 1
        if not call_log.isEnabledFor(logging.INFO):
            return
        call_log.info(
            "call %s x=%s caller=%s callee=%s %s status=%d ring=%s talk=%.1fs released_by=%s",
            record.id,
            summary.x or "-",
            mask(summary.caller or ""),
            mask(summary.callee or ""),
            record.disposition
            if record.reject_reason is None
            else f"rejected:{record.reject_reason}",
            record.sip_status,
            "-" if record.ring_s is None else f"{record.ring_s:.1f}s",
            record.talk_s,
            record.released_by or "-",
        )

    # -- the one timer -----------------------------------------------------------------

    def _arm_timer(self) -> None:
        deadline = self.core.next_deadline()
        armed = self._timer_at
        # A timer armed no later than the next deadline stays: it fires, finds nothing due
        # and arms the next one. Most datagrams move the deadline later (a response stops
        # a retransmission timer): re-arming for each cost ~3 loop timers per call.
        if deadline is None or (armed is not None and armed <= deadline):
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = self._loop
        if loop is None:
            # Looked up once: asyncio.get_running_loop() makes a getpid() system call on
            # every use (its check for a forked child), and this runs for most datagrams.
            loop = self._loop = asyncio.get_running_loop()
        self._timer_at = deadline
        self._timer = loop.call_at(loop.time() + max(0.0, deadline - time.time()), self._on_timer)

    def _on_timer(self) -> None:
        # The loop's timers have millisecond resolution and may fire a little early: the
        # armed deadline counts as reached, or the timer would spin until the clock caught up.
        now = max(time.time(), self._timer_at or 0.0)
        self._timer = None
        self._timer_at = None
        try:
            outputs = self.core.advance(now)
        except Exception:
            self.counters["internal_errors"] += 1
            log.exception("internal error in a timer")
            outputs = []
        self.process(outputs)


def cdr_keys(config: Config) -> tuple[bytes | None, Ed25519PrivateKey | None]:
    """The retention (HMAC) key and the checkpoint signing key the settings name; a key
    that cannot be read is a ``ConfigError`` at start-up, not a failure a day later."""
    try:
        retention = (
            load_retention_key(Path(config.cdr_retention_key)) if config.cdr_retention_key else None
        )
        signing = load_signing_key(Path(config.cdr_signing_key)) if config.cdr_signing_key else None
    except (OSError, ValueError) as error:
        raise ConfigError(f"call-record key: {error}") from None
    return retention, signing


def record_id() -> str:
    """A random (version 4, RFC 9562 §5.4) UUID in 32 hex digits, as ``uuid.uuid4().hex``
    writes it, without building a ``UUID`` object for every call."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    return raw.hex()


def call_record(summary: CallSummary, node: str) -> CallRecord:
    """The call record of a finished call (design.md §1 "Records")."""
    reject_reason = summary.reject_reason
    disposition = summary.disposition
    if reject_reason is not None and summary.answer_at is None:
        disposition = "rejected"
    elif summary.answer_at is not None:
        reject_reason = None
    return CallRecord(
        id=record_id(),
        tenant=summary.tenant or "default",
        binding_id=summary.binding_id,
        x=summary.x or "",
        caller=summary.caller or "",
        callee=summary.callee,
        direction=summary.direction,  # type: ignore[arg-type]
        a_call_id=summary.a_call_id,
        b_call_id=summary.b_call_id,
        invite_at=summary.invite_at,
        ring_at=summary.ring_at,
        answer_at=summary.answer_at,
        end_at=summary.end_at,
        disposition=disposition,  # type: ignore[arg-type]
        reject_reason=reject_reason,  # type: ignore[arg-type]
        sip_status=summary.sip_status,
        q850_cause=q850_for_status(summary.sip_status, alerted=summary.ring_at is not None)
        if summary.sip_status >= 300
        else 16,
        released_by=summary.released_by,  # type: ignore[arg-type]
        node=node,
    )


def tune_gc() -> None:
    """Thousands of live transactions and dialogs are long-lived objects, and every call
    leaves reference cycles: keep the cyclic collector off the start-up heap and make its
    young-generation passes rarer (about 300 µs of CPU per call with the defaults,
    ``benchmarks/core.py``)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def install_event_loop() -> None:
    """uvloop where it is installed (design.md §3), the standard loop otherwise or when
    ``PRIVPROXY_LOOP=asyncio`` asks for it."""
    if os.environ.get("PRIVPROXY_LOOP") == "asyncio":
        return
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def serve(config: Config) -> None:
    install_event_loop()
    asyncio.run(Server(config).run())
