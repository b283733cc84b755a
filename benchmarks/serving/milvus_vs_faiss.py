"""Milvus Lite (the real embedded Milvus engine) against in-process faiss, on realistic clustered item vectors.

Two steps, two environments (Milvus Lite is not a project dependency):

    # 1. the project's .venv: source vectors (Office item vectors: a trained model's, else MiniLM text PCA'd to 128-d)
    .venv/bin/python benchmarks/serving/milvus_vs_faiss.py export --data ../shared/data/amazon-office-2014 \
        [--model runs/office/model] --out /tmp/office-source.npz
    # 2. a throwaway venv with the engine (milvus-lite 2.5.1 ships the C++ `milvus` binary for linux x86_64):
    python3 -m venv /tmp/milvus-venv && /tmp/milvus-venv/bin/pip install milvus-lite==2.5.1 pymilvus==2.5.18 \
        faiss-cpu==1.15.1 numpy==2.4.6 "setuptools<81"     # milvus-lite 2.5.1 imports pkg_resources
    flock /work/wt/cpu.lock /tmp/milvus-venv/bin/python benchmarks/serving/milvus_vs_faiss.py run \
        --source /tmp/office-source.npz --items 100000,1000000 --out benchmarks/results/milvus-vs-faiss.json

Vectors as `index_recall.py` makes them: source rows picked uniformly plus isotropic Gaussian noise of norm
``--noise``, re-normalised (``same_source_top10`` in the output says how often the exact top-10 stays among the
query's own source's copies: low means the task is not trivially easy). Queries: 500 held-out expanded vectors.
Recall@10 against exact search (faiss IndexFlatIP) over the same vectors, in the same run.

Milvus Lite in local mode builds only FLAT, IVF_FLAT and AUTOINDEX (HNSW is refused: "local mode only support
FLAT IVF_FLAT AUTOINDEX"), so it is measured with IVF_FLAT at hllm.index's nlist, against faiss IVF-Flat with the
same nlist and faiss HNSW-Flat with hllm.index's shipped M / efConstruction (efSearch swept, 1536 shipped).
Measured per engine: insert time (Milvus: client inserts of 10,000 rows + flush; faiss: add), index build time,
load time, recall@10 per setting, single-query latency p50/p99 (Milvus through its gRPC client to the local
server process, which uses its own threads; faiss one thread), and the Milvus server's memory.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

HNSW = {"m": 32, "ef_construction": 100}  # hllm.index.HNSW_DEFAULTS (ef_search 1536 is in EF_SEARCH)
EF_SEARCH = (128, 512, 1536)
NPROBE = (8, 32, 128)
INSERT_BATCH = 10_000


def ivf_nlist(n_items: int) -> int:
    """hllm.index.ivf_nlist (copied: this step runs without the project installed)."""
    return int(2 ** round(math.log2(max(4 * math.sqrt(max(n_items, 1)), 16))))


def expand(source: np.ndarray, n: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, D) unit float32 vectors: random source rows plus Gaussian noise of expected norm ``noise``."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(source), n)
    out = np.empty((n, source.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        rows = picks[start : start + 100_000]
        jitter = rng.standard_normal((len(rows), source.shape[1])).astype(np.float32) * (noise / source.shape[1] ** 0.5)
        block = source[rows] + jitter
        out[start : start + len(rows)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out, picks


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return round(hits / truth.size, 4)


def latency(search, queries: np.ndarray, limit: int = 200) -> dict:
    times = []
    for q in queries[:limit]:
        start = time.perf_counter()
        search(q[None])
        times.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": round(float(np.median(times)), 3), "p99_ms": round(float(np.percentile(times, 99)), 3)}


def proc_memory(pattern: str) -> dict:
    """VmRSS and PSS (MiB) of the first process whose command line contains ``pattern``."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if pattern in cmd:
                fields = dict(
                    line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
                )
                return {k.lower() + "_mib": round(int(fields[k].split()[0]) / 1024, 1) for k in ("Rss", "Pss")}
        except (OSError, ValueError, KeyError):
            continue
    return {}


