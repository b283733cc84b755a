"""The retraining pipeline: drift check on new data -> ``dsl.If`` drifted -> the whole training pipeline on it
(through register and deploy: a model that passes the gate starts a canary)."""

from kfp import dsl

from hllm_components.drift_check import component as drift_check
from hllm_pipelines.training import Settings, _storage
from hllm_pipelines.training import build as build_training

PIPELINE_NAME = "hllm-retraining"


def build(settings: Settings = Settings()):  # noqa: B008
    training = build_training(settings)

    @dsl.pipeline(name=PIPELINE_NAME, description="HLLM: retrain when new data drifts from the training data.")
    def retraining_pipeline(
        reference_uri: str,
        current_uri: str,
        run_config: str,
        data_overrides: list = [],  # noqa: B006 (kfp parameter default) the run config's data: section
        history_length: int = 50,  # the run config's train.max_seq_len (the CLI fills both)
        feast_home: str = "/data/feast",
        gate_thresholds: str = "{}",
        model_name: str = "hllm",
        drift_threshold: float = 0.1,
        min_drifted: int = 2,
        deploy_target: str = "cluster" if settings.cluster else "local",
    ):
        drift = drift_check.make(settings.image)(
            reference_uri=reference_uri, current_uri=current_uri, threshold=drift_threshold, min_drifted=min_drifted
        ).set_display_name("drift check")
        drift.set_caching_options(False)
        _storage(drift, settings)
        with dsl.If(drift.outputs["Output"] == True, name="drifted"):  # noqa: E712 (kfp condition)
            training(
                data_uri=current_uri,
                run_config=run_config,
                data_overrides=data_overrides,
                history_length=history_length,
                feast_home=feast_home,
                gate_thresholds=gate_thresholds,
                model_name=model_name,
                deploy_target=deploy_target,
            )

    return retraining_pipeline
