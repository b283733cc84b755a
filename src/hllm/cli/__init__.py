"""The ``hllm`` command line, one module per command group. Heavy libraries are imported inside commands."""

from hllm.cli import config, data, deploy, drift, pipeline, serve, train  # noqa: F401  (each registers its commands)
from hllm.cli.common import EXIT_BAD_INPUT, EXIT_DRIFT, EXIT_GATE_FAILED, EXIT_GATE_REFUSED, app

__all__ = ["EXIT_BAD_INPUT", "EXIT_DRIFT", "EXIT_GATE_FAILED", "EXIT_GATE_REFUSED", "app"]
