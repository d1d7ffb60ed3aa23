"""Run SIPp from end-to-end tests: build the command line, track the process by PID, and
read back what SIPp sent and received (its ``-trace_msg`` file) and its statistics
(``-trace_stat`` CSV).

Typical use, a callee in the background and a caller in the foreground::

    with run_sipp("uas_answer", None, local_port=trunk, background=True) as callee:
        caller = run_sipp("uac_call", f"127.0.0.1:{proxy}", local_port=free_port())
        caller.assert_clean()
        invite = callee.received_messages()[0]

Every SIPp run is bounded twice: by SIPp's own ``-timeout`` (with ``-timeout_error``) and by
a subprocess deadline after which the harness kills the PID it started.
"""

from __future__ import annotations

import atexit
import csv
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, overload

import pytest

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "sipp_scenarios"
LOOPBACK = "127.0.0.1"

# Test data: A and B are the real parties, X the privacy number bound to them.
CALLER_A = "13800138000"
CALLEE_B = "13900139000"
PRIVACY_X = "700123456789012"

# Every scenario key must be defined on the command line (SIPp rejects an unknown [key]),
# so these defaults are always passed; `keys=` overrides them.
DEFAULT_KEYS: Mapping[str, str] = {"caller": CALLER_A, "callee": CALLEE_B, "dialed": PRIVACY_X}

# Seconds the harness allows beyond SIPp's own -timeout before killing the process.
KILL_GRACE_S = 5.0
STOP_GRACE_S = 3.0
READY_TIMEOUT_S = 5.0

# SIPp exit statuses (sipp(1), "Exit codes").
EXIT_ALL_CALLS_OK = 0
EXIT_SOME_CALLS_FAILED = 1
EXIT_INTERNAL_COMMAND = 97
EXIT_NO_CALLS_PROCESSED = 99
EXIT_FATAL = 255
EXIT_FATAL_BIND = 254

Transport = Literal["udp", "tcp"]
_TRANSPORT_MODE: Mapping[str, str] = {"udp": "u1", "tcp": "t1"}


def require_sipp() -> str:
    """Path of the sipp binary. Missing sipp fails the test on CI and skips it elsewhere."""
    path = shutil.which("sipp")
    if path is None:
        reason = "sipp not installed (Debian package sip-tester; `make sipp` installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def free_port() -> int:
    """A port on 127.0.0.1 that is free for both UDP and TCP at the time of the call."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((LOOPBACK, 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both UDP and TCP on 127.0.0.1")


def scenario_path(scenario: str) -> Path:
    """A scenario given by name (``uac_call``) or by path."""
    candidate = Path(scenario)
    if candidate.suffix == ".xml" and candidate.exists():
        return candidate.resolve()
    named = SCENARIO_DIR / f"{candidate.stem}.xml"
    if not named.exists():
        raise FileNotFoundError(f"no SIPp scenario {scenario!r} (looked in {SCENARIO_DIR})")
    return named


# --- the message trace -------------------------------------------------------------------

# SIPp 3.6 -trace_msg blocks: a dashed line with a timestamp, then
#   "UDP message sent (N bytes):\n\n" or "UDP message received [N] bytes :\n\n",
# then exactly N bytes of the message as it went on the wire.
_TRACE_BLOCK = re.compile(
    rb"-{20,} (?P<timestamp>[^\n]*)\n"
    rb"(?P<transport>[A-Za-z0-9]+) message "
    rb"(?:sent \((?P<sent>\d+) bytes\):|received \[(?P<received>\d+)\] bytes :)\n\n"
)

_COMPACT_HEADER_NAMES: Mapping[str, str] = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
}


@dataclass(frozen=True, slots=True)
class SippMessage:
    """One SIP message SIPp logged, with the exact bytes it sent or received."""

    direction: Literal["sent", "received"]
    transport: str
    timestamp: str
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="surrogateescape")

    @property
    def head(self) -> str:
        """Start line and header lines, without the body."""
        return self.text.split("\r\n\r\n", 1)[0]

    @property
    def body(self) -> bytes:
        parts = self.data.split(b"\r\n\r\n", 1)
        return parts[1] if len(parts) == 2 else b""

    @property
    def start_line(self) -> str:
        return self.head.split("\r\n", 1)[0]

    @property
    def is_request(self) -> bool:
        return not self.start_line.startswith("SIP/2.0 ")

    @property
    def method(self) -> str | None:
        return self.start_line.split(" ", 1)[0] if self.is_request else None

    @property
    def status(self) -> int | None:
        return None if self.is_request else int(self.start_line.split(" ", 2)[1])

    def headers(self, name: str) -> list[str]:
        """Values of every header line called ``name`` (long or compact form, any case),
        unfolded (RFC 3261 section 7.3.1), in message order."""
        wanted = name.lower()
        values: list[str] = []
        for line in _unfold(self.head.split("\r\n")[1:]):
            line_name, sep, value = line.partition(":")
            if not sep:
                continue
            key = line_name.strip().lower()
            if _COMPACT_HEADER_NAMES.get(key, key) == wanted:
                values.append(value.strip())
        return values

    def header(self, name: str) -> str | None:
        values = self.headers(name)
        return values[0] if values else None

    @property
    def cseq_method(self) -> str | None:
        cseq = self.header("cseq")
        return cseq.split()[-1] if cseq else None


def _unfold(lines: Sequence[str]) -> Iterator[str]:
    current: str | None = None
    for line in lines:
        if line[:1] in (" ", "\t") and current is not None:
            current += " " + line.strip()
            continue
        if current is not None:
            yield current
        current = line
    if current is not None:
        yield current


def parse_message_trace(data: bytes) -> list[SippMessage]:
    """Messages in a SIPp ``-trace_msg`` file. A block still being written (fewer bytes
    than announced) ends the list, so a running SIPp's file can be read at any time."""
    messages: list[SippMessage] = []
    position = 0
    while (match := _TRACE_BLOCK.search(data, position)) is not None:
        length = int(match["sent"] or match["received"])
        start = match.end()
        if len(data) < start + length:
            break
        messages.append(
            SippMessage(
                direction="sent" if match["sent"] else "received",
                transport=match["transport"].decode("ascii"),
                timestamp=match["timestamp"].decode("ascii", errors="replace"),
                data=data[start : start + length],
            )
        )
        position = start + length
    return messages


