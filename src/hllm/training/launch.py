"""Run `hllm train` on more than one device: several processes in this pod, or a multi-node PyTorchJob.

- one device (CPU or one GPU): the caller trains in-process (`run_training`);
- several GPUs on one node: `torchrun --nproc_per_node G -m hllm.cli train ...` (`local_command`);
- several nodes: a Kubeflow Training Operator ``PyTorchJob`` running the same command in every replica
  (`pytorchjob`), submitted and watched with the Kubernetes API (`submit_and_wait`). The replicas read the data
  and write the run folder on a shared volume (a ReadWriteMany PVC) that the caller mounts too.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)
TRAINING_API = ("kubeflow.org", "v1", "pytorchjobs")


def train_args(data: str | Path, out: str | Path, config: str | Path, resume: bool = False) -> list[str]:
    """The ``hllm train`` arguments every process runs."""
    return ["train", str(data), "--out", str(out), "--config", str(config), *(["--resume"] if resume else [])]


def local_command(nproc: int, args: list[str], master_port: int = 29500) -> list[str]:
    """``torchrun`` over ``nproc`` processes of ``hllm`` with ``args`` (one node)."""
    if nproc < 1:
        raise ValueError(f"nproc={nproc} must be >= 1")
    run = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
    return [*run, "--master_port", str(master_port), "-m", "hllm.cli", *args]


def pytorchjob(
    name: str,
    image: str,
    args: list[str],
    *,
    num_nodes: int,
    gpus_per_node: int,
    shared_pvc: str,
    shared_mount: str = "/shared",
    namespace: str = "kubeflow",
    cpu: str = "8",
    memory: str = "64Gi",
) -> dict[str, Any]:
    """A ``kubeflow.org/v1`` PyTorchJob: one Master and ``num_nodes - 1`` Workers, each ``gpus_per_node`` GPUs.

    The Training Operator sets MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE (= nodes); ``torchrun`` in each
    replica starts one process per GPU and derives the global ranks from them (``--nnodes``/``--node_rank``).
    """
    if num_nodes < 2:
        raise ValueError(f"num_nodes={num_nodes}: a PyTorchJob is for 2 or more nodes; train in the pod instead")
    if gpus_per_node < 0:
        raise ValueError(f"gpus_per_node={gpus_per_node} must be >= 0")
    procs = max(gpus_per_node, 1)
    command = [
        "sh",
        "-c",
        f"exec python -m torch.distributed.run --nnodes {num_nodes} --nproc_per_node {procs} "
        '--node_rank "$RANK" --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" -m hllm.cli '
        + " ".join(_quote(a) for a in args),
    ]
    resources: dict[str, Any] = {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}
    if gpus_per_node:
        resources["limits"]["nvidia.com/gpu"] = gpus_per_node
        resources["requests"]["nvidia.com/gpu"] = gpus_per_node

    def replica(count: int) -> dict[str, Any]:
        container = {
            "name": "pytorch",  # the Training Operator requires this container name
            "image": image,
            "command": command,
            "env": [{"name": "HF_HUB_OFFLINE", "value": "1"}, {"name": "DO_NOT_TRACK", "value": "1"}],
            "resources": resources,
            "volumeMounts": [{"name": "shared", "mountPath": shared_mount}, {"name": "dshm", "mountPath": "/dev/shm"}],
            "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True},
        }
        spec = {
            "containers": [container],
            "volumes": [
                {"name": "shared", "persistentVolumeClaim": {"claimName": shared_pvc}},
                {"name": "dshm", "emptyDir": {"medium": "Memory"}},
            ],
        }
        if gpus_per_node:
            spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        return {"replicas": count, "restartPolicy": "OnFailure", "template": {"spec": spec}}

    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "hllm"}},
        "spec": {
            "runPolicy": {"cleanPodPolicy": "Running", "backoffLimit": 3},
            "pytorchReplicaSpecs": {"Master": replica(1), "Worker": replica(num_nodes - 1)},
        },
    }


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def submit_and_wait(job: dict[str, Any], timeout_s: float = 24 * 3600, poll_s: float = 30) -> str:
    """Create ``job`` with the in-cluster (or kubeconfig) credentials and wait until it succeeds or fails.

    Raises:
        RuntimeError: the job failed or did not finish within ``timeout_s``.
    """
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    api = client.CustomObjectsApi()
    group, version, plural = TRAINING_API
    namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
    api.create_namespaced_custom_object(group, version, namespace, plural, job)
    logger.info("submitted PyTorchJob %s/%s", namespace, name)
    deadline = time.monotonic() + timeout_s
    succeeded = False
    try:
        while time.monotonic() < deadline:
            status = api.get_namespaced_custom_object(group, version, namespace, plural, name).get("status", {})
            for condition in status.get("conditions", []):
                if condition.get("status") == "True" and condition.get("type") in ("Succeeded", "Failed"):
                    if condition["type"] == "Failed":
                        raise RuntimeError(f"PyTorchJob {namespace}/{name} failed: {condition.get('message', '')}")
                    succeeded = True
                    return name
            time.sleep(poll_s)
        raise RuntimeError(f"PyTorchJob {namespace}/{name} did not finish within {timeout_s:.0f} s")
    finally:
        if not succeeded:  # failed, timed out or interrupted: free the GPUs its replicas hold
            api.delete_namespaced_custom_object(group, version, namespace, plural, name)


def shared_path(root: str | Path, *parts: str) -> Path:
    """A path on the shared volume (created), where replicas and the caller exchange data and runs."""
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
