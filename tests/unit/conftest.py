"""Shared pytest fixtures for the SIP unit tests (helpers live in tests.fixtures)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# tests/unit has no __init__.py, so pytest puts only this directory on sys.path when it
# loads this file first (``pytest tests/unit/x.py``); the repository root is needed for
# ``tests.fixtures``.
_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from tests.fixtures import lf2crlf, load_fixture_messages  # noqa: E402


@pytest.fixture(name="lf2crlf")
def lf2crlf_fixture() -> Callable[[str | bytes], bytes]:
    """The LF → CRLF converter for messages written inline in a test."""
    return lf2crlf


@pytest.fixture(scope="session")
def fixture_messages() -> dict[str, bytes]:
    """The literal messages of tests/fixtures/sip by name."""
    return load_fixture_messages()
