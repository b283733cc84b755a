"""``hllm config show``: the resolved run configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hllm.cli.common import _guarded, _run_config, app

config_app = typer.Typer(help="Inspect the run configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Run config [default: the demo's].")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="section.key=value, repeatable.")] = None,
) -> None:
    """Print the resolved run configuration (every section, every key) as YAML; exit 2 on an unknown or bad key."""
    run = _guarded(lambda: _run_config(config, overrides))
    typer.echo(  # plain text: rich would wrap long values and break the YAML
        "# hllm.max_seq_len and sasrec.max_seq_len are train.max_seq_len; the catalogue sizes are set when the\n"
        "# model is built. The model folder saves all of it: serving reads it from there.\n"
        + run.to_yaml(portable=False),
        nl=False,
    )
