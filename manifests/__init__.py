"""Kubernetes manifests (kustomize base and overlays, PyTorchJob, KFP recurring run) and vendored CRD schemas.

Installed as the data package ``hllm_manifests``; code finds these files through ``importlib.resources``.
"""
