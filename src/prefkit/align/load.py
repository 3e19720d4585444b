"""Load what ``prefkit align`` wrote: a full model folder, or a LoRA adapter and its base.

A LoRA run records its base model three ways in ``prefkit_align.json``: as given
(``model_given``), as an absolute path (``model``, also in ``adapter_config.json``) and
relative to the run folder (``model_from_run``). :func:`load_aligned` tries the run-relative
form first (a run moved together with its base), then the absolute one, then the path as
given from the current folder, and only then the name on the Hugging Face Hub.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["base_model_path", "load_aligned"]


def base_model_path(run_dir: str | Path) -> str:
    """Where the base model of a LoRA run is: the first local folder among the run-relative,
    absolute and as-given paths, else the name as given (a Hub id)."""
    run = Path(run_dir)
    meta_file = run / "prefkit_align.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    adapter = json.loads((run / "adapter_config.json").read_text())
    given = meta.get("model_given") or adapter.get("base_model_name_or_path")
    candidates = []
    if meta.get("model_from_run"):
        candidates.append(run / meta["model_from_run"])
    for name in (meta.get("model"), adapter.get("base_model_name_or_path"), given):
        if name:
            candidates.append(Path(name))
    for path in candidates:
        if (path / "config.json").is_file():
            return str(path.resolve())
    if not given:
        raise ValueError(f"{run}: the adapter names no base model")
    return str(given)


def load_aligned(run_dir: str | Path, **kwargs: Any) -> Any:
    """The aligned model of a ``prefkit align`` output folder (``kwargs`` go to
    ``from_pretrained``): the model itself, or the base with the LoRA adapter applied."""
    from transformers import AutoModelForCausalLM

    run = Path(run_dir)
    if not (run / "adapter_config.json").is_file():
        return AutoModelForCausalLM.from_pretrained(run, **kwargs)
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(base_model_path(run), **kwargs)
    return PeftModel.from_pretrained(base, run)
