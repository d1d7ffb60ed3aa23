"""Start ``privproxy serve`` as the real process a user would start, and stop it by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PRIVPROXY = str(Path(sys.executable).with_name("privproxy"))


@dataclass
class ProxyProcess:
    """A running ``privproxy serve``; ``stop()`` sends SIGTERM and waits (bounded)."""

    process: subprocess.Popen[bytes]
    sip_port: int
    db: Path
    log: Path

    def stop(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def bind(self, a: str, b: str, x: str, *extra: str) -> None:
        """Make a binding in this proxy's database with the CLI, as an operator would."""
        subprocess.run(
            [PRIVPROXY, "bind", a, b, "--x", x, "--db", str(self.db), *extra],
            check=True,
            capture_output=True,
            timeout=30,
        )


def options_ping(port: int, timeout: float = 0.3) -> bytes | None:
    """Send one OPTIONS over UDP to 127.0.0.1:port and return the reply, if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(timeout)
        local = sock.getsockname()[1]
        branch = f"z9hG4bK-ping-{time.monotonic_ns()}"
        message = (
            f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@127.0.0.1:{local}>;tag=probe\r\n"
            f"To: <sip:127.0.0.1:{port}>\r\n"
            f"Call-ID: {branch}@probe\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        sock.sendto(message, ("127.0.0.1", port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def start_proxy(
    workdir: Path,
    *,
    sip_port: int,
    trunk_port: int,
    transport: str = "udp",
    extra: tuple[str, ...] = (),
    db: Path | None = None,
    ready_timeout: float = 15.0,
) -> ProxyProcess:
    """Start the proxy with a UDP listener (used for the readiness probe) and, for TCP
    tests, a TCP listener on the same port; the trunk uses ``transport``."""
    db = db or workdir / "privproxy.db"
    log = workdir / f"privproxy-{sip_port}.log"
    command = [
        PRIVPROXY,
        "serve",
        "--sip",
        f"udp:127.0.0.1:{sip_port}",
        "--sip",
        f"tcp:127.0.0.1:{sip_port}",
        "--trunk",
        f"sip:127.0.0.1:{trunk_port};transport={transport}",
        "--db",
        str(db),
        "--grace",
        "2",
        *(() if "--api" in extra else ("--api", "off")),
        *extra,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    proxy = ProxyProcess(process, sip_port, db, log)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"privproxy exited with {process.returncode}:\n{proxy.log_text()}")
        reply = options_ping(sip_port)
        if reply is not None and reply.startswith(b"SIP/2.0 200"):
            return proxy
    proxy.stop()
    raise RuntimeError(f"privproxy did not answer OPTIONS within {ready_timeout} s")
