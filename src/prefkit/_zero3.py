"""DeepSpeed ZeRO-3 for :mod:`prefkit.processes` (private): accelerate's DeepSpeed config
read and checked (:func:`zero3_settings`), the engine started on the model and the loop's
AdamW (:func:`initialize`), and the full weights and AdamW state gathered from the
partitions for prefkit's one-file checkpoint (:func:`full_state`) and broadcast back into
them on resume (:class:`ModelLoader`, :class:`OptimizerLoader`). Imported only when a run
asks for DeepSpeed; DeepSpeed is imported inside the functions.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from prefkit.processes import ModelCall, ZeRO3

if TYPE_CHECKING:
    from prefkit.processes import PreparedModel

__all__ = ["ModelLoader", "OptimizerLoader", "full_state", "initialize", "zero3_settings"]


#: DeepSpeed config keys prefkit sets itself (from AlignConfig), which must be "auto" or absent
_PREFKIT_SETS = {"gradient_accumulation_steps": "AlignConfig.grad_accum (--grad-accum)",
                 "gradient_clipping": "AlignConfig.grad_clip (--grad-clip)",
                 "train_batch_size": "AlignConfig.batch_size x grad_accum x processes",
                 "train_micro_batch_size_per_gpu": "AlignConfig.batch_size (--batch-size)",
                 "optimizer": "prefkit's AdamW (AlignConfig.learning_rate, weight_decay)",
                 "scheduler": "prefkit's linear warmup and decay (AlignConfig.warmup)"}


def zero3_settings() -> ZeRO3:
    """accelerate's DeepSpeed plugin as its environment (or ``ACCELERATE_DEEPSPEED_CONFIG_FILE``)
    gives it, checked for what prefkit runs: ZeRO stage 3 without offload, prefkit's own
    precision, batch counts, clipping, optimizer and schedule."""
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        raise ValueError("accelerate is configured for DeepSpeed, but DeepSpeed is not "
                         "installed (it does not come with prefkit): pip install deepspeed and "
                         "launch with --use_deepspeed --zero_stage 3, or launch with FSDP2 "
                         "(--use_fsdp --fsdp_version 2) or DDP")
    from accelerate.utils import DeepSpeedPlugin

    plugin = DeepSpeedPlugin()  # reads ACCELERATE_DEEPSPEED_* from the environment
    config = dict(plugin.deepspeed_config)
    zero = dict(config.get("zero_optimization") or {})
    stage = int(zero.get("stage", plugin.zero_stage))
    if stage != 3:
        raise ValueError(f"accelerate is configured for DeepSpeed ZeRO stage {stage}; prefkit "
                         "runs DeepSpeed with ZeRO stage 3 only (accelerate launch "
                         "--use_deepspeed --zero_stage 3; ACCELERATE_DEEPSPEED_ZERO_STAGE=3): "
                         "for stages 1-2 (optimizer state / gradients sharded) use FSDP2 "
                         "(--use_fsdp --fsdp_version 2) or DDP")
    for what in ("offload_optimizer", "offload_param"):
        device = str((zero.get(what) or {}).get("device", "none")).lower()
        if device not in ("none", "null"):
            raise ValueError(f"accelerate's DeepSpeed config offloads ({what} to {device}), "
                             "which prefkit does not run: launch without offload (--offload_"
                             f"{what.removeprefix('offload_')}_device none), or use FSDP2 with "
                             "FSDP_OFFLOAD_PARAMS=true")
    amp = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower() or "no"
    for what in ("fp16", "bf16"):
        if str((config.get(what) or {}).get("enabled", False)).lower() == "true" or amp == what:
            raise ValueError(f"accelerate is configured for DeepSpeed with {what}; prefkit sets "
                             "precision itself: launch with --mixed_precision no and give the "
                             "run's precision (AlignConfig.precision='bf16', --precision bf16)")
    for key, instead in _PREFKIT_SETS.items():
        value = config.get(key, "auto")
        if value != "auto" and not (key == "gradient_accumulation_steps" and value == 1):
            raise ValueError(f"accelerate's DeepSpeed config sets {key}={config[key]!r}, which "
                             f"prefkit sets itself from {instead}: leave it \"auto\" (or out)")
    zero["stage"] = 3
    kept = {k: v for k, v in config.items() if k not in _PREFKIT_SETS and k not in
            ("zero_optimization", "fp16", "bf16", "steps_per_print")}
    return ZeRO3(config={**kept, "zero_optimization": zero, "steps_per_print": 2 ** 62})


def initialize(prepared: PreparedModel, optimizer: torch.optim.Optimizer, *,
               grad_clip: float | None) -> Any:
    """DeepSpeed's engine (``deepspeed.initialize``) around ``ModelCall(prepared.model)``
    with ``optimizer``, for :meth:`~prefkit.processes.PreparedModel.attach`; records the
    optimizer's groups (``prepared.order``) and the weights used outside their modules'
    forwards (``prepared.outside``: the LM head's, registered on the root)."""
    import deepspeed

    from prefkit.align.logprobs import split_lm_head

    prepared.order = [list(g["params"]) for g in optimizer.param_groups]
    split = split_lm_head(prepared.model)
    prepared.outside = [split.head.weight] if split is not None else []
    root = ModelCall(prepared.model)
    for p in prepared.outside:
        deepspeed.zero.register_external_parameter(root, p)
    config = {**prepared.zero3.config, "gradient_clipping": float(grad_clip or 0.0),
              # prefkit scales its losses and calls the step itself: DeepSpeed's
              # accumulation count stays 1 and its batch sizes only label its logs
              "gradient_accumulation_steps": 1, "train_micro_batch_size_per_gpu": 1,
              "train_batch_size": torch.distributed.get_world_size()}
    _quiet()
    groups = list(optimizer.param_groups)
    filled = [bool(g["params"]) for g in groups]
    if filled != sorted(filled, reverse=True):
        raise ValueError("ZeRO-3: an empty parameter group before a non-empty one "
                         "(DeepSpeed drops empty groups, which would shift the others)")
    engine = deepspeed.initialize(model=root, optimizer=optimizer, config=config)[0]
    # DeepSpeed drops empty groups (LoRA: no 1-D weight to train): back at the end, where
    # they were, so the LR schedule and the checkpoint see the groups they were built on
    optimizer.param_groups.extend(groups[len(optimizer.param_groups):])
    return engine


def full_state(prepared: PreparedModel, *, trainable_only: bool
                      ) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """:meth:`~prefkit.processes.PreparedModel.full_state` under ZeRO-3: each trainable weight's fp32 master
    copy and its AdamW moments gathered from the partitions (DeepSpeed's
    ``safe_get_full_fp32_param`` / ``safe_get_full_optimizer_state``, one tensor at a time,
    every process taking part), frozen weights through ``GatheredParameters``; the step
    count from the optimizer's state of the parameter's group. The main process keeps
    them (on its CPU), in the layout one process's ``torch.optim.AdamW`` writes."""
    import deepspeed
    from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state

    main = torch.distributed.get_rank() == 0
    weights: dict[str, Tensor] = {}
    for name, p in prepared.model.named_parameters():
        if p.requires_grad:
            full = safe_get_full_fp32_param(p)
        elif trainable_only:
            continue
        else:
            with deepspeed.zero.GatheredParameters([p]):
                full = p.data.clone()
        if main:
            weights[name] = full.detach().cpu().clone()
    zero = prepared.engine.optimizer  # DeepSpeedZeroOptimizer_Stage3
    base = zero.optimizer  # the loop's AdamW, over the flat fp32 partitions
    state: dict[int, dict[str, Any]] = {}
    groups: list[dict[str, Any]] = []
    i = 0
    for g, (params, group) in enumerate(zip(prepared.order, base.param_groups, strict=True)):
        steps = [base.state[f]["step"] for f in _flats(zero, g) if "step" in base.state.get(f, {})]
        groups.append({**{k: v for k, v in group.items() if k != "params"},
                       "params": list(range(i, i + len(params)))})
        for p in params:
            if steps:  # none before the first step (AdamW's state is made then)
                moments = {k: safe_get_full_optimizer_state(p, k) for k in ("exp_avg",
                                                                           "exp_avg_sq")}
                if main:
                    state[i] = {"step": steps[0].detach().cpu().clone(),
                                **{k: v.detach().cpu().clone() for k, v in moments.items()}}
            i += 1
    return weights, ({"state": state, "param_groups": groups} if main else {})


@dataclass(eq=False)
class ModelLoader:
    """Weights of the main process's checkpoint into the ZeRO-3 partitions: each gathered,
    written by the main process, partitioned again (``GatheredParameters``,
    ``modifier_rank=0``), then the optimizer's fp32 master copies refreshed from them."""

    prepared: PreparedModel

    def load_state_dict(self, state: Mapping[str, Tensor], strict: bool = True) -> None:
        import deepspeed

        main = torch.distributed.get_rank() == 0
        for name, p in self.prepared.model.named_parameters():
            if not p.requires_grad:
                continue  # frozen: the model's own (a checkpoint holds the trainable ones)
            with deepspeed.zero.GatheredParameters([p], modifier_rank=0):
                if main:
                    p.data.copy_(state[name])
        self.prepared.engine.optimizer.refresh_fp32_params()


@dataclass(eq=False)
class OptimizerLoader:
    """AdamW's state of the main process's checkpoint (one process's layout) into the
    ZeRO-3 partitions: each moment broadcast whole and each process keeping its slice
    (``safe_set_full_optimizer_state``); the groups' hyper-parameters and step count too."""

    prepared: PreparedModel

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        from deepspeed.utils import safe_set_full_optimizer_state

        dist = torch.distributed
        main = dist.get_rank() == 0
        zero = self.prepared.engine.optimizer
        base = zero.optimizer
        head = [({k: v for k, v in g.items() if k != "params"},
                 {i: state["state"][i]["step"] for i in g["params"] if i in state["state"]})
                for g in state["param_groups"]] if main else None
        got = [head]
        dist.broadcast_object_list(got, src=0)
        i = 0
        for g, ((hyper, steps), group, params) in enumerate(zip(
                got[0], base.param_groups, self.prepared.order, strict=True)):
            group.update(hyper)
            if steps:  # AdamW's state, made as its first step makes it, then filled
                step = float(next(iter(steps.values())))
                for flat in _flats(zero, g):
                    base.state[flat] = {
                        "step": torch.tensor(step, dtype=torch.float32,
                                             device=flat.device if group.get("fused") else None),
                        "exp_avg": torch.zeros_like(flat), "exp_avg_sq": torch.zeros_like(flat)}
            for p in params:
                if i in steps:
                    for key in ("exp_avg", "exp_avg_sq"):
                        full = state["state"][i][key].to(p.device) if main else \
                            torch.empty(p.ds_shape, dtype=torch.float32, device=p.device)
                        dist.broadcast(full, src=0)
                        safe_set_full_optimizer_state(p, full, key)
                i += 1


def _flats(zero: Any, group: int) -> list[Tensor]:
    """The flat fp32 partitions ZeRO-3 made of the optimizer's group ``group`` (the tensors
    AdamW's state is kept for; the group's ``params`` hold them only during a step)."""
    return [flat for sub, flat in enumerate(zero.fp32_partitioned_groups_flat)
            if zero.sub_group_to_group_id[sub] == group]


def _quiet() -> None:
    """DeepSpeed warns that it cannot see the tensors in the root's output (prefkit's
    ``SequenceLogps``), so its backward hooks for the root may not run: the root holds no
    weights of its own, and the one weight registered on it (the LM head's) is gathered
    for the backward by :meth:`~prefkit.processes.PreparedModel.backward`. That warning is dropped."""
    from deepspeed.utils import logger

    if not any(isinstance(f, _DropRootOutputWarning) for f in logger.filters):
        logger.addFilter(_DropRootOutputWarning())


class _DropRootOutputWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "unknown inputs or outputs type" not in record.getMessage()
