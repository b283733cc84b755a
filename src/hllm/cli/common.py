"""What every command group shares: the app, consoles, exit codes, logging setup and error handling."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from hllm import __version__

app = typer.Typer(help="HLLM: train, evaluate and serve a hierarchical LLM recommender.", no_args_is_help=True)
console = Console(stderr=True)
out = Console()
logger = logging.getLogger("hllm")
T = TypeVar("T")

# Exit codes: 1 = the data was read but the validation gate rejected it; 2 = unusable input or arguments.
EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_GATE_REFUSED = 3  # hllm run: the promotion gate refused the trained model
EXIT_DRIFT = 4  # hllm drift check: the current window drifted from the reference
_TELEMETRY_OFF = {
    "GX_ANALYTICS_ENABLED": "false",
    "BENTOML_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "1",
    "FEAST_USAGE": "False",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}

Policy = Annotated[str, typer.Option(help="strict: any failed expectation fails; quarantine: set bad rows aside.")]
Fmt = Annotated[str, typer.Option("--format", "-f", help="auto | hllm | movielens | parquet")]
ConfigPath = Annotated[
    Path | None, typer.Option("--config", "-c", help="Run config YAML (its data: section) [default: the demo's].")
]
Overrides = Annotated[list[str] | None, typer.Option("--set", help="[data.]key=value override, repeatable.")]


def _print_version(value: bool) -> None:
    if value:
        out.print(__version__)
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Configure logging once and turn off third-party usage telemetry (unless the user set it)."""
    for key, value in _TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_quiet_third_parties)


_NOISY = ("great_expectations", "urllib3", "filelock", "matplotlib", "DeepSpeed", "deepspeed")


def _quiet_third_parties(record: logging.LogRecord) -> bool:
    """Drop third-party INFO chatter; a filter on the handler, since libraries reset their own logger levels."""
    return record.levelno >= logging.WARNING or not record.name.startswith(_NOISY)


def _guarded(action: Callable[[], T]) -> T:
    """Run ``action``; turn data and config errors into a clear message and an exit code, never a traceback."""
    from hllm.data.schema import DataError
    from hllm.data.validation import ValidationFailed

    try:
        return action()
    except ValidationFailed as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_GATE_FAILED) from None
    except (DataError, ValueError, OSError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _run_config(config: Path | None, overrides: list[str] | None, bare_section: str = "train"):  # -> RunConfig
    """The run configuration every command reads: ``config`` (default: the packaged demo) plus ``--set`` values."""
    from importlib.resources import files

    from hllm.config import load_run_config

    path = config or files("hllm") / "configs" / "demo.yaml"
    return load_run_config(path, overrides, bare_section=bare_section)


def _data_config(config: Path | None, overrides: list[str] | None):  # -> DataConfig
    return _run_config(config, overrides, bare_section="data").data


def _default_report_dir(src: Path) -> Path:
    return Path("runs") / "validate" / (src.resolve().name or "dataset")


def _load_validated(path: Path):
    """A prepared folder (``hllm data prepare``) as is; any other source through the strict gate."""
    from hllm.data.schema import METADATA_FILE, load_dataset

    if (path / METADATA_FILE).is_file():
        return load_dataset(path)
    return _gate(path, "auto", None, "strict", _default_report_dir(path), None, None).dataset


def _gate(src, fmt, name, policy, report_dir, config, overrides):
    """Read ``src`` and run the validation gate on it (raises on failure)."""
    from hllm.data.readers import read_raw
    from hllm.data.schema import DataError
    from hllm.data.validation import POLICIES, require_pass, validate_tables

    if policy not in POLICIES:
        raise DataError(f"unknown policy '{policy}', expected one of {list(POLICIES)}")
    data_config = _data_config(config, overrides)
    raw = read_raw(src, fmt, name=name)
    console.print(f"read {len(raw.interactions):,} interactions and {len(raw.items):,} items ({raw.format})")
    report = validate_tables(raw, data_config, policy=policy, report_dir=report_dir)
    require_pass(report)
    return report
