"""Shared test data helpers (importable as ``testdata``: ``tests/`` is on pytest's pythonpath)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HLLM_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_dataset(name: str) -> Path:
    """Path of a dataset in ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real dataset {path} is absent (set HLLM_SHARED_DATA to the folder holding it)")
    return path


def write_hllm(folder: Path, interactions: str, items: str) -> Path:
    """Write an HLLM-layout dataset from literal CSV text (bytes are written exactly as given)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "interactions.csv").write_bytes(interactions.encode("utf-8", errors="surrogateescape"))
    (folder / "items.csv").write_bytes(items.encode("utf-8", errors="surrogateescape"))
    return folder


GOOD_ITEMS = (
    "item_id,title,tag,description\ni1,Blue pen,office,A pen\ni2,Red stapler,office,Staples\ni3,Desk lamp,,Bright\n"
)
GOOD_INTERACTIONS = (
    "item_id,user_id,timestamp\n"
    "i1,u1,1400000000\ni2,u1,1400000100\ni3,u1,1400000200\n"
    "i2,u2,1400000000\ni3,u2,1400000000\ni1,u2,1400000300\n"
)


TINY_BACKBONE = {
    "model_type": "llama",
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "intermediate_size": 64,
    "vocab_size": 30522,  # the MiniLM tokenizer's vocabulary
    "max_position_embeddings": 128,
}


def tiny_run_overrides(epochs: int = 1) -> list[str]:
    """``--set`` overrides that turn the demo config into tiny random-init models (fast, no real weights)."""
    import json

    tiny = json.dumps(TINY_BACKBONE)
    return [f"epochs={epochs}", f"hllm.item_backbone_config={tiny}", f"hllm.user_backbone_config={tiny}"]


def tiny_run_config(epochs: int = 1, extra: list[str] | None = None) -> str:
    """The demo run config with tiny models, as the YAML text pipelines pass around."""
    from importlib.resources import files

    from hllm.training.build import load_run_config

    demo = files("hllm") / "configs" / "demo.yaml"
    return load_run_config(demo, [*tiny_run_overrides(epochs), *(extra or [])]).to_yaml()


def artifact(kind, path: Path, metadata: dict | None = None):
    """A kfp artifact of type ``kind`` (``dsl.Dataset``, ``dsl.Model``...) stored at local ``path``."""
    return kind(name=path.name, uri=str(path), metadata=dict(metadata or {}))


def drift_windows(folder: Path) -> tuple[Path, Path]:
    """A reference window (the demo dataset) and a shifted one (only its two largest categories, users with 3+
    events left) saved under ``folder``: a drift check calls the shifted window drifted."""
    from hllm.data.schema import Dataset
    from hllm.data.synth import SynthConfig, generate

    demo = generate(SynthConfig(seed=0))
    reference = demo.save_csv(folder / "reference")
    first_tag = demo.items["tag"].str.split(",").str[0]
    category = set(demo.items.loc[first_tag.isin(first_tag.value_counts().index[:2]), "item_id"])
    shifted = demo.interactions[demo.interactions["item_id"].isin(category)]
    counts = shifted["user_id"].value_counts()
    shifted = shifted[shifted["user_id"].isin(counts[counts >= 3].index)]
    return reference, Dataset(shifted, demo.items).save_csv(folder / "shifted")
