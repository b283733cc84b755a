"""GPU recipe: HLLM trained `end_to_end` (both LLMs) on amazon-office-2014 with bf16, DeepSpeed ZeRO-2 and
gradient checkpointing, in one command, sized to finish within 4 minutes on one H200-class GPU.

    python benchmarks/quality/gpu_bundle.py      # here: assembles runs/gpu-bundle (< 64 MiB, printed)
    sh runs/gpu-bundle/run.sh [OUT_DIR]          # there: installs the bundled wheels, runs this file

Nothing is downloaded at run time: the bundle brings an fp16 copy of all-MiniLM-L6-v2 (the Item LLM), the
Office data as validated here by the strict gate (Parquet, checked against its fingerprint), the DeepSpeed wheel
and its missing dependencies, and the code. Training is `hllm.training.trainer.train`, the one training path:
its torch AdamW is handed to ``deepspeed.initialize(optimizer=...)``, so no DeepSpeed op is JIT-built.

The recipe (`GPU_MODEL`, `GPU_TRAIN`) is the paper's shape at MiniLM scale: the Item LLM is trained through
its learnable ``[ITEM]`` slot behind the instruction prompt; the User LLM, id vectors and loss are the cached CPU
recipe's (`hllm_runner.py`). Training stops at ``--minutes`` (default 2.5) and the best-by-validation weights
are scored on valid and test (leave-one-out, full ranking, history masked: protocol.py). Writes
``result.json`` / ``result.md`` to ``--out``; the run folder (weights, checkpoints, metrics.jsonl) to
``--out/run``. The settings are not tuned (no GPU has been lent to measure them): ``--set train.lr=1e-4``
changes one.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
from hllm_runner import USER_LLM
from protocol import loo_split, score

from hllm.config import deepspeed_config, parse_scalar, run_config_from_dict

MAX_SEQ_LEN = 50
BUNDLE_MANIFEST = "bundle.json"
GPU_MODEL = {
    "item_pooling": "item_token",  # the paper's learnable [ITEM] slot: it trains in end_to_end mode
    "text_separator": " ",
    "max_text_tokens": 64,
    "use_item_id_embedding": True,
    "item_id_in_target": True,
    "user_backbone_config": USER_LLM,
}
GPU_TRAIN = {
    "model": "hllm",
    "mode": "end_to_end",
    "precision": "bf16",
    "zero_stage": 2,
    "gradient_checkpointing": True,
    "epochs": 12,
    "batch_size": 128,
    "lr": 3e-4,
    "num_negatives": 4096,
    "eval_every": 1,
    "patience": 4,
    "select_metric": "ndcg@10",
    "max_seq_len": MAX_SEQ_LEN,
    "eval_batch_size": 1024,
    "max_minutes": 2.5,
}


def recipe(item_llm: str | Path, overrides: list[str] | None = None, minutes: float | None = None):
    """The recipe's `RunConfig` with ``item_llm`` (a local checkpoint folder) as Item LLM.

    Args:
        overrides: ``section.key=value`` strings applied on top (``train.lr=1e-4``).
        minutes: training wall-clock budget (``train.max_minutes``).
    """
    values = {"train": dict(GPU_TRAIN), "hllm": {**copy.deepcopy(GPU_MODEL), "item_backbone": str(item_llm)}}
    if minutes is not None:
        values["train"]["max_minutes"] = minutes
    for item in overrides or []:
        key, _, value = item.partition("=")
        section, _, name = key.strip().partition(".")
        if not name or section not in values:
            raise ValueError(f"--set {item!r}: expected train.KEY=VALUE or hllm.KEY=VALUE")
        values[section][name] = parse_scalar(value)
    return run_config_from_dict(values)


def recipe_deepspeed_config(run, total_steps: int = 100) -> dict:
    """The DeepSpeed JSON the trainer generates for this recipe (bf16 on: the recipe asks for it)."""
    return deepspeed_config(run.train, total_steps, bf16=run.train.precision == "bf16")


def load_bundle_data(bundle: Path):
    """The Office dataset as validated when the bundle was built; its fingerprint must match the manifest's."""
    from hllm.data.schema import load_dataset

    manifest = json.loads((bundle / BUNDLE_MANIFEST).read_text())
    dataset = load_dataset(bundle / "data")
    if dataset.fingerprint() != manifest["data"]["fingerprint"]:
        raise SystemExit(
            f"{bundle / 'data'}: fingerprint {dataset.fingerprint()} differs from the manifest's "
            f"{manifest['data']['fingerprint']}: rebuild the bundle"
        )
    return dataset, manifest


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True, help="folder written by gpu_bundle.py")
    parser.add_argument("--out", type=Path, required=True, help="result.json, result.md and run/ go here")
    parser.add_argument("--minutes", type=float, default=None, help="training budget (default: the recipe's)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="recipe override")
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (checks only: slow, fp32 math)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    import logging

    from hllm.models.recommender import load_recommender
    from hllm.training.build import build_task
    from hllm.training.data import ItemVocab
    from hllm.training.trainer import train

    args = _args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    started = time.perf_counter()
    if not torch.cuda.is_available() and not args.allow_cpu:
        raise SystemExit("no CUDA device: this recipe is for a GPU (--allow-cpu runs it anyway, for checks)")
    dataset, manifest = load_bundle_data(args.bundle)
    vocab = ItemVocab.from_items(dataset.items)
    split, _ = loo_split(dataset, vocab)
    run = recipe(args.bundle / "minilm", args.set, args.minutes)
    torch.manual_seed(run.train.seed)
    task = build_task(run, dataset, vocab)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    setup_seconds = time.perf_counter() - started
    result = train(task, split.train, split.valid, run.train, args.out / "run", show_progress=False)
    best = load_recommender(args.out / "run" / "model")
    if torch.cuda.is_available():
        best.model.to("cuda")
    valid, test = score(best, split, MAX_SEQ_LEN)
    report = {
        "recipe": "HLLM end_to_end, bf16, DeepSpeed ZeRO-2, gradient checkpointing, torch AdamW",
        "dataset": manifest["data"],
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "metrics_valid": valid,
        "metrics_test": test,
        "setup_seconds": round(setup_seconds, 1),
        "train_seconds": round(result.elapsed_s, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "seconds_per_epoch": round(result.elapsed_s / max(result.epochs_run, 1), 1),
        **{k: getattr(result, k) for k in ("best_epoch", "epochs_run", "steps", "stopped")},
        "params": sum(p.numel() for p in best.model.parameters()),
        "deepspeed_config": json.loads((args.out / "run" / "deepspeed_config.json").read_text()),
        "run_config": run.to_dict(portable=True),
        "machine": {
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
            if torch.cuda.is_available()
            else None,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "result.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (args.out / "result.md").write_text(render_markdown(report))
    print(render_markdown(report))
    return report


def render_markdown(report: dict) -> str:
    test, valid = report["metrics_test"], report["metrics_valid"]
    return (
        f"# {report['recipe']}\n\n"
        f"Data: {report['dataset']['name']} (fingerprint {report['dataset']['fingerprint']}); "
        f"GPU: {report['machine']['gpu']}; peak GPU memory {report['machine']['peak_gpu_memory_gib']} GiB.\n\n"
        "| test R@10 | test N@10 | test R@200 | valid N@10 | best epoch / run | steps | s/epoch | train s | total s |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
        f"| {test['recall@10']:.4f} | {test['ndcg@10']:.4f} | {test['recall@200']:.4f} | {valid['ndcg@10']:.4f} "
        f"| {report['best_epoch']} / {report['epochs_run']} ({report['stopped']}) | {report['steps']} "
        f"| {report['seconds_per_epoch']} | {report['train_seconds']} | {report['total_seconds']} |\n"
    )


if __name__ == "__main__":
    main()
    sys.exit(0)