def run_faiss(vectors, queries, truth, n: int, kinds: list[str], build_threads: int) -> list[dict]:
    import faiss

    rows = []
    dim = vectors.shape[1]
    for kind in kinds:
        faiss.omp_set_num_threads(build_threads)
        start = time.perf_counter()
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, HNSW["m"], faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = HNSW["ef_construction"]
            settings = [{"ef_search": e} for e in EF_SEARCH]
        else:
            nlist = ivf_nlist(n)
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
            sample = np.random.default_rng(0).choice(n, min(40 * nlist, n), replace=False)
            index.cp.niter = 10
            index.train(vectors[np.sort(sample)])
            settings = [{"nlist": nlist, "nprobe": p} for p in NPROBE]
        index.add(vectors)
        build_s = round(time.perf_counter() - start, 1)
        faiss.omp_set_num_threads(1)
        for setting in settings:
            if kind == "hnsw":
                index.hnsw.efSearch = setting["ef_search"]
            else:
                index.nprobe = setting["nprobe"]
            row = {"engine": "faiss", "index": f"faiss-{kind}", **setting, "insert_and_build_s": build_s}
            row["recall@10"] = recall(index.search(queries, 10)[1], truth)
            row.update(latency(partial(index.search, k=10), queries))
            rows.append(row)
            print(json.dumps({"items": n, **row}), flush=True)
        del index
    return rows


def run_milvus(vectors, queries, truth, n: int, work: Path) -> list[dict]:
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(str(work / "milvus.db"))  # starts the embedded milvus server process
    name = f"items_{n}"
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=vectors.shape[1])
    client.create_collection(name, schema=schema)
    start = time.perf_counter()
    for lo in range(0, n, INSERT_BATCH):
        block = vectors[lo : lo + INSERT_BATCH]
        client.insert(name, [{"id": lo + i, "v": row} for i, row in enumerate(block.tolist())])
    client.flush(name)
    insert_s = round(time.perf_counter() - start, 1)
    nlist = ivf_nlist(n)
    params = client.prepare_index_params()
    params.add_index(field_name="v", index_type="IVF_FLAT", metric_type="IP", params={"nlist": nlist})
    start = time.perf_counter()
    client.create_index(name, params)
    while True:
        info = client.describe_index(name, "v")
        if int(info.get("pending_index_rows", 0)) == 0 and info.get("state") == "Finished":
            break
        time.sleep(0.5)
    build_s = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    client.load_collection(name)
    load_s = round(time.perf_counter() - start, 1)
    memory = proc_memory(f"milvus_lite/lib/milvus {work / 'milvus.db'}")  # this run's server only
    index_state = {k: client.describe_index(name, "v").get(k) for k in ("indexed_rows", "total_rows", "state")}
    rows = []
    for nprobe in NPROBE:
        search_params = {"metric_type": "IP", "params": {"nprobe": nprobe}}

        def search(q, sp=search_params):
            return client.search(name, data=q.tolist(), limit=10, search_params=sp, anns_field="v")

        found = []
        for lo in range(0, len(queries), 100):
            found += [[hit["id"] for hit in hits] for hits in search(queries[lo : lo + 100])]
        row = {"engine": "milvus-lite", "index": "milvus-ivf_flat", "nlist": nlist, "nprobe": nprobe}
        row.update({"insert_s": insert_s, "build_s": build_s, "load_s": load_s, "server_memory": memory})
        row["index_state"] = index_state
        row["recall@10"] = recall(np.array([f + [-1] * (10 - len(f)) for f in found]), truth)
        row.update(latency(search, queries))
        rows.append(row)
        print(json.dumps({"items": n, **row}), flush=True)
    row_count = client.get_collection_stats(name).get("row_count")
    rows[-1]["row_count"] = row_count
    client.close()
    return rows


