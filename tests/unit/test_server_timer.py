"""The adapter's one loop timer (``Server._arm_timer``): armed at the core's next deadline,
re-armed only when that deadline comes earlier; a timer left armed before a later deadline
fires, finds nothing due, and arms the next one. Real loop, real clock, a scripted core."""

from __future__ import annotations

import asyncio
import time

from proxy.config import load_config
from proxy.server import Server


class ScriptedCore:
    """A core whose next deadline the test sets; ``advance`` records when it ran."""

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.advanced: list[float] = []

    def next_deadline(self) -> float | None:
        if self.deadline is not None and self.advanced and self.advanced[-1] >= self.deadline:
            self.deadline = None  # reached: the work due ran
        return self.deadline

    def advance(self, now: float) -> list[object]:
        self.advanced.append(now)
        return []


def run(script: list[tuple[float, float | None]], wait: float) -> tuple[list[float], list[int]]:
    """Set each deadline (seconds from the start) ``after`` seconds in, through
    ``Server.process([])`` as a datagram would; return when ``advance`` ran (seconds from
    the start) and whether each step armed a new loop timer (1) or kept the old one (0)."""

    async def scenario() -> tuple[list[float], list[int]]:
        server = Server(load_config(None, {"api": "off"}))
        core = ScriptedCore()
        server.core = core  # type: ignore[assignment]
        start = time.time()
        armed = []
        for after, deadline in script:
            await asyncio.sleep(max(0.0, start + after - time.time()))
            core.deadline = None if deadline is None else start + deadline
            timer = server._timer
            server.process([])
            armed.append(int(server._timer is not timer))
        await asyncio.sleep(max(0.0, start + wait - time.time()))
        return [at - start for at in core.advanced], armed

    return asyncio.run(scenario())


def test_a_later_deadline_keeps_the_armed_timer_which_then_arms_the_next() -> None:
    advanced, armed = run([(0.0, 0.1), (0.01, 0.3)], wait=0.45)
    assert armed == [1, 0]  # the later deadline did not replace the armed timer
    early, due = advanced  # it fired at 0.1 with nothing due, then armed 0.3
    assert 0.1 <= early < 0.25 and 0.3 <= due < 0.45


def test_an_earlier_deadline_rearms() -> None:
    advanced, armed = run([(0.0, 0.3), (0.01, 0.1)], wait=0.2)
    assert armed == [1, 1]
    [due] = advanced
    assert 0.1 <= due < 0.2
