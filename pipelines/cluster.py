"""Compile the training pipeline to kfp IR YAML and submit it to a Kubeflow Pipelines endpoint."""

from __future__ import annotations

import logging
from pathlib import Path

from hllm_pipelines.training import PIPELINE_NAME, Settings, build

logger = logging.getLogger(__name__)


PIPELINES = ("training", "retraining")


def compile_pipeline(out: str | Path, settings: Settings = Settings(), which: str = "training") -> Path:  # noqa: B008
    """Write the spec (IR YAML) of the ``training`` or ``retraining`` pipeline for ``settings`` to ``out``."""
    from kfp import compiler

    if which not in PIPELINES:
        raise ValueError(f"pipeline '{which}' must be one of {list(PIPELINES)}")
    if which == "retraining":
        from hllm_pipelines.retraining import build as build_retraining

        pipeline = build_retraining(settings)
    else:
        pipeline = build(settings)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline, package_path=str(path))
    logger.info("compiled %s (%s) to %s", PIPELINE_NAME, which, path)
    return path


def submit(
    host: str,
    arguments: dict,
    *,
    settings: Settings = Settings(),  # noqa: B008
    experiment: str = "hllm",
    run_name: str | None = None,
    cron: str | None = None,
    package: str | Path | None = None,
    client=None,
) -> dict:
    """Upload and start a run (or, with ``cron``, a recurring run) on the KFP endpoint at ``host``.

    Args:
        cron: a 6-field KFP cron expression (``"0 0 3 * * *"`` = every day at 03:00) for a recurring run.
        client: a ``kfp.Client`` to use instead of connecting to ``host`` (tests, custom auth).
    """
    import tempfile

    import kfp

    client = client or kfp.Client(host=host)
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(package) if package else compile_pipeline(Path(tmp) / "pipeline.yaml", settings)
        experiment_id = client.create_experiment(name=experiment).experiment_id
        if cron:
            job = client.create_recurring_run(
                experiment_id=experiment_id,
                job_name=run_name or f"{PIPELINE_NAME}-recurring",
                cron_expression=cron,
                pipeline_package_path=str(package),
                params=arguments,
                max_concurrency=1,  # a retraining run never overlaps the previous one
            )
            return {"recurring_run_id": job.recurring_run_id, "experiment_id": experiment_id}
        run = client.create_run_from_pipeline_package(
            str(package), arguments=arguments, run_name=run_name, experiment_name=experiment
        )
        return {"run_id": run.run_id, "experiment_id": experiment_id}
