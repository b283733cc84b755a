"""Boundaries (STYLE.md): the library knows nothing of kfp, BentoML or Feast; the CLI is split by command group;
installed import names are the project's own."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import hllm

REPO = Path(__file__).resolve().parents[1]
BLOCKED = ("kfp", "bentoml", "feast")
# The adapter folders and the installed names they get (pyproject.toml [tool.setuptools] package-dir).
INSTALLED_AS = {
    "components": "hllm_components",
    "pipelines": "hllm_pipelines",
    "serving": "hllm_serving",
    "feature_repo": "hllm_feature_repo",
    "manifests": "hllm_manifests",
}


def _library_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(hllm.__path__, "hllm.")]
    return sorted(n for n in names if n != "hllm.cli" and not n.startswith("hllm.cli."))


def test_every_library_module_imports_with_kfp_bentoml_and_feast_blocked() -> None:
    modules = _library_modules()
    assert "hllm.predictor" in modules and "hllm.training.trainer" in modules  # the walk found the library
    script = textwrap.dedent(
        f"""
        import importlib, importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {BLOCKED!r}:
                    raise ImportError(f"blocked in this test: {{name}}")
                return None

        sys.meta_path.insert(0, Block())
        failed = []
        for name in {modules!r}:
            try:
                importlib.import_module(name)
            except ImportError as exc:
                failed.append(f"{{name}}: {{exc}}")
        print("\\n".join(failed))
        sys.exit(1 if failed else 0)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"library modules that need kfp/bentoml/feast:\n{done.stdout}{done.stderr[-2000:]}"


def test_a_blocked_import_is_reported() -> None:
    """The blocker itself works: a module importing kfp at module level fails under it."""
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {BLOCKED!r}:
                    raise ImportError(name)

        sys.meta_path.insert(0, Block())
        import hllm_pipelines.training
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "ImportError: kfp" in done.stderr


def test_cli_is_a_package_of_small_modules_per_command_group() -> None:
    folder = Path(hllm.__file__).parent / "cli"
    sizes = {p.name: len(p.read_text().splitlines()) for p in folder.glob("*.py")}
    assert {"data.py", "train.py", "pipeline.py", "serve.py", "drift.py", "deploy.py"} <= set(sizes)
    assert max(sizes.values()) <= 260, sizes


def test_no_code_imports_the_generic_top_level_names() -> None:
    """Code imports `hllm_pipelines`, never `pipelines` (which a wheel does not install)."""
    offenders = []
    for path in [*REPO.glob("src/**/*.py"), *[p for d in INSTALLED_AS for p in (REPO / d).glob("**/*.py")]]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] in INSTALLED_AS]
    assert not offenders, offenders


def test_pyproject_lists_every_package_folder_under_its_installed_name() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {k: v for k, v in config["package-dir"].items() if k} == {v: k for k, v in INSTALLED_AS.items()}
    expected = {
        ".".join(p.parent.relative_to(REPO / "src").parts) for p in (REPO / "src" / "hllm").glob("**/__init__.py")
    }
    for folder, name in INSTALLED_AS.items():
        for init in (REPO / folder).glob("**/__init__.py"):
            expected.add(".".join((name, *init.parent.relative_to(REPO / folder).parts)))
    assert set(config["packages"]) == expected


def test_manifests_are_found_as_package_data() -> None:
    from hllm.manifests import MANIFESTS, SCHEMAS
    from hllm.rollout import ANALYSIS_TEMPLATE, OVERLAYS

    assert all((overlay / "kustomization.yaml").is_file() for overlay in OVERLAYS.values())
    assert ANALYSIS_TEMPLATE.is_file()
    assert any(SCHEMAS.glob("*.json"))
    assert (MANIFESTS / "base" / "kustomization.yaml").is_file()
