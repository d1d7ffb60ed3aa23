"""Robustness figures for issue #6: hostile datagrams sent / answered / process alive,
resident memory growth over 100,000 OPTIONS and 10,000 garbage datagrams, and calls
completed under 5 % and 10 % packet loss.

Each part is its own function returning a dict of figures, so that other parts (calls
completed under 5 % and 10 % loss) can be added beside them; ``main()`` runs the parts
listed in ``PARTS`` and prints them.

    .venv/bin/python -m benchmarks.robustness [--seed N] [--options N] [--garbage N]
        [--loss-calls N] [--part NAME]...

The memory part runs twice:

- ``leak``: RFC 3261 timers shortened (T1 = 20 ms, so Timer J = 1.28 s) and a warm-up
  long enough for the interpreter's heap to reach its plateau; growth over the measured
  flood is then what a leak would leave;
- ``default timers``: T1 = 500 ms, so every OPTIONS transaction lives 32 s (Timer J); the
  figures show the peak and what is left 35 s after the flood.

The loss parts place SIPp calls (30 by default, 10 calls/s, 200 ms talk) through a
``privproxy serve`` with short timers while SIPp loses 5 % or 10 % of the datagrams on
both sides (``-lost``, caller and callee): calls completed / attempted, retransmissions on
each side, records written, and the live transactions, dialogs and calls read from
``/metrics`` once the timers have run (all zero when nothing is left behind). They share
``tests/e2e/test_loss.py``'s ``run_lossy_calls`` with the test.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from bindings.sqlite_store import SqliteBindingStore
from tests.e2e.hostile import (
    Parties,
    Target,
    bind_udp,
    e164,
    flood,
    generate_hostile,
    numbers_in,
    open_decoys,
    rss_kib,
    run_barrage,
    status_of,
    torture_cases,
    torture_via_ports,
)
from tests.e2e.proxy_process import ProxyProcess, options_ping, start_proxy
from tests.e2e.sipp import free_port
from tests.e2e.test_loss import run_lossy_calls

Figures = dict[str, object]
FAST_TIMERS = "t1 = 0.02\nt2 = 0.16\nt4 = 0.2\n"
TIMER_J_DEFAULT_S = 32.0
#: Warm-up and measurement at one pace: the live transactions (rate × Timer J), and so the
#: heap's high-water mark, are then the same in both, and growth is what a leak leaves.
LEAK_RATE = 3_000.0


def _bound_database(workdir: Path, parties: Parties) -> Path:
    db = workdir / "privproxy.db"
    store = SqliteBindingStore.open(db)
    now = time.time()
    store.add(e164(parties.a), e164(parties.b), parties.x, now=now)
    store.add(e164(parties.a2), e164(parties.b2), parties.x2, now=now)
    store.close()
    return db


def hostile_figures(seed: int) -> Figures:
    """The torture corpus and the seeded hostile set against one ``privproxy serve``."""
    parties = Parties()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        db = _bound_database(workdir, parties)
        sockets, decoys = open_decoys()
        trunk = sockets.add("trunk", bind_udp())
        port = free_port()
        proxy = start_proxy(workdir, sip_port=port, trunk_port=trunk.getsockname()[1], db=db)
        try:
            target = Target(port, decoys, parties)
            torture = torture_cases()
            generated = generate_hostile(seed, target)
            started = time.monotonic()
            barrage = run_barrage(
                target,
                torture + generated,
                sockets,
                trunk_identity=parties.b,
                extra_decoy_ports=torture_via_ports(torture),
            )
            seconds = time.monotonic() - started
            alive = proxy.process.poll() is None
            ping = options_ping(port, timeout=2.0)
            log = proxy.log_text()
        finally:
            proxy.stop()
            sockets.close()
    real = parties.real_numbers
    rejected_2xx = sum(
        1
        for outcome in barrage.outcomes
        if outcome.case.must_reject
        and any((status_of(reply) or 0) // 100 == 2 for reply in outcome.replies)
    )
    leaks = sum(
        1
        for outcome in barrage.outcomes
        for reply in outcome.replies
        if numbers_in(reply, real) - numbers_in(outcome.sent, real)
    )
    elsewhere = {name: len(items) for name, items in barrage.decoys.items() if items}
    return {
        "seed": seed,
        "torture files sent": len(torture),
        "torture files answered": sum(1 for o in barrage.outcomes[: len(torture)] if o.replies),
        "generated sent": len(generated),
        "generated answered": sum(1 for o in barrage.outcomes[len(torture) :] if o.replies),
        "seconds": round(seconds, 1),
        "process alive": alive,
        "OPTIONS afterwards": status_of(ping) if ping else "no answer",
        "internal errors logged": log.count("internal error"),
        "2xx to must-reject (to sender)": rejected_2xx,
        "replies with a number the sender did not write": leaks,
        "trunk datagrams": len(barrage.trunk),
        "datagrams sent elsewhere": sum(elsewhere.values()),
        "sent elsewhere, by decoy": elsewhere,
    }


def _proxy_with_timers(workdir: Path, timers: str | None) -> tuple[ProxyProcess, int]:
    extra: tuple[str, ...] = ("--log-level", "warning")
    if timers is not None:
        config = workdir / "timers.toml"
        config.write_text(timers)
        extra += ("--config", str(config))
    port = free_port()
    return start_proxy(workdir, sip_port=port, trunk_port=free_port(), extra=extra), port


def memory_figures(
    seed: int,
    *,
    options: int,
    garbage: int,
    warm_up: int,
    timers: str | None,
    settle_s: float,
    rate: float | None,
) -> Figures:
    """RSS before and after ``options`` OPTIONS and ``garbage`` random datagrams, after a
    warm-up of ``warm_up`` OPTIONS; ``settle_s`` after each flood for timers to expire."""
    with tempfile.TemporaryDirectory() as tmp:
        proxy, port = _proxy_with_timers(Path(tmp), timers)
        try:
            pid = proxy.process.pid
            start = rss_kib(pid)
            warm = flood(
                port, options=warm_up, garbage_datagrams=garbage // 10, seed=seed, rate=rate
            )
            time.sleep(settle_s)
            before = rss_kib(pid)
            run = flood(port, options=options, garbage_datagrams=garbage, seed=seed + 1, rate=rate)
            peak = rss_kib(pid)
            time.sleep(settle_s)
            after = rss_kib(pid)
            alive = proxy.process.poll() is None
        finally:
            proxy.stop()
    return {
        "OPTIONS rate limit (/s)": rate or "none",
        "RSS at start (KiB)": start,
        "warm-up OPTIONS answered": f"{warm.ok_options}/{warm.sent_options}",
        "RSS after warm-up (KiB)": before,
        "OPTIONS sent / answered 200": f"{run.sent_options} / {run.ok_options}",
        "garbage sent / answered": f"{run.sent_garbage} / {run.answered_garbage}",
        "flood seconds": round(run.seconds, 1),
        "OPTIONS/s": round(run.sent_options / run.seconds),
        "RSS right after the flood (KiB)": peak,
        f"RSS {settle_s:.0f} s later (KiB)": after,
        "growth (MiB)": round((after - before) / 1024, 2),
        "process alive": alive,
    }


def leak_figures(seed: int, options: int, garbage: int) -> Figures:
    return memory_figures(
        seed,
        options=options,
        garbage=garbage,
        warm_up=40_000,
        timers=FAST_TIMERS,
        settle_s=2.0,
        rate=LEAK_RATE,
    )


def default_timer_memory_figures(seed: int, options: int, garbage: int) -> Figures:
    return memory_figures(
        seed,
        options=options,
        garbage=garbage,
        warm_up=20_000,
        timers=None,
        settle_s=TIMER_J_DEFAULT_S + 3.0,
        rate=None,
    )


def loss_figures(loss_percent: int, calls: int) -> Figures:
    """Calls through SIPp with ``loss_percent`` % loss on both sides."""
    with tempfile.TemporaryDirectory() as tmp:
        run = run_lossy_calls(Path(tmp), loss_percent=loss_percent, calls=calls)
    answered = sum(1 for record in run.records if record.disposition == "answered")
    answered_with_record = sum(
        1
        for record in run.records
        if record.a_call_id in run.answered and record.disposition == "answered"
    )
    return {
        "loss on caller and callee (%)": loss_percent,
        "calls completed / attempted": f"{run.caller.successful_calls} / {run.calls}",
        "calls SIPp gave up on": run.caller.failed_calls,
        "calls whose INVITE reached the proxy": len(run.invites_sent),
        "retransmissions (caller / callee / proxy)": " / ".join(
            str(count) for count in run.retransmissions_seen.values()
        ),
        "records written": len(run.records),
        "records answered": answered,
        "records by disposition": run.figures()["records by disposition"],
        "calls answered to A with their answered record": f"{answered_with_record} / "
        f"{len(run.answered)}",
        "live state once timers ran": ", ".join(
            f"{name} {value:g}" for name, value in run.settled.items()
        ),
    }


PARTS: Mapping[str, Callable[[argparse.Namespace], Figures]] = {
    "hostile input": lambda args: hostile_figures(args.seed),
    "memory, leak (short timers)": lambda args: leak_figures(args.seed, args.options, args.garbage),
    "memory, default timers": lambda args: default_timer_memory_figures(
        args.seed, args.options, args.garbage
    ),
    "calls under 5 % loss": lambda args: loss_figures(5, args.loss_calls),
    "calls under 10 % loss": lambda args: loss_figures(10, args.loss_calls),
}


def print_figures(title: str, figures: Figures) -> None:
    print(f"\n{title}")
    width = max(len(name) for name in figures)
    for name, value in figures.items():
        print(f"  {name:<{width}}  {value}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=20240606)
    parser.add_argument("--options", type=int, default=100_000)
    parser.add_argument("--garbage", type=int, default=10_000)
    parser.add_argument("--loss-calls", type=int, default=30, help="calls per loss part")
    parser.add_argument("--part", choices=sorted(PARTS), action="append")
    args = parser.parse_args(argv)
    for title in args.part or PARTS:
        print_figures(title, PARTS[title](args))


if __name__ == "__main__":
    main()
