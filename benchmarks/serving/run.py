"""Serving benchmark: a bounded load test of the real BentoML service on loopback.

    .venv/bin/python benchmarks/serving/run.py [--sizes 10000,100000,1000000] [--seconds 10] \
        [--out benchmarks/results/serving]

For each catalogue size it registers a serving model (HLLM in cached mode: the demo's 2x128 causal BERT User LLM;
random item vectors and untrained weights, which cost the same per request as trained ones), starts
``bentoml serve`` with ``HLLM_INDEX=auto`` (exact below 50k items, faiss HNSW from there), and measures
``/recommend`` (one request = one history) under closed-loop load at several concurrencies, ``/recommend_batch``
(adaptive batching on) at the same concurrencies, and an open-loop run at a fixed 100 requests/s, the target:
p99 <= 50 ms on a 100k catalogue, 2 cores. It also measures HNSW recall@10 against exact search. Results:
``<out>/result.json`` and ``<out>/result.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hllm.index import FAISS_MIN_ITEMS

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[2]


def _demo_user_llm() -> dict:
    """The demo's User LLM (src/hllm/configs/demo.yaml): the serving shape this benchmark measures."""
    from importlib.resources import files

    from hllm.training.build import load_run_config

    return load_run_config(files("hllm") / "configs" / "demo.yaml").hllm.user_backbone_config


USER_LLM = _demo_user_llm()
ITEM_LLM = {
    **USER_LLM,
    "max_position_embeddings": 512,
    "hidden_size": 384,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
}


def build_model(n_items: int, out: Path) -> Path:
    """Export a cached-mode HLLM over ``n_items`` items (random 384-d text vectors, like MiniLM's width)."""
    import torch

    from hllm.models import HLLM, HLLMConfig
    from hllm.models.recommender import ITEM_IDS_FILE, HLLMRecommender

    torch.manual_seed(0)
    config = HLLMConfig(
        item_backbone_config=ITEM_LLM, user_backbone_config=USER_LLM, item_pooling="mean", max_seq_len=50
    )
    ids = ["<pad>", *[f"item{i}" for i in range(n_items)]]
    states = torch.cat([torch.zeros(1, 384), torch.randn(n_items, 384)])
    HLLMRecommender(HLLM(config), states).save(out)
    (out / ITEM_IDS_FILE).write_text(json.dumps(ids[1:]))
    (out / "popular_items.json").write_text(json.dumps(ids[1:1001]))
    return out


def register(model_dir: Path, name: str) -> str:
    """Register with the item index the pipeline's register step would store (so the server maps, not builds)."""
    import bentoml

    from hllm.index import write_index

    write_index(model_dir)

    with bentoml.models.create(name) as saved:
        shutil.copytree(model_dir, saved.path, dirs_exist_ok=True)
    return str(saved.tag)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tag: str, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "HLLM_MODEL": tag, "HLLM_INDEX": "auto", "HLLM_FEAST_HOME": ""}
    command = [sys.executable, "-m", "bentoml", "serve", "hllm_serving.service:HLLMService", "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--host", "127.0.0.1"], env=env, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    return wait_ready(proc, port, log, seconds=900)  # building a 1M-item HNSW index at start took minutes


