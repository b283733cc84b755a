"""Benchmark: read + validate throughput of the data gate, against plain pandas.read_csv in the same run.

    .venv/bin/python benchmarks/data_gate.py [--scale 20] [--out benchmarks/results]

Datasets: ../shared/data/amazon-office-2014 as is, and the same data tiled ``--scale`` times with renamed users
(about 1M interactions at 20x). Writes ``data_gate.json`` and ``data_gate.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from hllm.data.readers import read_raw
from hllm.data.validation import validate_tables

OFFICE = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon-office-2014"


def _tile(src: Path, scale: int, dst: Path) -> Path:
    frame = pd.read_csv(src / "interactions.csv", dtype=str)
    copies = [frame.assign(user_id=frame["user_id"] + f"_{k}") for k in range(scale)]
    dst.mkdir(parents=True, exist_ok=True)
    pd.concat(copies).to_csv(dst / "interactions.csv", index=False)
    (dst / "items.csv").write_bytes((src / "items.csv").read_bytes())
    return dst


def _measure(src: Path) -> dict:
    started = time.perf_counter()
    pd.read_csv(src / "interactions.csv", dtype=str)
    pd.read_csv(src / "items.csv", dtype=str)
    baseline = time.perf_counter() - started
    started = time.perf_counter()
    raw = read_raw(src)
    read = time.perf_counter() - started
    started = time.perf_counter()
    report = validate_tables(raw, policy="strict")
    validate = time.perf_counter() - started
    rows = len(raw.interactions)
    return {
        "interactions": rows,
        "baseline_pandas_read_s": round(baseline, 3),
        "read_s": round(read, 3),
        "validate_s": round(validate, 3),
        "rows_per_s": int(rows / (read + validate)),
        "passed": report.passed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    if not OFFICE.is_dir():
        raise SystemExit(f"{OFFICE} is absent: this benchmark needs ../shared/data")
    results = {"office": _measure(OFFICE)}
    with tempfile.TemporaryDirectory() as tmp:
        results[f"office_x{args.scale}"] = _measure(_tile(OFFICE, args.scale, Path(tmp)))
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    results["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "data_gate.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "| dataset | interactions | pandas read (baseline) s | read s | validate s | rows/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if isinstance(r, dict):
            lines.append(
                f"| {name} | {r['interactions']:,} | {r['baseline_pandas_read_s']} | {r['read_s']} | "
                f"{r['validate_s']} | {r['rows_per_s']:,} |"
            )
    (args.out / "data_gate.md").write_text("\n".join(lines) + f"\n\npeak RSS {results['peak_rss_mb']} MB\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