# --- statistics --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SippStats:
    """Cumulative counters from the last row of SIPp's ``-trace_stat`` CSV."""

    successful_calls: int
    failed_calls: int
    retransmissions: int
    incoming_calls: int
    outgoing_calls: int
    current_calls: int
    dead_call_messages: int
    out_of_call_messages: int
    failures: Mapping[str, int] = field(default_factory=dict)
    counters: Mapping[str, str] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """True when the run held: no failed call and no retransmission (a saturated peer
        can complete every call through retransmissions while already dropping packets)."""
        return self.failed_calls == 0 and self.retransmissions == 0


def parse_stat_csv(text: str) -> SippStats | None:
    """The final cumulative counters of a ``-trace_stat`` file; None if it has no data row."""
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=";") if row]
    if len(rows) < 2:
        return None
    header, last = rows[0], rows[-1]
    counters = {name: value for name, value in zip(header, last, strict=False) if name}

    def count(name: str) -> int:
        value = counters.get(f"{name}(C)", "0").strip()
        return int(value) if value.isdigit() else 0

    failures = {
        name.removesuffix("(C)"): int(value)
        for name, value in counters.items()
        if name.startswith("Failed")
        and name.endswith("(C)")
        and name != "FailedCall(C)"
        and value.strip().isdigit()
        and int(value) > 0
    }
    return SippStats(
        successful_calls=count("SuccessfulCall"),
        failed_calls=count("FailedCall"),
        retransmissions=count("Retransmissions"),
        incoming_calls=count("IncomingCall"),
        outgoing_calls=count("OutgoingCall"),
        current_calls=int(counters.get("CurrentCall", "0") or 0),
        dead_call_messages=count("DeadCallMsgs"),
        out_of_call_messages=count("OutOfCallMsgs"),
        failures=failures,
        counters=counters,
    )


# --- results -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SippFiles:
    """Where one SIPp run writes its traces."""

    workdir: Path
    messages: Path
    stats: Path
    errors: Path
    screen: Path
    stdout: Path
    stderr: Path

    @classmethod
    def in_dir(cls, workdir: Path, stem: str) -> SippFiles:
        return cls(
            workdir=workdir,
            messages=workdir / f"{stem}_messages.log",
            stats=workdir / f"{stem}_stats.csv",
            errors=workdir / f"{stem}_errors.log",
            screen=workdir / f"{stem}_screen.log",
            stdout=workdir / f"{stem}_stdout.log",
            stderr=workdir / f"{stem}_stderr.log",
        )


