"""Logging for ``privproxy serve``: text or JSON lines (``--log-format``), and a last line of
defence that masks any real number that reaches a log record (design.md §4: logs never carry
a real number unmasked).

The code masks numbers itself before logging them; ``MaskNumbers`` catches what slips through
(an exception message, a library's log line): digit runs of 7 to 14 digits, with an optional
``+``, become ``138****8000``. Privacy numbers (the configured prefix and length) are not
personal and stay readable.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Final

from proxy.numbers import mask

_DIGIT_RUN: Final = re.compile(r"(?<![0-9])\+?[0-9]{7,15}(?![0-9])")


class MaskNumbers(logging.Filter):
    """Rewrites a record's message with every real-number-like digit run masked."""

    def __init__(self, privacy_prefix: str = "700", privacy_length: int = 15) -> None:
        super().__init__()
        self.privacy_prefix = privacy_prefix
        self.privacy_length = privacy_length

    def _replace(self, match: re.Match[str]) -> str:
        run = match.group()
        if len(run) == self.privacy_length and run.startswith(self.privacy_prefix):
            return run
        return mask(run)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        masked = _DIGIT_RUN.sub(self._replace, message)
        if record.exc_text:
            record.exc_text = _DIGIT_RUN.sub(self._replace, record.exc_text)
        record.msg, record.args = masked, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ms), level, logger, message, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(
    level: str, log_format: str, *, privacy_prefix: str = "700", privacy_length: int = 15
) -> None:
    """Send privproxy's (and the libraries') logs to stderr in ``log_format`` ("text" or
    "json"), numbers masked."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(MaskNumbers(privacy_prefix, privacy_length))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
