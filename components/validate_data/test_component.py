from __future__ import annotations

import json
from pathlib import Path

import pytest
from kfp import dsl
from testdata import GOOD_ITEMS, artifact, write_hllm

from hllm.data.schema import load_dataset
from hllm.data.validation import ValidationFailed
from hllm_components.validate_data.component import component


def test_valid_data_becomes_a_parquet_dataset_with_lineage(prepared) -> None:
    dataset = load_dataset(prepared.path)
    assert prepared.metadata["fingerprint"] == dataset.fingerprint()
    assert prepared.metadata["users"] == dataset.num_users == 80
    assert prepared.metadata["interactions"] == len(dataset.interactions)


def test_bad_data_stops_here_and_leaves_the_data_docs(tmp_path: Path) -> None:
    src = write_hllm(tmp_path / "bad", "item_id,user_id,timestamp\ni1,u1,1400000000\ni2,u1,not-a-time\n", GOOD_ITEMS)
    dataset = artifact(dsl.Dataset, tmp_path / "dataset")
    # kfp names an artifact file after its output ("data_docs"); the step makes the page end in .html
    report, docs = artifact(dsl.Artifact, tmp_path / "report"), artifact(dsl.HTML, tmp_path / "data_docs")
    with pytest.raises(ValidationFailed, match="timestamp"):
        component.python_func(data_uri=str(src), dataset=dataset, report=report, data_docs=docs)
    assert docs.uri == str(tmp_path / "data_docs.html")
    assert "<html" in (tmp_path / "data_docs.html").read_text().lower()
    assert json.loads((Path(report.path) / "summary.json").read_text())["passed"] is False
    assert report.metadata["passed"] is False
    assert not Path(dataset.path).exists()  # nothing downstream can start from rejected data


def test_quarantine_policy_passes_the_good_rows(tmp_path: Path) -> None:
    src = write_hllm(
        tmp_path / "mixed",
        "item_id,user_id,timestamp\ni1,u1,1400000000\ni2,u1,1400000100\ni3,u1,1400000200\ni2,u1,oops\n",
        GOOD_ITEMS,
    )
    dataset = artifact(dsl.Dataset, tmp_path / "dataset")
    component.python_func(
        data_uri=str(src),
        dataset=dataset,
        report=artifact(dsl.Artifact, tmp_path / "report"),
        data_docs=artifact(dsl.HTML, tmp_path / "docs.html"),
        policy="quarantine",
    )
    assert len(load_dataset(dataset.path).interactions) == 3
