"""The wheel works outside the repo: manifests, kfp components and pipelines come from the installed package."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def _run(command: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory) -> tuple[Path, dict]:
    """A venv with only the hllm wheel installed (--no-deps) that sees the dev environment's other packages."""
    work = tmp_path_factory.mktemp("wheel")
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(REPO), "-w", "dist"], work
    )
    wheel = next((work / "dist").glob("hllm-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.startswith("hllm-")}
    assert top == {"hllm", "hllm_components", "hllm_pipelines", "hllm_serving", "hllm_feature_repo", "hllm_manifests"}
    _run([sys.executable, "-m", "venv", "venv"], work)
    bin_dir = work / "venv" / "bin"
    purelib = _run([str(bin_dir / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work)
    # The dev environment's packages (a path entry: its .pth files, the editable checkout's finder among them,
    # are not processed), then the wheel on top.
    (Path(purelib.stdout.strip()) / "dev-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], work)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    outside = work / "elsewhere"
    outside.mkdir()
    where = _run([str(bin_dir / "python"), "-c", "import hllm, hllm_manifests; print(hllm.__file__)"], outside, env)
    assert str(work / "venv") in where.stdout and str(REPO) not in where.stdout
    return outside, env


def test_wheel_renders_the_canary_outside_the_repo(wheel_env) -> None:
    cwd, env = wheel_env
    done = _run(
        ["hllm", "deploy", "canary", "--image", "registry.example/hllm:1.2.3", "--out", "canary.yaml"], cwd, env
    )
    docs = [d for d in yaml.safe_load_all((cwd / "canary.yaml").read_text()) if d]
    images = {c["image"] for d in docs if d["kind"] == "Rollout" for c in d["spec"]["template"]["spec"]["containers"]}
    assert "registry.example/hllm:1.2.3" in images, (images, done.stderr)


def test_wheel_compiles_the_pipeline_outside_the_repo(wheel_env) -> None:
    cwd, env = wheel_env
    _run(["hllm", "pipeline", "compile", "--out", "training.yaml"], cwd, env)
    spec = next(yaml.safe_load_all((cwd / "training.yaml").read_text()))  # the pipeline spec, then platform specs
    tasks = spec["root"]["dag"]["tasks"]
    assert {"validate-data", "train", "evaluate"} <= set(tasks)
