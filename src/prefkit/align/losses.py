"""Alignment losses: one small function each, chosen by name from :data:`ALIGN_LOSSES`.

Every loss has the same call shape, so a trainer never branches on the method::

    spec = get_align_loss("dpo")                  # TRL's names work too: "sigmoid", ...
    out = spec(logps, beta=0.1)                   # LossOutput: losses (B,), rewards (B, K)

* ``logps``: a :class:`~prefkit.align.types.SequenceLogps` -- summed response
  log-probabilities of the policy (and of the frozen reference), ``(B, K)``, plus what a
  loss needs besides: ``lengths`` (length-normalised losses), ``token_kl`` (TDPO),
  ``label`` / ``kl_policy`` / ``kl_reference`` (KTO).
* ``**hyper``: the loss's keyword-only hyper-parameters; :attr:`AlignLoss.defaults` lists
  them, and calling the spec fills the defaults and rejects unknown names.

Each loss returns **per-example** losses (the trainer averages) and **detached** implicit
rewards in the loss's own scale; :class:`~prefkit.align.types.LossOutput` derives margins
and accuracy. The reference log-probabilities never receive gradients (they are detached
here even if the caller forgot ``torch.no_grad``). The SFT term (:func:`sft_term`) mixes
with any loss by a trainer weight.

With ``u = log pi_theta(y|x) - log pi_ref(y|x)`` (``_c`` chosen, ``_r`` rejected),
``d = u_c - u_r``, ``r = beta u``, ``a = log pi_theta(y|x) / |y|`` (average log-prob),
``sig`` the logistic function and ``e = label_smoothing``:

=====================  =================================================  =====================
name                   per-example loss                                   TRL 1.16
=====================  =================================================  =====================
``dpo``                ``-log sig(beta d)``                               sigmoid
``cdpo``               ``-(1-e) log sig(beta d) - e log sig(-beta d)``    CPO sigmoid (on u)
``robust_dpo``         ``[(1-e) L(d) - e L(-d)] / (1 - 2e)``              robust
``dpo_norm``           ``dpo`` on length-averaged log-ratios              sigmoid_norm
``ipo``                ``(d/len - 1/(2 beta))^2`` (length-averaged d)     ipo
``hinge``              ``max(0, 1 - beta d)``                             hinge
``exo``                ``KL(softmax(beta u) || [1-e, e])``                exo_pair
``nca``                ``-log sig(r_c) - log[sig(-r_c) sig(-r_r)] / 2``   nca_pair
``bco_pair``           ``-log sig(r_c - delta) - log sig(delta - r_r)``   bco_pair
``sppo_hard``          ``(u_c - 1/(2 beta))^2 + (u_r + 1/(2 beta))^2``    sppo_hard
``aot``                ``dpo`` on sorted policy vs reference margins      aot
``aot_unpaired``       ``dpo`` on sorted ``u_c`` vs sorted ``u_r``        aot_unpaired
``apo_zero``           ``1 - sig(r_c) + sig(r_r)``                        apo_zero
``apo_down``           ``sig(r_c) + 1 - sig(beta d)``                     apo_down
``discopop``           ``(1-m) (-log sig(beta d)) + m exp(-beta d)``      discopop
``cal_dpo``            ``-log sig(d) + (u_c - 1/2b)^2 + (u_r + 1/2b)^2``  --
``tdpo1/2``            ``-log sig(beta d - delta)``, delta: token KL      --
``simpo``              ``-log sig(beta (a_c - a_r) - gamma)``             CPO simpo
``cpo``                ``-log sig(beta (log pi_c - log pi_r))``           CPO sigmoid
``orpo``               ``-a_c - beta log sig(lodds(a_c) - lodds(a_r))``   ORPO
``sft``                ``-a_0``                                           sft
``listwise``           ``-log PL(beta u_0 > ... > beta u_{K-1})``         --
``kto``                ``w (1 - sig(+-beta (u - z0)))``                   KTO kto
``apo_zero_unpaired``  ``1 - sig(r)`` or ``sig(r)``                       KTO apo_zero_unpaired
=====================  =================================================  =====================

(``L(x) = -log sig(beta x)``, ``b = beta``, ``lodds(a) = a - log(1 - e^a)``; ``dpo`` also
takes f-DPO's ``f_divergence``, each ``u`` replaced by ``f'(e^u)``, and KTO's ``z0`` is
``max(0, kl_estimate)``, by default the batch's mean log-ratio on mismatched pairs.) Where TRL
implements the same loss, the tests call TRL's own code on identical inputs and check the
batch losses (TRL reduces) and the per-example rewards to 1e-6 (most agree bit for bit).
``AlignLoss.paper`` and each function's docstring give the source and the implicit reward.

Example:
    >>> import torch
    >>> from prefkit.align.types import SequenceLogps
    >>> logps = SequenceLogps(policy=torch.tensor([[-4.0, -9.0]]),
    ...                       lengths=torch.tensor([[2.0, 3.0]]),
    ...                       reference=torch.tensor([[-5.0, -8.0]]))
    >>> out = get_align_loss("dpo")(logps, beta=0.5)   # beta d = 0.5 * (1 - (-1)) = 1
    >>> round(float(out.losses), 4), out.rewards.tolist(), out.margins.tolist()
    (0.3133, [[0.5, -0.5]], [1.0])

The functions live in private topical modules: ``_losses_base`` (checks, the SFT term),
``_losses_dpo`` (links over the margin ``d``), ``_losses_anchored`` (per-response anchors,
AOT), ``_losses_free`` (no reference), ``_losses_kinds`` (listwise, unpaired) and
``_losses_registry`` (:class:`AlignLoss`, the registry); this module is their public face.
"""

