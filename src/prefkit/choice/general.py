"""The General Preference Model's link: a skew-symmetric bilinear form of preference
embeddings, which can represent intransitive (cyclic) preferences.

Each response gets a preference embedding ``v`` in ``R^{2k}``; a pair is scored by

    s(v1 > v2) = <R^> v1, v2> = sum_l lambda_l (v1[2l] v2[2l+1] - v1[2l+1] v2[2l]),

``R^> = diag(lambda_1 J, ..., lambda_k J)``, ``J = [[0, -1], [1, 0]]``, and
``P(v1 > v2) = sigmoid(s / tau)``: Bradley-Terry (:func:`prefkit.choice.log_bradley_terry`)
over the logit ``s / tau``. Because ``R^T = -R``, ``s(v1 > v2) = -s(v2 > v1)`` exactly:
``P(v1 > v2) + P(v2 > v1) = 1`` and ``P(v > v) = 1/2`` for every parameter value, and a
single block places items on a circle, so rock-paper-scissors is representable, which no
scalar score is.

Pure and array-agnostic: torch tensors (training, with gradients) or numpy arrays.

References: Zhang, Zhang, Wu, Xu & Gu (2025) "Beyond Bradley-Terry Models: A General
Preference Model for Language Model Alignment" (arXiv:2410.02197, ICML 2025).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import TypeVar

    import numpy as np
    from torch import Tensor

    ArrayT = TypeVar("ArrayT", Tensor, np.ndarray)

__all__ = ["gpm_logit"]


def gpm_logit(v1: ArrayT, v2: ArrayT, eigenvalues: ArrayT | None = None) -> ArrayT:
    """The skew-symmetric score ``<R^> v1, v2>`` of GPM (torch tensors or numpy arrays).

    ``sum_l lambda_l * (v1[..., 2l] * v2[..., 2l+1] - v1[..., 2l+1] * v2[..., 2l])``

    Args:
        v1, v2: preference embeddings, shape ``(..., 2k)``.
        eigenvalues: ``lambda``, shape ``(..., k)`` (broadcast); ``None`` means all ones.

    Returns:
        Shape ``(...)``. ``gpm_logit(a, b) == -gpm_logit(b, a)`` exactly (each term is a
        difference of the same two products) and ``gpm_logit(a, a) == 0``.

    >>> import numpy as np
    >>> rock, scissors, paper = (np.array([np.cos(t), np.sin(t)]) for t in (0, 2.1, 4.2))
    >>> [bool(gpm_logit(a, b) > 0) for a, b in [(rock, scissors), (scissors, paper), (paper, rock)]]
    [True, True, True]
    """
    if v1.shape[-1] % 2 or v2.shape[-1] != v1.shape[-1]:
        raise ValueError(
            f"embeddings need the same even last dimension, got {v1.shape}, {v2.shape}"
        )
    cross: Any = v1[..., 0::2] * v2[..., 1::2] - v1[..., 1::2] * v2[..., 0::2]  # (..., k)
    if eigenvalues is not None:
        cross = cross * eigenvalues
    return cross.sum(-1)  # type: ignore[no-any-return]
