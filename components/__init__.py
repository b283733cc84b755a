"""Kubeflow Pipelines v2 components, one folder per step; each is a thin adapter over one library call.

Every component module exposes its plain function (``<step>_fn``, what the unit tests call) and ``make(image)``,
which turns it into a kfp component on a given base image: the image is a pipeline-level setting.
"""

import os

# The project image (Dockerfile in the repo root); pipelines override it with --image.
DEFAULT_IMAGE = os.environ.get("HLLM_IMAGE", "ghcr.io/hllm-project/hllm:0.1.0-cpu")
