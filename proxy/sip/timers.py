"""One timer heap for the whole SIP core (design.md §5: one heap per process, not one loop
callback per RFC timer).

Every timer of RFC 3261 §17 (A–K), RFC 6026 (L, M), the 2xx retransmissions of RFC 3261
§13.3.1.4 and the transaction user's own timers live in one ``heapq``. Time is never read
here: deadlines are plain floats the caller computed from the ``now`` it was given, and
``pop_due(now)`` hands back what is due. Cancellation is lazy — a cancelled entry stays in
the heap, flagged, until it reaches the top or the heap is compacted — so that cancelling
is O(1), which matters because most transaction timers (B, F, H, the cancel wait) are
cancelled long before they would fire.
"""

from __future__ import annotations

import heapq
from typing import Final, Generic, TypeVar

PayloadT = TypeVar("PayloadT")

#: Compact once this many cancelled entries are waiting and they outnumber the live ones,
#: so that a burst of finished transactions does not keep a large heap of dead entries.
_COMPACT_AT: Final = 64


class TimerHandle(Generic[PayloadT]):
    """A scheduled timer: its deadline and payload; ``pending`` until it fires or is
    cancelled."""

    __slots__ = ("payload", "pending", "when")

    def __init__(self, when: float, payload: PayloadT) -> None:
        self.when = when
        self.payload = payload
        self.pending = True

    def __repr__(self) -> str:
        state = "pending" if self.pending else "done"
        return f"<TimerHandle at {self.when!r} {state} {self.payload!r}>"


class TimerHeap(Generic[PayloadT]):
    """A min-heap of deadlines; entries due at the same time fire in scheduling order."""

    __slots__ = ("_cancelled", "_entries", "_sequence")

    def __init__(self) -> None:
        self._entries: list[tuple[float, int, TimerHandle[PayloadT]]] = []
        self._sequence = 0
        self._cancelled = 0

    def __len__(self) -> int:
        """Live (not cancelled, not fired) timers."""
        return len(self._entries) - self._cancelled

    def schedule(self, when: float, payload: PayloadT) -> TimerHandle[PayloadT]:
        self._sequence += 1
        handle = TimerHandle(when, payload)
        heapq.heappush(self._entries, (when, self._sequence, handle))
        return handle

    def cancel(self, handle: TimerHandle[PayloadT]) -> None:
        """Cancel a pending timer; cancelling a fired or cancelled one does nothing."""
        if not handle.pending:
            return
        handle.pending = False
        self._cancelled += 1
        if self._cancelled >= _COMPACT_AT and self._cancelled * 2 > len(self._entries):
            self._entries = [entry for entry in self._entries if entry[2].pending]
            heapq.heapify(self._entries)
            self._cancelled = 0

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None when nothing is pending."""
        self._drop_cancelled_top()
        return self._entries[0][0] if self._entries else None

    def pop_due(self, now: float) -> TimerHandle[PayloadT] | None:
        """Remove and return the earliest live timer due at or before ``now``.

        One at a time, so that a timer scheduled by the handler of another (Timer A
        rescheduling itself, for example) still fires in this round when it is due.
        """
        self._drop_cancelled_top()
        if not self._entries or self._entries[0][0] > now:
            return None
        handle = heapq.heappop(self._entries)[2]
        handle.pending = False
        return handle

    def _drop_cancelled_top(self) -> None:
        entries = self._entries
        while entries and not entries[0][2].pending:
            heapq.heappop(entries)
            self._cancelled -= 1
