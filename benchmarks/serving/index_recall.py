"""Item-index benchmark: recall@10 against exact search and per-query latency (one thread), on realistic vectors.

    python benchmarks/serving/index_recall.py --model runs/office/model --data ../shared/data/amazon-office-2014 \
        --items 1000000 --out benchmarks/results/index-recall.json

Realistic vectors: the trained model's item vectors (scoring space: unit vectors for a cosine model) expanded to
``--items`` by picking source items uniformly and adding isotropic Gaussian noise of norm ``--noise`` (then
re-normalised). The noise is chosen so that an expanded vector's exact top-10 lies mostly OUTSIDE its own source
cluster (``same_source_top10`` in the output: the fraction of top-10 neighbours sharing the query's source);
small noise would make the task trivially easy (hundreds of near-copies). Uniform random unit vectors are
measured too, for contrast (HNSW's hardest case). Queries: held-out expanded vectors (item-to-item, as
``similar_items``) and, with ``--data``, user vectors of real histories (as ``recommend``). Exact search over the
same vectors is the baseline in the same run. Each index is also saved and read back memory-mapped, as a
server does (``load_s``), and ``--pss`` reads PSS of two processes that map the same saved index.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def expand(source: torch.Tensor, n: int, noise: float, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """(n, D) unit vectors: random source rows plus Gaussian noise of expected norm ``noise``; and the sources."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(source), n)
    gen = torch.Generator().manual_seed(seed)
    out = torch.empty(n, source.shape[1])
    for start in range(0, n, 100_000):
        rows = torch.from_numpy(picks[start : start + 100_000])
        jitter = torch.randn(len(rows), source.shape[1], generator=gen) * (noise / source.shape[1] ** 0.5)
        out[start : start + len(rows)] = torch.nn.functional.normalize(source[rows] + jitter, dim=-1)
    return out, picks


def with_pad(vectors: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.zeros(1, vectors.shape[1]), vectors])


def exact_top(vectors: torch.Tensor, queries: torch.Tensor, k: int = 10) -> torch.Tensor:
    from hllm.index import ExactIndex

    return ExactIndex(vectors).search(queries, k)[1]


def recall(found: torch.Tensor, truth: torch.Tensor) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return round(hits / truth.numel(), 4)


def per_query_ms(index, queries: torch.Tensor, k: int = 10, limit: int = 200) -> dict:
    times = []
    for q in queries[:limit]:
        start = time.perf_counter()
        index.search(q[None], k)
        times.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": round(float(np.median(times)), 3), "p99_ms": round(float(np.percentile(times, 99)), 3)}


def settings(kind: str, n: int) -> list[dict]:
    from hllm.index import ivf_nlist

    if kind == "ivf":
        nlist = ivf_nlist(n)
        return [{"nprobe": p} for p in (4, 8, 16, 32, 64, 128) if p <= nlist]
    return [{"ef_search": e} for e in (64, 128, 256, 512, 1024)]


def measure(name: str, vectors: torch.Tensor, query_sets: dict, kinds: list[str], args, work: Path) -> list[dict]:
    """Exact baseline + every index kind and setting over ``vectors`` (with the padding row)."""
    import faiss

    from hllm.index import ExactIndex, build_index, read_index, save_index

    rows = []
    truths = {q: exact_top(vectors, queries) for q, queries in query_sets.items()}
    exact = ExactIndex(vectors)
    first = next(iter(query_sets.values()))
    rows.append({"vectors": name, "index": "exact", "build_s": 0.0, **per_query_ms(exact, first, limit=50)})
    print(json.dumps(rows[-1]), flush=True)
    for kind in kinds:
        faiss.omp_set_num_threads(args.build_threads)
        start = time.perf_counter()
        built = build_index(vectors, kind)
        build_s = round(time.perf_counter() - start, 1)
        folder = work / f"{name}-{kind}"
        save_index(built, vectors, folder)
        del built
        start = time.perf_counter()
        index = read_index(folder, vectors)  # memory-mapped, as a server reads it
        load_s = round(time.perf_counter() - start, 2)
        size_mb = round((folder / "item_index" / "index.faiss").stat().st_size / 2**20, 1)
        faiss.omp_set_num_threads(1)
        for setting in settings(kind, len(vectors) - 1):
            index.params.update(setting)
            index._apply_search_params()
            row = {"vectors": name, "index": index.kind, **index.params, "build_s": build_s, "load_s": load_s}
            row["file_mb"] = size_mb
            for q, queries in query_sets.items():
                row[f"recall@10_{q}"] = recall(index.search(queries, 10)[1], truths[q])
            row.update(per_query_ms(index, first))
            rows.append(row)
            print(json.dumps(row), flush=True)
        if args.pss and kind == kinds[0] and name == "realistic":
            rows.append({"vectors": name, "index": index.kind, "pss_two_workers": pss_two(folder, vectors)})
            print(json.dumps(rows[-1]), flush=True)
        del index
        if args.keep and name == "realistic" and kind == kinds[0]:  # for start_time.py: the index and vectors
            shutil.copytree(folder / "item_index", args.keep / "item_index", dirs_exist_ok=True)
            torch.save(vectors, args.keep / "vectors.pt")
    return rows