from __future__ import annotations

from prefkit.align._losses_anchored import (
    aot_loss,
    aot_unpaired_loss,
    apo_down_loss,
    apo_zero_loss,
    bco_pair_loss,
    nca_loss,
    sppo_hard_loss,
)
from prefkit.align._losses_base import KINDS, sft_term
from prefkit.align._losses_dpo import (
    F_DIVERGENCES,
    cal_dpo_loss,
    discopop_loss,
    dpo_loss,
    exo_loss,
    f_divergence_scores,
    hinge_loss,
    ipo_loss,
    robust_dpo_loss,
    tdpo1_loss,
    tdpo2_loss,
)
from prefkit.align._losses_free import cpo_loss, orpo_loss, sft_loss, simpo_loss
from prefkit.align._losses_kinds import apo_zero_unpaired_loss, kto_loss, listwise_loss
from prefkit.align._losses_registry import (
    ALIASES,
    ALIGN_LOSSES,
    HYPER_RANGES,
    AlignLoss,
    check_hyper,
    combine_losses,
    get_align_loss,
)

__all__ = [
    "AlignLoss",
    "ALIGN_LOSSES",
    "ALIASES",
    "HYPER_RANGES",
    "check_hyper",
    "KINDS",
    "get_align_loss",
    "combine_losses",
    "sft_term",
    "F_DIVERGENCES",
    "f_divergence_scores",
    "dpo_loss",
    "robust_dpo_loss",
    "ipo_loss",
    "hinge_loss",
    "exo_loss",
    "nca_loss",
    "bco_pair_loss",
    "sppo_hard_loss",
    "aot_loss",
    "aot_unpaired_loss",
    "apo_zero_loss",
    "apo_down_loss",
    "discopop_loss",
    "cal_dpo_loss",
    "tdpo1_loss",
    "tdpo2_loss",
    "simpo_loss",
    "cpo_loss",
    "orpo_loss",
    "sft_loss",
    "listwise_loss",
    "kto_loss",
    "apo_zero_unpaired_loss",
]

