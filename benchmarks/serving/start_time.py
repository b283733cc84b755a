"""Server start with a stored item index: time to ready, readiness gated on the index, PSS of two workers.

    python benchmarks/serving/index_recall.py ... --items 1000000 --kinds hnsw --keep /tmp/keep1m
    python benchmarks/serving/start_time.py --keep /tmp/keep1m --out benchmarks/results/index-start-1m.json

Takes the item index and vectors kept by ``index_recall.py --keep`` and exports a serving-shaped HLLM (cached
mode, the demo's 2x128 User LLM, 384-d backbone vectors: the model of ``benchmarks/serving/run.py``) whose item
vectors ARE those vectors (backbone vectors solved through the projection's pseudo-inverse), so the stored index
belongs to it; registers it with the index in a temporary BentoML store; starts two ``bentoml serve`` processes
(one worker each) on it at once and records, per process: seconds from start to ``/readyz`` 200, every
``/readyz`` answer before that, whether the worker had the index file mapped when it first answered 200, a
``/recommend`` answer, and the worker's ``/proc/<pid>/smaps_rollup`` (PSS: pages shared by both split).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[2]


def export_model(vectors: torch.Tensor, out: Path) -> Path:
    """A cached-mode HLLM whose (scoring) item vectors are ``vectors`` (unit rows; row 0 padding)."""
    from run import ITEM_LLM, USER_LLM

    from hllm.config import TrainConfig
    from hllm.models import HLLM, HLLMConfig
    from hllm.training.hllm_task import HLLMTask

    torch.manual_seed(0)
    config = HLLMConfig(
        item_backbone_config=ITEM_LLM, user_backbone_config=USER_LLM, item_pooling="mean", max_seq_len=50
    )
    model = HLLM(config)
    proj = model.item_llm.proj
    inverse = torch.linalg.pinv(proj.weight.detach().double()).T  # (D, 384): proj(cache) == vectors
    cache = torch.zeros(len(vectors), inverse.shape[1])
    for start in range(1, len(vectors), 100_000):
        block = vectors[start : start + 100_000].double() - proj.bias.detach().double()
        cache[start : start + len(block)] = (block @ inverse).float()
    ids = ["<pad>", *[f"item{i}" for i in range(len(vectors) - 1)]]
    HLLMTask(model, None, ids, TrainConfig(mode="cached"), None, cache=cache).export(out)
    (out / "popular_items.json").write_text(json.dumps(ids[1:1001]))
    return out


def descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout.split()
    kids = [int(p) for p in out]
    return kids + [g for k in kids for g in descendants(k)]


def mapped(pid: int, name: str) -> bool:
    try:
        return name in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def rollup(pid: int) -> dict:
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":")[0], line.split()[1]
        if key in ("Rss", "Pss", "Pss_Anon", "Pss_File", "Shared_Clean", "Private_Dirty"):
            fields[key + "_mib"] = round(int(value) / 1024, 1)
    return fields


def main() -> None:
    import bentoml
    import httpx
    from run import free_port

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, required=True, help="folder written by index_recall.py --keep")
    parser.add_argument("--deadline", type=float, default=600)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/index-start-1m.json"))
    args = parser.parse_args()

    vectors = torch.load(args.keep / "vectors.pt")
    meta = json.loads((args.keep / "item_index" / "index.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BENTOML_HOME"] = str(Path(tmp) / "bentoml")
        start = time.perf_counter()
        model_dir = export_model(vectors, Path(tmp) / "model")
        shutil.copytree(args.keep / "item_index", model_dir / "item_index")
        del vectors
        with bentoml.models.create("index-start") as saved:
            shutil.copytree(model_dir, saved.path, dirs_exist_ok=True)
        shutil.rmtree(model_dir)
        export_s = round(time.perf_counter() - start, 1)
        env = {**os.environ, "HLLM_MODEL": str(saved.tag), "HLLM_INDEX": "auto", "HLLM_FEAST_HOME": ""}
        servers = []
        began = time.monotonic()
        for n in range(2):
            port = free_port()
            log = Path(tmp) / f"server{n}.log"
            command = [sys.executable, "-m", "bentoml", "serve", "hllm_serving.service:HLLMService"]
            proc = subprocess.Popen(
                [*command, "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                cwd=REPO,
                stdout=log.open("w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            servers.append({"proc": proc, "port": port, "log": log, "answers": {}, "ready_s": None})
        try:
            while any(s["ready_s"] is None for s in servers) and time.monotonic() - began < args.deadline:
                for s in servers:
                    if s["ready_s"] is not None:
                        continue
                    if s["proc"].poll() is not None:
                        raise RuntimeError(f"server exited: {s['log'].read_text()[-3000:]}")
                    try:
                        status = str(httpx.get(f"http://127.0.0.1:{s['port']}/readyz", timeout=2).status_code)
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                    s["answers"][status] = s["answers"].get(status, 0) + 1
                    if status == "200":
                        s["ready_s"] = round(time.monotonic() - began, 1)
                        workers = descendants(s["proc"].pid)
                        s["worker"] = next((p for p in workers if mapped(p, "index.faiss")), None)
                        s["index_mapped_when_ready"] = s["worker"] is not None
                time.sleep(0.25)
            results = []
            for s in servers:
                body = {"history": ["item1", "item2", "item3"], "k": 10}
                answer = httpx.post(f"http://127.0.0.1:{s['port']}/recommend", json=body, timeout=30)
                results.append(
                    {
                        "ready_s": s["ready_s"],
                        "readyz_answers_before_ready": {k: v for k, v in s["answers"].items() if k != "200"},
                        "index_mapped_when_ready": s.get("index_mapped_when_ready"),
                        "recommend_status": answer.status_code,
                        "recommend_items": len(answer.json().get("items", [])) if answer.status_code == 200 else 0,
                        "worker_smaps": rollup(s["worker"]) if s.get("worker") else None,
                        "server_process_smaps": rollup(s["proc"].pid),
                    }
                )
        finally:
            for s in servers:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(s["proc"].pid, signal.SIGKILL)
                s["proc"].wait()
    report = {
        "command": " ".join(sys.argv),
        "items": meta["items"],
        "index": {"kind": meta["kind"], "params": meta["params"]},
        "model_export_s": export_s,
        "servers_started_together": 2,
        "loadavg": os.getloadavg(),
        "servers": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
