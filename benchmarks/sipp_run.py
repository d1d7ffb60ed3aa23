"""Run SIPp for benchmarks and read its statistics (no timing assertions anywhere)."""

from __future__ import annotations

import csv
import shutil
import socket
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCENARIOS = Path(__file__).resolve().parent.parent / "sipp_scenarios"


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


@dataclass
class SippStats:
    successful: int
    failed: int
    retransmissions: int
    rtt_ms: list[float]

    @property
    def median_rtt_ms(self) -> float | None:
        return statistics.median(self.rtt_ms) if self.rtt_ms else None


class Sipp:
    """One SIPp process writing its statistics into ``workdir``."""

    def __init__(
        self,
        scenario: str,
        workdir: Path,
        *,
        local_port: int,
        remote_port: int | None = None,
        keys: dict[str, str] | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        sipp = shutil.which("sipp")
        if sipp is None:
            raise SystemExit("sipp is not installed (Debian package sip-tester): run `make sipp`")
        self.workdir = workdir / f"{Path(scenario).stem}-{local_port}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.stat_file = self.workdir / "stats.csv"
        command = [sipp]
        if remote_port is not None:
            command.append(f"127.0.0.1:{remote_port}")
        command += ["-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1", "-p", str(local_port)]
        command += ["-nostdin", "-trace_stat", "-stf", str(self.stat_file), "-fd", "1"]
        for key, value in (keys or {}).items():
            command += ["-key", key, value]
        command += list(extra)
        self.process = subprocess.Popen(
            command, cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            return -1

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def stats(self) -> SippStats:
        successful = failed = retransmissions = 0
        if self.stat_file.exists():
            rows = list(csv.DictReader(self.stat_file.open(), delimiter=";"))
            if rows:
                last = rows[-1]
                successful = int(last.get("SuccessfulCall(C)", 0) or 0)
                failed = int(last.get("FailedCall(C)", 0) or 0)
                retransmissions = int(last.get("Retransmissions(C)", 0) or 0)
        rtt: list[float] = []
        for path in self.workdir.glob("*_rtt.csv"):
            for row in csv.reader(path.open(), delimiter=";"):
                if len(row) >= 2 and row[1].isdigit():
                    rtt.append(float(row[1]))
        return SippStats(successful, failed, retransmissions, rtt)
