"""embed_items: the Item LLM over the whole catalogue -> the item text states (pre-projection) cached training reads.

The accelerator is requested by the pipeline, never here; the step uses a GPU when the pod has one.
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from .. import DEFAULT_IMAGE  # the package constant (a relative import: no library is loaded here)


def embed_items(dataset: Input[Dataset], run_config: str, vectors: Output[Artifact]):
    import json
    from pathlib import Path

    from hllm.data.schema import load_dataset
    from hllm.training.build import TEXT_STATES_MANIFEST_FILE, encode_item_texts, load_run_config

    folder = encode_item_texts(load_run_config(text=run_config), load_dataset(dataset.path), vectors.path)
    manifest = json.loads((Path(folder) / TEXT_STATES_MANIFEST_FILE).read_text())
    vectors.metadata.update({k: manifest[k] for k in ("dim", "skipped") if k in manifest})
    vectors.metadata["items"] = len(manifest.get("item_ids", []))


def make(image: str = DEFAULT_IMAGE):
    return dsl.component(embed_items, base_image=image)


component = make()
