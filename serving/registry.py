"""Which registered model is the champion: a ``stage`` label on the models in the BentoML store.

The pipeline's ``register`` step saves every model as ``stage=candidate``. `promote` makes one the champion (the
model a canary analysis accepted; the previous champion becomes ``retired``); `rollback` hands the label back to
the most recently promoted retired model and marks the current champion ``rolled-back``. `conclude` records a
canary's outcome: promoted when its analysis succeeded, else marked ``rejected`` (the champion keeps its label,
as Argo keeps the stable pods when it aborts a canary). Each promotion stamps
``promoted_at`` (ns) so rollbacks can walk back more than one step. The gate compares candidates with
``resolve(name, "champion")``: the labelled champion, or, before any promotion, the latest registered model
(what ``hllm serve`` serves by default).
"""

from __future__ import annotations

import time

import bentoml

STAGE, PROMOTED_AT = "stage", "promoted_at"


def _relabel(model: bentoml.Model, **labels: str) -> None:
    model.info.labels.update(labels)
    model.flush()  # rewrites the model's model.yaml in the store


def _by_stage(name: str, stage: str) -> list[bentoml.Model]:
    try:
        models = bentoml.models.list(name)
    except bentoml.exceptions.NotFound:  # nothing registered under this name yet
        return []
    found = [m for m in models if m.info.labels.get(STAGE) == stage]
    return sorted(found, key=lambda m: int(m.info.labels.get(PROMOTED_AT, "0")))


def champion(name: str) -> bentoml.Model | None:
    """The model labelled champion under ``name`` (the most recently promoted, should there be several)."""
    champions = _by_stage(name, "champion")
    return champions[-1] if champions else None


def resolve(name: str, which: str) -> bentoml.Model | None:
    """``"none"`` -> None; ``"champion"`` -> the champion, else the latest registered; ``"latest"``; or a tag."""
    if which == "none":
        return None
    if which == "champion" and (found := champion(name)) is not None:
        return found
    if which in ("champion", "latest"):
        try:
            return bentoml.models.get(f"{name}:latest")
        except bentoml.exceptions.NotFound:
            return None
    return bentoml.models.get(which if ":" in which else f"{name}:{which}")


def promote(tag: str) -> tuple[str, str | None]:
    """Label ``tag`` champion; the previous champion(s) of its name become ``retired``. Returns (new, previous)."""
    model = bentoml.models.get(tag)
    previous = [m for m in _by_stage(model.tag.name, "champion") if m.tag != model.tag]
    for old in previous:
        _relabel(old, **{STAGE: "retired"})
    _relabel(model, **{STAGE: "champion", PROMOTED_AT: str(time.time_ns())})
    return str(model.tag), str(previous[-1].tag) if previous else None


def rollback(name: str) -> tuple[str, str]:
    """Give the champion label back to the last retired champion of ``name``. Returns (restored, rolled back)."""
    current = champion(name)
    retired = _by_stage(name, "retired")
    if current is None or not retired:
        raise ValueError(f"no rollback for '{name}': it needs a champion and a previous champion (promote first)")
    _relabel(current, **{STAGE: "rolled-back"})
    _relabel(retired[-1], **{STAGE: "champion"})
    return str(retired[-1].tag), str(current.tag)


def conclude(tag: str, successful: bool) -> dict[str, str | None]:
    """Record the outcome of ``tag``'s canary analysis in the store.

    Successful: ``tag`` is promoted (the previous champion retired). Otherwise the champion keeps its label and
    ``tag`` is marked ``rejected``. Returns ``outcome`` (promoted | rejected), ``candidate``, ``champion`` (after)
    and ``previous`` (the champion before).

    Raises:
        ValueError: ``tag`` failed its analysis but is already the champion (that needs `rollback`).
    """
    model = bentoml.models.get(tag)
    current = champion(model.tag.name)
    before = str(current.tag) if current is not None else None
    if successful:
        new, previous = promote(str(model.tag))
        return {"outcome": "promoted", "candidate": new, "champion": new, "previous": previous}
    if current is not None and current.tag == model.tag:
        raise ValueError(f"'{model.tag}' is the champion: its failed analysis needs `hllm deploy rollback`")
    _relabel(model, **{STAGE: "rejected"})
    return {"outcome": "rejected", "candidate": str(model.tag), "champion": before, "previous": before}