def wait_ready(proc: subprocess.Popen, port: int, log: Path, seconds: float) -> subprocess.Popen:
    """``proc`` once its ``/readyz`` answers 200; stopped, with its log's tail in the error, if it exits or stalls."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError("server not ready in time")


def stop_server(proc: subprocess.Popen) -> None:
    """Stop the server and its worker (a worker busy in native code may ignore SIGTERM: then SIGKILL)."""
    import signal

    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def histories(n_items: int, count: int, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 51, count)
    return [[f"item{i}" for i in rng.integers(0, n_items, n)] for n in lengths]


def summarise(latencies: list[float], errors: int, seconds: float) -> dict:
    values = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": errors,
        "throughput_rps": round(len(latencies) / seconds, 1),
        **{f"p{q}_ms": round(float(np.percentile(values, q)), 1) if len(values) else None for q in (50, 95, 99)},
    }


async def closed_loop(url: str, bodies: list[dict], concurrency: int, seconds: float) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        nonlocal errors
        async with httpx.AsyncClient(timeout=30) as client:
            i = offset
            while time.perf_counter() < stop:
                started = time.perf_counter()
                response = await client.post(url, json=bodies[i % len(bodies)])
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1
                i += concurrency

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in range(concurrency)))
    return summarise(latencies, errors, time.perf_counter() - started)


async def open_loop(url: str, bodies: list[dict], rate: float, seconds: float) -> dict:
    """Requests at a fixed rate whatever the latency (what a real client population does)."""
    import httpx

    latencies: list[float] = []
    errors = 0

    async def one(client, body) -> None:
        nonlocal errors
        started = time.perf_counter()
        response = await client.post(url, json=body)
        if response.status_code == 200:
            latencies.append(time.perf_counter() - started)
        else:
            errors += 1

    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        tasks = []
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(client, bodies[i % len(bodies)])))
        await asyncio.gather(*tasks)
    return summarise(latencies, errors, time.perf_counter() - start)


def hnsw_recall(n_items: int, queries: int = 500) -> dict:
    """Recall@10 of the faiss HNSW index against exact search, on normalised random vectors of this size."""
    import torch

    from hllm.index import ExactIndex, build_index

    torch.manual_seed(1)
    vectors = torch.nn.functional.normalize(torch.randn(n_items + 1, 128), dim=-1)
    vectors[0] = 0
    users = torch.nn.functional.normalize(torch.randn(queries, 128), dim=-1)
    started = time.perf_counter()
    approx = build_index(vectors, "hnsw")
    build_s = time.perf_counter() - started
    exact_rows = ExactIndex(vectors).search(users, 10)[1]
    approx_rows = approx.search(users, 10)[1]
    hits = sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approx_rows, exact_rows, strict=True))
    return {"recall@10": round(hits / (10 * queries), 4), "build_s": round(build_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "serving")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hllm-serving-bench-"))
    os.environ["BENTOML_HOME"] = str(work / "bentoml")
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "sizes": {}}
    for size in [int(s) for s in args.sizes.split(",")]:
        tag = register(build_model(size, work / f"model-{size}"), f"bench{size}")
        port = free_port()
        started = time.perf_counter()
        proc = start_server(tag, port, work / f"server-{size}.log")
        entry = {
            "startup_s": round(time.perf_counter() - started, 1),
            "index": "faiss-hnsw" if size >= FAISS_MIN_ITEMS else "exact",
        }
        try:
            base = f"http://127.0.0.1:{port}"
            single = [{"history": h, "k": 10} for h in histories(size, 2000)]
            batched = [{"histories": [h]} for h in histories(size, 2000)]
            asyncio.run(closed_loop(f"{base}/recommend", single, 2, 3))  # warm-up
            for c in [int(x) for x in args.concurrency.split(",")]:
                entry[f"recommend_c{c}"] = asyncio.run(closed_loop(f"{base}/recommend", single, c, args.seconds))
                entry[f"batched_c{c}"] = asyncio.run(closed_loop(f"{base}/recommend_batch", batched, c, args.seconds))
                print(size, c, entry[f"recommend_c{c}"], entry[f"batched_c{c}"], flush=True)
            entry[f"recommend_open_{int(args.rate)}rps"] = asyncio.run(
                open_loop(f"{base}/recommend", single, args.rate, args.seconds)
            )
            entry[f"batched_open_{int(args.rate)}rps"] = asyncio.run(
                open_loop(f"{base}/recommend_batch", batched, args.rate, args.seconds)
            )
            print(
                size, "open", entry[f"recommend_open_{int(args.rate)}rps"], entry[f"batched_open_{int(args.rate)}rps"]
            )
        finally:
            stop_server(proc)
        if size >= FAISS_MIN_ITEMS:
            entry["hnsw_vs_exact"] = hnsw_recall(size)
        results["sizes"][str(size)] = entry
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "result.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "result.md").write_text(render(results, args))
    print((args.out / "result.md").read_text())


def render(results: dict, args) -> str:
    lines = [
        "| catalogue | index | endpoint | concurrency or rate | req/s | p50 ms | p95 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size, entry in results["sizes"].items():
        for key, value in entry.items():
            if not isinstance(value, dict) or "requests" not in value:
                continue
            endpoint = "recommend_batch (batching on)" if key.startswith("batched") else "recommend"
            load = key.split("_")[-1]
            lines.append(
                f"| {int(size):,} | {entry['index']} | {endpoint} | {load} | {value['throughput_rps']} | "
                f"{value['p50_ms']} | {value['p95_ms']} | {value['p99_ms']} | {value['errors']} |"
            )
    recall = [
        f"{int(s):,}: recall@10 {e['hnsw_vs_exact']['recall@10']} (build {e['hnsw_vs_exact']['build_s']} s)"
        for s, e in results["sizes"].items()
        if "hnsw_vs_exact" in e
    ]
    return "\n".join([*lines, "", "HNSW vs exact: " + ("; ".join(recall) or "-"), ""])


if __name__ == "__main__":
    main()
