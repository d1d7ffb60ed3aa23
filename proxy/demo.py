"""``make demo``: one call A → privproxy → B on loopback, and what B received.

Makes a binding in a scratch database, starts ``privproxy serve``, runs SIPp as B (the
trunk) and as A (the softswitch), then prints the INVITE B received: X in From and
P-Asserted-Identity, B in To, and nowhere A's number.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

A, B, X = "13800138000", "13900139000", "700123456789012"
SIP_PORT, TRUNK_PORT, CALLER_PORT = 25060, 25080, 25070
SCENARIOS = Path(__file__).resolve().parent.parent / "sipp_scenarios"


def _received_invite(trace: str) -> str:
    blocks = re.split(r"-{20,}.*\n", trace)
    for block in blocks:
        if "message received" in block and "INVITE sip:" in block:
            return block.split("\n", 2)[2].strip("\n")
    return ""


def main() -> int:
    sipp = shutil.which("sipp")
    privproxy = str(Path(sys.executable).with_name("privproxy"))
    if sipp is None:
        print("sipp is missing: `make sipp` installs it (Debian package sip-tester)")
        return 1
    with tempfile.TemporaryDirectory(prefix="privproxy-demo-") as tmp:
        work = Path(tmp)
        db = str(work / "demo.db")
        subprocess.run([privproxy, "bind", A, B, "--x", X, "--db", db], check=True, timeout=30)
        proxy = subprocess.Popen(
            [privproxy, "serve", "--sip", f"udp:127.0.0.1:{SIP_PORT}", "--db", db,
             "--trunk", f"sip:127.0.0.1:{TRUNK_PORT};transport=udp", "--grace", "1"],
            stdout=subprocess.DEVNULL, stderr=(work / "proxy.log").open("wb"),
        )  # fmt: skip
        try:
            time.sleep(1.5)
            common = ["-i", "127.0.0.1", "-m", "1", "-nostdin", "-timeout", "15s", "-trace_msg"]
            callee = subprocess.Popen(
                [sipp, "-sf", str(SCENARIOS / "uas_answer.xml"), "-p", str(TRUNK_PORT),
                 "-key", "callee", B, *common, "-message_file", str(work / "b.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(0.5)
            caller = subprocess.run(
                [sipp, f"127.0.0.1:{SIP_PORT}", "-sf", str(SCENARIOS / "uac_call.xml"),
                 "-p", str(CALLER_PORT), "-key", "caller", A, "-key", "dialed", X,
                 *common, "-message_file", str(work / "a.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30,
            )  # fmt: skip
            callee.wait(15)
        finally:
            proxy.send_signal(signal.SIGTERM)
            proxy.wait(15)
        invite = _received_invite((work / "b.log").read_text(errors="replace"))
        print(f"A ({A}) called X ({X}); SIPp A exit code {caller.returncode}.")
        print(f"The INVITE B ({B}) received through privproxy:\n")
        print(invite)
        print()
        leaked = A in (work / "b.log").read_text(errors="replace")
        print("A's number in anything B received:", "YES - LEAK" if leaked else "no")
        print("\nThe proxy's call log line:")
        for line in (work / "proxy.log").read_text().splitlines():
            if "privproxy.call" in line:
                print(line)
        return 0 if caller.returncode == 0 and not leaked else 1


if __name__ == "__main__":
    sys.exit(main())
