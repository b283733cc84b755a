"""Embed a catalogue with a trained HLLM into its item-embedding table, resumably.

The table holds each item's vector as the User LLM reads it and its outputs are scored against: the Item LLM's
state after the projection (`hllm.models.recommender.encode_item_states`, the one catalogue encoder), plus the
learned id vector for items of the model's catalogue when the model has ``item_id_in_target``. It is written in
chunks (``parts/part-00000.parquet``, ...) next to a ``manifest.json`` that pins the model, the catalogue
fingerprint and the chunk size; a rerun skips the chunks already written, so a job killed half-way (preempted
pod, lost node) resumes where it stopped. The finished table is ``item_embeddings.parquet`` with columns
``item_id`` and ``vector`` (list of float32), in catalogue order.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from hllm.data.schema import DataError

logger = logging.getLogger(__name__)
TABLE_FILE = "item_embeddings.parquet"


def _catalogue_fingerprint(items: pd.DataFrame) -> str:
    hashed = pd.util.hash_pandas_object(items.reset_index(drop=True), index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


def embed_items(
    model_dir: str | Path,
    items: pd.DataFrame,
    out_dir: str | Path,
    *,
    chunk_size: int = 512,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write the item-embedding table of ``items`` under ``out_dir``, resuming a previous partial run.

    Args:
        model_dir: an exported HLLM folder (``config.json``, ``model.safetensors``, tokenizer).
        items: canonical items table (``item_id`` + text fields).
        out_dir: output folder.
        chunk_size: items per resumable part.
        batch_size: items per Item LLM forward pass.
        progress: ``progress(items_done, items_total)`` after each chunk.

    Raises:
        DataError: ``out_dir`` holds a partial run of another model, catalogue or chunk size.
    """
    from hllm.models import HLLM, load_item_tokenizer
    from hllm.models.recommender import ITEM_IDS_FILE, HLLMRecommender

    model_dir, out = Path(model_dir), Path(out_dir)
    (out / "parts").mkdir(parents=True, exist_ok=True)
    manifest = {
        "model_dir": str(model_dir.resolve()),
        "catalogue": _catalogue_fingerprint(items),
        "num_items": len(items),
        "chunk_size": chunk_size,
    }
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        previous = json.loads(manifest_path.read_text())
        if previous != manifest:
            raise DataError(
                f"holds a partial run with different settings {previous}; use another --out or delete it",
                path=out,
            )
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    model = HLLMRecommender(HLLM.from_pretrained(str(model_dir)).eval(), None, load_item_tokenizer(str(model_dir)))
    ids_file = model_dir / ITEM_IDS_FILE
    known = json.loads(ids_file.read_text()) if ids_file.is_file() else []
    rows_of = {item_id: row for row, item_id in enumerate(known, start=1)}  # row -1: no learned id vector
    records = items.to_dict("records")
    num_chunks = (len(records) + chunk_size - 1) // chunk_size
    for chunk in range(num_chunks):
        part = out / "parts" / f"part-{chunk:05d}.parquet"
        rows = records[chunk * chunk_size : (chunk + 1) * chunk_size]
        if not part.exists():
            ids = torch.tensor([rows_of.get(str(r["item_id"]), -1) for r in rows], dtype=torch.long)
            vectors = torch.cat([model.encode_texts(rows[s : s + batch_size]) for s in range(0, len(rows), batch_size)])
            matrix = (vectors + model.id_vectors(ids)).numpy().astype(np.float32)
            table = pa.table({"item_id": [r["item_id"] for r in rows], "vector": list(matrix)})
            tmp = part.with_suffix(".tmp")
            pq.write_table(table, tmp)
            tmp.rename(part)  # a part exists only once complete
        if progress:
            progress(min((chunk + 1) * chunk_size, len(records)), len(records))
    table = pa.concat_tables(pq.read_table(out / "parts" / f"part-{c:05d}.parquet") for c in range(num_chunks))
    pq.write_table(table, out / TABLE_FILE)
    logger.info("wrote %d item embeddings to %s", table.num_rows, out / TABLE_FILE)
    return out / TABLE_FILE
