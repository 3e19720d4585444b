"""Ranking accuracy and idealized ranking accuracy of a policy on preference pairs (Chen et
al. 2024, "Preference Learning Algorithms Do Not Learn Preference Rankings", NeurIPS).

For pairs ``(x, y_w, y_l)`` (``y_w`` the preferred response):

- **ranking accuracy** ``R(pi) = mean 1[pi(y_w | x) > pi(y_l | x)]``, with the summed
  log-probability of each response (``summed``) and with the length-normalised one,
  ``log pi(y | x) / |y|`` over the response's tokens, end-of-sequence included
  (``length_normalised``), as the paper reports both. A tie in log-probability counts as
  wrong (strict ``>``, as the paper's indicator).
- **idealized ranking accuracy** (the paper's Theorem 3.1): the optimum of the DPO/RLHF
  objective is ``pi*(y | x) = pi_ref(y | x) exp(r*(x, y) / beta) / Z(x)`` and, with the
  ground-truth preference ``alpha = P(y_w > y_l | x) = sigmoid(r*(y_w) - r*(y_l))``,
  ``pi*`` ranks the pair correctly iff
  ``log pi_ref(y_w|x) - log pi_ref(y_l|x) + (1/beta) log(alpha / (1 - alpha)) > 0``.
  ``alpha`` is the share of non-tie annotator labels that prefer ``y_w``; a unanimous pair
  (``alpha = 1``) would make the term infinite, so ``alpha`` is clipped to
  ``[eps, 1 - eps]`` with ``eps = 1e-3`` (the authors' code divides by ``eps`` there). With a
  single label per pair ``alpha`` cannot be estimated: ``default_alpha`` (0.75, the authors'
  ``simulate_proportion``) is used and said in the result.

Log-probabilities come from prefkit.align's scoring engine
(:func:`prefkit.align.tokenize_alignment` then
:func:`prefkit.align.reference.compute_reference_logps`): prompt tokens are never scored,
conversational prompts use the tokenizer's chat template.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from prefkit.data.annotations import FIRST, SECOND
from prefkit.runs import plural

__all__ = ["EPS", "idealized_ranking_accuracy", "load_causal_lm", "pair_logps",
           "ranking_accuracy", "ranking_of_annotations"]

EPS = 1e-3
DEFAULT_ALPHA = 0.75


def load_causal_lm(folder: str | Path) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a local folder: a model folder, or a ``prefkit align``
    output (a LoRA adapter is applied to its base, :func:`prefkit.align.load_aligned`)."""
    from transformers import AutoTokenizer

    from prefkit.align import load_aligned

    folder = Path(folder)
    model = load_aligned(folder)
    model.eval()
    return model, AutoTokenizer.from_pretrained(folder)


