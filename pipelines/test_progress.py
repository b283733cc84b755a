"""The quiet ``hllm run`` output: kfp's stream split into step logs, step lines, key figures, failure report.

The unit tests feed `StepLogs` text in kfp 2.17's format; `test_a_real_local_run_*` runs a two-step toy pipeline
through kfp's local runner, so a kfp upgrade that changes its banners fails here rather than in a user's run.
"""

import io
import json
import logging
import sys
from pathlib import Path

import pytest
from kfp import dsl

from hllm_pipelines.local import StepFailed, _report_failure, run_local, summarise, summary
from hllm_pipelines.progress import STEPS, Reporter, failure_lines, key_figure, metric_label, step_line, summary_rows
from hllm_pipelines.steplogs import PIPELINE_LOG, StepLogs, parse_event, tail

RULER = "-" * 80


def _task(name: str) -> str:
    return f"\x1b[96m'{name}'\x1b[0m"


def banner(message: str, level: str = "INFO") -> str:
    return f"04:46:55.534 - {level} - {message}\n"


def kfp_task_output(task: str, body: list[str], status: str = "SUCCESS") -> list[str]:
    """What kfp 2.17's local runner prints for one task: banners, the indented streamed lines, outputs, ruler."""
    colour = "\x1b[92m" if status == "SUCCESS" else "\x1b[91m"
    level = "INFO" if status == "SUCCESS" else "ERROR"
    chunks = [banner(f"Executing task {_task(task)}"), banner("Streamed logs:"), "\n"]
    for line in body:  # kfp's indented print writes the indent and the line separately
        chunks += ["    ", line + "\n"]
    chunks += ["    ", "\n\n"]
    chunks.append(banner(f"Task {_task(task)} finished with status {colour}{status}\x1b[0m", level))
    if status == "SUCCESS":
        chunks.append(banner(f"Task {_task(task)} outputs:") + "    dataset: Dataset( name='dataset',\n")
    chunks.append(RULER + "\n")
    return chunks


def test_parse_event_reads_kfp_banners_only() -> None:
    assert parse_event(banner(f"Executing task {_task('train')}")).task == "train"
    end = parse_event(banner(f"Task {_task('gate')} finished with status \x1b[92mSUCCESS\x1b[0m"))
    assert (end.kind, end.task, end.ok) == ("end", "gate", True)
    failed = parse_event(banner(f"Task {_task('gate')} finished with status \x1b[91mFAILURE\x1b[0m", "ERROR"))
    assert failed.kind == "end" and not failed.ok
    assert parse_event(banner("Pipeline \x1b[95m'hllm-training'\x1b[0m finished with status SUCCESS")).kind == (
        "pipeline-end"
    )
    # a step's own output (indented by kfp, or without the banner's timestamp) is never a banner
    assert parse_event("    04:46:55.534 - INFO - Executing task 'train'") is None
    assert parse_event("Executing task 'train'") is None
    assert parse_event("[KFP Executor 2026-12-02 04:46:56,240 INFO]: Looking for component `train`") is None


def test_step_logs_split_kfp_output_per_task_and_report_starts_and_ends(tmp_path: Path) -> None:
    events = []
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "register.log").write_text("from an earlier run\n")
    logs = StepLogs(
        tmp_path / "logs",
        on_start=lambda task: events.append(("start", task)),
        on_end=lambda task, ok: events.append(("end", task, ok)),
    )
    chunks = [banner("Running pipeline: \x1b[95m'hllm-training'\x1b[0m"), RULER + "\n"]
    chunks += kfp_task_output("validate-data", ["INFO great_expectations: Skipping registering function x"] * 50)
    chunks += kfp_task_output(
        "train", ["epoch 1/2", "Traceback (most recent call last):", "ValueError: bad"], "FAILURE"
    )
    chunks.append(banner("Pipeline \x1b[95m'hllm-training'\x1b[0m finished with status FAILURE", "ERROR"))
    for chunk in chunks:
        for i in range(0, len(chunk), 7):  # arbitrary write boundaries
            logs.write(chunk[i : i + 7])
    logs.close()

    assert events == [
        ("start", "validate-data"),
        ("end", "validate-data", True),
        ("start", "train"),
        ("end", "train", False),
    ]
    assert logs.failed == "train"
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == [PIPELINE_LOG, "train.log", "validate-data.log"]
    validate = (tmp_path / "logs" / "validate-data.log").read_text()
    assert validate.count("Skipping registering function") == 50
    assert "\nINFO great_expectations" in validate  # kfp's indent removed
    assert "dataset: Dataset(" in validate  # kfp's outputs listing stays with its task
    assert "\x1b[" not in validate
    pipeline = (tmp_path / "logs" / PIPELINE_LOG).read_text()
    assert "Running pipeline" in pipeline and "finished with status FAILURE" in pipeline
    assert "Executing task" not in pipeline
    assert tail(tmp_path / "logs" / "train.log") == [
        "epoch 1/2",
        "Traceback (most recent call last):",
        "ValueError: bad",
    ]


