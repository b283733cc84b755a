"""SASRec tuning log: train named configurations on the leave-one-out split and record every one.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/quality/tune.py --data ../shared/data/amazon-office-2014 \
        --trial NAME key=value ... [--budget-minutes 30] [--threads 1]

``key=value`` pairs override `runners.SASREC_MODEL` (hidden, num_layers, num_heads, dropout),
`runners.SASREC_TRAIN` (any `TrainConfig` field) or ``length_batching``. Each trial trains in
``runs/quality-<dataset>/tuning/<trial>/`` (git-ignored), then appends one JSON line (best validation metrics,
test metrics of the best-by-validation weights, time, epochs, machine load) to ``--out/tuning.jsonl`` and
re-renders ``--out/tuning.md``. Configurations are chosen on validation only; test is recorded to report it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import yaml
from protocol import loo_split
from runners import SASREC_MODEL, run_sasrec

from hllm.data.readers import read_raw
from hllm.data.validation import validate_tables
from hllm.training.data import ItemVocab

COLUMNS = ("hidden", "dropout", "lr", "batch_size", "weight_decay", "warmup_ratio", "epochs", "patience")


def _scalar(raw: str):
    """int, float (``2e-3`` included, which YAML 1.1 reads as text), else YAML (bools, null, text)."""
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return yaml.safe_load(raw)


def _overrides(pairs: list[str]) -> tuple[dict, dict, dict]:
    model, train, extra = {}, {}, {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        value = _scalar(raw)
        (model if key in SASREC_MODEL else extra if key == "length_batching" else train)[key] = value
    return model, train, extra


def render(records: list[dict]) -> str:
    lines = [
        "| trial | " + " | ".join(COLUMNS) + " | batching | select | best epoch / run | stopped | train min "
        "| valid N@10 | valid N@200 | test N@10 | test R@10 | test N@200 |",
        "|---|" + "---|" * (len(COLUMNS) + 10),
    ]
    for r in records:
        cfg = {**r["config"]["model"], **r["config"]["train"]}
        lines.append(
            f"| {r['trial']} | "
            + " | ".join(str(cfg.get(c)) for c in COLUMNS)
            + f" | {'length' if r['config'].get('length_batching') else 'random'} | {cfg['select_metric']} "
            f"| {r['config']['best_epoch']} / {r['config']['epochs_run']} | {r['config']['stopped']} "
            f"| {r['train_seconds'] / 60:.1f} | {r['metrics_valid']['ndcg@10']:.4f} "
            f"| {r['metrics_valid']['ndcg@200']:.4f} "
            f"| {r['metrics_test']['ndcg@10']:.4f} | {r['metrics_test']['recall@10']:.4f} "
            f"| {r['metrics_test']['ndcg@200']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--trial", required=True, help="a name for this configuration")
    parser.add_argument("overrides", nargs="*", help="key=value")
    parser.add_argument("--budget-minutes", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true", help="score the trial's trained model, do not train")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or Path("benchmarks/results") / f"quality-{args.data.resolve().name}"
    model_kw, train_kw, extra = _overrides(args.overrides)
    dataset = validate_tables(read_raw(args.data), policy="strict").dataset
    vocab = ItemVocab.from_items(dataset.items)
    split, _ = loo_split(dataset, vocab)
    load = os.getloadavg()[0]
    run = run_sasrec(
        dataset,
        split,
        vocab,
        args.budget_minutes,
        Path("runs") / f"quality-{args.data.resolve().name}" / "tuning" / args.trial,
        model_overrides=model_kw,
        train_overrides=train_kw,
        reuse=args.reuse,
        **extra,
    )
    record = {
        "trial": args.trial,
        "overrides": args.overrides,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "torch_threads": torch.get_num_threads(),
        "load_average": [load, os.getloadavg()[0]],
        **run,
    }
    out.mkdir(parents=True, exist_ok=True)
    with (out / "tuning.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")
    records = [json.loads(line) for line in (out / "tuning.jsonl").read_text().splitlines() if line.strip()]
    (out / "tuning.md").write_text(render(records))
    print(render([record]))


if __name__ == "__main__":
    main()
