"""One catalogue for every replica: upserted items live in a shared log, each replica replays it into its Predictor.

An upsert embeds the items once (the Item LLM), appends ids, texts and text vectors to a shared catalogue log
(`hllm_feature_repo.online_log`: SQLite locally, a Redis stream in production) and only then applies them locally and
returns. Every replica polls the log (`SharedCatalogue.start`, every ``interval`` seconds) and applies new entries
through the Predictor's upsert path with the stored vectors, so nothing is embedded twice; a replica serving
another model (a canary) re-embeds the stored text instead, since vectors of one model mean nothing to another.
A starting replica replays the whole log, so upserts survive restarts; `export_items` writes the upserted
items as an ``items.csv`` the next training run reads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from hllm.data.schema import ITEM_TEXT_FIELDS, DataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CatalogueEntry:
    """One upserted item: its id, text fields, and its text vector in the space of ``model``."""

    item_id: str
    text: dict[str, str]
    model: str
    vector: np.ndarray = field(repr=False)  # (D,) float32: the Item LLM's text vector, no id vector added


class CatalogueLog(Protocol):
    """A shared, ordered, append-only list of catalogue entries (safe across processes)."""

    def add(self, entries: Sequence[CatalogueEntry]) -> None:
        """Durably append ``entries`` in order."""

    def since(self, cursor: Any) -> tuple[list[CatalogueEntry], Any]:
        """Entries after ``cursor`` (None: from the start) in log order, and the cursor after the last one."""


def latest_entries(entries: Sequence[CatalogueEntry]) -> list[CatalogueEntry]:
    """The last entry of each item id, in the order of those last entries."""
    last = {e.item_id: j for j, e in enumerate(entries)}
    return [entries[j] for j in sorted(last.values())]


class SharedCatalogue:
    """A Predictor's catalogue kept in step with a shared `CatalogueLog` (None: this process only).

    Args:
        predictor: the `hllm.predictor.Predictor` to keep up to date.
        log: the shared log, or None for a single process without a store.
        model: the served model's identity (its BentoML tag): entries of another model are re-embedded.
    """

    def __init__(self, predictor, log: CatalogueLog | None, model: str) -> None:
        self.predictor, self.log, self.model = predictor, log, model
        self.cursor: Any = None
        self.applied = 0
        self._lock = threading.Lock()  # one catch-up at a time, so the cursor only moves forward
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def upsert(self, items: Sequence[Mapping]) -> tuple[int, int]:
        """Embed ``items``, persist them to the shared log, apply them here; returns ``(added, updated)``."""
        ids = [str(item["item_id"]) for item in items]
        if len(set(ids)) != len(ids):
            raise DataError("duplicate item_id in one upsert", column="item_id")
        self.predictor.check_upsert()
        vectors = self.predictor.encode_texts(items).numpy().astype(np.float32)  # (M, D)
        updated = sum(i in self.predictor.index for i in ids)
        entries = [
            CatalogueEntry(i, {f: str(item.get(f) or "") for f in ITEM_TEXT_FIELDS}, self.model, vectors[j])
            for j, (i, item) in enumerate(zip(ids, items, strict=True))
        ]
        if self.log is None:
            self._apply(entries)
        else:
            self.log.add(entries)  # durable first: the caller's 200 means every replica will have them
            self.catch_up()
        return len(ids) - updated, updated

    def catch_up(self) -> int:
        """Apply every log entry this replica has not applied yet; returns how many were read."""
        if self.log is None:
            return 0
        with self._lock:
            entries, cursor = self.log.since(self.cursor)
            if entries:
                self._apply(entries)
            self.cursor = cursor
            self.applied += len(entries)
        return len(entries)

    def _apply(self, entries: Sequence[CatalogueEntry]) -> None:
        import torch

        latest = latest_entries(entries)
        mine = [e for e in latest if e.model == self.model]
        other = [e for e in latest if e.model != self.model]
        ids = [e.item_id for e in mine] + [e.item_id for e in other]
        parts = [torch.from_numpy(np.stack([e.vector for e in mine]))] if mine else []
        if other:  # another model's vectors: embed the stored text with this model
            parts.append(self.predictor.encode_texts([{"item_id": e.item_id, **e.text} for e in other]))
        self.predictor.set_text_vectors(ids, torch.cat(parts).float())
        logger.info("catalogue: applied %d upserted items (%d re-embedded)", len(ids), len(other))

    def start(self, interval: float = 0.5) -> None:
        """Poll the log every ``interval`` seconds in a daemon thread (errors are logged, polling goes on)."""
        if self.log is None or self._thread is not None:
            return

        def poll() -> None:
            while not self._stop.wait(interval):
                try:
                    self.catch_up()
                except Exception:  # a store hiccup must not end the polling: log it and try again
                    logger.exception("catalogue: polling the shared log failed")

        self._thread = threading.Thread(target=poll, name="catalogue-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def upserted_items(log: CatalogueLog) -> pd.DataFrame:
    """Every upserted item (the latest text per id) as a canonical items table: ``item_id`` + text fields."""
    entries, _ = log.since(None)
    rows = [{"item_id": e.item_id, **{f: e.text.get(f, "") for f in ITEM_TEXT_FIELDS}} for e in latest_entries(entries)]
    return pd.DataFrame(rows, columns=["item_id", *ITEM_TEXT_FIELDS])


def export_items(log: CatalogueLog, out: str | Path, items: pd.DataFrame | None = None) -> pd.DataFrame:
    """Write ``items`` (the training catalogue, optional) updated with every upsert as an HLLM ``items.csv``.

    Upserted ids replace the text of known ids and are appended otherwise; extra columns of ``items`` are kept
    (empty for new ids). Returns the table written.
    """
    upserted = upserted_items(log)
    if items is None:
        table = upserted
    else:
        kept = items[~items["item_id"].astype(str).isin(set(upserted["item_id"]))]
        table = pd.concat([kept, upserted], ignore_index=True).fillna("")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table
