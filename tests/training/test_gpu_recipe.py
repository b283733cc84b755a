"""The GPU recipe (benchmarks/quality/gpu_run.py) on CPU: its configuration, a short run of it, its bundle's size.

No GPU here: the recipe runs on the CPU with the same settings (bf16, ZeRO-2, gradient checkpointing, torch AdamW
passed to DeepSpeed), on a tiny synthetic catalogue from a tiny bundle built by gpu_bundle.py's own functions.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks" / "quality"))

import gpu_bundle  # noqa: E402
import gpu_run  # noqa: E402
from testdata import SHARED_DATA  # noqa: E402

from hllm.data.synth import SynthConfig, generate  # noqa: E402
from hllm.models import HLLM, default_backbone_path  # noqa: E402
from hllm.training.build import hllm_model_config  # noqa: E402
from hllm.training.data import ItemVocab  # noqa: E402
from hllm.training.trainer import _optimizer  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return gpu_bundle.write_weights(tmp_path_factory.mktemp("bundle") / "minilm")


def test_recipe_configuration_builds(weights: Path) -> None:
    run = gpu_run.recipe(weights)
    assert (run.train.mode, run.train.precision, run.train.zero_stage) == ("end_to_end", "bf16", 2)
    assert run.train.gradient_checkpointing and run.hllm.item_pooling == "item_token"
    ds = gpu_run.recipe_deepspeed_config(run)
    assert ds["bf16"] == {"enabled": True} and ds["zero_optimization"] == {"stage": 2}
    assert "optimizer" not in ds  # a DeepSpeed optimizer type would JIT-build FusedAdam
    vocab = ItemVocab(["<pad>", "a", "b"])
    model = HLLM(hllm_model_config(run, vocab))
    model.set_gradient_checkpointing(run.train.gradient_checkpointing)
    assert model.item_llm.backbone.is_activation_checkpointing and model.user_llm.backbone.is_activation_checkpointing
    assert type(_optimizer(model, run.train)) is torch.optim.AdamW
    assert gpu_run.recipe(weights, ["train.lr=1e-4"], minutes=1.0).train.lr == 1e-4
    with pytest.raises(ValueError, match=r"train\.KEY=VALUE"):
        gpu_run.recipe(weights, ["lr=1e-4"])


def test_fp16_weights_encode_like_the_originals(weights: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(weights))
    batch = tokenizer(["a stapler, black", "printer paper 500 sheets"], return_tensors="pt", padding=True)
    with torch.no_grad():
        original = AutoModel.from_pretrained(default_backbone_path()).eval()(**batch).last_hidden_state
        half = AutoModel.from_pretrained(str(weights), dtype=torch.float32).eval()(**batch).last_hidden_state
    assert torch.allclose(original, half, atol=2e-2) and not torch.equal(original, half)


@pytest.fixture(scope="module")
def tiny_item_llm(tmp_path_factory) -> Path:
    """A 1-layer, 32-wide BERT checkpoint with MiniLM's tokenizer: the recipe's bf16 on CPU is slow at MiniLM size."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny") / "minilm"
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    BertModel(config, add_pooling_layer=False).save_pretrained(str(folder))
    for name in gpu_bundle.MODEL_FILES[1:]:
        source = Path(default_backbone_path()) / name
        if source.is_file():
            (folder / name).write_bytes(source.read_bytes())
    return folder


def test_the_recipe_runs_on_cpu_and_trains_the_item_llm(tiny_item_llm: Path, tmp_path: Path) -> None:
    dataset = generate(SynthConfig(n_users=40, n_items=30, n_topics=4, max_seq_len=12, seed=5))
    dataset.save(tmp_path / "data")
    (tmp_path / "minilm").symlink_to(tiny_item_llm)
    manifest = {"data": {"name": "synth", "fingerprint": dataset.fingerprint()}}
    (tmp_path / gpu_run.BUNDLE_MANIFEST).write_text(json.dumps(manifest))
    settings = ["train.epochs=2", "train.batch_size=16", "train.num_negatives=16", "hllm.max_text_tokens=8"]
    args = ["--bundle", str(tmp_path), "--out", str(tmp_path / "out"), "--allow-cpu"]
    report = gpu_run.main(args + [f"--set={s}" for s in settings])
    ds = report["deepspeed_config"]
    assert ds["bf16"]["enabled"] and ds["zero_optimization"]["stage"] == 2 and "optimizer" not in ds
    assert report["epochs_run"] == 2 and report["steps"] == 6 and 0 <= report["metrics_test"]["ndcg@10"] <= 1
    assert report["run_config"]["train"]["gradient_checkpointing"] and (tmp_path / "out" / "result.md").is_file()
    # end_to_end trained the Item LLM: its bf16 weights differ from the bundled ones cast to bf16 as DeepSpeed does.
    source = load_file(str(tiny_item_llm / "model.safetensors"))
    trained = load_file(str(tmp_path / "out" / "run" / "model" / "model.safetensors"))
    name = next(k for k in source if k.endswith("layer.0.attention.self.query.weight"))
    after = trained[next(k for k in trained if k.startswith("item_llm.") and k.endswith(name))]
    assert after.dtype == torch.bfloat16
    assert (after != source[name].bfloat16()).float().mean() > 0.01


def test_bundle_parts_fit_64_mib(weights: Path, tmp_path: Path) -> None:
    """Weights and code as built, the data as its raw CSVs (the bundle stores smaller Parquet), wheels budgeted."""
    code = gpu_bundle.folder_bytes(gpu_bundle.write_code(tmp_path / "code"))
    office = SHARED_DATA / "amazon-office-2014"
    data = gpu_bundle.folder_bytes(office) if office.is_dir() else 4 * 2**20
    total = gpu_bundle.folder_bytes(weights) + code + data + gpu_bundle.WHEEL_BUDGET_BYTES
    assert total < gpu_bundle.LIMIT_BYTES, f"{total / 2**20:.1f} MiB"
    assert (tmp_path / "code" / "benchmarks" / "quality" / "gpu_run.py").is_file()
    run_sh = tmp_path / "run.sh"
    run_sh.write_text(gpu_bundle.RUN_SH)
    assert subprocess.run(["sh", "-n", str(run_sh)]).returncode == 0
