"""``python -m hllm.cli``: the same as the ``hllm`` command (used by launchers and retraining)."""

from hllm.cli import app

app()
