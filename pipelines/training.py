"""The training pipeline: validate -> features -> embed -> train -> evaluate -> gate -> (if passed) register ->
deploy (the service's Argo Rollout pointed at the new model: the canary starts; locally, rendered only).

`build(settings)` returns the pipeline for one image and accelerator layout (settings a cluster fixes when it
compiles); everything a run may change (data, config, thresholds, nodes) is a pipeline parameter.
"""

from dataclasses import dataclass

from kfp import dsl, kubernetes

from hllm_components import DEFAULT_IMAGE
from hllm_components.deploy import component as deploy
from hllm_components.embed_items import component as embed_items
from hllm_components.evaluate import component as evaluate
from hllm_components.gate import component as gate
from hllm_components.register import component as register
from hllm_components.sync_features import component as sync_features
from hllm_components.train import component as train
from hllm_components.validate_data import component as validate_data

PIPELINE_NAME = "hllm-training"


@dataclass(frozen=True)
class Settings:
    """Compile-time settings: the image and what each GPU step requests (0 GPUs = CPU only)."""

    image: str = DEFAULT_IMAGE
    accelerator: str = "nvidia.com/gpu"
    embed_gpus: int = 0
    gpus_per_node: int = 0
    train_cpu: str = "4"
    train_memory: str = "16G"
    # Cluster storage (ignored by the local runner): the data/Feast volume every step reads, the BentoML model
    # store the gate and register use (and the service mounts read-only), the secret with the production Feast
    # stores. `shared_dir` / `shared_pvc` (multi-node training) should name the data volume and its mount.
    data_pvc: str = "hllm-data"
    data_mount: str = "/data"
    models_pvc: str = "hllm-models"
    models_mount: str = "/models"
    feast_secret: str = "hllm-feast"
    # False for kfp's local runner, which applies env variables (it ignores volumes): keep the local stores.
    cluster: bool = True


def _storage(task, settings: "Settings", *, models: bool = False, feast: bool = False) -> None:
    """Mount the cluster volumes and secrets a step needs, and point the step at them (cluster builds only)."""
    if not settings.cluster:
        return
    kubernetes.mount_pvc(task, pvc_name=settings.data_pvc, mount_path=settings.data_mount)
    if models:
        kubernetes.mount_pvc(task, pvc_name=settings.models_pvc, mount_path=settings.models_mount)
        task.set_env_variable("BENTOML_HOME", f"{settings.models_mount}/bentoml")
    if feast:
        task.set_env_variable("FEAST_FS_YAML_FILE_PATH", "/app/feature_repo/feature_store.production.yaml")
        task.set_env_variable("HLLM_FEAST_OFFLINE_URI", f"{settings.data_mount}/feast/offline")
        kubernetes.use_secret_as_env(
            task,
            secret_name=settings.feast_secret,
            secret_key_to_env={"redis": "HLLM_FEAST_REDIS", "registry": "HLLM_FEAST_REGISTRY_URL"},
        )


def _gpu(task, count: int, accelerator: str) -> None:
    if count:
        task.set_accelerator_type(accelerator).set_accelerator_limit(count)
        kubernetes.add_toleration(task, key=accelerator, operator="Exists", effect="NoSchedule")


def build(settings: Settings = Settings()):
    image = settings.image

    @dsl.pipeline(
        name=PIPELINE_NAME, description="HLLM: validate, features, embed, train, evaluate, gate, register, deploy."
    )
    def training_pipeline(
        data_uri: str,
        run_config: str,
        feast_home: str = "/data/feast",
        policy: str = "strict",
        data_format: str = "auto",
        data_overrides: list = [],  # noqa: B006
        history_length: int = 50,
        gate_thresholds: str = "{}",
        model_name: str = "hllm",
        champion: str = "champion",
        deploy_target: str = "cluster" if settings.cluster else "local",  # local runs render, never apply
        deploy_mesh: str = "istio",
        num_nodes: int = 1,
        shared_dir: str = "",
        shared_pvc: str = "",
    ):
        checked = validate_data.make(image)(
            data_uri=data_uri, policy=policy, data_format=data_format, data_overrides=data_overrides
        ).set_display_name("validate data")
        checked.set_caching_options(False)  # reads external data
        _storage(checked, settings)
        features = sync_features.make(image)(
            dataset=checked.outputs["dataset"], feast_home=feast_home, history_length=history_length
        ).set_display_name("sync features")
        features.set_caching_options(False)  # writes the external feature store
        _storage(features, settings, feast=True)
        embedded = embed_items.make(image)(dataset=checked.outputs["dataset"], run_config=run_config)
        embedded.set_display_name("embed items")
        _gpu(embedded, settings.embed_gpus, settings.accelerator)
        _storage(embedded, settings)
        trained = train.make(image)(
            dataset=checked.outputs["dataset"],
            text_vectors=embedded.outputs["vectors"],
            run_config=run_config,
            num_nodes=num_nodes,
            gpus_per_node=settings.gpus_per_node,
            shared_dir=shared_dir,
            shared_pvc=shared_pvc,
            image=image,
        ).set_display_name("train")
        trained.after(features)
        trained.set_cpu_limit(settings.train_cpu).set_memory_limit(settings.train_memory)
        _gpu(trained, settings.gpus_per_node, settings.accelerator)
        _storage(trained, settings)
        if settings.gpus_per_node:
            kubernetes.empty_dir_mount(trained, volume_name="dshm", mount_path="/dev/shm", medium="Memory")
        scored = evaluate.make(image)(
            dataset=checked.outputs["dataset"], model=trained.outputs["model"], run=trained.outputs["run"]
        ).set_display_name("evaluate")
        _storage(scored, settings)
        decided = gate.make(image)(
            scores=scored.outputs["scores"],
            dataset=checked.outputs["dataset"],
            thresholds=gate_thresholds,
            model_name=model_name,
            champion=champion,
        ).set_display_name("gate")
        decided.set_caching_options(False)  # the champion lives outside the pipeline
        _storage(decided, settings, models=True)
        with dsl.If(decided.outputs["Output"] == True, name="gate-passed"):  # noqa: E712 (kfp condition)
            registered = register.make(image)(
                model=trained.outputs["model"],
                run=trained.outputs["run"],
                scores=scored.outputs["scores"],
                dataset=checked.outputs["dataset"],
                model_name=model_name,
                pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                feast_home=feast_home,
            ).set_display_name("register")
            registered.set_caching_options(False)
            _storage(registered, settings, models=True)
            deployed = deploy.make(image)(
                registration=registered.outputs["registration"],
                service_image=image,
                target=deploy_target,
                mesh=deploy_mesh,
            ).set_display_name("deploy")
            deployed.set_caching_options(False)  # acts on the cluster's Rollout

    return training_pipeline
