"""Champion labels in a real (throwaway) BentoML store: promote, rollback, what the gate resolves."""

from __future__ import annotations

import uuid

import bentoml
import pytest
from typer.testing import CliRunner

from hllm.cli import app
from hllm_serving.registry import champion, conclude, promote, resolve, rollback


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


def test_conclude_promotes_a_successful_canary_and_rejects_a_failed_one() -> None:
    name = f"reg-{uuid.uuid4().hex[:8]}"
    stable, good, bad = _register(name, 3)
    promote(stable)
    assert conclude(bad, successful=False) == {
        "outcome": "rejected",
        "candidate": bad,
        "champion": stable,
        "previous": stable,
    }
    assert _stages(name) == {stable: "champion", good: "candidate", bad: "rejected"}
    assert str(resolve(name, "champion").tag) == stable  # the gate's reference did not move
    done = conclude(good, successful=True)
    assert done == {"outcome": "promoted", "candidate": good, "champion": good, "previous": stable}
    assert _stages(name) == {stable: "retired", good: "champion", bad: "rejected"}
    with pytest.raises(ValueError, match="rollback"):
        conclude(good, successful=False)  # a champion that fails is rolled back, not rejected
    assert champion(name).tag == bentoml.models.get(good).tag


@pytest.mark.parametrize(
    ("value", "code", "stages"), [(0.0, 0, ("retired", "champion")), (0.9, 5, ("champion", "rejected"))]
)
def test_deploy_analyze_with_a_candidate_records_the_outcome(monkeypatch, value, code, stages) -> None:
    name = f"reg-{uuid.uuid4().hex[:8]}"
    stable, candidate = _register(name, 2)
    promote(stable)
    monkeypatch.setattr("hllm.analysis.PrometheusAPI.__call__", lambda self, promql: [value])
    monkeypatch.setattr("hllm.analysis.time.sleep", lambda seconds: None)
    args = [
        "deploy",
        "analyze",
        "--prometheus",
        "http://prom:9090",
        "--arg",
        "namespace=shop",
        "--arg",
        "canary-hash=x",
    ]
    result = CliRunner().invoke(app, [*args, "--candidate", candidate])
    assert result.exit_code == code, result.output
    assert _stages(name) == dict(zip((stable, candidate), stages, strict=True))
    said = " ".join(result.output.split())  # the console wraps long lines
    assert (f"promoted; was {stable}" if code == 0 else f"rejected: {candidate}; champion stays {stable}") in said
    missing = CliRunner().invoke(app, [*args, "--candidate", f"{name}:nosuchversion"])
    assert missing.exit_code == 2 and "no model" in missing.output