def _read_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@dataclass(frozen=True, slots=True)
class SippResult:
    """A finished SIPp run: exit status, output, traced messages and statistics."""

    scenario: str
    command: tuple[str, ...]
    returncode: int
    timed_out: bool
    stdout: str
    stderr: str
    files: SippFiles
    messages: tuple[SippMessage, ...]
    stats: SippStats | None
    errors: str
    screen: str

    @property
    def message_file(self) -> Path:
        return self.files.messages

    def received(self) -> list[SippMessage]:
        return [m for m in self.messages if m.direction == "received"]

    def sent(self) -> list[SippMessage]:
        return [m for m in self.messages if m.direction == "sent"]

    def received_requests(self, method: str) -> list[SippMessage]:
        return [m for m in self.received() if m.method == method]

    def received_responses(self, status: int, cseq_method: str = "INVITE") -> list[SippMessage]:
        return [m for m in self.received() if m.status == status and m.cseq_method == cseq_method]

    @property
    def successful_calls(self) -> int:
        return self.stats.successful_calls if self.stats else 0

    @property
    def failed_calls(self) -> int:
        return self.stats.failed_calls if self.stats else 0

    @property
    def retransmissions(self) -> int:
        return self.stats.retransmissions if self.stats else 0

    @property
    def ok(self) -> bool:
        """Exit status 0, no timeout and no failed call."""
        return (
            self.returncode == EXIT_ALL_CALLS_OK
            and not self.timed_out
            and self.stats is not None
            and self.stats.failed_calls == 0
        )

    @property
    def clean(self) -> bool:
        """`ok` and no retransmission: the condition for a held benchmark rate."""
        return self.ok and self.stats is not None and self.stats.clean

    def describe(self) -> str:
        """Everything needed to diagnose a failed run, for assertion messages."""
        stats = self.stats
        summary = (
            "no statistics"
            if stats is None
            else (
                f"successful={stats.successful_calls} failed={stats.failed_calls} "
                f"retransmissions={stats.retransmissions} failures={dict(stats.failures)}"
            )
        )
        return (
            f"SIPp {self.scenario}: exit {self.returncode}"
            f"{' (killed after timeout)' if self.timed_out else ''}, {summary}\n"
            f"command: {' '.join(self.command)}\n"
            f"stderr: {self.stderr[-2000:]}\n"
            f"errors: {self.errors[-4000:]}\n"
            f"files: {self.files.workdir}"
        )

    def assert_ok(self, calls: int | None = None) -> None:
        assert self.ok, self.describe()
        if calls is not None:
            assert self.successful_calls == calls, self.describe()

    def assert_clean(self, calls: int | None = None) -> None:
        self.assert_ok(calls)
        assert self.clean, self.describe()


# --- processes ---------------------------------------------------------------------------

_live_processes: dict[int, SippProcess] = {}


def _stop_leftovers() -> None:
    for process in list(_live_processes.values()):
        process.stop()


atexit.register(_stop_leftovers)


def _port_bound(port: int, transport: Transport) -> bool:
    """Whether something listens on 127.0.0.1:port, read from /proc/net so that the probe
    never takes the port itself (a probing bind() could race SIPp's own bind)."""
    table = Path(f"/proc/net/{transport}")
    addresses = (f"0100007F:{port:04X}", f"00000000:{port:04X}")
    listening = {"udp": "07", "tcp": "0A"}[transport]
    return any(
        len(fields) > 3 and fields[1] in addresses and fields[3] == listening
        for fields in (line.split() for line in _read_text(table).splitlines()[1:])
    )


