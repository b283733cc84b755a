"""Mean and spread over seeds: one table from several quality runs of the same models on the same dataset.

    .venv/bin/python benchmarks/quality/seeds.py benchmarks/results/quality-ml-small/s0 \
        benchmarks/results/quality-ml-small/s1 benchmarks/results/quality-ml-small/s2 \
        --out benchmarks/results/quality-ml-small

Each input is a folder holding the ``result.json`` of one `run.py --seed N` call. Writes ``seeds.json`` (every
metric per model, split and seed, with mean and sample standard deviation) and ``seeds.md`` to ``--out``. Refuses
inputs whose dataset fingerprints differ, or that hold the same model with the same seed twice (one seed's
models may come from several runs, e.g. ``--models sasrec,hllm`` and ``--models hllm-partial``).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

# The columns of the table: (split, metrics part, metric key, header).
COLUMNS = (
    ("loo", "metrics_valid", "ndcg@10", "valid N@10"),
    ("loo", "metrics_test", "ndcg@10", "test N@10"),
    ("loo", "metrics_test", "recall@10", "test R@10"),
    ("loo", "metrics_test", "ndcg@200", "test N@200"),
    ("cold", "metrics_test", "recall@10", "cold-cut R@10 (all)"),
    ("cold", "metrics_test", "cold/recall@10", "cold items R@10"),
    ("cold", "metrics_test", "cold/recall@50", "cold items R@50"),
)


def summarise(results: list[dict]) -> dict:
    """Per model and column: the value of every seed, their mean and standard deviation (None if one seed)."""
    if len({r["fingerprint"] for r in results}) != 1:
        raise SystemExit("the inputs come from different datasets (their fingerprints differ)")
    models: dict[str, dict] = {}
    for result in results:
        seed = result.get("seed", 0)
        for name, runs in result["models"].items():
            entry = models.setdefault(name, {"seeds": [], "columns": {}, "train_minutes": []})
            if seed in entry["seeds"]:
                raise SystemExit(f"the inputs repeat seed {seed} of {name}")
            entry["seeds"].append(seed)
            minutes = [run["train_seconds"] / 60 for run in runs.values() if run.get("train_seconds") is not None]
            entry["train_minutes"].append(round(sum(minutes), 2))
            for split, part, key, header in COLUMNS:
                value = runs.get(split, {}).get(part, {}).get(key)
                if value is not None:
                    entry["columns"].setdefault(header, {})[seed] = value
    for entry in models.values():
        for header, values in list(entry["columns"].items()):
            numbers = list(values.values())
            entry["columns"][header] = {
                "per_seed": values,
                "mean": statistics.fmean(numbers),
                "std": statistics.stdev(numbers) if len(numbers) > 1 else None,
                "n": len(numbers),
            }
    return {"dataset": results[0]["dataset"], "commands": [r["command"] for r in results], "models": models}


def render(summary: dict) -> str:
    headers = [header for _, _, _, header in COLUMNS]
    present = [h for h in headers if any(h in m["columns"] for m in summary["models"].values())]
    lines = [
        f"# {summary['dataset']}: mean +- standard deviation over seeds",
        "",
        "| model | seeds | " + " | ".join(present) + " | train min (per seed) |",
        "|---|---|" + "---|" * len(present) + "---|",
    ]
    for name, entry in summary["models"].items():
        cells = []
        for header in present:
            column = entry["columns"].get(header)
            if column is None:
                cells.append("-")
            elif column["std"] is None:
                cells.append(f"{column['mean']:.4f}")
            else:
                cells.append(f"{column['mean']:.4f} +- {column['std']:.4f}")
        minutes = ", ".join(f"{m:.1f}" for m in entry["train_minutes"])
        seeds = ",".join(str(s) for s in entry["seeds"])
        lines.append(f"| {name} | {seeds} | " + " | ".join(cells) + f" | {minutes} |")
    lines += ["", "Commands:", "", *[f"- `{command}`" for command in summary["commands"]]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="folders holding result.json, one per seed")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    summary = summarise([json.loads((path / "result.json").read_text()) for path in args.inputs])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "seeds.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "seeds.md").write_text(render(summary))
    print(render(summary))


if __name__ == "__main__":
    main()
