"""The helper process of a two-process export (``proxy.cdr.export``, "Two processes").

Run by ``export_records`` as ``python -m proxy.cdr.export_part``: reads its job as one JSON
line on stdin, renders that seq range into the job's part file, reports on stdout, after
each block written, the rows rendered since the last report and the part file's size
(``ROWS BYTES``), and exits 0 when the part is complete.
"""

from __future__ import annotations

import json
import sys

from proxy.cdr.export import render_part


def _report(rows: int, size: int) -> None:
    sys.stdout.write(f"{rows} {size}\n")
    sys.stdout.flush()


def main() -> int:
    return render_part(json.loads(sys.stdin.readline()), _report)


if __name__ == "__main__":
    sys.exit(main())
