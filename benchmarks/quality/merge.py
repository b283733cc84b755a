"""Merge the ``result.json`` of several quality runs on the same dataset into one result (e.g. the ``loo`` and
``cold`` splits run as two processes, or a model added later).

    .venv/bin/python benchmarks/quality/merge.py benchmarks/results/quality-office-loo \
        benchmarks/results/quality-office-cold --out benchmarks/results/quality-amazon-office-2014

Later inputs win where two hold the same model and split. Refuses inputs whose dataset fingerprints differ.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from run import render_markdown


def merge(results: list[dict]) -> dict:
    """One result: the first input's header, every input's models and split infos, every command."""
    fingerprints = {r["fingerprint"] for r in results}
    if len(fingerprints) != 1:
        raise SystemExit(f"the inputs come from different datasets (fingerprints {sorted(fingerprints)})")
    merged = {**results[0], "models": {}, "commands": [r["command"] for r in results]}
    for result in results:
        for key in ("loo_split", "cold_split"):
            merged[key] = result.get(key) or merged.get(key)
        for name, runs in result["models"].items():
            merged["models"].setdefault(name, {}).update(runs)
    merged["machines"] = [r["machine"] for r in results]
    merged["command"] = " ; ".join(merged["commands"])
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="folders holding result.json")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    merged = merge([json.loads((p / "result.json").read_text()) for p in args.inputs])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "result.json").write_text(json.dumps(merged, indent=2) + "\n")
    (args.out / "result.md").write_text(render_markdown(merged))
    print(render_markdown(merged))


if __name__ == "__main__":
    main()
