"""Champion labels in a real (throwaway) BentoML store: promote, rollback, what the gate resolves."""

from __future__ import annotations

import uuid

import bentoml
import pytest
from typer.testing import CliRunner

from hllm.cli import app
from hllm_serving.registry import champion, promote, resolve, rollback


def _register(name: str, n: int) -> list[str]:
    tags = []
    for _ in range(n):
        with bentoml.models.create(name, labels={"stage": "candidate"}) as saved:
            pass
        tags.append(str(saved.tag))
    return tags


def _stages(name: str) -> dict[str, str]:
    return {str(m.tag): m.info.labels.get("stage") for m in bentoml.models.list(name)}


def test_before_any_promotion_the_latest_model_is_the_reference() -> None:
    name = f"reg-{uuid.uuid4().hex[:8]}"
    assert resolve(name, "champion") is None and champion(name) is None
    first, second = _register(name, 2)
    assert str(resolve(name, "champion").tag) == second and resolve(name, "none") is None
    assert str(resolve(name, first).tag) == first


def test_promote_moves_the_label_and_rollback_walks_it_back() -> None:
    name = f"reg-{uuid.uuid4().hex[:8]}"
    a, b, c = _register(name, 3)
    assert promote(a) == (a, None)
    assert promote(b) == (b, a)
    assert _stages(name) == {a: "retired", b: "champion", c: "candidate"}
    assert str(resolve(name, "champion").tag) == b  # not c, the latest registered
    assert promote(c) == (c, b)
    assert rollback(name) == (b, c)
    assert _stages(name) == {a: "retired", b: "champion", c: "rolled-back"}
    assert rollback(name) == (a, b)
    assert _stages(name) == {a: "champion", b: "rolled-back", c: "rolled-back"}
    with pytest.raises(ValueError, match="previous champion"):
        rollback(name)
    assert str(bentoml.models.get(a).tag) == a and champion(name).info.labels["stage"] == "champion"


def test_deploy_promote_and_rollback_commands() -> None:
    name = f"reg-{uuid.uuid4().hex[:8]}"
    a, b = _register(name, 2)
    runner = CliRunner()
    assert runner.invoke(app, ["deploy", "promote", a]).exit_code == 0
    result = runner.invoke(app, ["deploy", "promote", b])
    assert result.exit_code == 0 and f"was {a}" in result.output
    result = runner.invoke(app, ["deploy", "rollback", "--model-name", name])
    assert result.exit_code == 0 and _stages(name) == {a: "champion", b: "rolled-back"}
    result = runner.invoke(app, ["deploy", "promote", f"{name}:nope"])
    assert result.exit_code == 2 and "no model" in result.output
    result = runner.invoke(app, ["deploy", "rollback", "--model-name", name])
    assert result.exit_code == 2 and "previous champion" in result.output
