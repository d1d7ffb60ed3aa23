"""Schema migration 3 of the privproxy database (issue #5): hash-chain checkpoints and
retention of call records.

Statements run in order inside one transaction by ``proxy.db.migrate``.
"""

from __future__ import annotations

from typing import Final

CDR_SCHEMA_V3: Final[tuple[str, ...]] = ()
