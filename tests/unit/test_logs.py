"""Log lines: JSON or text, and never an unmasked real number (proxy/logs.py)."""

from __future__ import annotations

import json
import logging

import pytest

from proxy.logs import JsonFormatter, MaskNumbers, configure_logging


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("privproxy.test", logging.INFO, __file__, 1, message, args, None)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("caller 13800138000 called", "caller 138****8000 called"),
        ("from +8613800138000", "from 138****8000"),
        ("X 700123456789012 stays", "X 700123456789012 stays"),
        ("port 5060 and tag 1234", "port 5060 and tag 1234"),
    ],
)
def test_filter_masks_real_numbers_only(text: str, shown: str) -> None:
    entry = record("%s", text)
    assert MaskNumbers().filter(entry)
    assert entry.getMessage() == shown


def test_exceptions_are_masked_too() -> None:
    try:
        raise ValueError("bad number 13900139000")
    except ValueError:
        import sys

        entry = logging.LogRecord(
            "privproxy", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )
    MaskNumbers().filter(entry)
    assert entry.exc_text is not None
    assert "13900139000" not in entry.exc_text and "139****9000" in entry.exc_text


def test_json_lines() -> None:
    entry = record("call %s answered", "abc")
    MaskNumbers().filter(entry)
    line = json.loads(JsonFormatter().format(entry))
    assert line["message"] == "call abc answered"
    assert (line["level"], line["logger"]) == ("info", "privproxy.test")
    assert line["time"].endswith("Z")


def test_configure_logging_json(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    logging.getLogger("privproxy.call").info("caller %s", "13800138000")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["message"] == "caller 138****8000"
    configure_logging("warning", "text")
