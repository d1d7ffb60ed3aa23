"""The audit report: one self-contained HTML page an auditor opens offline (issue #5).

No script, no stylesheet link, no font, no image file: charts are inline SVG, styles one
``<style>`` element. Sections: the chain verification result, calls by day and disposition,
rejects by reason, bindings created/expired/released (from the audit log, or from the
bindings table when the log holds none), unmask and purge events (masked), retention status
and checkpoints. Every text from the database is HTML-escaped.
"""

from __future__ import annotations

import html
import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from proxy import audit
from proxy.cdr.checkpoint import checkpoints
from proxy.cdr.export import iso_time
from proxy.cdr.record import DISPOSITIONS
from proxy.cdr.retention import retention_status
from proxy.cdr.stats import cdr_stats
from proxy.cdr.verify import VerifyReport, verify_db

COLOURS: Final[Mapping[str, str]] = {
    "answered": "#2e7d32",
    "busy": "#f9a825",
    "no_answer": "#6d4c41",
    "cancelled": "#757575",
    "failed": "#c62828",
    "rejected": "#6a1b9a",
    "created": "#1565c0",
    "expired": "#ef6c00",
    "released": "#00838f",
}
_BINDING_ACTIONS: Final = {
    "binding.create": "created",
    "binding.expire": "expired",
    "binding.release": "released",
}

