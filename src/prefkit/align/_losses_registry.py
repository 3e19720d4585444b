"""The loss registry: :class:`AlignLoss` (a loss function and what its input must hold),
:data:`ALIGN_LOSSES` by name and alias, :func:`get_align_loss` and :func:`combine_losses`.

Private: :mod:`prefkit.align.losses` re-exports these.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from prefkit.align._losses_anchored import (
    aot_loss,
    aot_unpaired_loss,
    apo_down_loss,
    apo_zero_loss,
    bco_pair_loss,
    nca_loss,
    sppo_hard_loss,
)
from prefkit.align._losses_base import KINDS, _check_k
from prefkit.align._losses_dpo import (
    cal_dpo_loss,
    discopop_loss,
    dpo_loss,
    exo_loss,
    hinge_loss,
    ipo_loss,
    robust_dpo_loss,
    tdpo1_loss,
    tdpo2_loss,
)
from prefkit.align._losses_free import cpo_loss, orpo_loss, sft_loss, simpo_loss
from prefkit.align._losses_kinds import apo_zero_unpaired_loss, kto_loss, listwise_loss
from prefkit.align.types import LossOutput, SequenceLogps
from prefkit.losses import LossSpec, StepPass, keyword_defaults

__all__ = ["AlignLoss", "ALIGN_LOSSES", "ALIASES", "HYPER_RANGES", "KL_ESTIMATE",
           "check_hyper", "get_align_loss", "combine_losses"]


class AlignLoss(LossSpec):
    """One entry of :data:`ALIGN_LOSSES`: a :class:`~prefkit.losses.LossSpec` whose ``fn``
    takes a :class:`~prefkit.align.types.SequenceLogps`.

    name:              the canonical registry name.
    fn:                ``fn(logps, **hyper) -> LossOutput``.
    kind:              ``"pairwise"`` (K = 2: chosen, rejected), ``"listwise"`` (K >= 2,
                       ranked best first, ``valid`` for padding) or ``"unpaired"`` (K = 1,
                       with ``label``).
    defaults:          the hyper-parameters the loss takes, with their defaults.
    paper:             the citation.
    needs:             ``"reference"`` (``SequenceLogps.reference``, the frozen reference
                       model) and/or ``"token_kl"`` (``SequenceLogps.token_kl``, TDPO).
    step_pass:         the extra pass it needs once per optimizer step (KTO: the KL
                       estimate over mismatched pairs, its ``kl_estimate``), or None.

    ``needs_reference``, ``needs_token_kl`` and ``needs_kl_estimate`` read these. Calling it
    fills the defaults, rejects unknown hyper-parameter names and values outside
    :data:`HYPER_RANGES`, checks ``K`` against ``kind`` and calls ``fn``.
    """

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"AlignLoss kind must be one of {KINDS}, got {self.kind!r}")
        super().__post_init__()

    @property
    def needs_reference(self) -> bool:
        return "reference" in self.needs

    @property
    def needs_token_kl(self) -> bool:
        return "token_kl" in self.needs

    @property
    def needs_kl_estimate(self) -> bool:
        return self.step_pass is not None

    def check(self, key: str, value: Any) -> None:
        check_hyper(self.name, key, value)

    def __call__(self, logps: SequenceLogps, **hyper: Any) -> LossOutput:  # type: ignore[override]
        resolved = self.resolve(**hyper)
        _check_k(logps, self.kind, self.name)
        return self.fn(logps, **resolved)


#: KTO's reference point: the mean log-ratio over mismatched pairs, once per step
KL_ESTIMATE = StepPass("kl_estimate", examples="mismatched", statistic="mean_log_ratio",
                       min_batch_size=2)


#: Where each hyper-parameter is defined, whatever the loss (a loss may narrow it further
#: when called): ``(low, high, low_open, high_open, why)``. A negative ``beta`` flips every
#: implicit reward, so the loss trains toward the rejected answers while the accuracy it
#: reports (from the same flipped rewards) looks perfect.
HYPER_RANGES: dict[str, tuple[float, float, bool, bool, str]] = {
    "beta": (0.0, math.inf, True, True, "it scales the log-ratio rewards; a value <= 0 "
             "trains toward the rejected answers (typical: 0.1; SimPO 2)"),
    "label_smoothing": (0.0, 0.5, False, False, "it is the probability that a label is "
                        "flipped (0: none)"),
    "alpha": (-math.inf, math.inf, True, True, "it must be a finite number"),
    "delta": (-math.inf, math.inf, True, True, "it must be a finite number"),
    "tau": (0.0, math.inf, True, True, "it is a temperature (DiscoPOP: 0.05)"),
    "calibration_weight": (0.0, math.inf, False, True, "it weighs the calibration term"),
    "gamma": (0.0, math.inf, False, True, "it is SimPO's target reward margin (paper: "
              "gamma/beta about 0.5)"),
    "desirable_weight": (0.0, math.inf, True, True, "it weighs the desirable examples"),
    "undesirable_weight": (0.0, math.inf, True, True, "it weighs the undesirable examples"),
}


def check_hyper(loss: str, key: str, value: Any) -> None:
    """Raise a ``ValueError`` with the fix if ``value`` is outside where ``key`` is
    defined (:data:`HYPER_RANGES`); names without a range pass."""
    if key not in HYPER_RANGES or value is None or isinstance(value, bool):
        return
    low, high, low_open, high_open, why = HYPER_RANGES[key]
    try:
        if isinstance(value, str):  # "0.1" from a config file is no number either
            raise TypeError(value)
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"the {loss!r} loss needs a number for {key}, got {value!r}") from None
    ok = (math.isfinite(x) and (x > low if low_open else x >= low)
          and (x < high if high_open else x <= high))
    if not ok:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise ValueError(f"the {loss!r} loss needs {key} in {lo}{low:g}, {high:g}{hi}, got "
                         f"{value!r}: {why}")


def _spec(name: str, fn: Callable[..., LossOutput], kind: str, paper: str, *,
          needs_reference: bool = True, needs_token_kl: bool = False,
          step_pass: StepPass | None = None, **defaults: Any) -> AlignLoss:
    resolved = keyword_defaults(fn)
    if not set(defaults) <= set(resolved):
        raise TypeError(f"{name}: {fn.__name__} takes no {sorted(set(defaults) - set(resolved))}")
    needs = {"reference"} if needs_reference else set()
    if needs_token_kl:
        needs.add("token_kl")
    return AlignLoss(name, fn, kind, {**resolved, **defaults}, paper, frozenset(needs),
                     step_pass)


_SPECS = [
    _spec("dpo", dpo_loss, "pairwise", "Rafailov et al. 2023, arXiv:2305.18290"),
    _spec("cdpo", dpo_loss, "pairwise", "Mitchell 2023, 'A note on DPO with noisy preferences'",
          label_smoothing=0.1),
    _spec("robust_dpo", robust_dpo_loss, "pairwise", "Chowdhury et al. 2024, arXiv:2403.00409"),
    _spec("dpo_norm", dpo_loss, "pairwise", "Rafailov et al. 2023 (length-normalised, TRL)",
          length_normalize=True),
    _spec("ipo", ipo_loss, "pairwise", "Azar et al. 2024, arXiv:2310.12036"),
    _spec("hinge", hinge_loss, "pairwise", "Zhao et al. 2023, arXiv:2305.10425; Liu et al. "
          "2024, arXiv:2309.06657"),
    _spec("exo", exo_loss, "pairwise", "Ji et al. 2024, arXiv:2402.00856"),
    _spec("nca", nca_loss, "pairwise", "Chen et al. 2024, arXiv:2402.05369"),
    _spec("bco_pair", bco_pair_loss, "pairwise", "Jung et al. 2024, arXiv:2404.04656"),
    _spec("sppo_hard", sppo_hard_loss, "pairwise", "Wu et al. 2024, arXiv:2405.00675"),
    _spec("aot", aot_loss, "pairwise", "Melnyk et al. 2024, arXiv:2406.05882"),
    _spec("aot_unpaired", aot_unpaired_loss, "pairwise", "Melnyk et al. 2024, arXiv:2406.05882"),
    _spec("apo_zero", apo_zero_loss, "pairwise", "D'Oosterlinck et al. 2024, arXiv:2408.06266"),
    _spec("apo_down", apo_down_loss, "pairwise", "D'Oosterlinck et al. 2024, arXiv:2408.06266"),
    _spec("discopop", discopop_loss, "pairwise", "Chris Lu et al. 2024, arXiv:2406.08414"),
    _spec("cal_dpo", cal_dpo_loss, "pairwise", "Xiao et al. 2024, arXiv:2412.14516"),
    _spec("tdpo1", tdpo1_loss, "pairwise", "Zeng et al. 2024, arXiv:2404.11999",
          needs_token_kl=True),
    _spec("tdpo2", tdpo2_loss, "pairwise", "Zeng et al. 2024, arXiv:2404.11999",
          needs_token_kl=True),
    _spec("simpo", simpo_loss, "pairwise", "Meng et al. 2024, arXiv:2405.14734",
          needs_reference=False),
    _spec("cpo", cpo_loss, "pairwise", "Xu et al. 2024, arXiv:2401.08417",
          needs_reference=False),
    _spec("orpo", orpo_loss, "pairwise", "Hong et al. 2024, arXiv:2403.07691",
          needs_reference=False),
    _spec("sft", sft_loss, "pairwise", "supervised fine-tuning on the chosen response",
          needs_reference=False),
    _spec("listwise", listwise_loss, "listwise", "Rafailov et al. 2023 app. A.3; Song et al. "
          "2024, arXiv:2306.17492; Liu et al. 2024, arXiv:2402.01878"),
    _spec("kto", kto_loss, "unpaired", "Ethayarajh et al. 2024, arXiv:2402.01306",
          step_pass=KL_ESTIMATE),
    _spec("apo_zero_unpaired", apo_zero_unpaired_loss, "unpaired",
          "D'Oosterlinck et al. 2024, arXiv:2408.06266"),
]

#: other names accepted for a loss (TRL's ``loss_type`` values and common spellings)
ALIASES: dict[str, str] = {
    "sigmoid": "dpo",
    "conservative_dpo": "cdpo",
    "robust": "robust_dpo",
    "rdpo": "robust_dpo",
    "sigmoid_norm": "dpo_norm",
    "slic": "hinge",
    "rso": "hinge",
    "exo_pair": "exo",
    "nca_pair": "nca",
    "aot_pair": "aot",
    "caldpo": "cal_dpo",
    "tdpo": "tdpo2",
    "plackett_luce": "listwise",
    "pl_dpo": "listwise",
    "pro": "listwise",
}

#: every loss by its canonical name and by each alias (an alias maps to the same spec,
#: whose ``name`` is canonical)
ALIGN_LOSSES: dict[str, AlignLoss] = {spec.name: spec for spec in _SPECS}
ALIGN_LOSSES.update({alias: ALIGN_LOSSES[name] for alias, name in ALIASES.items()})


def get_align_loss(name: str) -> AlignLoss:
    """Look a loss up by its name or an alias (case and ``-``/``_`` ignored); the error
    lists the known names."""
    key = name.strip().lower().replace("-", "_")
    if key in ALIGN_LOSSES:
        return ALIGN_LOSSES[key]
    canonical = [spec.name for spec in _SPECS]
    raise ValueError(f"unknown alignment loss {name!r}; choose one of {canonical} (aliases: "
                     f"{sorted(ALIASES)})")


def combine_losses(weights: Mapping[str, float],
                   hyper: Mapping[str, Mapping[str, Any]] | None = None) -> AlignLoss:
    """A weighted sum of registry losses as one :class:`AlignLoss` (TRL's
    ``loss_type=[...]`` with ``loss_weights``, e.g. MPO = ``{"dpo": 0.8, "bco_pair": 0.2,
    "sft": 1.0}``): ``loss_i = sum_n w_n loss_n(logps, **hyper[n])_i``.

    The parts' hyper-parameters are fixed here (``hyper`` by loss name, checked now), so
    the result takes none. Its rewards are those of the first part; it needs what any part
    needs; all parts must take the same kind of data.
    """
    if not weights:
        raise ValueError("combine_losses needs at least one {loss name: weight}")
    hyper = dict(hyper or {})
    stray = sorted(set(hyper) - set(weights))
    if stray:
        raise ValueError(f"hyper-parameters given for {stray}, which are not combined")
    parts = [(get_align_loss(n), float(w), get_align_loss(n).resolve(**hyper.get(n, {})))
             for n, w in weights.items()]
    kinds = {spec.kind for spec, _, _ in parts}
    if len(kinds) > 1:
        raise ValueError(f"cannot combine losses over different data: "
                         f"{ {spec.name: spec.kind for spec, _, _ in parts} }")

    def combined(logps: SequenceLogps) -> LossOutput:
        outs = [spec.fn(logps, **h) for spec, _, h in parts]
        total = parts[0][1] * outs[0].losses
        for (_, w, _), out in zip(parts[1:], outs[1:], strict=True):
            total = total + w * out.losses
        return LossOutput(total, outs[0].rewards)

    combined.__doc__ = "Weighted sum: " + " + ".join(f"{w} * {n}" for n, w in weights.items())
    passes = {s.step_pass for s, _, _ in parts if s.step_pass is not None}
    if len(passes) > 1:
        raise ValueError(f"cannot combine losses that need different step passes: {passes}")
    return AlignLoss(
        name="+".join(f"{w}*{n}" for n, w in weights.items()), fn=combined, kind=kinds.pop(),
        needs=frozenset().union(*(s.needs for s, _, _ in parts)),
        step_pass=passes.pop() if passes else None,
        paper="; ".join(s.paper for s, _, _ in parts))
