"""What the tests that start real processes share: free loopback ports, stopping a server's process group, and a
tiny trained model registered in the (throwaway) BentoML store for servers to load."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_command(port: int) -> list[str]:
    """``bentoml serve`` of the HLLM service on 127.0.0.1:``port`` (what `hllm serve` execs, minus its checks)."""
    service = "hllm_serving.service:HLLMService"
    return [sys.executable, "-m", "bentoml", "serve", service, "--host", "127.0.0.1", "--port", str(port)]


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stop a server started with ``start_new_session=True`` and every process under it: ``sig`` first, SIGKILL
    for whatever still runs 20 s later.

    BentoML starts each worker in a session of its own, so a signal to the server's process group misses the
    workers; they are found as descendants and signalled one by one. (A SIGKILL of the server alone leaves its
    worker serving on the inherited socket: not the dead replica a `kill -9` test means.)
    """
    import psutil

    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for each in (sig, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, each)
        for member in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.send_signal(each)
        _, family = psutil.wait_procs(family, timeout=20)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1 if family else 20)
        if not family and proc.poll() is not None:
            return


def register_tiny_model(root: Path, name: str, *, seed: int = 5, epochs: int = 1, users: int = 120, items: int = 80):
    """Train the demo recipe with tiny random-init backbones on synthetic data under ``root/run`` and register the
    model as ``name``; returns ``(tag, dataset)``."""
    import bentoml
    from testdata import tiny_run_config

    from hllm.data.synth import SynthConfig, generate
    from hllm.training.build import load_run_config, run_training

    dataset = generate(SynthConfig(seed=seed, n_users=users, n_items=items))
    run_training(dataset, load_run_config(text=tiny_run_config(epochs=epochs)), root / "run", progress=False)
    with bentoml.models.create(name) as saved:
        shutil.copytree(root / "run" / "model", saved.path, dirs_exist_ok=True)
    return str(saved.tag), dataset