WORKER = """
import sys, time, torch
from hllm.index import read_index
vectors = torch.load(sys.argv[2])
index = read_index(sys.argv[1], vectors)
index.search(vectors[1:2001], 10)  # touch the index like serving does
del vectors
print("ready", flush=True)
time.sleep(600)
"""


def pss_two(folder: Path, vectors: torch.Tensor) -> list[dict]:
    """Start two processes that memory-map the same saved index and search it; read their smaps_rollup (MiB).

    The vectors tensor is handed over through a file and dropped before measuring, so the figures are the
    index's (plus the interpreter's and libraries'); a server's model and vector table come on top.
    """
    file = folder / "vectors.pt"
    torch.save(vectors, file)
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(folder), str(file)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        out = []
        for p in procs:
            fields = {}
            for line in Path(f"/proc/{p.pid}/smaps_rollup").read_text().splitlines()[1:]:
                key, value = line.split(":")[0], line.split()[1]
                if key in ("Rss", "Pss", "Pss_Anon", "Pss_File", "Shared_Clean", "Private_Clean", "Private_Dirty"):
                    fields[key + "_mib"] = round(int(value) / 1024, 1)
            out.append(fields)
        return out
    finally:
        for p in procs:
            p.kill()
            p.wait()
        file.unlink()


def user_queries(predictor, data: Path, count: int, seed: int) -> torch.Tensor:
    import pandas as pd

    frame = pd.read_csv(data / "interactions.csv")
    frame = frame[frame["item_id"].astype(str).isin(predictor.index)]
    users = frame.groupby("user_id", sort=False)["item_id"].apply(lambda s: [str(i) for i in s][-50:])
    picked = users.sample(min(count, len(users)), random_state=seed).tolist()
    return predictor.user_vectors(predictor.encode_histories(picked))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="trained model folder (hllm train ... /model)")
    parser.add_argument("--data", type=Path, help="its dataset (HLLM CSV): real histories for user queries")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--noise", type=float, default=1.0, help="norm of the Gaussian noise added to a source")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--kinds", default="ivf,hnsw", help="index kinds to measure besides exact")
    parser.add_argument("--uniform-kinds", default="ivf,hnsw", help="kinds measured on uniform vectors ('' none)")
    parser.add_argument("--build-threads", type=int, default=2)
    parser.add_argument("--pss", action="store_true", help="PSS of two processes mapping the saved IVF index")
    parser.add_argument("--keep", type=Path, help="keep the first realistic index and its vectors here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/index-recall.json"))
    args = parser.parse_args()

    from hllm.predictor import Predictor

    torch.set_num_threads(args.build_threads)
    predictor = Predictor.load(args.model)
    source = predictor.scoring_vectors[1:]
    if predictor.task.similarity != "cosine":
        raise SystemExit("this benchmark expands unit vectors: it needs a cosine model")
    vectors, picks = expand(source, args.items, args.noise, args.seed)
    held, held_picks = expand(source, args.queries, args.noise, args.seed + 1)  # fresh copies, not indexed
    truth = exact_top(with_pad(vectors), held)
    same = float(
        np.mean([(picks[(row[row > 0] - 1).numpy()] == s).mean() for row, s in zip(truth, held_picks, strict=True)])
    )
    source_sim = source @ source.T
    source_sim.fill_diagonal_(-2)
    realistic = {"item": held}
    if args.data:
        realistic["user"] = user_queries(predictor, args.data, args.queries, args.seed)
    gen = torch.Generator().manual_seed(args.seed + 2)
    uniform = torch.nn.functional.normalize(torch.randn(args.items, source.shape[1], generator=gen), dim=-1)
    uniform_q = torch.nn.functional.normalize(torch.randn(args.queries, source.shape[1], generator=gen), dim=-1)
    meta = {
        "command": " ".join(sys.argv),
        "model": str(args.model),
        "source_items": len(source),
        "dim": source.shape[1],
        "items": args.items,
        "noise_norm": args.noise,
        "source_nn_distance_median": round(float((2 - 2 * source_sim.max(1).values).clamp(min=0).sqrt().median()), 4),
        "same_source_top10": round(same, 4),
        "queries": {q: len(v) for q, v in realistic.items()},
        "latency": "per query (batch of 1), one thread (faiss and torch); p50/p99 over 200 queries (exact: 50)",
        "build_threads": args.build_threads,
        "loadavg_start": os.getloadavg(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared with other jobs)",
    }
    print(json.dumps(meta), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        kinds = [k for k in args.kinds.split(",") if k]
        rows = measure("realistic", with_pad(vectors), realistic, kinds, args, Path(tmp))
        del vectors
        uniform_kinds = [k for k in args.uniform_kinds.split(",") if k]
        if uniform_kinds:
            rows += measure("uniform", with_pad(uniform), {"item": uniform_q}, uniform_kinds, args, Path(tmp))
    meta["loadavg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**meta, "results": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
