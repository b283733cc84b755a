"""register: save the model to the BentoML model store with its metrics, config, lineage and item index.

The item index (`hllm.index.write_index`, kind ``index``: ``auto`` = exact below 50k items, HNSW-Flat above) is
built here, once, into the stored model folder (``item_index/``): servers memory-map it instead of building it.
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from .. import DEFAULT_IMAGE  # the package constant (a relative import: no library is loaded here)


def register(
    model: Input[Model],
    run: Input[Artifact],
    scores: Input[Artifact],
    dataset: Input[Dataset],
    registration: Output[Artifact],
    model_name: str = "hllm",
    pipeline_run: str = "",
    feast_home: str = "",
    index: str = "auto",
):
    import json
    import shutil
    from pathlib import Path

    import bentoml

    import hllm
    from hllm.index import write_index

    def without_nulls(value):  # BentoML metadata holds no None; settings left unset are null in the run config
        if isinstance(value, dict):
            return {k: without_nulls(v) for k, v in value.items() if v is not None}
        return [without_nulls(v) for v in value] if isinstance(value, list) else value

    config = without_nulls(json.loads((Path(run.path) / "run_config.json").read_text()))
    with open(scores.path) as f:
        metrics = json.load(f)
    metadata = {
        "metrics": {"valid": metrics["valid"], "test": metrics["test"], "popularity_test": metrics["popularity_test"]},
        "config": config,
        "dataset_fingerprint": dataset.metadata.get("fingerprint", ""),
        "dataset_source": dataset.metadata.get("source", ""),
        "pipeline_run": pipeline_run,
        "feast_home": feast_home,  # where the online store the service reads histories from lives
        "hllm_version": hllm.__version__,
    }
    labels = {"model": config["train"]["model"], "mode": config["train"]["mode"], "stage": "candidate"}
    with bentoml.models.create(model_name, labels=labels, metadata=metadata) as saved:
        shutil.copytree(model.path, saved.path, dirs_exist_ok=True)
        index_dir = write_index(saved.path, index)
    index_meta = json.loads((index_dir / "index.json").read_text())
    record = {
        "tag": str(saved.tag),
        "path": saved.path,
        "store": str(Path(saved.path).parents[1]),
        "index": {"kind": index_meta["kind"], "params": index_meta["params"], "items": index_meta["items"]},
    }
    Path(registration.path).write_text(json.dumps(record, indent=2))
    registration.metadata.update(record)


def make(image: str = DEFAULT_IMAGE):
    return dsl.component(register, base_image=image)


component = make()
