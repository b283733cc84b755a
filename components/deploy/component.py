"""deploy: point the service's Argo Rollout at the model just registered (the canary starts from there).

``target="cluster"``: a JSON patch on the live Rollout (``argoproj.io/v1alpha1`` ``rollouts/<rollout>`` in
``namespace``; the step's service account needs ``patch`` on it) setting the service container's image and its
``HLLM_MODEL``; the Argo Rollouts controller then runs the canary steps and the analysis. ``target="local"``:
nothing is applied; the step writes the patch (``rollout-patch.json``) and, when ``kubectl`` is installed, the
whole rendered Rollout path (``rollout.yaml``, `hllm.rollout.render_canary`) and prints where they are.
"""

from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from .. import DEFAULT_IMAGE  # the package constant (a relative import: no library is loaded here)


def deploy(
    registration: Input[Artifact],
    manifests: Output[Artifact],
    service_image: str,
    target: str = "local",
    mesh: str = "istio",
    namespace: str = "hllm",
    rollout: str = "hllm",
) -> str:
    import json
    from pathlib import Path

    from hllm.rollout import render_canary, rollout_patch

    if target not in ("local", "cluster"):
        raise ValueError(f"target='{target}' must be local or cluster")
    tag = json.loads(Path(registration.path).read_text())["tag"]
    patch = rollout_patch(service_image, tag)
    out = Path(manifests.path)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rollout-patch.json").write_text(json.dumps(patch, indent=2) + "\n")
    manifests.metadata.update({"model": tag, "image": service_image, "target": target})
    if target == "cluster":
        from kubernetes import client, config

        config.load_incluster_config()
        client.CustomObjectsApi().patch_namespaced_custom_object(
            "argoproj.io", "v1alpha1", namespace, "rollouts", rollout, patch
        )
        print(f"rollouts/{rollout} in {namespace} now on {service_image} serving {tag}: the canary has started")
        return f"patched rollouts/{rollout}"
    try:
        (out / "rollout.yaml").write_text(render_canary(service_image, model=tag, mesh=mesh))
        how = f"kubectl apply -f {out / 'rollout.yaml'}"
    except ValueError as exc:  # no kubectl here: the patch alone says what would change
        print(f"not rendered ({exc})")
        how = f"kubectl -n {namespace} patch rollout {rollout} --type json --patch-file {out / 'rollout-patch.json'}"
    print(f"local run: nothing applied; to start the canary of {tag}: {how}")
    return how


def make(image: str = DEFAULT_IMAGE):
    return dsl.component(deploy, base_image=image)


component = make()
