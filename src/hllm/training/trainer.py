"""The DeepSpeed training loop shared by every `RecTask`.

One process (gloo on CPU, no launcher needed) or several (``deepspeed`` launcher or ``torchrun``): the
DeepSpeed JSON comes from `hllm.config.deepspeed_config`, the optimizer is a torch AdamW, the schedule
linear warmup + cosine. Every ``eval_every`` epochs the model is ranked on the validation split (full
ranking, history masked); the best weights by ``select_metric`` are exported (safetensors) and a resumable
DeepSpeed checkpoint is written. Validation is `hllm.evaluation.evaluate.evaluate` of the task's
``recommender()``, the entry point `hllm evaluate` and the gate use too. Training stops early after
``patience`` validations without improvement, when the wall-clock budget runs out, or when the task reports
embedding collapse.

Outputs in ``out_dir``: ``model/`` (best weights + config), ``checkpoints/``, ``metrics.jsonl`` (one JSON line
per logged step and per validation), ``curve.png`` and ``train_result.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hllm.config import TrainConfig, deepspeed_config
from hllm.evaluation.evaluate import evaluate
from hllm.models.loss import EmbeddingCollapseError
from hllm.training.data import EvalSet, LengthBatches, TrainWindows
from hllm.training.tasks import RecTask

logger = logging.getLogger(__name__)
LOG_EVERY = 20


@dataclass
class TrainResult:
    best_metrics: dict[str, float]
    best_epoch: int
    epochs_run: int
    steps: int
    elapsed_s: float
    stopped: str
    out_dir: str


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _prepare_distributed_env(out: Path) -> str | None:
    """Defaults so one process runs without a launcher; CPU accelerator when there is no GPU (STACK.md).

    Returns the ``init_method`` of a one-process run: a file store in ``out``, so no TCP port is involved (a port
    chosen here can be taken by any other process on a busy machine: seen as EADDRINUSE when several trainings ran
    at once). Several processes (torchrun, the Training Operator: ``WORLD_SIZE`` > 1) use the launcher's
    ``env://`` rendezvous (``None``).
    """
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    for key, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(key, value)
    # DeepSpeed looks for MPI unless all five variables are set; with a file store the port is never opened.
    os.environ.setdefault("MASTER_PORT", "29500")
    if os.environ["WORLD_SIZE"] != "1":
        return None
    store = out / ".dist_store"
    store.unlink(missing_ok=True)  # a file store must not be reused across process groups
    return f"file://{store.resolve()}"


def _use_bf16(config: TrainConfig) -> bool:
    if config.precision == "bf16":
        return True
    return config.precision == "auto" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def _optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr)


def train(
    task: RecTask,
    train_sequences: list[list[int]],
    valid: EvalSet,
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    show_progress: bool = True,
    length_batching: bool = False,
) -> TrainResult:
    """Train ``task`` with DeepSpeed and keep the best validation weights in ``out_dir/model``.

    ``length_batching`` (one process only) batches windows of similar length with equal target counts
    (`LengthBatches`): about 10x less padding compute on short-sequence data such as Amazon reviews.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    init_method = _prepare_distributed_env(out)
    import deepspeed
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # inference-only op; avoids a JIT build
    seed_everything(config.seed)
    started = time.perf_counter()

    single = {"init_method": init_method, "rank": 0, "world_size": 1} if init_method else {}
    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo", **single)
    if hasattr(task, "set_training_items"):
        task.set_training_items(torch.tensor(sorted({i for seq in train_sequences for i in seq}), dtype=torch.long))
    dataset = TrainWindows(train_sequences, config.max_seq_len)
    if len(dataset) == 0:
        raise ValueError("no training windows: every training sequence has fewer than 2 items")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    sampler = torch.utils.data.DistributedSampler(dataset, shuffle=True, seed=config.seed) if world > 1 else None
    generator = torch.Generator().manual_seed(config.seed)
    if length_batching:
        if world > 1:
            raise ValueError("length_batching supports one process only")
        sampler = LengthBatches([len(w) for w in dataset.samples], config.batch_size, seed=config.seed)
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=TrainWindows.collate)
    else:
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=config.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            collate_fn=TrainWindows.collate,
            generator=generator,
            drop_last=False,
        )
    total_steps = config.epochs * math.ceil(len(loader) / config.grad_accum)
    bf16 = _use_bf16(config)
    ds_config = deepspeed_config(config, total_steps, bf16)
    engine, _, _, _ = deepspeed.initialize(model=task.model, optimizer=_optimizer(task.model, config), config=ds_config)
    rank = engine.global_rank
    (out / "train_config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    (out / "deepspeed_config.json").write_text(json.dumps(ds_config, indent=2) + "\n")

    state = {"epoch": 0, "best": -1.0, "best_epoch": 0, "best_metrics": {}, "bad_evals": 0, "step": 0}
    if resume and (out / "checkpoints" / "latest").exists():
        _, client_state = engine.load_checkpoint(str(out / "checkpoints"))
        state.update({k: v for k, v in (client_state or {}).items() if k in state})
        logger.info("resumed from epoch %d (best %s=%.4f)", state["epoch"], config.select_metric, state["best"])
    metrics_file = (out / "metrics.jsonl").open("a")
    stopped = "epochs"
    collapse: EmbeddingCollapseError | None = None
    try:
        stopped = _epochs(
            task, engine, loader, sampler, valid, config, out, state, metrics_file, started, show_progress
        )
    except EmbeddingCollapseError as exc:  # stop instead of training on garbage; keep what was learned so far
        collapse, stopped = exc, f"collapse: {exc}"
        logger.error("training stopped at step %d: %s", state["step"], exc)
    finally:
        metrics_file.close()
    elapsed = time.perf_counter() - started
    result = TrainResult(
        state["best_metrics"], state["best_epoch"], state["epoch"], state["step"], elapsed, stopped, str(out)
    )
    if rank == 0:
        (out / "train_result.json").write_text(json.dumps(dataclasses.asdict(result), indent=2) + "\n")
        plot_curves(out / "metrics.jsonl", out / "curve.png", config.select_metric)
    if collapse is not None:
        raise collapse
    return result


def _epochs(task, engine, loader, sampler, valid, config, out, state, metrics_file, started, show_progress) -> str:
    from tqdm.auto import tqdm

    rank = engine.global_rank
    deadline = started + config.max_minutes * 60 if config.max_minutes else None
    task.model.train()
    while state["epoch"] < config.epochs:
        epoch = state["epoch"] + 1
        if sampler is not None:
            sampler.set_epoch(epoch)
        bar = tqdm(loader, desc=f"epoch {epoch}/{config.epochs}", disable=not show_progress or rank != 0, leave=False)
        for batch in bar:
            loss, stats = task.loss(batch)
            engine.backward(loss)
            engine.step()
            if hasattr(task, "after_step"):
                task.after_step()
            state["step"] += 1
            if state["step"] % LOG_EVERY == 0 or state["step"] == 1:
                lr = engine.get_lr()[0]
                record = {"step": state["step"], "epoch": epoch, "loss": loss.item(), "lr": lr, **stats}
                metrics_file.write(json.dumps(record) + "\n")
                metrics_file.flush()
                bar.set_postfix(loss=f"{record['loss']:.4f}")
            if deadline and time.perf_counter() > deadline:
                break
        state["epoch"] = epoch
        out_of_time = bool(deadline and time.perf_counter() > deadline)
        due = epoch % config.eval_every == 0 or out_of_time or epoch == config.epochs
        if due and _validate(task, engine, valid, config, out, state, metrics_file, epoch):
            return "early_stopping"
        if out_of_time:
            return "time_budget"
    return "epochs"


def _validate(task, engine, valid, config, out, state, metrics_file, epoch) -> bool:
    """Validate, export on improvement, checkpoint; True when early stopping should end training."""
    metrics = evaluate(task.recommender(), valid, max_len=config.max_seq_len, batch_size=config.eval_batch_size)
    value = metrics[config.select_metric]
    metrics_file.write(json.dumps({"step": state["step"], "epoch": epoch, "split": "valid", **metrics}) + "\n")
    metrics_file.flush()
    logger.info("epoch %d: valid %s=%.4f (best %.4f)", epoch, config.select_metric, value, max(state["best"], 0))
    if value > state["best"]:
        state.update(best=value, best_epoch=epoch, best_metrics=metrics, bad_evals=0)
        if engine.global_rank == 0:
            task.export(out / "model")
    else:
        state["bad_evals"] += 1
    engine.save_checkpoint(str(out / "checkpoints"), tag=f"epoch{epoch}", client_state=dict(state))
    return state["bad_evals"] >= config.patience


def plot_curves(metrics_path: Path, png_path: Path, select_metric: str) -> None:
    """Training loss and the validation metric against steps, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    train = [r for r in records if "loss" in r]
    valid = [r for r in records if r.get("split") == "valid"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    left.plot([r["step"] for r in train], [r["loss"] for r in train])
    left.set(xlabel="step", ylabel="training loss", title="loss")
    right.plot([r["step"] for r in valid], [r[select_metric] for r in valid], marker="o")
    right.set(xlabel="step", ylabel=select_metric, title=f"validation {select_metric}")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
