"""gate: may the candidate replace the champion? Absolute floors, lift over popularity, no regression.

The champion is the model labelled champion under ``model_name`` in the BentoML store (``hllm deploy promote``),
or, before any promotion, the latest registered (``hllm_serving.registry.resolve``); ``champion`` may also be
``"latest"``, ``"none"`` or a model tag.
Returns whether the candidate passed; the decision artifact holds every check with its numbers.
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from .. import DEFAULT_IMAGE  # the package constant (a relative import: no library is loaded here)


def gate(
    scores: Input[Artifact],
    dataset: Input[Dataset],
    decision: Output[Artifact],
    thresholds: str = "{}",
    model_name: str = "hllm",
    champion: str = "champion",
) -> bool:
    import json

    from hllm.data.schema import load_dataset
    from hllm.gating import GateThresholds, champion_test_metrics, decide

    with open(scores.path) as f:
        values = json.load(f)
    rules = GateThresholds.from_json(thresholds)  # a bad threshold fails before any scoring
    champion_metrics, how = None, "no champion"
    from hllm_serving.registry import resolve

    saved = resolve(model_name, champion)  # a tag that is not in the store raises
    if saved is not None:
        stored = dict(saved.info.metadata)
        champion_metrics, how = champion_test_metrics(saved.path, stored, load_dataset(dataset.path))
    result = decide(values["test"], values["popularity_test"], rules, champion_metrics)
    result.reasons.insert(0, f"champion: {how}")
    result.save(decision.path)
    decision.metadata.update({"passed": result.passed, "reasons": result.reasons})
    print("\n".join(result.reasons))
    # A single bool output: kfp's local runner cannot resolve NamedTuple fields in dsl.If conditions (kfp 2.17).
    return result.passed


def make(image: str = DEFAULT_IMAGE):
    return dsl.component(gate, base_image=image)


component = make()
