"""Validate Kubernetes manifests offline: core kinds against the Kubernetes schema, custom resources against
vendored CRD schemas (``manifests/schemas/<group>_<version>_<kind>.json``), anything else is an error.

``kubernetes-validate`` alone passes custom resources with a warning; here an unknown kind fails, and the pod
templates inside a custom resource (a PyTorchJob's replicas, a Rollout's template) are checked as core
``PodTemplate`` objects, so a typo in a container field is caught wherever it hides.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

# The repo's manifests/ folder, installed as the data package `hllm_manifests` (editable install, wheel or image).
MANIFESTS = Path(str(files("hllm_manifests")))
SCHEMAS = MANIFESTS / "schemas"
KUBERNETES_VERSION = "1.30.0"
# Where each custom kind keeps its pod templates (paths of keys; "*" = every value of a mapping).
POD_TEMPLATES: dict[str, list[tuple[str, ...]]] = {
    "PyTorchJob": [("spec", "pytorchReplicaSpecs", "*", "template")],
    "Rollout": [("spec", "template")],
}


class ManifestError(ValueError):
    """A manifest that does not validate; the message names the document, kind and field."""


def _schema_file(api_version: str, kind: str, schemas: Path) -> Path:
    group, _, version = api_version.rpartition("/")
    return schemas / f"{group}_{version}_{kind.lower()}.json"


def _walk(doc: Any, path: tuple[str, ...]) -> Iterator[Any]:
    if not path:
        yield doc
        return
    head, rest = path[0], path[1:]
    if not isinstance(doc, dict):
        return
    values = doc.values() if head == "*" else [doc[head]] if head in doc else []
    for value in values:
        yield from _walk(value, rest)


def validate_manifest(doc: dict[str, Any], where: str = "manifest", schemas: Path = SCHEMAS) -> None:
    """Raise `ManifestError` unless ``doc`` validates against its kind's schema."""
    import jsonschema
    import kubernetes_validate

    if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
        raise ManifestError(f"{where}: not a Kubernetes object (needs apiVersion and kind)")
    kind, api = doc["kind"], doc["apiVersion"]
    name = f"{where}: {kind} {doc.get('metadata', {}).get('name', '?')}"
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        return
    except kubernetes_validate.SchemaNotFoundError:
        pass
    except kubernetes_validate.ValidationError as exc:
        raise ManifestError(f"{name}: {exc.message} at {'.'.join(map(str, exc.absolute_path))}") from None
    schema_file = _schema_file(api, kind, schemas)
    if not schema_file.is_file():
        raise ManifestError(f"{name}: unknown kind {api}/{kind} (no Kubernetes schema and no {schema_file.name})")
    try:
        jsonschema.validate(doc, json.loads(schema_file.read_text()))
    except jsonschema.ValidationError as exc:
        raise ManifestError(f"{name}: {exc.message} at {'.'.join(map(str, exc.absolute_path))}") from None
    for path in POD_TEMPLATES.get(kind, []):
        for template in _walk(doc, path):
            pod = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
            validate_manifest(pod, f"{name} pod template", schemas)


def validate_documents(text: str, where: str = "manifest", schemas: Path = SCHEMAS) -> int:
    """Validate every document of a multi-document YAML string; returns how many there were."""
    count = 0
    for index, doc in enumerate(yaml.safe_load_all(text)):
        if doc is not None:
            validate_manifest(doc, f"{where}[{index}]", schemas)
            count += 1
    return count
