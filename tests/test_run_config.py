"""The run configuration: one typed file, every section validated when read, unknown keys named with the nearest
valid one, the same loader behind every command, and `hllm config show`."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hllm.cli import EXIT_BAD_INPUT, EXIT_GATE_FAILED, app
from hllm.cli.pipeline import _pipeline_arguments
from hllm.config import (
    DataConfig,
    RunConfig,
    ServingConfig,
    load_config,
    load_run_config,
    run_config_from_dict,
)
from hllm.models.modeling_hllm import default_backbone_path

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def shown(output: str) -> dict:
    """The YAML of ``hllm config show`` (its leading comment lines are YAML comments)."""
    return yaml.safe_load(output)


def test_typo_in_set_fails_before_any_work_naming_key_and_suggestion(good_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke("train", str(good_dataset), "--out", str(out), "--set", "hllm.item_poolng=mean")
    assert result.exit_code == EXIT_BAD_INPUT
    assert "'item_poolng'" in result.output and "did you mean 'item_pooling'" in result.output
    assert not out.exists()  # nothing ran


def test_typo_in_yaml_fails_naming_key_and_suggestion(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("train:\n  learning_rate: 0.1\nsasrec:\n  hiden: 32\n")
    result = invoke("config", "show", "--config", str(config))
    assert result.exit_code == EXIT_BAD_INPUT
    assert "'learning_rate'" in result.output  # the first section with a problem is reported
    config.write_text("sasrec:\n  hiden: 32\n")
    result = invoke("config", "show", "--config", str(config))
    assert result.exit_code == EXIT_BAD_INPUT and "'hiden' (did you mean 'hidden'?)" in result.output


def test_unknown_sections_are_named(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("trian:\n  lr: 0.1\nmax_text_chars: 10\n")
    result = invoke("config", "show", "--config", str(config))
    assert result.exit_code == EXIT_BAD_INPUT
    assert "'trian' (did you mean 'train'?)" in result.output
    assert "'max_text_chars' (did you mean 'data.max_text_chars'?)" in result.output
    result = invoke("config", "show", "--set", "severing.index=faiss")
    assert result.exit_code == EXIT_BAD_INPUT and "did you mean 'serving'" in result.output


def test_a_setting_in_the_wrong_section_is_pointed_to_its_own() -> None:
    with pytest.raises(ValueError, match=r"unknown hllm key 'num_negatives' \(did you mean 'train.num_negatives'\?\)"):
        load_run_config(None, ["hllm.num_negatives=4096"])


@pytest.mark.parametrize(
    "key", ["hllm.max_seq_len", "sasrec.max_seq_len", "hllm.num_item_ids", "sasrec.num_items", "hllm.item_token_layers"]
)
def test_derived_model_settings_are_not_set_twice(key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_run_config(None, [f"{key}=7"])


def test_config_show_prints_the_resolved_configuration() -> None:
    result = invoke("config", "show", "--set", "max_seq_len=12", "--set", "serving.index=faiss")
    assert result.exit_code == 0, result.output
    config = shown(result.output)
    assert set(config) == {"train", "hllm", "sasrec", "data", "serving"}
    assert config["train"]["max_seq_len"] == 12 and config["serving"]["index"] == "faiss"
    # the demo's recipe, stated in the demo file, and the defaults it leaves to the classes
    assert (config["hllm"]["item_pooling"], config["hllm"]["item_prompt"], config["hllm"]["text_separator"]) == (
        "mean",
        "",
        " ",
    )
    assert config["hllm"]["item_backbone"] == default_backbone_path()  # the resolved default backbone
    assert config["train"]["patience"] == 3 and config["train"]["seed"] == 0
    assert config["data"] == vars(DataConfig())
    demo = files("hllm") / "configs" / "demo.yaml"
    expected = load_run_config(demo, ["max_seq_len=12", "serving.index=faiss"]).to_dict()
    assert load_run_config(text=result.output).to_dict() == expected  # what it prints reads back the same


def test_config_show_reads_a_file_and_overrides(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("train:\n  model: sasrec\n  lr: 1e-3\nsasrec:\n  hidden: 32\ndata:\n  max_text_chars: 500\n")
    result = invoke("config", "show", "--config", str(config), "--set", "sasrec.num_heads=4")
    assert result.exit_code == 0, result.output
    values = shown(result.output)
    assert values["train"]["lr"] == 0.001 and values["sasrec"]["hidden"] == 32 and values["sasrec"]["num_heads"] == 4
    assert values["data"]["max_text_chars"] == 500
    assert values["hllm"]["item_pooling"] == "item_token"  # no demo file: the HLLMConfig default


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("train.lr=-1", "lr=-1"),
        ("hllm.item_pooling=max", "item_pooling"),
        ("hllm.text_fields=[]", "text_fields"),
        ("sasrec.hidden=31", "hidden"),
        ("data.max_text_chars=0", "max_text_chars=0"),
        ("serving.index=annoy", "index='annoy'"),
        ("serving.torch_threads=0", "torch_threads=0"),
        ("serving.workers=0", "workers=0"),
        ("serving.max_in_flight=0", "max_in_flight=0"),
        ("serving.user_llm=onnx", "user_llm='onnx'"),
    ],
)
def test_every_section_is_validated_when_read(override: str, named: str) -> None:
    with pytest.raises(ValueError, match=named.replace("[", r"\[")):
        load_run_config(None, [override])
    assert invoke("config", "show", "--set", override).exit_code == EXIT_BAD_INPUT


def test_history_length_is_one_setting() -> None:
    run = load_run_config(None, ["max_seq_len=12"])
    assert run.train.max_seq_len == run.hllm.max_seq_len == run.sasrec.max_seq_len == 12
    direct = RunConfig(train=run.train)
    assert direct.hllm.max_seq_len == direct.sasrec.max_seq_len == 12


def test_partial_mode_puts_the_item_slot_at_its_first_trainable_layer() -> None:
    assert load_run_config(None, ["mode=partial", "partial_layers=2"]).hllm.item_token_layers == 2
    assert load_run_config(None, ["mode=cached", "partial_layers=2"]).hllm.item_token_layers == 0
    with pytest.raises(ValueError, match=r"partial_layers=0 \(must be >= 1\)"):
        load_run_config(None, ["mode=partial", "partial_layers=0"])


def test_yaml_round_trip_is_portable() -> None:
    run = load_run_config(None, ["max_seq_len=12", 'hllm.item_prompt=""', "data.max_text_chars=99"])
    text = run.to_yaml()
    assert default_backbone_path() not in text  # another machine resolves its own copy of the default backbone
    again = load_run_config(text=text)
    assert again.to_dict() == run.to_dict() and again.hllm.item_prompt == ""


def test_nested_override_sets_one_entry_of_a_mapping() -> None:
    demo = files("hllm") / "configs" / "demo.yaml"
    run = load_run_config(demo, ["hllm.user_backbone_config.hidden_size=64"])
    assert run.hllm.user_backbone_config["hidden_size"] == 64
    assert run.hllm.user_backbone_config["model_type"] == "bert"  # the rest of the mapping is kept


def test_data_commands_read_the_data_section(good_dataset: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("data:\n  min_interactions_per_user: 4\n")  # the two users have 3 interactions each
    args = ("data", "validate", str(good_dataset), "--report-dir", str(tmp_path / "r"), "--config", str(config))
    assert invoke(*args).exit_code == EXIT_GATE_FAILED
    assert invoke(*args, "--set", "min_interactions_per_user=3").exit_code == 0  # a bare key is a data key
    bad = invoke(*args, "--set", "min_interactions=3")
    assert bad.exit_code == EXIT_BAD_INPUT and "did you mean 'min_interactions_per_user'" in bad.output


def test_pipeline_gets_the_data_section_and_the_history_length(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("train:\n  max_seq_len: 12\ndata:\n  max_text_chars: 500\n  max_timestamp: 2000000000\n")
    arguments = _pipeline_arguments(config, ["data.min_interactions_per_user=4"])
    assert arguments["history_length"] == 12
    # what the validate-data step builds from its overrides is the run's data section
    expected = DataConfig(max_text_chars=500, max_timestamp=2_000_000_000, min_interactions_per_user=4)
    assert load_config(DataConfig, None, arguments["data_overrides"]) == expected
    assert load_run_config(text=arguments["run_config"]).data == expected


def test_serving_section_becomes_the_service_environment() -> None:
    section = {"index": "exact", "torch_threads": 2, "request_log": None, "workers": 2, "user_llm": "eager"}
    serving = run_config_from_dict({"serving": section}).serving
    assert serving == ServingConfig(index="exact", torch_threads=2, request_log=None, workers=2, user_llm="eager")
    assert serving.to_env() == {
        "HLLM_INDEX": "exact",
        "HLLM_TORCH_THREADS": "2",
        "HLLM_MAX_BODY_BYTES": "1048576",
        "HLLM_WORKERS": "2",
        "HLLM_MAX_IN_FLIGHT": "8",
        "HLLM_USER_LLM": "eager",
    }
    assert ServingConfig().to_env()["HLLM_REQUEST_LOG"].endswith("runs/requests.jsonl")


def test_serve_checks_its_section_before_looking_for_the_model(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    result = invoke("serve", "--model", "nope:latest", "--set", "index=annoy")  # a bare key is a serving key
    assert result.exit_code == EXIT_BAD_INPUT and "index='annoy'" in result.output
    result = invoke("serve", "--model", "nope:latest", "--set", "serving.torch_threads=2")
    assert result.exit_code == EXIT_BAD_INPUT and "no model 'nope:latest'" in result.output
