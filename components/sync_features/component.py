"""sync_features: write the Feast offline sources for the validated dataset, ``apply``, materialize online."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from .. import DEFAULT_IMAGE  # the package constant (a relative import: no library is loaded here)


def sync_features(
    dataset: Input[Dataset],
    feast_home: str,
    summary: Output[Artifact],
    history_length: int = 50,
    snapshots: str = "every_event",
):
    import json

    from hllm.data.schema import load_dataset
    from hllm_feature_repo.store import sync

    result = sync(load_dataset(dataset.path), feast_home, int(history_length), snapshots)
    with open(summary.path, "w") as f:
        json.dump(result.to_dict(), f, indent=2)
    summary.metadata.update(result.to_dict())


def make(image: str = DEFAULT_IMAGE):
    return dsl.component(sync_features, base_image=image)


component = make()
