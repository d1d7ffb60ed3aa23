"""``privproxy cdr …`` and ``privproxy audit report`` through a throwaway typer app."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from proxy import audit, db
from proxy.cdr import export
from proxy.cdr_cli import audit_app, cdr_app
from tests.unit.test_cdr_chain import REAL_NUMBER, fill, sample

app = typer.Typer()
app.add_typer(cdr_app, name="cdr")
app.add_typer(audit_app, name="audit")
runner = CliRunner()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "privproxy.db"
    fill(path, sample())
    return path


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_export_then_verify_then_tamper(db_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "jan.csv"
    code, output = invoke("cdr", "export", "--db", str(db_path), "--out", str(out))
    assert code == 0, output
    assert "20 records (masked)" in output
    assert not REAL_NUMBER.search(out.read_text())
    code, output = invoke("cdr", "verify", str(out))
    assert code == 0 and "OK: 20 records" in output
    lines = out.read_bytes().split(b"\r\n")
    assert b",200," in lines[8]
    lines[8] = lines[8].replace(b",200,", b",486,")
    out.write_bytes(b"\r\n".join(lines))
    code, output = invoke("cdr", "verify", str(out))
    assert code == 1
    assert "TAMPERED" in output and "first broken record: line 9 (seq 8)" in output


def test_export_jobs_two_and_one_write_the_same_file_that_verifies(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helpers: list[export._Helper] = []

    class Counted(export._Helper):
        def __init__(self, out: Path) -> None:
            super().__init__(out)
            helpers.append(self)

    monkeypatch.setattr(export, "_Helper", Counted)
    written = {}
    for jobs in ("2", "1"):
        out = tmp_path / f"jobs{jobs}.jsonl"
        code, output = invoke(
            "cdr", "export", "--db", str(db_path), "--out", str(out), "--format", "jsonl",
            "--jobs", jobs,
        )  # fmt: skip
        assert code == 0, output
        code, output = invoke("cdr", "verify", str(out))
        assert code == 0 and "OK: 20 records" in output
        written[jobs] = out.read_bytes()
    assert written["2"] == written["1"]
    # --jobs 2 ran a helper (20 records, far below the automatic threshold); --jobs 1 none.
    assert len(helpers) == 1 and helpers[0].process.returncode == 0
    code, output = invoke("cdr", "export", "--db", str(db_path), "--jobs", "3")
    assert code == 2 and "--jobs" in output


def test_verify_the_database_names_the_changed_record(db_path: Path) -> None:
    assert invoke("cdr", "verify", "--db", str(db_path))[0] == 0
    conn = db.open_database(db_path)
    conn.execute("UPDATE cdrs SET disposition = 'busy' WHERE seq = 13")
    conn.close()
    code, output = invoke("cdr", "verify", "--db", str(db_path), "--json")
    assert code == 1
    result = json.loads(output)
    assert result["ok"] is False and result["problems"][0]["seq"] == 13


def test_unmask_needs_a_reason_and_is_audited(db_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "u.jsonl"
    code, output = invoke("cdr", "export", "--db", str(db_path), "--out", str(out), "--unmask")
    assert code == 2 and "--reason" in output and not out.exists()
    code, output = invoke(
        "cdr", "export", "--db", str(db_path), "--out", str(out), "--format", "jsonl",
        "--unmask", "--reason", "police request 42",
    )  # fmt: skip
    assert code == 0 and "UNMASKED" in output
    assert "+8613800138000" in out.read_text()
    conn = db.open_database(db_path)
    events = audit.events(conn, action="cdr.unmask")
    conn.close()
    assert [e.reason for e in events] == ["police request 42"]


def test_keygen_checkpoint_purge_and_signed_verify(tmp_path: Path) -> None:
    db_path = tmp_path / "old.db"
    years = 10 * 365 * 86_400.0
    fill(
        db_path,
        [
            replace(
                r,
                invite_at=r.invite_at - years,
                ring_at=None if r.ring_at is None else r.ring_at - years,
                answer_at=None if r.answer_at is None else r.answer_at - years,
                end_at=r.end_at - years,
            )
            for r in sample()
        ],
    )
    key = tmp_path / "cdr.key"
    code, output = invoke("cdr", "keygen", "--out", str(key))
    assert code == 0 and key.exists() and (tmp_path / "cdr.key.pub").exists()
    assert key.stat().st_mode & 0o077 == 0
    assert invoke("cdr", "keygen", "--out", str(key))[0] == 2
    code, output = invoke("cdr", "checkpoint", "--db", str(db_path), "--signing-key", str(key))
    assert code == 0 and "signed by" in output
    retention = tmp_path / "retention.key"
    code, output = invoke(
        "cdr", "purge", "--older-than", "0", "--db", str(db_path),
        "--retention-key", str(retention), "--signing-key", str(key),
    )  # fmt: skip
    assert code == 0 and "20 records purged" in output
    code, output = invoke(
        "cdr", "verify", "--db", str(db_path), "--public-key", str(tmp_path / "cdr.key.pub")
    )
    assert code == 0, output
    assert "1 checkpoint signatures valid" in output


def test_stats_prints_json(db_path: Path) -> None:
    code, output = invoke("cdr", "stats", "--db", str(db_path))
    assert code == 0
    stats = json.loads(output)
    assert (stats["calls"], stats["answered"]) == (20, 13)
    assert stats["rejects_by_reason"] == {"no_binding": 7}


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_report_is_one_self_contained_page(db_path: Path, tmp_path: Path) -> None:
    conn = db.open_database(db_path)
    audit.append(conn, at=1_800_000_000.0, actor="k1", action="binding.create", subject="b1",
                 after={"a": "+8613800138000", "b": "+8613900139000"})  # fmt: skip
    conn.close()
    out_csv = tmp_path / "x.csv"
    invoke("cdr", "export", "--db", str(db_path), "--out", str(out_csv), "--unmask",
           "--reason", "<script>alert(1)</script>")  # fmt: skip
    out = tmp_path / "report.html"
    code, output = invoke("audit", "report", "--db", str(db_path), "--out", str(out))
    assert code == 0, output
    page = out.read_text()
    parser = _Collector()
    parser.feed(page)
    tags = [tag for tag, _ in parser.tags]
    text = " ".join(parser.text)
    assert "script" not in tags and "link" not in tags and "img" not in tags
    assert not re.search(r"(?:src|href)=", page)
    assert tags.count("svg") >= 3 and "rect" in tags
    assert "VERIFIED" in text
    headings = (
        "Chain verification",
        "Calls by day and disposition",
        "Rejects by reason",
        "Bindings created and ended",
        "Unmask events",
        "Retention",
        "Checkpoints",
    )
    assert all(heading in text for heading in headings)
    assert "no_binding" in text and "<script>alert(1)</script>" in text  # escaped, shown as text
    assert not REAL_NUMBER.search(page)
    conn = db.open_database(db_path)
    conn.execute("UPDATE cdrs SET node = 'evil' WHERE seq = 4")
    conn.close()
    invoke("audit", "report", "--db", str(db_path), "--out", str(out))
    assert "FAILED" in out.read_text() and "seq 4" in out.read_text()


def test_the_report_renders_in_headless_chromium(db_path: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium not installed (Debian package chromium)")
    out = tmp_path / "report.html"
    assert invoke("audit", "report", "--db", str(db_path), "--out", str(out))[0] == 0
    rendered = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", out.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "VERIFIED: the chain is intact." in rendered
    assert rendered.count("<svg") >= 2 and "no_binding" in rendered
