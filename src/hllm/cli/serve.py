"""``hllm serve``: a registered model over HTTP (BentoML)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from hllm.cli.common import EXIT_BAD_INPUT, _guarded, _run_config, app, console


@app.command("serve")
def serve(
    model: Annotated[str, typer.Option(help="BentoML model tag [default: the latest registered].")] = "hllm:latest",
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 3000,
    feast_home: Annotated[
        Path | None, typer.Option(help="Feast data [default: the one the model was trained with].")
    ] = None,
    request_log: Annotated[Path | None, typer.Option(help="JSONL request log [default: serving.request_log].")] = None,
    index: Annotated[str | None, typer.Option(help="auto | exact | faiss [default: serving.index].")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Run config (its serving: section).")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="[serving.]key=value, repeatable.")] = None,
) -> None:
    """Serve a registered model over HTTP (BentoML): recommend, similar_items, upsert_items, events, /metrics."""
    import dataclasses

    import bentoml

    flags = {"index": index, "request_log": str(request_log) if request_log else None}
    serving = _guarded(
        lambda: dataclasses.replace(
            _run_config(config, overrides, bare_section="serving").serving,
            **{k: v for k, v in flags.items() if v is not None},
        )
    )

    try:
        saved = bentoml.models.get(model)
    except bentoml.exceptions.NotFound:
        store = os.environ.get("BENTOML_HOME", "~/bentoml")
        console.print(f"[red]error:[/red] no model '{model}' in the BentoML store ({store}); run `hllm run` first")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    try:  # fail here, with the cause, rather than in a server that retries its worker forever
        from hllm.predictor import Predictor

        Predictor.load(saved.path)
    except Exception as exc:
        console.print(f"[red]error:[/red] cannot load model '{saved.tag}' ({saved.path}): {escape(str(exc))}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    home = feast_home or saved.info.metadata.get("feast_home") or ""
    env = {**os.environ, **serving.to_env(), "HLLM_MODEL": str(saved.tag), "HLLM_FEAST_HOME": str(home)}
    console.print(f"serving {saved.tag} on http://{host}:{port} (docs: /docs, health: /readyz, metrics: /metrics)")
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "hllm_serving.service:HLLMService",
        "--host",
        host,
        "--port",
        str(port),
    ]
    os.execvpe(command[0], command, env)  # the server becomes this process: signals reach it (PID 1 in a pod)
