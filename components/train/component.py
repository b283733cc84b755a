"""train: DeepSpeed training of the User LLM (or SASRec) on the validated dataset.

``gpus_per_node`` > 1 runs ``torchrun`` in this pod; ``num_nodes`` > 1 submits a Training Operator PyTorchJob
that runs the same training on every node, reading and writing ``shared_dir`` (a ReadWriteMany volume: the
pipeline mounts its data volume in this pod, `Settings.data_pvc` at `Settings.data_mount`, so pass those as
``shared_pvc`` / ``shared_dir``). Only the in-pod path reuses the embed step's text vectors; the torchrun and
PyTorchJob paths encode the catalogue again.
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from .. import DEFAULT_IMAGE  # the package constant (a relative import: no library is loaded here)


def train(
    dataset: Input[Dataset],
    text_vectors: Input[Artifact],
    run_config: str,
    model: Output[Model],
    run: Output[Artifact],
    num_nodes: int = 1,
    gpus_per_node: int = 0,
    shared_dir: str = "",
    shared_pvc: str = "",
    image: str = "",
):
    import json
    import shutil
    import subprocess
    import uuid
    from pathlib import Path

    from hllm.data.schema import load_dataset
    from hllm.training import launch
    from hllm.training.build import load_run_config, run_training

    config = load_run_config(text=run_config)
    num_nodes, gpus_per_node = int(num_nodes), int(gpus_per_node)
    if num_nodes > 1:
        if not (shared_dir and shared_pvc and image):
            raise ValueError("num_nodes > 1 needs shared_dir, shared_pvc and image (see manifests/training/)")
        work = launch.shared_path(shared_dir, "runs", uuid.uuid4().hex[:12])
        shutil.copytree(dataset.path, work / "data")
        (work / "run.yaml").write_text(config.to_yaml())
        args = launch.train_args(work / "data", work / "run", work / "run.yaml")
        job = launch.pytorchjob(
            f"hllm-train-{work.name}",
            image,
            args,
            num_nodes=num_nodes,
            gpus_per_node=gpus_per_node,
            shared_pvc=shared_pvc,
            shared_mount=shared_dir,
        )
        launch.submit_and_wait(job)
        shutil.copytree(work / "run", run.path, dirs_exist_ok=True)
    elif gpus_per_node > 1:
        Path(run.path).mkdir(parents=True, exist_ok=True)
        config_file = Path(run.path) / "run.yaml"
        config_file.write_text(config.to_yaml())
        subprocess.run(
            launch.local_command(gpus_per_node, launch.train_args(dataset.path, run.path, config_file)), check=True
        )
    else:
        run_training(load_dataset(dataset.path), config, run.path, text_vectors=text_vectors.path, progress=False)
    shutil.copytree(Path(run.path) / "model", model.path)
    result = json.loads((Path(run.path) / "train_result.json").read_text())
    model.metadata.update(
        {
            "model": config.train.model,
            "mode": config.train.mode,
            **{k: result[k] for k in ("best_epoch", "stopped", "steps") if k in result},
        }
    )


def make(image: str = DEFAULT_IMAGE):
    return dsl.component(train, base_image=image)


component = make()
