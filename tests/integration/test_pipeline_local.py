"""The whole training pipeline through kfp's local runner (``hllm run``): real GX, Feast, DeepSpeed, BentoML.

One module-scoped good run (the demo config, shortened) registers a champion; then a deliberately weak model
is refused by the gate, and a deliberately bad dataset stops the run at validation.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import bentoml
import pytest
from testdata import write_hllm
from typer.testing import CliRunner

from hllm.cli import app
from hllm_feature_repo.store import online_histories, open_store
from hllm_pipelines.progress import STEPS

pytestmark = pytest.mark.integration
MODEL = f"it-{uuid.uuid4().hex[:8]}"  # a fresh model name: no champion from other runs


def _run(out: Path, *args: str):
    return CliRunner().invoke(app, ["run", "--out", str(out), "--model-name", MODEL, *args])


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("good")
    result = _run(out, "--set", "epochs=2", "--set", "eval_every=1")
    return out, result


def step_lines(output: str, step: str, status: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("[") and line.split()[1:3] == [step, status]]


def test_good_run_registers_a_model_with_features_and_report(good_run) -> None:
    out, result = good_run
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    saved = bentoml.models.get(summary["registered"])
    assert (
        saved.info.metadata["metrics"]["test"]["ndcg@10"] > saved.info.metadata["metrics"]["popularity_test"]["ndcg@10"]
    )
    assert saved.info.metadata["pipeline_run"].startswith("hllm-training")
    assert summary["gate"]["passed"] is True
    assert summary["report"].endswith(".html") and summary["data_docs"].endswith(".html")
    assert "<h1>HLLM evaluation" in Path(summary["report"]).read_text()
    histories = online_histories(open_store(out / "feast"), ["u00000", "nobody"])
    assert len(histories[0]["item_ids"]) > 0 and histories[0]["timestamps"] == sorted(histories[0]["timestamps"])
    assert histories[1]["item_ids"] == []
    rendered = Path(summary["artifacts"]["deploy.manifests"]) / "rollout.yaml"  # rendered, never applied locally
    assert f"value: {summary['registered']}" in rendered.read_text()


def test_good_run_prints_a_line_per_step_start_and_end_then_the_summary_table(good_run) -> None:
    out, result = good_run
    lines = result.output.splitlines()
    assert len(lines) <= 40, result.output  # kfp's executor output and library logs went to the step logs
    for step in STEPS:
        assert len(step_lines(result.output, step, "started")) == 1, result.output
        assert len(step_lines(result.output, step, "done")) == 1, result.output
        assert (out / "logs" / f"{step}.log").stat().st_size > 0
    assert "Skipping registering function" not in result.output and "executor_input" not in result.output
    assert "Skipping registering function" in (out / "logs" / "validate-data.log").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"]["train"]["figure"].startswith("best valid NDCG@10")
    table = "\n".join(lines[lines.index(next(x for x in lines if x.startswith("hllm run: registered"))) :])
    assert f"registered   {summary['registered']}" in table and "popularity, test" in table
    assert summary["report"] in table


def test_weak_model_is_refused_by_the_gate(good_run, tmp_path: Path) -> None:
    assert good_run[1].exit_code == 0
    before = {str(m.tag) for m in bentoml.models.list(MODEL)}
    # lr 1e-8 for one epoch: the User LLM stays at its random initialisation.
    result = _run(tmp_path / "weak", "--set", "epochs=1", "--set", "lr=1e-8", "--set", "warmup_ratio=0")
    assert result.exit_code == 3, result.output
    summary = json.loads((tmp_path / "weak" / "summary.json").read_text())
    assert summary["gate"]["passed"] is False and summary["registered"] is None
    assert any(r.startswith("FAIL") and "champion" in r for r in summary["gate"]["reasons"])
    assert step_lines(result.output, "gate", "done")[0].endswith("refused")
    assert len(step_lines(result.output, "register", "skipped")) == 1
    assert {str(m.tag) for m in bentoml.models.list(MODEL)} == before


def test_bad_dataset_stops_at_validation(tmp_path: Path) -> None:
    bad = write_hllm(
        tmp_path / "bad",
        "item_id,user_id,timestamp\ni1,u1,1400000000\ni2,u1,yesterday\n",
        "item_id,title,tag,description\ni1,a,,\ni2,b,,\n",
    )
    result = _run(tmp_path / "run", "--src", str(bad))
    assert result.exit_code == 1, result.output
    log = tmp_path / "run" / "logs" / "validate-data.log"
    assert "step validate-data failed" in result.output and str(log) in result.output
    assert "timestamp" in result.output.split(str(log))[-1]  # the step's last lines say what was wrong
    assert len(result.output.splitlines()) <= 25, result.output
    (run_dir,) = (tmp_path / "run" / "pipeline_root").iterdir()
    assert (run_dir / "validate-data" / "data_docs.html").is_file()
    assert not (run_dir / "train").exists() and not (run_dir / "sync-features").exists()