_STYLE: Final = """
body{font-family:sans-serif;margin:2em;color:#212121;max-width:1100px}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;
text-align:left;font-size:.9em}th{background:#f5f5f5}.ok{color:#2e7d32;font-weight:bold}
.bad{color:#c62828;font-weight:bold}.mono{font-family:monospace;font-size:.85em}
svg text{font-family:sans-serif;font-size:11px}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], empty: str) -> str:
    if not rows:
        return f"<p>{_e(empty)}</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def stacked_bars(title: str, categories: Sequence[str], series: Mapping[str, Sequence[int]]) -> str:
    """A vertical stacked bar chart as an inline SVG element, with a legend."""
    if not categories:
        return f"<p>No data for “{_e(title)}”.</p>"
    width, height, left, bottom, top = 900, 260, 50, 60, 20
    totals = [sum(values[i] for values in series.values()) for i in range(len(categories))]
    peak = max(max(totals), 1)
    slot = (width - left - 10) / len(categories)
    bar = max(2.0, slot * 0.7)
    plot = height - bottom - top
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
        f'height="{height + 20}" viewBox="0 0 {width} {height + 20}"><title>{_e(title)}</title>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#444"/>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" '
        'stroke="#444"/>',
        f'<text x="{left - 5}" y="{top + 4}" text-anchor="end">{peak}</text>',
        f'<text x="{left - 5}" y="{height - bottom}" text-anchor="end">0</text>',
    ]
    every = max(1, len(categories) // 15)
    for i, category in enumerate(categories):
        x = left + i * slot + (slot - bar) / 2
        y = float(height - bottom)
        for name, values in series.items():
            value = values[i]
            if not value:
                continue
            h = plot * value / peak
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{COLOURS.get(name, "#90a4ae")}"><title>{_e(category)} {_e(name)}: '
                f"{value}</title></rect>"
            )
        if i % every == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - bottom + 14}" text-anchor="end" '
                f'transform="rotate(-40 {x + bar / 2:.1f} {height - bottom + 14})">'
                f"{_e(category)}</text>"
            )
    legend_x = left
    for name in series:
        parts.append(
            f'<rect x="{legend_x}" y="{height + 4}" width="10" height="10" '
            f'fill="{COLOURS.get(name, "#90a4ae")}"/>'
            f'<text x="{legend_x + 14}" y="{height + 13}">{_e(name)}</text>'
        )
        legend_x += 24 + 7 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def horizontal_bars(title: str, values: Mapping[str, int]) -> str:
    """A horizontal bar chart (one bar per key) as an inline SVG element."""
    if not values:
        return f"<p>No data for “{_e(title)}”.</p>"
    row, left, width = 22, 140, 900
    height = row * len(values) + 10
    peak = max(max(values.values()), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{_e(title)}</title>'
    ]
    for i, (name, value) in enumerate(values.items()):
        w = (width - left - 80) * value / peak
        y = 5 + i * row
        parts.append(
            f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{_e(name)}</text>'
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{row - 6}" fill="#6a1b9a"/>'
            f'<text x="{left + w + 4:.1f}" y="{y + 14}">{value}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _binding_days(
    conn: sqlite3.Connection, since: float | None, until: float | None
) -> tuple[dict[str, dict[str, int]], str]:
    low = -1e18 if since is None else since
    high = 1e18 if until is None else until
    rows = conn.execute(
        "SELECT date(at, 'unixepoch'), action, COUNT(*) FROM audit_log"
        " WHERE action IN ('binding.create', 'binding.expire', 'binding.release')"
        " AND at >= ? AND at < ? GROUP BY 1, 2",
        (low, high),
    ).fetchall()
    source = "audit log"
    if (
        not rows
        and conn.execute("SELECT 1 FROM audit_log WHERE action LIKE 'binding.%'").fetchone() is None
    ):
        source = "bindings table"
        rows = conn.execute(
            "SELECT date(created_at, 'unixepoch'), 'binding.create', COUNT(*) FROM bindings"
            " WHERE created_at >= ? AND created_at < ? GROUP BY 1"
            " UNION ALL SELECT date(ended_at, 'unixepoch'), 'binding.' ||"
            " CASE status WHEN 'expired' THEN 'expire' ELSE 'release' END, COUNT(*)"
            " FROM bindings WHERE ended_at IS NOT NULL AND ended_at >= ? AND ended_at < ?"
            " GROUP BY 1, 2",
            (low, high, low, high),
        ).fetchall()
    days: dict[str, dict[str, int]] = {}
    for day, action, count in rows:
        entry = days.setdefault(day, dict.fromkeys(_BINDING_ACTIONS.values(), 0))
        entry[_BINDING_ACTIONS[action]] += count
    return dict(sorted(days.items())), source


def _verification_html(result: VerifyReport) -> str:
    verdict = (
        '<p class="ok">VERIFIED: the chain is intact.</p>'
        if result.ok
        else f'<p class="bad">FAILED: {len(result.problems)} problem(s); the first: '
        f"{_e(result.first_problem)}</p>"
    )
    facts = _table(
        ["records", "head seq", "head hash"],
        [[result.records, result.head_seq, result.head_hash]],
        "",
    )
    problems = _table(
        ["where", "problem"], [[p.where, p.message] for p in result.problems[:50]], "No problem."
    )
    notes = "".join(f"<li>{_e(n)}</li>" for n in result.notes)
    return f"{verdict}{facts}<ul>{notes}</ul>{problems}"


def build_report(
    conn: sqlite3.Connection,
    *,
    since: float | None,
    until: float | None,
    now: float,
    public_key: Ed25519PublicKey | None = None,
    verification: VerifyReport | None = None,
) -> str:
    """The report as one HTML document (text)."""
    result = verification or verify_db(conn, public_key=public_key)
    stats = cdr_stats(conn, since=since, until=until)
    days = [d["day"] for d in stats["per_day"]]
    by_disposition = {
        name: [d["by_disposition"].get(name, 0) for d in stats["per_day"]] for name in DISPOSITIONS
    }
    binding_days, binding_source = _binding_days(conn, since, until)
    binding_series = {
        name: [binding_days[d][name] for d in binding_days] for name in _BINDING_ACTIONS.values()
    }
    low = None if since is None else since
    unmasks = [
        audit.masked(e)
        for e in audit.events(conn, since=low, until=until, action="cdr.unmask", limit=10_000)
    ]
    purges = audit.events(conn, since=low, until=until, action="cdr.purge", limit=10_000)
    retention = retention_status(conn)
    stored_checkpoints = checkpoints(conn)[-31:]
    period = f"{'the beginning' if since is None else iso_time(since)} – " + (
        "now" if until is None else iso_time(until)
    )
    totals = _table(
        ["calls", "answered", "ASR", "ASR (routed)", "ACD (s)", "talk (s)"],
        [
            [
                stats["calls"],
                stats["answered"],
                stats["asr"],
                stats["asr_routed"],
                stats["acd_s"],
                stats["talk_s"],
            ]
        ],
        "",
    )
    per_day = _table(
        ["day", "calls", *DISPOSITIONS, "ASR", "ACD (s)"],
        [
            [
                d["day"],
                d["calls"],
                *(d["by_disposition"][n] for n in DISPOSITIONS),
                d["asr"],
                d["acd_s"],
            ]
            for d in stats["per_day"]
        ],
        "No call in the period.",
    )
    unmask_rows = [
        [
            iso_time(e.at),
            e.actor,
            e.reason,
            json.dumps((e.after or {}).get("filter"), sort_keys=True),
            (e.after or {}).get("file"),
        ]
        for e in unmasks
    ]
    purge_rows = [
        [iso_time(e.at), e.actor, e.subject, (e.after or {}).get("count"), e.reason] for e in purges
    ]
    runs = retention["runs"]
    assert isinstance(runs, list)
    oldest = retention["oldest_unpurged_invite_at"]
    retention_html = _table(
        ["records", "purged", "oldest record with real numbers"],
        [
            [
                retention["records"],
                retention["purged"],
                "none" if oldest is None else iso_time(float(str(oldest))),
            ]
        ],
        "",
    ) + _table(
        ["redaction", "at", "cutoff", "seqs", "count", "key", "signed"],
        [
            [
                r["redaction"],
                iso_time(r["at"]),
                iso_time(r["cutoff"]),
                f"{r['first_seq']}..{r['last_seq']}",
                r["count"],
                r["retention_key_id"],
                "yes" if r["signed"] else "no",
            ]
            for r in runs
        ],
        "No purge has run.",
    )
    checkpoint_html = _table(
        ["day", "seq", "count", "head hash", "signed by"],
        [
            [c.day, c.seq, c.count, c.head_hash, c.key_id or "not signed"]
            for c in stored_checkpoints
        ],
        "No checkpoint stored.",
    )
    sections = [
        f"<h1>privproxy call records: audit report</h1><p>Period (call start, UTC): {_e(period)}."
        f" Generated {_e(iso_time(now))}. Real numbers appear only masked.</p>",
        f'<h2 id="chain">Chain verification</h2>{_verification_html(result)}',
        f'<h2 id="calls">Calls by day and disposition</h2>{totals}'
        f"{stacked_bars('Calls by day and disposition', days, by_disposition)}{per_day}",
        '<h2 id="rejects">Rejects by reason</h2>'
        f"{horizontal_bars('Rejects by reason', stats['rejects_by_reason'])}"
        + _table(["reason", "calls"], list(stats["rejects_by_reason"].items()), "No reject."),
        f'<h2 id="bindings">Bindings created and ended</h2><p>Source: {_e(binding_source)}.</p>'
        f"{stacked_bars('Bindings by day', list(binding_days), binding_series)}"
        + _table(
            ["day", *_BINDING_ACTIONS.values()],
            [[d, *v.values()] for d, v in binding_days.items()],
            "No binding created or ended in the period.",
        ),
        f'<h2 id="unmask">Unmask events</h2><p>{len(unmask_rows)} in the period.</p>'
        + _table(["at", "actor", "reason", "filter", "file"], unmask_rows, "No unmasking."),
        f'<h2 id="retention">Retention</h2>{retention_html}'
        + _table(
            ["at", "actor", "subject", "records", "reason"], purge_rows, "No purge in the period."
        ),
        f'<h2 id="checkpoints">Checkpoints</h2>{checkpoint_html}',
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>privproxy audit report</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(sections)}</body></html>\n"
    )