def test_step_logs_echo_everything_in_verbose_mode(tmp_path: Path) -> None:
    echo = io.StringIO()
    logs = StepLogs(tmp_path, echo=echo)
    text = "".join(kfp_task_output("gate", ["champion: no champion"]))
    logs.write(text)
    logs.close()
    assert echo.getvalue() == text
    assert "champion: no champion" in (tmp_path / "gate.log").read_text()


def test_failure_report_names_the_step_its_log_and_last_lines(tmp_path: Path) -> None:
    logs = StepLogs(tmp_path)
    logs.write("".join(kfp_task_output("evaluate", [f"line {i}" for i in range(30)], "FAILURE")))
    logs.close()
    log = tmp_path / "evaluate.log"
    report = failure_lines("evaluate", log, seconds=75.0)
    assert report[0] == f"step evaluate failed after 1m15s; its log: {log}"
    assert report[2:] == [f"  | line {i}" for i in range(20, 30)]
    assert failure_lines("evaluate", tmp_path / "missing.log") == [
        f"step evaluate failed; its log: {tmp_path / 'missing.log'}"
    ]


def test_step_lines_are_one_line_with_status_duration_and_figure() -> None:
    start = step_line(4, 7, "train", "started")
    end = step_line(4, 7, "train", "done", 62.4, "best valid NDCG@10 0.0712 (epoch 12, stopped: epochs)")
    assert start.startswith("[4/7] train") and start.endswith("started")
    assert "1m02s" in end and end.endswith("best valid NDCG@10 0.0712 (epoch 12, stopped: epochs)")
    assert "\n" not in start + end
    assert step_line(1, 7, "gate", "done", 3.25, "passed").split()[-2:] == ["3.2s", "passed"]
    assert len({s.index("started") for s in (step_line(1, 7, t, "started") for t in STEPS)}) == 1  # aligned
    assert metric_label("cold/ndcg@10") == "cold NDCG@10" and metric_label("recall@200") == "Recall@200"


