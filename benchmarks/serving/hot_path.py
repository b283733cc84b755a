"""Where one ``recommend`` spends its time, stage by stage, in process and on one thread (before/after).

    flock /work/wt/cpu.lock .venv/bin/python benchmarks/serving/hot_path.py --model /tmp/hllm-throughput/model-100000 \
        --out benchmarks/results/serving-throughput/hot-path-100k.json

Stages of the request path outside HTTP, each timed over the same 500 requests (half by user id, half by history,
1-50 items): the history read from the Feast online store on a throwaway Redis (``get_online_features``, what
the service did before, vs the store's own ``online_read``, what it does now), the User LLM (the transformers
module vs `hllm.models.fast_user`), the HNSW search (the old single efSearch 1536 vs the size's user-query
setting) and the whole `Predictor.recommend`. The HTTP/BentoML share is what the server adds on top (py-spy
profile in the same results folder).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import REPO, fill_store, start_redis, user_histories


def timed(fn, items) -> dict:
    times = []
    for item in items:
        started = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - started)
    ms = np.array(times) * 1000
    return {"mean_ms": round(float(ms.mean()), 3), "p50_ms": round(float(np.median(ms)), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import faiss
    import torch

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    from hllm.predictor import Predictor
    from hllm_feature_repo.store import online_histories, open_store

    run = Path(tempfile.mkdtemp(prefix="hot-path-"))
    redis, port = start_redis(run / "redis")
    os.environ.update(
        {
            "FEAST_FS_YAML_FILE_PATH": str(REPO / "feature_repo" / "feature_store.production.yaml"),
            "HLLM_FEAST_REDIS": f"127.0.0.1:{port}",
            "HLLM_FEAST_REGISTRY_URL": f"sqlite:///{run / 'registry.db'}",
        }
    )
    try:
        n_items = len(json.loads((args.model / "item_ids.json").read_text()))
        histories = user_histories(min(n_items, 100_000))
        fill_store(run / "feast", histories)
        store = open_store(run / "feast")
        users = list(histories)[: args.requests]
        service = store.get_feature_service("hllm_v1")
        result: dict = {"items": n_items, "stages": {}}
        stages = result["stages"]
        stages["history_read_get_online_features"] = timed(
            lambda u: store.get_online_features(features=service, entity_rows=[{"user_id": u}]).to_dict(), users
        )
        stages["history_read_online_read"] = timed(lambda u: online_histories(store, [u]), users)
        rows = [histories[u][0] for u in users]
        for mode in ("eager", "fast"):
            predictor = Predictor.load(args.model, index_kind="auto", user_llm=mode)
            encoded = [predictor.encode_histories([h]) for h in rows]
            for h in encoded[:20]:
                predictor.user_vectors(h)
            stages[f"user_llm_{mode}"] = timed(predictor.user_vectors, encoded)
        users_vectors = [predictor.user_vectors(h) for h in encoded]
        exclude = [[sorted(set(h[0]))] for h in encoded]
        ann = predictor.ann
        result["index_params"] = ann.params
        pairs = list(zip(users_vectors, exclude, strict=True))
        for p in pairs:  # fault the mapped index pages in once, as a serving worker has after warm-up
            ann.search(p[0], 10, p[1])
        for label, user_queries in (("search_item_ef", False), ("search_user_ef", True)):
            stages[label] = timed(lambda p, uq=user_queries: ann.search(p[0], 10, p[1], user_queries=uq), pairs)
        if ann.kind == "faiss-hnsw":
            ef = ann.params["ef_search"]
            ann.params["ef_search"] = 1536
            ann._apply_search_params()
            stages["search_ef_1536_before"] = timed(lambda p: ann.search(p[0], 10, p[1]), pairs)
            ann.params["ef_search"] = ef
            ann._apply_search_params()
        stages["predictor_recommend_fast"] = timed(lambda h: predictor.recommend([h], 10), rows)
    finally:
        redis.terminate()
        redis.wait()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
