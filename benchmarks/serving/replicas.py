"""Replica benchmark: two real `bentoml serve` processes on one store, loopback only, bounded.

    .venv/bin/python benchmarks/serving/replicas.py [--stores sqlite,redis] [--upserts 20] [--seconds 10] \
        [--out benchmarks/results/serving-replicas.json]

Per store (the embedded SQLite Feast home; a throwaway ``redis-server`` with the production Feast config):
trains a tiny HLLM on the synthetic data (an Item LLM, so upserts embed text), starts two replicas and measures

- upsert visibility: the time from replica A's 200 for ``/upsert_items`` to the first 200 of ``/similar_items``
  for that id on replica B (polled every 20 ms), over ``--upserts`` items: p50 and max;
- event throughput: ``--clients`` closed-loop clients sending ``/events`` alternately to A and B for ``--seconds``:
  events/s, p50/p99 latency, errors, and whether the log and the online rows hold every acknowledged event.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
for _key, _value in {"BENTOML_DO_NOT_TRACK": "true", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}.items():
    os.environ.setdefault(_key, _value)
os.environ.setdefault("FEAST_USAGE", "False")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, path: str, body: dict) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(), {"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def start_replica(tag: str, env: dict, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    command = [sys.executable, "-m", "bentoml", "serve", "hllm_serving.service:HLLMService", "--host", "127.0.0.1"]
    proc = subprocess.Popen(
        [*command, "--port", str(port)],
        env={**os.environ, **env, "HLLM_MODEL": tag},
        cwd=REPO,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"replica not ready: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def upsert_visibility(a: int, b: int, count: int) -> list[float]:
    delays = []
    for j in range(count):
        item = {"item_id": f"bench-{j}", "title": f"benchmark item {j}", "tag": "bench", "description": "new"}
        if post(a, "/upsert_items", {"items": [item]}) != 200:
            raise RuntimeError("upsert failed")
        acked = time.perf_counter()
        while post(b, "/similar_items", {"item_id": item["item_id"], "k": 1}) != 200:
            if time.perf_counter() - acked > 30:
                raise RuntimeError(f"{item['item_id']} not visible on replica B after 30 s")
            time.sleep(0.02)
        delays.append(time.perf_counter() - acked)
        time.sleep(0.1 * (j % 5))  # spread the upserts over the polling period
    return delays


def event_load(ports: list[int], items: list[str], clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    acked: list[tuple[str, str, int]] = []
    errors = [0]
    guard = threading.Lock()
    end = time.monotonic() + seconds

    def client(c: int) -> None:
        j = 0
        while time.monotonic() < end:
            event = (f"bench-user-{(c + j) % 20}", items[(c * 7 + j) % len(items)], 1_000 + j)
            began = time.perf_counter()
            status = post(ports[j % 2], "/events", dict(zip(("user_id", "item_id", "timestamp"), event, strict=True)))
            with guard:
                if status == 200:
                    latencies.append(time.perf_counter() - began)
                    acked.append(event)
                else:
                    errors[0] += 1
            j += 1

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    ms = np.array(latencies) * 1000
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "events": len(acked),
        "events_per_s": round(len(acked) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "errors": errors[0],
        "acked": acked,
    }


def check_kept(home: Path, acked: list[tuple[str, str, int]]) -> bool:
    """Every acknowledged event is in the log, and each online row counts the whole log."""
    from hllm_feature_repo.store import online_histories, online_log, open_store

    store = open_store(home)
    log = online_log(store)
    users = sorted({e[0] for e in acked})
    for user, row in zip(users, online_histories(store, users), strict=True):
        logged = log.window(user, 1_000_000)
        pairs = set(zip(logged.item_ids, logged.timestamps, strict=True))
        mine = [(i, t) for u, i, t in acked if u == user]
        if not set(mine) <= pairs or row["length"] != logged.length or row["item_ids"] != logged.item_ids[-50:]:
            return False
    return True


def run_store(kind: str, tag: str, dataset, root: Path, args) -> dict:
    from hllm_feature_repo.store import sync

    folder = root / kind
    env = {"HLLM_FEAST_HOME": str(folder / "feast"), "HLLM_CATALOGUE_POLL_S": str(args.poll)}
    redis = None
    if kind == "redis":
        port = free_port()
        (folder / "redis").mkdir(parents=True)
        redis = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=folder / "redis",
            stdout=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        env |= {
            "FEAST_FS_YAML_FILE_PATH": str(REPO / "feature_repo" / "feature_store.production.yaml"),
            "HLLM_FEAST_REDIS": f"127.0.0.1:{port}",
            "HLLM_FEAST_REGISTRY_URL": f"sqlite:///{folder / 'registry.db'}",
        }
    saved = dict(os.environ)
    os.environ.update(env)
    replicas = []
    try:
        sync(dataset, folder / "feast", history_length=50)
        replicas = [start_replica(tag, env, folder / f"replica-{j}.txt") for j in range(2)]
        ports = [port for _, port in replicas]
        delays = upsert_visibility(ports[0], ports[1], args.upserts)
        load = event_load(ports, sorted(dataset.items["item_id"]), args.clients, args.seconds)
        kept = check_kept(folder / "feast", load.pop("acked"))
    finally:
        for proc, _ in replicas:
            stop(proc)
        os.environ.clear()
        os.environ.update(saved)
        if redis is not None:
            redis.terminate()
            redis.wait()
    return {
        "store": kind,
        "poll_interval_s": args.poll,
        "upsert_visibility_s": {
            "count": len(delays),
            "p50": round(float(np.median(delays)), 3),
            "max": round(float(np.max(delays)), 3),
        },
        "events": {**load, "every_acknowledged_event_kept": kept},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default="sqlite,redis")
    parser.add_argument("--upserts", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--poll", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "serving-replicas.json")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hllm-replicas-"))
    os.environ["BENTOML_HOME"] = str(root / "bentoml")
    sys.path.insert(0, str(REPO))
    import bentoml

    from hllm.data.synth import SynthConfig, generate
    from hllm.training.build import load_run_config, run_training

    sys.path.insert(0, str(REPO / "tests"))
    from testdata import tiny_run_config

    dataset = generate(SynthConfig(seed=5, n_users=120, n_items=80))
    run_training(dataset, load_run_config(text=tiny_run_config(epochs=1)), root / "run", progress=False)
    with bentoml.models.create("replicas-bench") as saved:
        shutil.copytree(root / "run" / "model", saved.path, dirs_exist_ok=True)
    results = [run_store(kind, str(saved.tag), dataset, root, args) for kind in args.stores.split(",")]
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "model": "tiny HLLM on the synthetic data (80 items), 2 replicas x 1 worker, loopback",
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
