"""Request/response logging for drift monitoring: one JSON line per served request, appended to a file."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path


class RequestLog:
    """Append-only JSONL log; a no-op without a path. Each line: ``{"ts", "kind", ...fields}``."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, kind: str, **fields) -> None:
        if self.path is None:
            return
        line = json.dumps({"ts": time.time(), "kind": kind, **fields}, default=str)
        with self._lock, self.path.open("a") as f:
            f.write(line + "\n")


def read_log(path: str | Path, kind: str | None = None) -> list[dict]:
    """The records of a request log (optionally one kind); a torn last line (crash mid-write) is skipped."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if kind is None or record.get("kind") == kind:
            records.append(record)
    return records
