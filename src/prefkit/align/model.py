"""The causal language model a training loop starts from: loaded seeded in float32, with a
fresh LoRA adapter when asked, dropout off, on its device in train mode.

    model, source, tokenizer, peft = prepare_causal_lm("models/tiny", None, device="cpu",
                                                       seed=0, lora_r=8)

Shared by :func:`prefkit.align.align` and :func:`prefkit.rl.train_rl` (one owner for how a
policy is loaded, so both loops seed, name and adapt it alike); :func:`add_lora` also gives
prefkit.reward's fine-tuned scorers their adapter.

The attention implementation is the model's (transformers' default, SDPA, unless the model
object was loaded otherwise). Inside ``with attention_implementation("flex_attention"):``
every model loaded (:func:`load_causal_lm`) or prepared (:func:`prepare_causal_lm`) is given
that one instead: ``prefkit align --attention flex`` runs the whole call in it, so the run
keeps its model folder as its source (a model object would not) and its live reference
loads alike. Preparing a FlexAttention model to train on a device where FlexAttention has
no backward (a CPU, torch 2.11-2.13) is refused, before any step.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["ATTENTION", "add_lora", "attention_implementation", "is_peft_model",
           "load_causal_lm", "prepare_causal_lm"]

#: ``prefkit align --attention`` names -> transformers' ``attn_implementation``
ATTENTION = {"sdpa": "sdpa", "eager": "eager", "flex": "flex_attention"}
_ATTENTION: ContextVar[str | None] = ContextVar("prefkit_attention", default=None)


@contextlib.contextmanager
def attention_implementation(name: str | None) -> Iterator[None]:
    """Models loaded or prepared inside use transformers' ``attn_implementation`` ``name``
    (``"sdpa"``, ``"eager"``, ``"flex_attention"``, or an ``ATTENTION`` key); None: each
    model's own."""
    impl = ATTENTION.get(name, name) if name is not None else None
    token = _ATTENTION.set(impl)
    try:
        yield
    finally:
        _ATTENTION.reset(token)


def _set_attention(model: nn.Module, device: torch.device | str | None) -> None:
    """Give ``model`` the attention of :func:`attention_implementation` (if any); refuse
    FlexAttention on a ``device`` where it cannot be trained."""
    impl = _ATTENTION.get()
    if impl is None:
        return
    lm = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    if getattr(lm.config, "_attn_implementation", None) != impl:
        lm.set_attn_implementation(impl)
    if impl == "flex_attention" and device is not None:
        from prefkit.align.packing import flex_backward_supported

        if not flex_backward_supported(device):
            raise ValueError(
                f"FlexAttention cannot be trained on {torch.device(device).type} (torch "
                f"{torch.__version__.split('+')[0]}: no FlexAttention backward there); use "
                "it on a CUDA GPU, or the default attention (SDPA) here")


def load_causal_lm(model: Any, seed: int = 0) -> tuple[nn.Module, str | None]:
    """(model in float32, the path or Hub id it came from); a model object is returned as it
    is, with source None. Any freshly initialised weight is drawn from ``seed``. A local folder
    is loaded by its absolute path, so the saved model (a LoRA adapter's
    ``base_model_name_or_path``, the ``config.json``'s ``_name_or_path``) names a path that
    works from any directory.

    Raises FileNotFoundError for a file, or a name that is neither a model folder here nor a
    Hub id that could be downloaded or found in the local cache."""
    if isinstance(model, nn.Module):
        return model, None
    from transformers import AutoModelForCausalLM

    local = Path(model).expanduser()
    name = os.path.abspath(local) if local.exists() else str(model)
    if Path(name).exists() and not Path(name).is_dir():
        raise FileNotFoundError(f"model {name!r} is a file; pass the folder of a transformers "
                                "causal LM (config.json + weights) or a Hub id")
    try:
        impl = _ATTENTION.get()
        with torch.random.fork_rng(devices=[]):  # any freshly initialised weight is seeded
            torch.manual_seed(seed)
            return AutoModelForCausalLM.from_pretrained(
                name, dtype=torch.float32,
                **({"attn_implementation": impl} if impl else {})), name
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(
            f"cannot load a causal LM from {name!r}: it is not a model folder here, and not a "
            "Hub id that could be downloaded or found in the local cache") from exc


