"""Top-k search over item vectors: exact (blocked matrix product) for small catalogues, faiss for large.

Both take scoring-space vectors (already normalised for cosine models) and return the best ``k`` rows per user,
never a masked row. A large catalogue's index is built once, by the pipeline (`write_index`, called by the
``register`` step), and stored in the model folder (``item_index/``: ``index.json`` + ``index.faiss``); a server
memory-maps it (`read_index`) instead of building it at every start, so workers on one machine share its pages.
The kind and its parameters are explicit and recorded in ``index.json``; `benchmarks/serving/index_recall.py`
measures recall@10 against exact search and the per-query cost (docs/serving.md).

A loaded faiss index is read-only (memory-mapped); upserts go to a small in-memory side table searched exactly
beside it (new rows, and known rows whose vectors changed: their old entry in the main index is skipped), so an
upsert never rebuilds the index. The next pipeline run folds them into a fresh index.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hllm.config import INDEX_KINDS as KINDS
from hllm.data.schema import DataError
from hllm.evaluation.ranking import topk_scores

logger = logging.getLogger(__name__)
# From here on a faiss index: exact search over 100k items costs 17 ms per user on one thread vs ~1 ms for an
# approximate index, while the User LLM costs ~4 ms (measured, docs/serving.md).
FAISS_MIN_ITEMS = 50_000
INDEX_DIR = "item_index"  # inside a model folder
META_FILE = "index.json"
FAISS_FILE = "index.faiss"
FORMAT = 1
# Shipped settings, chosen on clustered (trained-like) item vectors: docs/serving.md, benchmarks/results/.
HNSW_DEFAULTS = {"m": 32, "ef_construction": 100}
# efSearch by catalogue size, from the recall table on realistic vectors (docs/serving.md "Recall/latency"): per
# measured size, the smallest setting with recall@10 >= .95 against exact search, separately for item queries
# (``ef_search``: `similar_items`) and user queries (``ef_search_user``: `recommend`, whose User-LLM vectors are
# easier for the graph). A catalogue up to N items gets N's row; beyond the last row, the last row (unmeasured).
# 100k: item .953 at 256, user .970 at 128; 1M: item .966 at 1536, user .981 at 512.
EF_SEARCH_BY_SIZE = ((100_000, 256, 128), (1_000_000, 1536, 512))
IVF_NPROBE = 32
SAMPLE_ROWS = 16  # rows of the indexed vectors kept in index.json to check the index matches the model


def hnsw_ef_search(n_items: int) -> dict:
    """``{"ef_search", "ef_search_user"}`` for a catalogue of ``n_items`` (`EF_SEARCH_BY_SIZE`)."""
    row = next((row for row in EF_SEARCH_BY_SIZE if n_items <= row[0]), EF_SEARCH_BY_SIZE[-1])
    return {"ef_search": row[1], "ef_search_user": row[2]}


def ivf_nlist(n_items: int) -> int:
    """Inverted lists for ``n_items``: the power of two nearest 4 * sqrt(N) (1024 at 100k, 4096 at 1M)."""
    return int(2 ** round(math.log2(max(4 * math.sqrt(max(n_items, 1)), 16))))


class ExactIndex:
    """Exact maximum-inner-product search; row 0 (padding) is never returned."""

    kind = "exact"

    def __init__(self, vectors: Tensor) -> None:
        self.params: dict = {}
        self.vectors = vectors.float().contiguous()  # (N + 1, D)

    def __len__(self) -> int:
        return len(self.vectors) - 1

    def extend(self, vectors: Tensor, old_rows: int, replaced: Sequence[int] = ()) -> None:
        """``vectors``: the whole new table (exact search just reads it)."""
        self.vectors = vectors.float().contiguous()

    def search(
        self, users: Tensor, k: int, exclude: Sequence[Sequence[int]] | None = None, user_queries: bool = False
    ) -> tuple[Tensor, Tensor]:
        """(scores, rows), both (U, k); rows are -1 where fewer than ``k`` rows remain unmasked."""
        return topk_scores(users.float(), self.vectors, k, exclude, exclude_all=[0])


class FaissIndex:
    """A faiss inner-product index (IVF-Flat or HNSW-Flat) over rows 1..N, plus an exact side table for upserts.

    faiss id ``i`` is row ``i + 1``. The side table holds rows added or re-embedded after the index was built;
    a re-embedded row's entry in the main index is skipped (``retired``). Search over-fetches from the main index
    to make up for excluded and retired rows, then merges with the side table's exact top-k. The side state is
    swapped as one tuple, so a concurrent reader sees the old or the new state, whole.
    """

    def __init__(self, index, kind: str, params: dict) -> None:
        self.index, self.kind, self.params = index, kind, dict(params)
        self.base = int(index.ntotal)  # rows 1..base live in the main index
        self._apply_search_params()
        # (side rows, side vectors (M, D), retired main rows)
        self._side: tuple[Tensor, Tensor, frozenset[int]] = (
            torch.zeros(0, dtype=torch.long),
            torch.zeros(0, int(index.d)),
            frozenset(),
        )

    def _apply_search_params(self) -> None:
        import faiss

        if self.kind == "faiss-ivf":
            faiss.extract_index_ivf(self.index).nprobe = int(self.params["nprobe"])
        else:
            self.index.hnsw.efSearch = int(self.params["ef_search"])

    def __len__(self) -> int:
        rows = self._side[0]
        return self.base + int((rows > self.base).sum())

    def extend(self, vectors: Tensor, old_rows: int, replaced: Sequence[int] = ()) -> None:
        """``vectors``: the whole new table; rows from ``old_rows`` are new, ``replaced`` rows changed vectors.

        Only those rows are touched (an exact side table): never a rebuild of the main index.
        """
        rows, _, retired = self._side
        changed = {int(r) for r in replaced} | set(range(old_rows, len(vectors)))
        keep = sorted({int(r) for r in rows.tolist()} | changed)
        new_rows = torch.tensor(keep, dtype=torch.long)
        new_retired = retired | frozenset(r for r in changed if r <= self.base)
        self._side = (new_rows, vectors[new_rows].float().contiguous(), new_retired)

    def search(
        self, users: Tensor, k: int, exclude: Sequence[Sequence[int]] | None = None, user_queries: bool = False
    ) -> tuple[Tensor, Tensor]:
        """``user_queries``: the queries are user vectors (`recommend`): HNSW searches with ``ef_search_user``
        (when the index records one) instead of ``ef_search`` (item queries)."""
        side_rows, side_vectors, retired = self._side
        extra = max((len(e) for e in exclude), default=0) if exclude else 0
        fetch = min(k + extra + len(retired), self.base)
        params = None
        if self.kind == "faiss-hnsw":
            ef = int(self.params["ef_search"])
            wanted = max(int(self.params.get("ef_search_user", ef)) if user_queries else ef, fetch)
            if wanted != ef:
                import faiss

                params = faiss.SearchParametersHNSW(efSearch=wanted)
        queries = np.ascontiguousarray(users.float().numpy())
        scores, ids = self.index.search(queries, fetch, params=params) if params else self.index.search(queries, fetch)
        side_scores = users.float() @ side_vectors.T if len(side_rows) else None
        out_scores = torch.full((len(users), k), float("-inf"))
        out_rows = torch.full((len(users), k), -1, dtype=torch.long)
        for u in range(len(users)):
            banned = set(exclude[u]) if exclude else set()
            found = [
                (float(s), int(i) + 1)
                for s, i in zip(scores[u], ids[u], strict=True)
                if i >= 0 and int(i) + 1 not in banned and int(i) + 1 not in retired
            ]
            if side_scores is not None:
                found += [
                    (float(s), int(r))
                    for s, r in zip(side_scores[u].tolist(), side_rows.tolist(), strict=True)
                    if r not in banned
                ]
                found.sort(key=lambda pair: -pair[0])
            for j, (s, row) in enumerate(found[:k]):
                out_scores[u, j], out_rows[u, j] = s, row
        return out_scores, out_rows


def _faiss_vectors(vectors: Tensor) -> np.ndarray:
    return np.ascontiguousarray(vectors[1:].float().numpy())


def build_faiss(vectors: Tensor, kind: str = "ivf", **params) -> FaissIndex:
    """A faiss index over rows 1..N of ``vectors``. ``ivf``: IVF-Flat (``nlist``, ``nprobe``, k-means on at most
    ``train_size`` rows); ``hnsw``: HNSW-Flat (``m``, ``ef_construction``, ``ef_search``)."""
    import faiss

    data = _faiss_vectors(vectors)
    n, dim = data.shape
    if kind == "hnsw":
        p = {**HNSW_DEFAULTS, **hnsw_ef_search(n), **params}
        index = faiss.IndexHNSWFlat(dim, int(p["m"]), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(p["ef_construction"])
        index.add(data)
        return FaissIndex(index, "faiss-hnsw", p)
    if kind != "ivf":
        raise ValueError(f"faiss index kind '{kind}' must be ivf or hnsw")
    p = {"nlist": ivf_nlist(n), "nprobe": IVF_NPROBE, "train_size": 0, "niter": 10, "seed": 0, **params}
    nlist = min(int(p["nlist"]), max(n // 39, 1))  # faiss wants >= 39 training points per list
    p["nlist"] = nlist
    p["train_size"] = min(int(p["train_size"]) or 40 * nlist, n)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed, index.cp.niter = int(p["seed"]), int(p["niter"])
    sample = np.random.default_rng(int(p["seed"])).choice(n, p["train_size"], replace=False)
    index.train(data[np.sort(sample)])
    index.add(data)
    return FaissIndex(index, "faiss-ivf", p)


def build_index(vectors: Tensor, kind: str = "auto", faiss_min_items: int = FAISS_MIN_ITEMS, **params):
    """``exact`` | ``ivf`` | ``hnsw`` | ``faiss`` (= ``hnsw``) | ``auto`` (``hnsw`` from ``faiss_min_items`` up)."""
    if kind not in KINDS:
        raise ValueError(f"index kind '{kind}' must be one of {', '.join(KINDS)}")
    if kind == "auto":
        kind = "hnsw" if len(vectors) - 1 >= faiss_min_items else "exact"
    start = time.perf_counter()
    index = (
        ExactIndex(vectors) if kind == "exact" else build_faiss(vectors, "hnsw" if kind == "faiss" else kind, **params)
    )
    logger.info("item index: %s over %d items in %.1f s", index.kind, len(index), time.perf_counter() - start)
    return index


def _sample(vectors: Tensor) -> tuple[list[int], list[list[float]]]:
    n = len(vectors) - 1
    rows = sorted({int(r) for r in np.linspace(1, n, min(SAMPLE_ROWS, n)).round()}) if n else []
    return rows, [[round(float(v), 6) for v in vectors[r].tolist()] for r in rows]


def save_index(index, vectors: Tensor, folder: str | Path) -> Path:
    """Write ``index`` (built over ``vectors``) to ``folder/item_index``; returns that folder.

    ``index.json`` records the kind, its parameters, the size and a few sample rows (to refuse an index that
    does not belong to the model); a faiss index goes to ``index.faiss``, an exact one needs no file.
    """
    import faiss

    out = Path(folder) / INDEX_DIR
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(index, FaissIndex):
        if len(index) != index.base:
            raise ValueError("an index with upserted rows cannot be saved: build a fresh one")
        faiss.write_index(index.index, str(out / FAISS_FILE))
    rows, sample = _sample(vectors)
    meta = {
        "format": FORMAT,
        "kind": index.kind,
        "params": index.params,
        "items": len(vectors) - 1,
        "dim": int(vectors.shape[1]),
        "file": FAISS_FILE if isinstance(index, FaissIndex) else None,
        "faiss_version": faiss.__version__,
        "sample_rows": rows,
        "sample_vectors": sample,
    }
    (out / META_FILE).write_text(json.dumps(meta) + "\n")
    return out


def has_index(folder: str | Path) -> bool:
    return (Path(folder) / INDEX_DIR / META_FILE).is_file()


def read_index(folder: str | Path, vectors: Tensor, mmap: bool = True):
    """The index stored in ``folder/item_index`` for ``vectors`` (the model's scoring vectors), memory-mapped.

    Raises `DataError` naming the file when it is unreadable or does not match ``vectors`` (size, width, or
    the sample rows).
    """
    import faiss

    out = Path(folder) / INDEX_DIR
    meta_file = out / META_FILE
    try:
        meta = json.loads(meta_file.read_text())
        kind, items, dim = meta["kind"], int(meta["items"]), int(meta["dim"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"unreadable item index metadata: {exc}", path=meta_file) from None
    if meta.get("format") != FORMAT:
        raise DataError(f"item index format {meta.get('format')!r}, expected {FORMAT}", path=meta_file)
    if (items, dim) != (len(vectors) - 1, vectors.shape[1]):
        raise DataError(
            f"item index of {items} items x {dim} does not match the model's {len(vectors) - 1} x {vectors.shape[1]}",
            path=meta_file,
        )
    rows = meta.get("sample_rows", [])
    if rows and not torch.allclose(vectors[rows].float(), torch.tensor(meta["sample_vectors"]), atol=1e-3):
        raise DataError("item index was built over other item vectors than this model's", path=meta_file)
    if kind == "exact":
        return ExactIndex(vectors)
    if kind not in ("faiss-ivf", "faiss-hnsw"):
        raise DataError(f"unknown item index kind '{kind}'", path=meta_file)
    file = out / str(meta.get("file") or FAISS_FILE)
    if not file.is_file():
        raise DataError("missing item index file", path=file)
    start = time.perf_counter()
    # IVF: the inverted lists are mapped (IO_FLAG_MMAP); HNSW-Flat: vectors and graph (IO_FLAG_MMAP_IFC).
    flags = (faiss.IO_FLAG_MMAP if kind == "faiss-ivf" else faiss.IO_FLAG_MMAP_IFC) | faiss.IO_FLAG_READ_ONLY
    try:
        index = faiss.read_index(str(file), flags if mmap else 0)
    except RuntimeError as exc:
        raise DataError(f"unreadable faiss index: {str(exc).splitlines()[0][:200]}", path=file) from None
    if index.ntotal != items or index.d != dim:
        raise DataError(f"faiss index holds {index.ntotal} x {index.d}, index.json says {items} x {dim}", path=file)
    loaded = FaissIndex(index, kind, meta["params"])
    logger.info("item index: %s over %d items read from %s in %.1f s", kind, items, file, time.perf_counter() - start)
    return loaded


def write_index(model_dir: str | Path, kind: str = "auto", **params) -> Path:
    """Build the item index of the model in ``model_dir`` and store it there (the pipeline's step)."""
    from hllm.predictor import Predictor

    predictor = Predictor.load(model_dir, index_kind="exact")
    vectors = predictor.scoring_vectors
    return save_index(build_index(vectors, kind, **params), vectors, model_dir)


def open_index(vectors: Tensor, kind: str = "auto", folder: str | Path | None = None):
    """The index a server uses: the one stored in ``folder`` (a model folder) when it has one of the asked
    ``kind`` (``auto`` takes whatever is stored), else one built now over ``vectors``."""
    if kind not in KINDS:
        raise ValueError(f"index kind '{kind}' must be one of {', '.join(KINDS)}")
    if folder is not None and has_index(folder) and kind != "exact":
        meta_file = Path(folder) / INDEX_DIR / META_FILE
        try:
            stored = str(json.loads(meta_file.read_text()).get("kind"))
        except (OSError, ValueError, AttributeError) as exc:
            raise DataError(f"unreadable item index metadata: {exc}", path=meta_file) from None
        if kind == "auto" or stored == f"faiss-{kind}" or (kind == "faiss" and stored.startswith("faiss-")):
            return read_index(folder, vectors)
        logger.warning("the stored item index is %s, %s was asked for: building one now", stored, kind)
    elif folder is not None and kind == "auto" and len(vectors) - 1 >= FAISS_MIN_ITEMS:
        logger.warning("%s has no stored item index: building one now (hllm.index.write_index stores one)", folder)
    return build_index(vectors, kind)
