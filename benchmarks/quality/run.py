"""Quality benchmark: popularity, text and SASRec (and later HLLM) side by side under the HLLM protocol.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/quality/run.py --data ../shared/data/amazon-office-2014 \
        [--budget-minutes 30] [--models popularity,text,sasrec] [--cut 2014-02-06] [--out DIR]

The dataset goes through the validation gate (strict), then two splits are scored (see protocol.py):
leave-one-out (valid + test, full ranking over the catalogue, history masked, Recall/NDCG@5,10,50,200) and a
temporal cut for cold-start (each user's first event after the cut; metrics overall and over cold-item targets).
Writes ``result.json`` (all metrics, train times, parameter counts, configs, machine, command), ``result.md`` and
``curves/<split>-<model>.png`` to ``--out`` (default ``benchmarks/results/quality-<dataset>``); each model's
training artifacts (weights, checkpoints, metrics.jsonl) go to ``--work/<split>/<model>/`` (default
``runs/quality-<dataset>``, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from hllm_runner import MODEL_OVERRIDES, TRAIN_OVERRIDES
from protocol import BenchSplit, cold_split, loo_split, parse_cut
from runners import RUNNERS

from hllm.data.readers import read_raw
from hllm.data.schema import Dataset
from hllm.data.validation import validate_tables
from hllm.training.data import ItemVocab

logger = logging.getLogger("quality")

# Published or reference numbers on the same data and protocol, shown next to ours (docs/quality.md).
DEFAULT_CUTS = {"amazon-office-2014": "2014-02-06"}


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (any format read_raw accepts)")
    parser.add_argument("--budget-minutes", type=float, default=30.0, help="training budget per model and split")
    parser.add_argument("--models", default="popularity,text,sasrec", help=f"comma list of {sorted(RUNNERS)}")
    parser.add_argument("--out", type=Path, default=None, help="default benchmarks/results/quality-<dataset>")
    parser.add_argument("--cut", default=None, help="cold-start cut, YYYY-MM-DD or unix seconds")
    parser.add_argument("--cut-quantile", type=float, default=0.9, help="cut at this time quantile if no --cut")
    parser.add_argument("--splits", default="loo,cold", help="which splits to run: loo, cold or both")
    parser.add_argument("--work", type=Path, default=None, help="training runs; default runs/quality-<dataset>")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every trained model (init, data order, negatives)")
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in RUNNERS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; known: {sorted(RUNNERS)}")
    args.splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    if not set(args.splits) <= {"loo", "cold"} or not args.splits:
        parser.error("--splits must name loo and/or cold")
    args.out = args.out or Path("benchmarks/results") / f"quality-{args.data.resolve().name}"
    args.work = args.work or Path("runs") / f"quality-{args.data.resolve().name}"
    return args


def load_splits(
    data: Path, names: list[str], cut: str | None = None, cut_quantile: float = 0.9
) -> tuple[Dataset, ItemVocab, dict[str, BenchSplit]]:
    """The dataset as the strict validation gate accepts it, its vocabulary and the named splits (loo, cold).

    The cold split cuts at ``cut``, else at the dataset's entry in `DEFAULT_CUTS`, else at ``cut_quantile``.
    """
    report = validate_tables(read_raw(data), policy="strict")
    if not report.passed:
        raise SystemExit(f"{data} failed the validation gate: {report.reasons}")
    dataset = report.dataset
    vocab = ItemVocab.from_items(dataset.items)
    splits = {}
    if "loo" in names:
        splits["loo"], _ = loo_split(dataset, vocab)
    if "cold" in names:
        cut = cut if cut is not None else DEFAULT_CUTS.get(data.resolve().name)
        splits["cold"] = cold_split(dataset, vocab, parse_cut(dataset, cut, cut_quantile))
    return dataset, vocab, splits


def _command() -> str:
    """The command line as run, with the recipe overrides of the environment in front (they change the result)."""
    overrides = [name for name in (MODEL_OVERRIDES, TRAIN_OVERRIDES) if os.environ.get(name)]
    env = [f"{name}={shlex.quote(os.environ[name])}" for name in overrides]
    return " ".join([*env, Path(sys.executable).name, *map(shlex.quote, sys.argv)])


def _machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_at_start": list(os.getloadavg()),
    }


def _clean(value):
    """JSON-safe: NaN -> None, tensors -> lists."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _fmt(value, digits: int = 4) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def render_markdown(result: dict) -> str:
    """The summary table: one row per model."""
    lines = [
        f"# Quality on {result['dataset']}",
        "",
        f"Command: `{result['command']}`",
        "",
        "Leave-one-out, full ranking over all items, history masked (test split unless marked valid). "
        f"Cold-start: temporal cut at {(result.get('cold_split') or {}).get('cut_date', '-')}, each user's first "
        "event after it; `all` = every such user, `cold items` = targets first seen after the cut.",
        "",
        "| model | test R@10 | test N@10 | test R@200 | test N@200 | valid N@10 | cold-start R@10 (all) "
        "| cold-start R@10 (cold items) | train (encode) time | params |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in result["models"].items():
        loo, cold = runs.get("loo", {}), runs.get("cold", {})
        test, valid, cold_test = loo.get("metrics_test", {}), loo.get("metrics_valid", {}), cold.get("metrics_test", {})
        seconds = loo.get("train_seconds")
        lines.append(
            f"| {name} | {_fmt(test.get('recall@10'))} | {_fmt(test.get('ndcg@10'))} | {_fmt(test.get('recall@200'))} "
            f"| {_fmt(test.get('ndcg@200'))} | {_fmt(valid.get('ndcg@10'))} | {_fmt(cold_test.get('recall@10'))} "
            f"| {_fmt(cold_test.get('cold/recall@10'))} | {_fmt(seconds / 60, 1) + ' min' if seconds else '-'} "
            f"| {loo.get('params', cold.get('params', 0)):,} |"
        )
    info = result.get("cold_split") or {}
    if info:
        lines += [
            "",
            f"Cold-start split: {info['test_users']} test users, {info['test_cold_targets']} with a cold-item target; "
            f"{info['cold_items']} cold items; {info['train_interactions']} interactions before the cut.",
        ]
    lines += [
        "",
        f"Machine: {result['machine']['processor']}, {result['machine']['cpu_count']} cores "
        f"(load average at start {result['machine']['load_average_at_start'][0]:.1f}).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset, vocab, splits = load_splits(args.data, args.splits, args.cut, args.cut_quantile)
    if "cold" in splits:
        logger.info("cold-start split: %s", splits["cold"].info)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "dataset": args.data.resolve().name,
        "data": str(args.data),
        "fingerprint": dataset.fingerprint(),
        "command": _command(),
        "machine": _machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "budget_minutes": args.budget_minutes,
        "seed": args.seed,
        "protocol": "leave-one-out; full ranking over all items; history masked; pessimistic ties; max_seq_len 50",
        "loo_split": splits["loo"].info if "loo" in splits else None,
        "cold_split": splits["cold"].info if "cold" in splits else None,
        "models": {},
    }
    for name in args.models:
        for split_name, split in splits.items():
            logger.info("running %s on the %s split", name, split_name)
            run_dir = args.work / split_name / name
            run_dir.mkdir(parents=True, exist_ok=True)
            run = RUNNERS[name](dataset, split, vocab, args.budget_minutes, run_dir, seed=args.seed)
            result["models"].setdefault(name, {})[split_name] = run
            if (run_dir / "curve.png").exists():  # the training curve is small; checkpoints stay in --work
                (args.out / "curves").mkdir(exist_ok=True)
                shutil.copy(run_dir / "curve.png", args.out / "curves" / f"{split_name}-{name}.png")
            logger.info("%s/%s test: %s", name, split_name, {k: round(v, 4) for k, v in run["metrics_test"].items()})
            result["machine"]["load_average_at_end"] = list(os.getloadavg())
            (args.out / "result.json").write_text(json.dumps(_clean(result), indent=2) + "\n")
            (args.out / "result.md").write_text(render_markdown(result))
    print(render_markdown(result))


if __name__ == "__main__":
    main()
