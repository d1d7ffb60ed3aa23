"""Schema migration 2 of the privproxy database (issue #4): number pool, tenants, API keys.

Statements run in order inside one transaction by ``proxy.db.migrate``.
"""

from __future__ import annotations

from typing import Final

BINDINGS_SCHEMA_V2: Final[tuple[str, ...]] = ()
