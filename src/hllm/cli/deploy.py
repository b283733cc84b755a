"""``hllm deploy``: render the Argo Rollouts canary (validated offline) and run its analysis locally."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hllm.cli.common import EXIT_BAD_INPUT, _guarded, app, console, out

deploy_app = typer.Typer(help="Canary rollouts: render the Rollout, run its analysis.", no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")
EXIT_ANALYSIS_FAILED = 5  # hllm deploy analyze: the canary analysis did not succeed


@deploy_app.command("canary")
def deploy_canary(
    image: Annotated[str, typer.Option(help="The new service image, with an explicit tag or digest.")],
    model: Annotated[str | None, typer.Option(help="BentoML model tag (name:version) the new pods serve.")] = None,
    mesh: Annotated[str, typer.Option(help="istio: weights by VirtualService; none: by replica count.")] = "istio",
    output: Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of stdout.")] = None,
) -> None:
    """Render the Rollout (canary steps, AnalysisTemplate, HPA, ...) on the new image/model, validated offline.

    Applying it starts the canary: the Argo Rollouts controller shifts traffic step by step while the analysis
    runs, then promotes or rolls back.
    """
    from hllm.rollout import render_canary

    text = _guarded(lambda: render_canary(image, model=model, mesh=mesh))
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        console.print(f"wrote {output} ({image}, mesh {mesh}); start the canary with: kubectl apply -f {output}")
    else:
        out.print(text, end="", highlight=False, markup=False)


@deploy_app.command("analyze")
def deploy_analyze(
    prometheus: Annotated[str, typer.Option(help="Prometheus base URL (its /api/v1/query is used).")],
    args: Annotated[
        list[str] | None, typer.Option("--arg", help="Template arg name=value, e.g. canary-hash=6d4f9c7b8.")
    ] = None,
    template: Annotated[Path | None, typer.Option(help="AnalysisTemplate YAML [default: the service's].")] = None,
    output: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the run as JSON here.")] = None,
    candidate: Annotated[
        str | None,
        typer.Option(help="The canary's model tag: promoted to champion if Successful, else marked rejected."),
    ] = None,
) -> None:
    """Run the canary's AnalysisTemplate locally against a Prometheus, as Argo would; exit 5 unless Successful.

    Takes as long as the template says (interval x count). With --candidate, the outcome goes to the BentoML
    store: a Successful canary becomes the champion; otherwise the champion keeps its label and the candidate is
    marked rejected (stopping its server, or the canary pods, is the caller's: Argo's on a cluster).
    """
    from dataclasses import asdict

    from hllm.analysis import PrometheusAPI, load_template, run_analysis
    from hllm.rollout import ANALYSIS_TEMPLATE

    def action():
        values = dict(arg.split("=", 1) for arg in args or [] if "=" in arg)
        if len(values) != len(args or []):
            raise ValueError(f"--arg must be name=value, got {args}")
        return run_analysis(load_template(template or ANALYSIS_TEMPLATE), values, PrometheusAPI(prometheus))

    if candidate is not None:
        _model_or_exit(candidate)  # a misspelt tag fails now, not after the analysis
    run = _guarded(action)
    out.print(run.summary(), highlight=False, markup=False)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(asdict(run), indent=2, default=str))
    if candidate is not None:
        from hllm_serving.registry import conclude

        done = _guarded(lambda: conclude(candidate, run.phase == "Successful"))
        if done["outcome"] == "promoted":
            console.print(f"champion: {done['champion']} (promoted; was {done['previous']})")
        else:
            console.print(f"rejected: {done['candidate']}; champion stays {done['champion']}")
    if run.phase != "Successful":
        raise typer.Exit(EXIT_ANALYSIS_FAILED)


def _model_or_exit(tag: str) -> None:
    import bentoml

    try:
        _guarded(lambda: bentoml.models.get(tag))
    except bentoml.exceptions.NotFound:
        console.print(f"[red]error:[/red] no model '{tag}' in the BentoML store")
        raise typer.Exit(EXIT_BAD_INPUT) from None


@deploy_app.command("promote")
def deploy_promote(
    tag: Annotated[str, typer.Argument(help="The BentoML model tag that won its canary (name:version).")],
) -> None:
    """Label ``tag`` champion in the BentoML store (the gate's reference); the previous champion is retired."""
    import bentoml

    from hllm_serving.registry import promote

    try:
        new, previous = _guarded(lambda: promote(tag))
    except bentoml.exceptions.NotFound:
        console.print(f"[red]error:[/red] no model '{tag}' in the BentoML store")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    console.print(f"champion: {new}" + (f" (was {previous}, now retired)" if previous else " (first champion)"))


@deploy_app.command("rollback")
def deploy_rollback(
    model_name: Annotated[str, typer.Option(help="The model name in the BentoML store.")] = "hllm",
) -> None:
    """Give the champion label back to the previous champion; the current one is marked rolled-back."""
    from hllm_serving.registry import rollback

    restored, demoted = _guarded(lambda: rollback(model_name))
    console.print(f"champion: {restored} (restored; {demoted} rolled back)")
