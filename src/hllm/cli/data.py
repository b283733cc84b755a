"""``hllm data``: read, validate, synthesise and download datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from hllm.cli.common import (
    ConfigPath,
    Fmt,
    Overrides,
    Policy,
    _default_report_dir,
    _gate,
    _guarded,
    app,
    console,
    out,
)

data_app = typer.Typer(help="Read, validate, synthesise and download datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("validate")
def data_validate(
    path: Annotated[Path, typer.Argument(help="Dataset folder (any supported format).")],
    policy: Policy = "strict",
    fmt: Fmt = "auto",
    name: Annotated[str | None, typer.Option(help="Which dataset/<name>.csv in the official folder form.")] = None,
    report_dir: Annotated[Path | None, typer.Option(help="Where reports go \\[default: runs/validate/<name>].")] = None,
    config: ConfigPath = None,
    overrides: Overrides = None,
) -> None:
    """Run the validation gate on PATH; exit 1 when it fails, 2 when PATH cannot be read."""
    report = _guarded(
        lambda: _gate(path, fmt, name, policy, report_dir or _default_report_dir(path), config, overrides)
    )
    _print_report(report)


@data_app.command("prepare")
def data_prepare(
    src: Annotated[Path, typer.Argument(help="Source dataset folder.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the Parquet tables.")],
    fmt: Fmt = "auto",
    name: Annotated[str | None, typer.Option(help="Which dataset/<name>.csv in the official folder form.")] = None,
    policy: Policy = "strict",
    config: ConfigPath = None,
    overrides: Overrides = None,
) -> None:
    """Read SRC, validate it and write canonical Parquet tables (+ validation reports) to --out."""

    def action():
        report = _gate(src, fmt, name, policy, out_dir / "validation", config, overrides)
        report.dataset.save(out_dir)
        return report

    report = _guarded(action)
    _print_report(report)
    out.print(f"wrote {out_dir / 'interactions.parquet'} and {out_dir / 'items.parquet'}")


def _print_report(report) -> None:
    counts = report.counts
    for table in ("interactions", "items"):
        c = counts[table]
        out.print(f"{table}: {c['accepted']:,} accepted, {c['rejected']:,} rejected of {c['read']:,}")
    for check in report.failed_checks:
        out.print(escape(f"  quarantined {check.unexpected_count} row(s): [{check.column}] {check.description}"))
    if report.report_dir:
        out.print(f"summary: {Path(report.report_dir) / 'summary.json'}")
        out.print(f"data docs: {Path(report.report_dir) / 'data_docs' / 'index.html'}")
    out.print(f"[green]validation passed[/green] ({report.policy}); fingerprint {report.dataset.fingerprint()}")


@data_app.command("synth")
def data_synth(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same dataset.")] = 0,
    users: Annotated[int | None, typer.Option(help="Number of users.")] = None,
    items: Annotated[int | None, typer.Option(help="Number of items.")] = None,
    as_parquet: Annotated[
        bool, typer.Option("--parquet", help="Write Parquet instead of the HLLM CSV layout.")
    ] = False,
) -> None:
    """Write the deterministic synthetic demo dataset (HLLM CSV layout by default)."""
    from hllm.data.synth import SynthConfig, generate

    def action():
        kwargs = {"seed": seed}
        if users is not None:
            kwargs["n_users"] = users
        if items is not None:
            kwargs["n_items"] = items
        dataset = generate(SynthConfig(**kwargs))
        return dataset.save(out_dir) if as_parquet else dataset.save_csv(out_dir), dataset

    folder, dataset = _guarded(action)
    out.print(
        f"wrote {dataset.num_users:,} users, {dataset.num_items:,} items, "
        f"{len(dataset.interactions):,} interactions to {folder}"
    )


@data_app.command("download")
def data_download(
    name: Annotated[str, typer.Argument(help="movielens-1m | movielens-25m | movielens-100k")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Download folder.")] = Path("data/raw"),
) -> None:
    """Download a public dataset from its publisher, verify its checksum and unpack it."""
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    from hllm.data.download import download_dataset

    with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(), console=console) as bar:
        task = bar.add_task(name, total=None)

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        folder = _guarded(lambda: download_dataset(name, out_dir, progress=progress))
    out.print(f"unpacked to {folder}; next: hllm data prepare {folder} --out data/{name}")
