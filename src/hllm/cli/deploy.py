"""``hllm deploy``: render (and validate offline) the Kubernetes manifests of a rollout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hllm.cli.common import _guarded, app, console, out

deploy_app = typer.Typer(help="Render Kubernetes manifests for rollouts.", no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")


@deploy_app.command("canary")
def deploy_canary(
    image: Annotated[str, typer.Option(help="The canary image, with an explicit tag or digest.")],
    weight: Annotated[int, typer.Option(help="Percent of traffic to the canary (0-100).")] = 10,
    model: Annotated[str | None, typer.Option(help="BentoML model tag the canary serves.")] = None,
    stable_model: Annotated[str | None, typer.Option(help="BentoML model tag the stable version serves.")] = None,
    output: Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of stdout.")] = None,
) -> None:
    """Render the canary overlay (stable + canary Deployments, Istio traffic split), validated offline."""
    from hllm.rollout import render_canary

    text = _guarded(lambda: render_canary(image, weight, model=model, stable_model=stable_model))
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        console.print(f"wrote {output} (canary {image} at {weight}%); apply with: kubectl apply -f {output}")
    else:
        out.print(text, end="", highlight=False, markup=False)
