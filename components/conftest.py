"""Shared fixtures of the component tests: a small validated dataset and one tiny trained run, built by the
components' own functions (``python_func``), so each test exercises its step on real upstream artifacts."""

from __future__ import annotations

from pathlib import Path

import pytest
from kfp import dsl
from testdata import artifact, tiny_run_config

from hllm.data.synth import SynthConfig, generate


@pytest.fixture(scope="session")
def raw_demo(tmp_path_factory) -> Path:
    return generate(SynthConfig(seed=3, n_users=80, n_items=60)).save_csv(tmp_path_factory.mktemp("raw") / "demo")


@pytest.fixture(scope="session")
def prepared(raw_demo: Path, tmp_path_factory):
    from hllm_components.validate_data.component import component

    out = tmp_path_factory.mktemp("validate")
    dataset = artifact(dsl.Dataset, out / "dataset")
    component.python_func(
        data_uri=str(raw_demo),
        dataset=dataset,
        report=artifact(dsl.Artifact, out / "report"),
        data_docs=artifact(dsl.HTML, out / "data_docs.html"),
    )
    return dataset


@pytest.fixture(scope="session")
def run_config() -> str:
    return tiny_run_config(epochs=2, extra=["eval_every=1"])


@pytest.fixture(scope="session")
def trained(prepared, run_config: str, tmp_path_factory):
    """(model, run, vectors) artifacts of one tiny training run."""
    from hllm_components.embed_items.component import component as embed
    from hllm_components.train.component import component as train

    out = tmp_path_factory.mktemp("train")
    vectors = artifact(dsl.Artifact, out / "vectors")
    embed.python_func(dataset=prepared, run_config=run_config, vectors=vectors)
    model, run = artifact(dsl.Model, out / "model"), artifact(dsl.Artifact, out / "run")
    train.python_func(dataset=prepared, text_vectors=vectors, run_config=run_config, model=model, run=run)
    return model, run, vectors


@pytest.fixture(scope="session")
def scores(prepared, trained, tmp_path_factory):
    from hllm_components.evaluate.component import component

    model, run, _ = trained
    out = tmp_path_factory.mktemp("evaluate")
    scored = artifact(dsl.Artifact, out / "scores")
    component.python_func(
        dataset=prepared,
        model=model,
        run=run,
        metrics=artifact(dsl.Metrics, out / "metrics"),
        report=artifact(dsl.HTML, out / "report.html"),
        scores=scored,
    )
    return scored
