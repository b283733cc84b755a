from __future__ import annotations

from pathlib import Path

from kfp import dsl
from testdata import artifact

from hllm.data.schema import Dataset
from hllm.data.synth import SynthConfig, generate
from hllm_components.drift_check.component import component


def _check(reference: Path, current: Path, out: Path) -> tuple[bool, dsl.Artifact]:
    result = artifact(dsl.Artifact, out / "result")
    drifted = component.python_func(
        reference_uri=str(reference),
        current_uri=str(current),
        report=artifact(dsl.HTML, out / "report.html"),
        result=result,
    )
    return drifted, result


def test_unshifted_data_does_not_drift_and_shifted_data_does(tmp_path: Path) -> None:
    demo = generate(SynthConfig(seed=0))
    reference = demo.save_csv(tmp_path / "reference")
    drifted, _ = _check(reference, reference, tmp_path / "same")
    assert drifted is False and "<html" in (tmp_path / "same" / "report.html").read_text().lower()
    first_tag = demo.items["tag"].str.split(",").str[0]
    category = set(demo.items.loc[first_tag == first_tag.value_counts().index[0], "item_id"])
    interactions = demo.interactions[demo.interactions["item_id"].isin(category)]
    counts = interactions["user_id"].value_counts()
    interactions = interactions[interactions["user_id"].isin(counts[counts >= 3].index)]  # a valid dataset
    shifted = Dataset(interactions, demo.items).save_csv(tmp_path / "shifted")
    drifted, result = _check(reference, shifted, tmp_path / "shifted-check")
    assert drifted is True and result.metadata["reasons"]