def _executor_output(folder: Path, **outputs: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    artifacts = {name: {"artifacts": [{"name": name, "metadata": meta}]} for name, meta in outputs.items()}
    (folder / "executor_output.json").write_text(json.dumps({"artifacts": artifacts}))


def fake_run(root: Path, passed: bool = True) -> Path:
    """A run folder laid out as kfp's local runner leaves it, with the files each step writes."""
    run = root / "hllm-training-2026-01-01-00-00-00-000000"
    _executor_output(
        run / "validate-data",
        dataset={"interactions": 2400, "users": 300, "items": 200},
        report={"counts": {"items": {"rejected": 0}, "interactions": {"rejected": 3}}},
    )
    (run / "sync-features").mkdir()
    (run / "sync-features" / "summary").write_text(json.dumps({"history_rows": 2100, "users": 300}))
    _executor_output(run / "embed-items", vectors={"items": 200, "dim": 384})
    (run / "train" / "run").mkdir(parents=True)
    (run / "train" / "run" / "train_config.json").write_text(json.dumps({"epochs": 30, "select_metric": "ndcg@10"}))
    (run / "train" / "run" / "train_result.json").write_text(
        json.dumps({"best_metrics": {"ndcg@10": 0.0712}, "best_epoch": 12, "stopped": "early_stopping"})
    )
    (run / "evaluate").mkdir()
    scores = {"test": {"ndcg@10": 0.065, "recall@10": 0.12}, "popularity_test": {"ndcg@10": 0.021, "recall@10": 0.05}}
    (run / "evaluate" / "scores").write_text(json.dumps(scores))
    (run / "gate").mkdir()
    (run / "gate" / "decision").write_text(json.dumps({"passed": passed, "reasons": ["champion: no champion"]}))
    if passed:
        (run / "register").mkdir()
        (run / "register" / "registration").write_text(json.dumps({"tag": "hllm:abc123"}))
        (run / "deploy" / "manifests").mkdir(parents=True)
        (run / "deploy" / "manifests" / "rollout.yaml").write_text("kind: Rollout\n")
    return run


def test_key_figures_come_from_each_steps_artifacts(tmp_path: Path) -> None:
    run = fake_run(tmp_path)
    figures = {task: key_figure(task, run / task) for task in STEPS}
    assert figures == {
        "validate-data": "2,400 rows accepted (300 users, 200 items), 3 quarantined",
        "sync-features": "2,100 history rows synced for 300 users",
        "embed-items": "200 items embedded (dim 384)",
        "train": "best valid NDCG@10 0.0712 (epoch 12, stopped: early_stopping)",
        "evaluate": "test NDCG@10 0.0650 (popularity 0.0210)",
        "gate": "passed",
        "register": "hllm:abc123",
        "deploy": "Rollout rendered, nothing applied (local run)",
    }
    assert key_figure("train", tmp_path / "nowhere") == ""  # a missing artifact never fails the run


def test_reporter_prints_plain_step_lines_and_a_closing_table_off_a_terminal(tmp_path: Path) -> None:
    run = fake_run(tmp_path, passed=False)
    stream = io.StringIO()
    reporter = Reporter(stream, terminal=False, run_dir=lambda: run)
    for task in STEPS[:-2]:  # everything up to the gate, which refuses
        reporter.started(task)
        reporter.finished(task, True)
    reporter.skipped("(the gate refused the model)")
    summary = {
        "registered": None,
        "gate": {"passed": False, "reasons": ["champion: no champion", "FAIL: ndcg@10 0.0650 < 2.0x popularity"]},
        "test": {"recall@10": 0.12, "ndcg@10": 0.065, "cold/recall@10": 0.3, "cold/ndcg@10": 0.2, "cold/count": 58},
        "popularity_test": {"recall@10": 0.05, "ndcg@10": 0.021, "cold/recall@10": 0.0, "cold/ndcg@10": 0.0},
        "report": str(run / "evaluate" / "report.html"),
        "logs": str(tmp_path / "logs"),
    }
    reporter.table(summary, title="summary")
    lines = stream.getvalue().splitlines()
    assert "\x1b[" not in stream.getvalue()
    steps = [t for t in STEPS[:-2] for _ in (0, 1)] + ["register", "deploy"]
    assert [line.split()[1] for line in lines[:14]] == steps
    assert "skipped" in lines[12] and "skipped" in lines[13] and lines[11].endswith("refused")
    table = "\n".join(lines[14:])
    assert "nothing (the gate refused)" in table and "FAIL: ndcg@10 0.0650 < 2.0x popularity" in table
    assert "model, cold items" in table and "(58 targets)" in table
    assert str(run / "evaluate" / "report.html") in table
    assert reporter.steps_summary()["register"]["status"] == "skipped"
    assert ("gate", "refused: champion: no champion") in summary_rows(summary)


# ---------------------------------------------------------------------------------------------------------------
# The contract with kfp's local runner: a real two-step run.


@dsl.component(base_image="python:3.11")
def noisy_step(x: int, page: dsl.Output[dsl.HTML]) -> int:
    import logging
    import sys

    logging.getLogger("great_expectations").info("Skipping registering function")
    print("x is", x)
    print("a warning on stderr", file=sys.stderr)
    if not page.uri.endswith(".html"):
        page.uri += ".html"
    with open(page.path, "w") as f:
        f.write("<html></html>")
    return x + 1


@dsl.component(base_image="python:3.11")
def check_step(y: int):
    print("checking", y)
    if y > 10:
        raise ValueError(f"y={y} is too big")


@dsl.pipeline(name="toy")
def _toy(x: int):
    first = noisy_step(x=x)
    check_step(y=first.outputs["Output"])


def test_a_real_local_run_prints_only_step_lines_and_logs_each_step(tmp_path: Path) -> None:
    stream, handlers = io.StringIO(), logging.getLogger().handlers[:]
    reporter = Reporter(stream, terminal=False)
    result = run_local(tmp_path, reporter=reporter, pipeline=_toy, x=1)
    lines = stream.getvalue().splitlines()
    assert [(line.split()[1], line.split()[2]) for line in lines] == [
        ("noisy-step", "started"),
        ("noisy-step", "done"),
        ("check-step", "started"),
        ("check-step", "done"),
    ]
    logs = tmp_path / "logs"
    assert {p.name for p in logs.iterdir()} == {"noisy-step.log", "check-step.log", PIPELINE_LOG}
    noisy = (logs / "noisy-step.log").read_text()
    assert "Skipping registering function" in noisy and "x is 1" in noisy and "a warning on stderr" in noisy
    assert "checking 2" in (logs / "check-step.log").read_text()
    assert (result.run_dir / "noisy-step" / "page.html").is_file()  # the page's file name says what it is
    assert not isinstance(sys.stdout, StepLogs)
    assert logging.getLogger().handlers == handlers


def test_a_real_failing_step_is_named_with_its_log(tmp_path: Path) -> None:
    stream = io.StringIO()
    with pytest.raises(StepFailed) as failed:
        run_local(tmp_path, reporter=Reporter(stream, terminal=False), pipeline=_toy, x=20)
    assert failed.value.task == "check-step" and failed.value.log == tmp_path / "logs" / "check-step.log"
    assert tail(failed.value.log)[-1] == "ValueError: y=21 is too big"
    assert stream.getvalue().splitlines()[-1].split()[1:3] == ["check-step", "FAILED"]


def test_a_failed_step_is_reported_and_classified(tmp_path: Path) -> None:
    run = fake_run(tmp_path)
    logs = StepLogs(tmp_path / "logs")
    logs.write("".join(kfp_task_output("validate-data", ["ValidationFailed: column 'timestamp'"], "FAILURE")))
    logs.close()
    (run / "validate-data" / "report").mkdir()
    verdict = run / "validate-data" / "report" / "summary.json"
    failed = StepFailed("Pipeline failed", "validate-data", logs.log_path("validate-data"), run)

    verdict.write_text(json.dumps({"passed": False}))
    stream = io.StringIO()
    assert _report_failure(Reporter(stream), failed) == "rejected"  # the gate read the data and rejected it
    assert "column 'timestamp'" in stream.getvalue() and "data_docs/index.html" in stream.getvalue()

    verdict.unlink()  # the data could not even be read
    assert _report_failure(Reporter(io.StringIO()), failed) == "failed"
    crashed = StepFailed("boom", "train", logs.log_path("train"), run)
    stream = io.StringIO()
    assert _report_failure(Reporter(stream), crashed) == "failed"
    assert stream.getvalue().startswith(f"step train failed; its log: {tmp_path / 'logs' / 'train.log'}")


def test_summary_links_the_html_reports_and_keeps_its_keys(tmp_path: Path) -> None:
    run = fake_run(tmp_path)
    (run / "evaluate" / "report.html").write_text("<html></html>")
    (run / "validate-data" / "data_docs.html").write_text("<html></html>")
    local = summarise(run)
    local.metrics["test"].update({"recall@200": 0.9, "cold/ndcg@10": float("nan"), "cold/count": 0})
    facts = summary(local, tmp_path, elapsed_s=1.0)
    assert {"elapsed_s", "run", "artifacts", "gate", "registered", "test", "popularity_test"} <= set(facts)
    assert facts["report"] == str(run / "evaluate" / "report.html")
    assert facts["data_docs"] == str(run / "validate-data" / "data_docs.html")  # no GX site in this fake run
    assert facts["registered"] == "hllm:abc123" and facts["logs"] == str(tmp_path / "logs")
    assert facts["test"] == {
        "recall@10": 0.12,
        "ndcg@10": 0.065,
        "recall@200": 0.9,
        "cold/ndcg@10": None,
        "cold/count": 0,
    }
    json.dumps(facts, allow_nan=False)  # the file stays valid JSON