def is_peft_model(model: nn.Module) -> bool:
    """Whether ``model`` carries a peft adapter that can be disabled (the LoRA reference)."""
    return hasattr(model, "peft_config") and callable(getattr(model, "disable_adapter", None))


def add_lora(model: nn.Module, r: int, *, alpha: float = 16.0, dropout: float = 0.0,
             target_modules: str | Sequence[str] | None = None, seed: int = 0,
             task_type: str | None = "CAUSAL_LM") -> nn.Module:
    """``model`` with a fresh rank-``r`` LoRA adapter (peft's ``get_peft_model``: the base
    weights frozen), its initial weights drawn from ``seed``. ``target_modules``: module
    names, ``"all-linear"``, or None for peft's default for the model type (``"all-linear"``
    where peft has none). ``task_type`` None for a bare backbone (a reward model's encoder)."""
    from peft import LoraConfig, get_peft_model
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    targets = target_modules
    if targets is None and getattr(model.config, "model_type", None) not in DEFAULTS:
        targets = "all-linear"
    lcfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, task_type=task_type,
                      target_modules=targets if targets is None or isinstance(targets, str)
                      else list(targets))
    with torch.random.fork_rng(devices=[]):  # the adapter's initial weights come from the seed
        torch.manual_seed(seed)
        return get_peft_model(model, lcfg)


def prepare_causal_lm(model: Any, tokenizer: Any = None, *, device: torch.device | str,
                      seed: int = 0, lora_r: int = 0, lora_alpha: float = 16.0,
                      lora_dropout: float = 0.0,
                      lora_target_modules: str | Sequence[str] | None = None,
                      disable_dropout: bool = True, gradient_checkpointing: bool = False
                      ) -> tuple[nn.Module, str | None, Any, bool]:
    """The model a loop trains, where it came from, its tokenizer, whether it is a peft model.

    ``model``: a causal LM object, its folder or a Hub id (:func:`load_causal_lm`, seeded by
    ``seed``). ``tokenizer`` None: the model folder's, when it has one (else None: the caller
    decides whether it needs one). ``lora_r > 0`` adds a fresh LoRA adapter (rank ``lora_r``,
    ``lora_alpha``, ``lora_dropout``; its weights drawn from ``seed``) on
    ``lora_target_modules``: module names, ``"all-linear"``, or None for peft's default for the
    architecture (``"all-linear"`` where peft has none); a model that already has an adapter is
    refused. ``disable_dropout`` zeroes every dropout probability; ``gradient_checkpointing``
    turns it on (non-reentrant). Inside :func:`attention_implementation` the model gets that
    attention (FlexAttention refused where it has no backward). The model is moved to
    ``device`` and put in train mode."""
    model, source = load_causal_lm(model, seed)
    if tokenizer is None and source is not None:
        from transformers import AutoTokenizer

        with contextlib.suppress(OSError, ValueError):
            tokenizer = AutoTokenizer.from_pretrained(source)
    if lora_r and is_peft_model(model):
        raise ValueError("the model already has a peft adapter; set lora_r=0 to train it as "
                         "it is (the reference is then the model with the adapter disabled)")
    if lora_r:
        model = add_lora(model, lora_r, alpha=lora_alpha, dropout=lora_dropout,
                         target_modules=lora_target_modules, seed=seed)
    peft = is_peft_model(model)
    if disable_dropout:
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
    _set_attention(model, device)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.to(device).train()
    return model, source, tokenizer, peft
