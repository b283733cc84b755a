"""The command line: exit codes, messages (never a traceback) and the main job."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from testdata import GOOD_INTERACTIONS, GOOD_ITEMS, write_hllm
from typer.testing import CliRunner

from hllm.cli import EXIT_BAD_INPUT, EXIT_GATE_FAILED, app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_validate_clean(good_dataset: Path, tmp_path: Path) -> None:
    result = invoke("data", "validate", str(good_dataset), "--report-dir", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert "validation passed (strict)" in result.output
    assert (tmp_path / "r" / "summary.json").is_file()


def test_validate_failure_names_expectation_column_and_rows(tmp_path: Path) -> None:
    src = write_hllm(tmp_path / "src", GOOD_INTERACTIONS + "i1,u1,-7\n", GOOD_ITEMS)
    result = invoke("data", "validate", str(src), "--report-dir", str(tmp_path / "r"))
    assert result.exit_code == EXIT_GATE_FAILED
    assert "[hllm.interactions.v1] ExpectColumnValuesToBeBetween on column 'timestamp'" in result.output
    assert "interactions.csv:8: user_id='u1', item_id='i1', timestamp='-7'" in result.output


def test_quarantine_policy_keeps_good_rows(tmp_path: Path) -> None:
    src = write_hllm(tmp_path / "src", GOOD_INTERACTIONS + "i1,u1,-7\n", GOOD_ITEMS)
    result = invoke("data", "prepare", str(src), "--out", str(tmp_path / "p"), "--policy", "quarantine")
    assert result.exit_code == 0, result.output
    assert "interactions: 6 accepted, 1 rejected of 7" in result.output
    assert len(pd.read_parquet(tmp_path / "p" / "interactions.parquet")) == 6
    assert (tmp_path / "p" / "validation" / "quarantine" / "interactions.csv").is_file()


def test_unreadable_input_exits_2(tmp_path: Path) -> None:
    result = invoke("data", "validate", str(tmp_path / "missing"))
    assert result.exit_code == EXIT_BAD_INPUT
    assert "no such file or folder" in result.output


def test_bad_override_exits_2(good_dataset: Path) -> None:
    result = invoke("data", "validate", str(good_dataset), "--set", "max_text_chars=-1")
    assert result.exit_code == EXIT_BAD_INPUT and "max_text_chars=-1" in result.output


def test_real_process_prints_no_traceback(tmp_path: Path) -> None:
    src = write_hllm(tmp_path / "src", "item_id;user_id;timestamp\ni1;u1;1\n", GOOD_ITEMS)
    proc = subprocess.run(
        [sys.executable, "-m", "hllm.cli", "data", "validate", str(src)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == EXIT_BAD_INPUT
    assert "semicolon-delimited" in proc.stderr and "Traceback" not in proc.stderr + proc.stdout


def test_synth_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert invoke("data", "synth", "--out", str(tmp_path / name), "--users", "50", "--items", "60").exit_code == 0
    assert (tmp_path / "a" / "interactions.csv").read_bytes() == (tmp_path / "b" / "interactions.csv").read_bytes()


# The commands users type (README, docs): every one must stay listed in `hllm --help`.
COMMANDS = ("data", "train", "evaluate", "embed-items", "run", "pipeline", "serve", "drift", "deploy", "config")


def _listed_commands(help_text: str) -> set[str]:
    """Names in the first column of the help's "Commands" panel (not the wrapped description lines)."""
    panel = help_text.split("Commands", 1)[1]
    return {line[2:].split(" ", 1)[0] for line in panel.splitlines() if line.startswith("│ ") and line[2] != " "}


def test_help_and_version() -> None:
    import hllm

    version = invoke("--version")
    assert version.exit_code == 0 and version.output.strip() == hllm.__version__
    top = invoke("--help")
    assert top.exit_code == 0
    missing = set(COMMANDS) - _listed_commands(top.output)
    assert not missing, f"`hllm --help` does not list {sorted(missing)}:\n{top.output}"
    data = invoke("data", "--help")
    assert data.exit_code == 0 and {"validate", "prepare", "synth", "download"} <= _listed_commands(data.output)


@pytest.mark.parametrize(
    ("before", "after", "streamed"), [([], [], False), ([], ["--verbose"], True), (["--verbose"], [], True)]
)
def test_run_streams_every_step_line_only_when_verbose(
    monkeypatch, good_dataset: Path, tmp_path: Path, before: list[str], after: list[str], streamed: bool
) -> None:
    seen = {}

    def main_job(out_dir, reporter, *, echo=None, **arguments) -> str:
        seen.update(echo=echo, progress=reporter.progress, data_uri=arguments["data_uri"])
        return "refused"

    monkeypatch.setattr("hllm_pipelines.local.main_job", main_job)
    result = invoke(*before, "run", "--out", str(tmp_path / "out"), "--src", str(good_dataset), *after)
    assert result.exit_code == 3  # the outcome's exit code: the gate refused the model
    assert (seen["echo"] is not None) is streamed and seen["progress"] is not streamed
    assert seen["data_uri"] == str(good_dataset.resolve())