def pair_logps(model: Any, tokenizer: Any, prompts: Sequence[Any], chosen: Sequence[str],
               rejected: Sequence[str], *, batch_size: int = 8, max_length: int | None = None
               ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """``(logps (n, 2), lengths (n, 2), kept rows)``: summed log-probs of chosen and rejected
    under ``model`` and their lengths in tokens; rows that tokenization dropped (longer
    than ``max_length``) are not in ``kept``."""
    from prefkit.align import AlignmentData, tokenize_alignment
    from prefkit.align.reference import compute_reference_logps

    records = AlignmentData("pairwise", list(prompts),
                            [[c, r] for c, r in zip(chosen, rejected)])
    tok = tokenize_alignment(records, tokenizer, max_length=max_length)
    got = compute_reference_logps(model, tok.examples, pad_token_id=tok.pad_token_id,
                                  batch_size=batch_size)
    lengths = np.array([[len(r) for r in e.responses] for e in tok.examples],
                       dtype=np.float64).reshape(-1, 2)
    return (got.logps.double().numpy().reshape(-1, 2), lengths,
            np.asarray(tok.indices, dtype=np.int64))


def ranking_accuracy(logps: NDArray[np.floating], lengths: NDArray[np.floating] | None = None
                     ) -> dict[str, Any]:
    """Share of pairs whose chosen (column 0) has the higher log-probability: summed, and
    length-normalised when ``lengths`` are given (see the module docstring).

    >>> ranking_accuracy(np.array([[-1.0, -2.0], [-3.0, -2.0]]), np.array([[1, 1], [6, 2]]))
    {'summed': 0.5, 'length_normalised': 1.0, 'n': 2}
    """
    lp = np.asarray(logps, dtype=np.float64)
    out: dict[str, Any] = {"summed": float((lp[:, 0] > lp[:, 1]).mean()) if len(lp) else None}
    if lengths is not None:
        norm = lp / np.maximum(np.asarray(lengths, dtype=np.float64), 1)
        out["length_normalised"] = float((norm[:, 0] > norm[:, 1]).mean()) if len(lp) else None
    out["n"] = len(lp)
    return out


def idealized_ranking_accuracy(ref_logps: NDArray[np.floating], alpha: NDArray[np.floating],
                               beta: float, *, eps: float = EPS,
                               lengths: NDArray[np.floating] | None = None) -> dict[str, Any]:
    """The share of pairs that the optimal policy ``pi*`` ranks correctly, from the
    reference's log-probs ``(n, 2)`` (chosen first) and ``alpha = P(chosen preferred)``
    (see the module docstring). With ``lengths``, also the variant of the authors' code
    (``compute_ranks(normalized=True)``): the reference's length-normalised log-probs plus
    the same ``(1/beta) log(alpha / (1 - alpha))``.

    >>> idealized_ranking_accuracy(np.array([[-5.0, -1.0], [-5.0, -1.0]]),
    ...                            np.array([0.9, 0.6]), beta=1.0)["summed"]
    0.0
    >>> idealized_ranking_accuracy(np.array([[-5.0, -1.0]]), np.array([0.99]), beta=0.5)["summed"]
    1.0
    """
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    lp = np.asarray(ref_logps, dtype=np.float64)
    a = np.clip(np.asarray(alpha, dtype=np.float64), eps, 1 - eps)
    shift = np.log(a / (1 - a)) / beta
    out: dict[str, Any] = {"summed": float((lp[:, 0] - lp[:, 1] + shift > 0).mean())
                           if len(lp) else None}
    if lengths is not None:
        ln = np.maximum(np.asarray(lengths, dtype=np.float64), 1)
        # the authors' code: (alpha / (1 - alpha))^(1/beta) times the ratio of the
        # reference's per-token probabilities exp(log pi_ref(y) / |y|)
        out["length_normalised"] = float((lp[:, 0] / ln[:, 0] - lp[:, 1] / ln[:, 1]
                                          + shift > 0).mean()) if len(lp) else None
    out.update(n=len(lp), beta=beta, eps=eps)
    return out


def ranking_of_annotations(ann: Any, policy: Any, reference: Any, tokenizer: Any, *,
                           beta: float, batch_size: int = 8, max_length: int | None = None,
                           default_alpha: float = DEFAULT_ALPHA) -> dict[str, Any]:
    """Ranking accuracy of ``policy`` and ``reference`` and the idealized ranking accuracy
    on the pairs of ``ann`` whose winner is known (gold, else the majority); ``alpha`` from
    the annotators' labels (see the module docstring)."""
    if ann.response_a is None or ann.response_b is None:
        raise ValueError(f"{ann.source}: ranking accuracy needs the response texts")
    label = ann.gold if ann.gold is not None else ann.majority()
    keep = np.flatnonzero((label == FIRST) | (label == SECOND))
    first = label[keep] == FIRST
    counts = ann.counts()[keep]
    n_w = np.where(first, counts[:, 0], counts[:, 1]).astype(float)
    n_dec = counts[:, 0] + counts[:, 1]
    several = n_dec >= 2
    alpha = np.where(several, n_w / np.maximum(n_dec, 1), default_alpha)
    prompts = ann.prompt if ann.prompt is not None else [""] * len(ann)
    chat = getattr(tokenizer, "chat_template", None) is not None
    p = [[{"role": "user", "content": prompts[i]}] if chat else prompts[i] for i in keep]
    ra, rb = ann.response_a, ann.response_b
    c = [ra[i] if f else rb[i] for i, f in zip(keep, first)]
    r = [rb[i] if f else ra[i] for i, f in zip(keep, first)]
    pol, lens, kept = pair_logps(policy, tokenizer, p, c, r, batch_size=batch_size,
                                 max_length=max_length)
    ref, _, _ = pair_logps(reference, tokenizer, p, c, r, batch_size=batch_size,
                           max_length=max_length)
    return {"policy": ranking_accuracy(pol, lens), "reference": ranking_accuracy(ref, lens),
            "idealized": idealized_ranking_accuracy(ref, alpha[kept], beta, lengths=lens),
            "n_pairs": int(kept.size), "n_left_out": int(len(ann) - kept.size),
            "n_undecided": int(len(ann) - keep.size), "n_too_long": int(keep.size - kept.size),
            "max_length": max_length,
            "alpha_from": "annotators" if several.all() else
            f"annotators where >= 2 non-tie labels, else {default_alpha} "
            f"({plural(int((~several).sum()), 'pair')})",
            "prompt": "chat template" if chat else "plain text"}