class SippProcess:
    """A SIPp process started by this harness, tracked by PID."""

    def __init__(
        self,
        scenario: str,
        command: Sequence[str],
        files: SippFiles,
        *,
        local_port: int,
        transport: Transport,
        timeout_s: float,
    ) -> None:
        self.scenario = scenario
        self.command = tuple(command)
        self.files = files
        self.local_port = local_port
        self.transport = transport
        self.deadline = time.monotonic() + timeout_s + KILL_GRACE_S
        self.timed_out = False
        self._result: SippResult | None = None
        with (
            files.stdout.open("wb") as stdout,
            files.stderr.open("wb") as stderr,
        ):
            # Output goes to files, never to pipes: SIPp redraws its screen continuously
            # and would block on a full pipe nobody reads.
            self._popen = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                cwd=files.workdir,
                start_new_session=True,
            )
        self.pid = self._popen.pid
        _live_processes[self.pid] = self

    def __enter__(self) -> SippProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def running(self) -> bool:
        return self._popen.poll() is None

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Return once SIPp listens on its port; raise if it exited or never bound."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(
                    f"SIPp {self.scenario} exited before listening:\n{self.result().describe()}"
                )
            if _port_bound(self.local_port, self.transport):
                return
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"SIPp {self.scenario} did not bind {self.transport}:{self.local_port}")

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for SIPp to exit by itself (it does after -m calls or its -timeout); kill it
        when ``timeout`` (default: its own deadline) passes first."""
        remaining = self.deadline - time.monotonic() if timeout is None else timeout
        try:
            self._popen.wait(max(remaining, 0.0))
        except subprocess.TimeoutExpired:
            self.timed_out = True
            self.stop()
        return self.result()

    def stop(self, grace_s: float = STOP_GRACE_S) -> SippResult:
        """Stop this PID: SIGUSR1 (SIPp's graceful quit, which still writes its final
        screen and statistics; it waits for calls in progress, so it gets at most a
        second), then SIGTERM, then SIGKILL, each after a bounded wait."""
        for sig, wait_s in (
            (signal.SIGUSR1, min(1.0, grace_s)),
            (signal.SIGTERM, grace_s),
            (signal.SIGKILL, grace_s),
        ):
            if not self.running():
                break
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                break
            try:
                self._popen.wait(wait_s)
            except subprocess.TimeoutExpired:
                continue
        return self.result()

    def received_messages(self) -> list[SippMessage]:
        """Messages SIPp received so far (complete ones; safe while it runs)."""
        return [m for m in self.messages() if m.direction == "received"]

    def messages(self) -> list[SippMessage]:
        path = self.files.messages
        return parse_message_trace(path.read_bytes()) if path.exists() else []

    def result(self) -> SippResult:
        """The run's result; only final once the process has exited."""
        if self._result is not None:
            return self._result
        returncode = self._popen.poll()
        result = SippResult(
            scenario=self.scenario,
            command=self.command,
            returncode=-1 if returncode is None else returncode,
            timed_out=self.timed_out,
            stdout=_read_text(self.files.stdout),
            stderr=_read_text(self.files.stderr),
            files=self.files,
            messages=tuple(self.messages()),
            stats=parse_stat_csv(_read_text(self.files.stats)),
            errors=_read_text(self.files.errors),
            screen=_read_text(self.files.screen),
        )
        if returncode is not None:
            _live_processes.pop(self.pid, None)
            self._result = result
        return result


def build_command(
    sipp: str,
    scenario: Path,
    remote: str | None,
    files: SippFiles,
    *,
    local_port: int,
    transport: Transport,
    calls: int | None,
    rate: float,
    keys: Mapping[str, str],
    timeout_s: float,
    extra: Sequence[str],
    trace_messages: bool = True,
) -> list[str]:
    """The SIPp command line; ``remote`` None makes a server (UAS) that waits for calls.
    ``trace_messages`` False leaves out -trace_msg, whose disk writes cost SIPp CPU at high
    call rates (benchmarks); statistics are traced either way."""
    command = [sipp]
    if remote is not None:
        command.append(remote)
    command += [
        "-sf", str(scenario),
        "-i", LOOPBACK,
        "-p", str(local_port),
        "-t", _TRANSPORT_MODE[transport],
        "-nostdin",
        "-timeout", f"{max(1, round(timeout_s))}s",
        "-timeout_error",
        "-trace_stat", "-stf", str(files.stats), "-fd", "1",
        "-trace_err", "-error_file", str(files.errors),
        "-trace_screen", "-screen_file", str(files.screen),
    ]  # fmt: skip
    if trace_messages:
        command += ["-trace_msg", "-message_file", str(files.messages)]
    if calls is not None:
        command += ["-m", str(calls)]
    if remote is not None:
        command += ["-r", f"{rate:g}"]
    for key, value in {**DEFAULT_KEYS, **keys}.items():
        command += ["-key", key, value]
    command += list(extra)
    return command


