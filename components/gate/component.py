"""gate: may the candidate replace the champion? Absolute floors, lift over popularity, no regression.

The champion is the latest model registered under ``model_name`` in the BentoML store (only models that passed
this gate are registered), or none when ``champion`` is ``"none"``; ``champion`` may also name a model tag.
Returns whether the candidate passed; the decision artifact holds every check with its numbers.
"""

from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from components import DEFAULT_IMAGE


def gate(
    scores: Input[Artifact],
    decision: Output[Artifact],
    thresholds: str = "{}",
    model_name: str = "hllm",
    champion: str = "latest",
) -> bool:
    import json

    from hllm.gating import GateThresholds, decide

    with open(scores.path) as f:
        values = json.load(f)
    champion_metrics = None
    if champion != "none":
        import bentoml

        tag = champion if ":" in champion else f"{model_name}:{champion}"
        try:
            champion_metrics = bentoml.models.get(tag).info.metadata["metrics"]["test"]
        except bentoml.exceptions.NotFound:
            if champion != "latest":
                raise
    result = decide(values["test"], values["popularity_test"], GateThresholds.from_json(thresholds), champion_metrics)
    result.save(decision.path)
    decision.metadata.update({"passed": result.passed, "reasons": result.reasons})
    print("\n".join(result.reasons))
    # A single bool output: kfp's local runner cannot resolve NamedTuple fields in dsl.If conditions (kfp 2.17).
    return result.passed


def make(image: str = DEFAULT_IMAGE):
    return dsl.component(gate, base_image=image)


component = make()