def export(args: argparse.Namespace) -> None:
    """Source vectors (N, 128) unit float32 from a trained model, else from MiniLM item texts via PCA."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "quality"))
    if args.model:
        from hllm.predictor import Predictor

        source = Predictor.load(args.model).scoring_vectors[1:].numpy()
        origin = f"item vectors of the trained model {args.model}"
    else:
        from runners import text_item_vectors

        from hllm.data.readers import read_raw
        from hllm.data.validation import validate_tables
        from hllm.training.data import ItemVocab

        dataset = validate_tables(read_raw(args.data), policy="strict").dataset
        text = text_item_vectors(dataset, ItemVocab.from_items(dataset.items))[1:].numpy()
        centred = text - text.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        source = centred @ vt[: args.dim].T
        origin = f"all-MiniLM-L6-v2 text vectors of {args.data.name} items, centred, PCA to {args.dim}-d"
    source = (source / np.linalg.norm(source, axis=1, keepdims=True)).astype(np.float32)
    np.savez(args.out, source=source, origin=origin)
    print(f"wrote {args.out}: {source.shape} ({origin})")


def run(args: argparse.Namespace) -> None:
    import faiss
    import milvus_lite
    import pymilvus

    loaded = np.load(args.source)
    source = loaded["source"]
    sim = source @ source.T
    np.fill_diagonal(sim, -2)
    meta = {
        "command": " ".join(sys.argv),
        "source": str(loaded["origin"]),
        "source_items": len(source),
        "dim": source.shape[1],
        "source_nn_distance_median": round(float(np.median(np.sqrt(np.clip(2 - 2 * sim.max(1), 0, None)))), 4),
        "noise_norm": args.noise,
        "queries": args.queries,
        "versions": {
            "milvus_lite": milvus_lite.__version__,
            "pymilvus": pymilvus.__version__,
            "faiss": faiss.__version__,
        },
        "latency": "single query, p50/p99 over 200; faiss 1 thread; Milvus Lite through gRPC to its local server",
        "build_threads": args.build_threads,
        "loadavg_start": os.getloadavg(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared with other jobs)",
        "results": [],
    }
    for n in [int(x) for x in args.items.split(",")]:
        vectors, picks = expand(source, n, args.noise, args.seed)
        queries, query_picks = expand(source, args.queries, args.noise, args.seed + 1)  # held out
        exact = faiss.IndexFlatIP(vectors.shape[1])
        exact.add(vectors)
        faiss.omp_set_num_threads(args.build_threads)
        truth = exact.search(queries, 10)[1]
        faiss.omp_set_num_threads(1)
        same = float(np.mean([(picks[row] == s).mean() for row, s in zip(truth, query_picks, strict=True)]))
        exact_row = {
            "engine": "faiss",
            "index": "exact",
            "recall@10": 1.0,
            **latency(partial(exact.search, k=10), queries, 50),
        }
        del exact
        block = {"items": n, "same_source_top10": round(same, 4), "rows": [exact_row]}
        print(json.dumps({"items": n, "same_source_top10": block["same_source_top10"], **exact_row}), flush=True)
        kinds = ["ivf", "hnsw"] if n <= args.hnsw_max_items else ["ivf"]
        if "faiss" in args.engines:
            block["rows"] += run_faiss(vectors, queries, truth, n, kinds, args.build_threads)
        work = Path(tempfile.mkdtemp(prefix="milvus-vs-faiss-"))
        try:
            if "milvus" in args.engines:
                block["rows"] += run_milvus(vectors, queries, truth, n, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        meta["results"].append(block)
        meta["loadavg_end"] = os.getloadavg()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    ex = sub.add_parser("export", help="source vectors (project venv)")
    ex.add_argument("--data", type=Path, required=True)
    ex.add_argument("--model", type=Path, help="a trained cosine model folder; default: MiniLM text vectors + PCA")
    ex.add_argument("--dim", type=int, default=128)
    ex.add_argument("--out", type=Path, required=True)
    rn = sub.add_parser("run", help="the comparison (Milvus Lite venv)")
    rn.add_argument("--source", type=Path, required=True)
    rn.add_argument("--items", default="100000,1000000")
    rn.add_argument("--noise", type=float, default=1.6, help="1.6: same-source top-10 .27 at 100k on the MiniLM source")
    rn.add_argument("--queries", type=int, default=500)
    rn.add_argument("--hnsw-max-items", type=int, default=100_000, help="faiss HNSW only up to this size (slow build)")
    rn.add_argument("--engines", default="faiss,milvus", help="which engines to measure")
    rn.add_argument("--build-threads", type=int, default=2)
    rn.add_argument("--seed", type=int, default=0)
    rn.add_argument("--out", type=Path, default=Path("benchmarks/results/milvus-vs-faiss.json"))
    args = parser.parse_args()
    export(args) if args.step == "export" else run(args)


if __name__ == "__main__":
    main()
