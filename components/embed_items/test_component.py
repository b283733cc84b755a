from __future__ import annotations

import json
from pathlib import Path

import pytest
from kfp import dsl
from safetensors.torch import load_file
from testdata import artifact, tiny_run_config

from hllm.data.schema import load_dataset
from hllm.training.build import load_item_texts, load_run_config
from hllm.training.data import ItemVocab
from hllm_components.embed_items.component import component


def test_every_catalogue_item_gets_a_vector(prepared, trained) -> None:
    _, _, vectors = trained
    manifest = json.loads((Path(vectors.path) / "item_text_states.json").read_text())
    table = load_file(str(Path(vectors.path) / "item_text_states.safetensors"))["states"]
    items = load_dataset(prepared.path).items
    assert manifest["item_ids"] == items["item_id"].tolist() and table.shape == (len(items) + 1, 32)
    assert vectors.metadata["items"] == len(items)
    assert float(table[0].abs().sum()) == 0.0 and float(table[1:].norm(dim=1).min()) > 0  # row 0 = padding


def test_vectors_of_other_settings_are_refused(prepared, trained) -> None:
    _, _, vectors = trained
    other = load_run_config(text=tiny_run_config(extra=["hllm.max_text_tokens=16"]))
    from hllm.training.build import item_side_settings

    vocab = ItemVocab.from_items(load_dataset(prepared.path).items)
    with pytest.raises(ValueError, match="max_text_tokens"):
        load_item_texts(vectors.path, vocab, item_side_settings(other, vocab))


def test_sasrec_needs_no_item_text_states(prepared, tmp_path: Path) -> None:
    vectors = artifact(dsl.Artifact, tmp_path / "vectors")
    component.python_func(dataset=prepared, run_config=tiny_run_config(extra=["model=sasrec"]), vectors=vectors)
    assert "skipped" in vectors.metadata and not (tmp_path / "vectors" / "item_text_states.safetensors").exists()