@overload
def run_sipp(
    scenario: str,
    remote: str | None,
    *,
    local_port: int,
    transport: Transport = ...,
    calls: int | None = ...,
    rate: float = ...,
    keys: Mapping[str, str] | None = ...,
    timeout_s: float = ...,
    extra: Sequence[str] = ...,
    background: Literal[False] = ...,
    workdir: Path | None = ...,
    trace_messages: bool = ...,
) -> SippResult: ...


@overload
def run_sipp(
    scenario: str,
    remote: str | None,
    *,
    local_port: int,
    transport: Transport = ...,
    calls: int | None = ...,
    rate: float = ...,
    keys: Mapping[str, str] | None = ...,
    timeout_s: float = ...,
    extra: Sequence[str] = ...,
    background: Literal[True],
    workdir: Path | None = ...,
    trace_messages: bool = ...,
) -> SippProcess: ...


def run_sipp(
    scenario: str,
    remote: str | None,
    *,
    local_port: int,
    transport: Transport = "udp",
    calls: int | None = 1,
    rate: float = 10,
    keys: Mapping[str, str] | None = None,
    timeout_s: float = 30,
    extra: Sequence[str] = (),
    background: bool = False,
    workdir: Path | None = None,
    trace_messages: bool = True,
) -> SippResult | SippProcess:
    """Run one SIPp scenario on 127.0.0.1:``local_port``.

    ``remote`` ("host:port") makes SIPp a client placing ``calls`` calls at ``rate`` per
    second; None makes it a server that exits after ``calls`` calls (None: when stopped).
    ``keys`` override DEFAULT_KEYS (caller, callee, dialed) and add others
    (expected_status). In the foreground the call returns a SippResult once SIPp exits or
    is killed at ``timeout_s`` + KILL_GRACE_S. With ``background`` it returns a running
    SippProcess, already listening on its port.
    """
    sipp = require_sipp()
    path = scenario_path(scenario)
    workdir = workdir or Path(tempfile.mkdtemp(prefix="sipp-"))
    workdir.mkdir(parents=True, exist_ok=True)
    files = SippFiles.in_dir(workdir, f"{path.stem}_{local_port}")
    command = build_command(
        sipp,
        path,
        remote,
        files,
        local_port=local_port,
        transport=transport,
        calls=calls,
        rate=rate,
        keys=keys or {},
        timeout_s=timeout_s,
        extra=extra,
        trace_messages=trace_messages,
    )
    process = SippProcess(
        path.stem,
        command,
        files,
        local_port=local_port,
        transport=transport,
        timeout_s=timeout_s,
    )
    if background:
        try:
            process.wait_ready()
        except BaseException:
            process.stop()
            raise
        return process
    try:
        return process.wait()
    finally:
        process.stop()


def run_pair(
    uac: str,
    uas: str,
    *,
    transport: Transport = "udp",
    calls: int = 1,
    rate: float = 10,
    keys: Mapping[str, str] | None = None,
    uac_keys: Mapping[str, str] | None = None,
    uas_keys: Mapping[str, str] | None = None,
    timeout_s: float = 15,
    uac_extra: Sequence[str] = (),
    uas_extra: Sequence[str] = (),
    workdir: Path | None = None,
) -> tuple[SippResult, SippResult]:
    """A caller scenario straight to a callee scenario on two loopback ports (no proxy):
    proves a pair works before a proxy is put between them. Returns (uac, uas) results."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="sipp-pair-"))
    uas_port, uac_port = free_port(), free_port()
    with run_sipp(
        uas,
        None,
        background=True,
        local_port=uas_port,
        transport=transport,
        calls=calls,
        keys={**(keys or {}), **(uas_keys or {})},
        timeout_s=timeout_s,
        extra=uas_extra,
        workdir=workdir,
    ) as callee:
        caller = run_sipp(
            uac,
            f"{LOOPBACK}:{uas_port}",
            local_port=uac_port,
            transport=transport,
            calls=calls,
            rate=rate,
            keys={**(keys or {}), **(uac_keys or {})},
            timeout_s=timeout_s,
            extra=uac_extra,
            workdir=workdir,
        )
        callee_result = callee.wait(timeout=5.0 if caller.ok else 1.0)
    return caller, callee_result
